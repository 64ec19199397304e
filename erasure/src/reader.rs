//! Streaming reads of a byte range.
//!
//! Each stripe the range touches becomes one blocking task that reads just the data blocks
//! overlapping the range straight into a (recycled) output buffer and verifies them. A few
//! stripes are in flight at once, so disk reads and checksums overlap with the consumer.
//! When a block is missing, short or corrupt, the task reads `k` good blocks (parity
//! included) and rebuilds the data; the damaged shards are reported once the reader is done. With
//! fewer than `k` good blocks the stream yields [`ErasureError::NotEnoughShards`] and ends:
//! a byte that failed its checksum is never returned.

use std::collections::BTreeMap;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{future, stream, Stream, StreamExt};

use crate::buffer_pool;
use crate::codec::{codec, Codec};
use crate::geometry::Geometry;
use crate::set_state::SetInner;
use crate::shard_source::{ShardFault, ShardSource};
use crate::{DamageReport, ErasureError, ObjectDescriptor};

/// Stripes read ahead of the consumer: with 2 to 4 the blocking reads and checksums of one
/// stream do not keep two cores busy; 6 does (measured with the throughput example), at about
/// 6 MiB of buffers per reader with the default stripe.
const PREFETCH_STRIPES: usize = 6;

/// A stream of the requested bytes, in order, in chunks of at most one stripe. Dropping it
/// stops the reads.
pub struct ObjectReader {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, ErasureError>> + Send>>,
}

impl Stream for ObjectReader {
    type Item = Result<Bytes, ErasureError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl ObjectReader {
    pub(crate) fn start(
        set: Arc<SetInner>,
        desc: ObjectDescriptor,
        range: Range<u64>,
    ) -> ObjectReader {
        if let Err(e) = check_request(&set, &desc, &range) {
            return ObjectReader {
                inner: Box::pin(stream::once(future::ready(Err(e)))),
            };
        }
        if range.is_empty() {
            return ObjectReader {
                inner: Box::pin(stream::empty()),
            };
        }
        let stripe_size = desc.stripe_size as u64;
        let stripes = range.start / stripe_size..=(range.end - 1) / stripe_size;
        let read = Arc::new(ObjectRead::new(set, desc));
        let chunks = stream::iter(stripes)
            .map(move |stripe| read.clone().stripe_slice(stripe, range.clone()))
            .buffered(PREFETCH_STRIPES)
            .scan(false, |failed, item| {
                // End the stream after the first error.
                let next = (!*failed).then(|| {
                    *failed = item.is_err();
                    item
                });
                future::ready(next)
            });
        ObjectReader {
            inner: Box::pin(chunks),
        }
    }
}

fn check_request(
    set: &SetInner,
    desc: &ObjectDescriptor,
    range: &Range<u64>,
) -> Result<(), ErasureError> {
    desc.check_for_set(set.disks.len())?;
    if range.start > range.end || range.end > desc.size {
        return Err(ErasureError::InvalidRange {
            data_id: desc.data_id,
            start: range.start,
            end: range.end,
            size: desc.size,
        });
    }
    Ok(())
}

/// State shared by the stripe reads of one reader; reports damage when the last one is done.
struct ObjectRead {
    set: Arc<SetInner>,
    desc: ObjectDescriptor,
    geometry: Geometry,
    codec: Arc<Codec>,
    sources: Vec<ShardSource>,
    damaged: Mutex<BTreeMap<usize, ShardFault>>,
}

impl ObjectRead {
    fn new(set: Arc<SetInner>, desc: ObjectDescriptor) -> ObjectRead {
        let sources = ShardSource::all_of(&set, &desc);
        ObjectRead {
            geometry: desc.geometry(),
            codec: codec(desc.data_shards as usize, desc.parity_shards as usize),
            sources,
            damaged: Mutex::default(),
            set,
            desc,
        }
    }

    /// The part of `range` that lies in `stripe`.
    async fn stripe_slice(
        self: Arc<Self>,
        stripe: u64,
        range: Range<u64>,
    ) -> Result<Bytes, ErasureError> {
        let g = self.geometry;
        let b = g.block_len(stripe) as u64;
        let stripe_start = stripe * g.stripe_size;
        let lo = range.start.max(stripe_start) - stripe_start;
        let hi = range.end.min(stripe_start + g.stripe_len(stripe)) - stripe_start;
        let blocks = (lo / b) as usize..((hi - 1) / b) as usize + 1;
        let skip = blocks.start as u64 * b;
        let bytes =
            match tokio::task::spawn_blocking(move || self.read_blocks(stripe, blocks)).await {
                Ok(result) => result?,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Only a runtime shutting down cancels a blocking task: an error for this
                // read, not a panic of the process.
                Err(e) => {
                    return Err(ErasureError::Io {
                        path: std::path::PathBuf::from(format!("stripe {stripe}")),
                        source: std::io::Error::other(format!("stripe read task cancelled: {e}")),
                    })
                }
            };
        Ok(bytes.slice((lo - skip) as usize..(hi - skip) as usize))
    }

    /// Data blocks `blocks` of `stripe`, verified, in one contiguous (recycled) buffer. Reads
    /// just those blocks when they are healthy; otherwise rebuilds the stripe. Blocking.
    fn read_blocks(&self, stripe: u64, blocks: Range<usize>) -> Result<Bytes, ErasureError> {
        let b = self.geometry.block_len(stripe);
        let mut buf = buffer_pool::take(blocks.len() * b);
        let faults: Vec<(usize, ShardFault)> = blocks
            .clone()
            .zip(buf.chunks_exact_mut(b))
            .filter_map(|(shard, part)| {
                let result =
                    self.sources[shard].read_block(&self.desc, &self.geometry, stripe, part);
                result.err().map(|fault| (shard, fault))
            })
            .collect();
        if !faults.is_empty() {
            let rebuilt = match self.reconstruct(stripe, faults) {
                Ok(rebuilt) => rebuilt,
                Err(e) => {
                    buffer_pool::give(buf);
                    return Err(e);
                }
            };
            for (shard, part) in blocks.zip(buf.chunks_exact_mut(b)) {
                part.copy_from_slice(rebuilt[shard].as_deref().expect("data blocks are rebuilt"));
            }
        }
        Ok(buffer_pool::into_bytes(buf))
    }

    /// Reads `k` good blocks of `stripe` (data shards first, skipping those already known bad)
    /// and rebuilds the data blocks from them. Blocking.
    fn reconstruct(
        &self,
        stripe: u64,
        mut faults: Vec<(usize, ShardFault)>,
    ) -> Result<Vec<Option<Vec<u8>>>, ErasureError> {
        let (b, k) = (self.geometry.block_len(stripe), self.geometry.k);
        let mut blocks: Vec<Option<Vec<u8>>> = vec![None; self.geometry.total_shards()];
        let mut available = 0;
        for (shard, slot) in blocks.iter_mut().enumerate() {
            if available == k {
                break;
            }
            if faults.iter().any(|(bad, _)| *bad == shard) {
                continue;
            }
            let mut block = vec![0u8; b];
            match self.sources[shard].read_block(&self.desc, &self.geometry, stripe, &mut block) {
                Ok(()) => {
                    *slot = Some(block);
                    available += 1;
                }
                Err(fault) => faults.push((shard, fault)),
            }
        }
        self.record(&faults);
        if available < k {
            return Err(self.not_enough_shards(stripe, available, &faults));
        }
        self.codec
            .reconstruct(&mut blocks, true)
            .map_err(|reason| {
                self.not_enough_shards(stripe, available, &[(usize::MAX, ShardFault::Io(reason))])
            })?;
        Ok(blocks)
    }

    fn record(&self, faults: &[(usize, ShardFault)]) {
        let mut damaged = self.damaged.lock().expect("damage map poisoned");
        for (shard, fault) in faults.iter().filter(|(s, _)| *s != usize::MAX) {
            damaged.entry(*shard).or_insert_with(|| fault.clone());
        }
    }

    fn not_enough_shards(
        &self,
        stripe: u64,
        available: usize,
        faults: &[(usize, ShardFault)],
    ) -> ErasureError {
        let details: Vec<String> = faults
            .iter()
            .map(|(shard, fault)| match self.desc.placement.get(*shard) {
                Some(slot) => format!("shard {shard} on disk {slot}: {fault}"),
                None => fault.to_string(),
            })
            .collect();
        ErasureError::NotEnoughShards {
            data_id: self.desc.data_id,
            needed: self.geometry.k,
            available,
            details: format!("stripe {stripe}: {}", details.join("; ")),
        }
    }
}

impl Drop for ObjectRead {
    fn drop(&mut self) {
        let damaged = self.damaged.get_mut().expect("damage map poisoned");
        if !damaged.is_empty() {
            self.set.damage.report(DamageReport {
                descriptor: self.desc.clone(),
                damaged_shards: damaged.keys().copied().collect(),
            });
        }
    }
}
