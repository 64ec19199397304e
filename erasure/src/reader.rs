//! Streaming reads of a byte range.
//!
//! Each stripe the range touches becomes one blocking task that reads just the data blocks
//! overlapping the range straight into a (recycled) output buffer and verifies them. A few
//! stripes are in flight at once, so disk reads and checksums overlap with the consumer. When a block is
//! missing, short or corrupt, the stripe is read again from all remaining shards and the data
//! is rebuilt from parity; the damaged shards are reported once the reader is done. With
//! fewer than `k` good blocks the stream yields [`ErasureError::NotEnoughShards`] and ends:
//! a byte that failed its checksum is never returned.

use std::collections::BTreeMap;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{future, stream, Stream, StreamExt};

use crate::buffer_pool;
use crate::codec::{codec, Codec};
use crate::disk_set::SetInner;
use crate::geometry::Geometry;
use crate::shard_source::{ShardFault, ShardSource};
use crate::{DamageReport, ErasureError, ObjectDescriptor};

/// Stripes read ahead of the consumer.
const PREFETCH_STRIPES: usize = 4;

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
        let sources = desc
            .placement
            .iter()
            .enumerate()
            .map(|(shard, &slot)| {
                ShardSource::new(
                    set.disks[slot as usize].layout.shard_file(desc.data_id),
                    shard,
                )
            })
            .collect();
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
        let read = self.clone();
        let fast = tokio::task::spawn_blocking(move || read.read_data_blocks(stripe, blocks)).await;
        let faults = match fast {
            Ok(Ok(bytes)) => return Ok(bytes.slice((lo - skip) as usize..(hi - skip) as usize)),
            Ok(Err(faults)) => faults,
            Err(e) => vec![(usize::MAX, ShardFault::Io(format!("read task failed: {e}")))],
        };
        let whole = self.reconstruct_stripe(stripe, faults).await?;
        Ok(whole.slice(lo as usize..hi as usize))
    }

    /// Reads and verifies data blocks `blocks` of `stripe` into one contiguous buffer: the
    /// healthy path, one blocking task per stripe. Blocking.
    fn read_data_blocks(
        &self,
        stripe: u64,
        blocks: Range<usize>,
    ) -> Result<Bytes, Vec<(usize, ShardFault)>> {
        let b = self.geometry.block_len(stripe);
        let mut buf = buffer_pool::take(blocks.len() * b);
        let faults: Vec<(usize, ShardFault)> = blocks
            .zip(buf.chunks_exact_mut(b))
            .filter_map(|(shard, part)| {
                let result =
                    self.sources[shard].read_block(&self.desc, &self.geometry, stripe, part);
                result.err().map(|fault| (shard, fault))
            })
            .collect();
        if faults.is_empty() {
            Ok(buffer_pool::into_bytes(buf))
        } else {
            buffer_pool::give(buf);
            Err(faults)
        }
    }

    /// Rebuilds the whole data of `stripe` from every shard not already known bad.
    async fn reconstruct_stripe(
        self: Arc<Self>,
        stripe: u64,
        mut faults: Vec<(usize, ShardFault)>,
    ) -> Result<Bytes, ErasureError> {
        let b = self.geometry.block_len(stripe);
        let total = self.geometry.total_shards();
        let tasks: Vec<_> = (0..total)
            .filter(|shard| !faults.iter().any(|(s, _)| s == shard))
            .map(|shard| {
                let read = self.clone();
                tokio::task::spawn_blocking(move || {
                    let mut block = vec![0u8; b];
                    let result = read.sources[shard].read_block(
                        &read.desc,
                        &read.geometry,
                        stripe,
                        &mut block,
                    );
                    (shard, result.map(|()| block))
                })
            })
            .collect();
        let mut blocks: Vec<Option<Vec<u8>>> = vec![None; total];
        for task in tasks {
            match task.await {
                Ok((shard, Ok(block))) => blocks[shard] = Some(block),
                Ok((shard, Err(fault))) => faults.push((shard, fault)),
                Err(e) => {
                    faults.push((usize::MAX, ShardFault::Io(format!("read task failed: {e}"))))
                }
            }
        }
        self.record(&faults);
        let available = blocks.iter().filter(|b| b.is_some()).count();
        let k = self.geometry.k;
        if available < k {
            return Err(self.not_enough_shards(stripe, available, &faults));
        }
        let codec = self.codec.clone();
        let rebuilt = tokio::task::spawn_blocking(move || {
            codec.reconstruct(&mut blocks, true)?;
            let mut data = BytesMut::with_capacity(k * b);
            for block in blocks.iter().take(k) {
                data.extend_from_slice(block.as_deref().expect("reconstructed"));
            }
            Ok::<_, String>(data.freeze())
        })
        .await;
        match rebuilt {
            Ok(Ok(data)) => Ok(data),
            Ok(Err(reason)) => Err(self.not_enough_shards(
                stripe,
                available,
                &[(usize::MAX, ShardFault::Io(reason))],
            )),
            Err(e) => Err(self.not_enough_shards(
                stripe,
                available,
                &[(usize::MAX, ShardFault::Io(e.to_string()))],
            )),
        }
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
