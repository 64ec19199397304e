//! The write path of one object body: the stream from the client is hashed once, on the
//! way through (MD5 for the ETag, and the client's flexible checksum — or the default
//! CRC64NVME — that GET returns and replication verifies), and either kept inline (small
//! objects) or streamed into the erasure writer. Memory stays at a few stripes whatever the
//! object size.
//!
//! Each hash earns its cost: MD5 is the ETag every S3 client checks; the flexible checksum is
//! what the client sent (verified before the commit) or what S3 computes by default. There is
//! no other digest: a SHA-256 of every body, which nothing read, cost about 13 % of a PUT's
//! CPU (`perf`, 4 x 64 MiB PUTs at 4+2). The shard blocks' CRC-32C (bitrot) is computed by
//! the erasure writer, over what is actually written.
//!
//! Large bodies hash on the blocking pool, off the task that reads the socket: MD5 with the
//! CRCs (together about 2.3 s/GB on one core here) in one lane, and a client-requested
//! SHA-1/SHA-256 (about 0.9 s/GB) in a second lane, so both cores can work.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use md5::Digest as _;
use meridian_erasure::{DiskSet, ObjectWriter, WriteOutcome};
use meridian_metadata::ChecksumAlgorithm;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::StoreError;
use crate::checksum::ChecksumHasher;
use crate::encryption::package::Sealer;
use crate::encryption::DataKey;

/// Bytes gathered before they are handed to the hashing lanes (fewer wake-ups).
const HASH_BATCH: usize = 256 * 1024;
/// Batches queued per lane: the lanes may fall this far behind the erasure writer, so the
/// MD5 core never waits on disk writes and memory stays bounded (2 lanes x 4 MiB).
const LANE_DEPTH: usize = 16;

pub struct IngestOptions {
    /// Written into every shard header, for disaster recovery.
    pub identity: Vec<u8>,
    /// The client's checksum algorithm, computed alongside MD5.
    pub checksum: Option<ChecksumAlgorithm>,
    /// Bodies below this size are returned inline instead of erasure-coded (0 = never).
    pub inline_threshold: usize,
    /// Encrypt with this data key before storing (the hashes are of the plaintext).
    pub seal: Option<DataKey>,
}

pub struct Ingested {
    /// Of the plaintext.
    pub size: u64,
    pub md5: [u8; 16],
    /// The client's algorithm and the digest we computed (big-endian bytes).
    pub checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
    pub data: IngestedData,
}

impl Ingested {
    /// The body's SHA-256, when it was computed (the client's checksum algorithm).
    pub fn content_sha256(&self) -> Option<Vec<u8>> {
        match &self.checksum {
            Some((ChecksumAlgorithm::Sha256, digest)) => Some(digest.clone()),
            _ => None,
        }
    }
}

pub enum IngestedData {
    Inline(Bytes),
    Erasure(WriteOutcome),
}

trait Update: Send + 'static {
    fn update_with(&mut self, data: &[u8]);
}

/// MD5 and, when it is a CRC, the client's checksum: a CRC adds a tenth to MD5's cost and is
/// not worth a lane (a thread hop per batch) of its own.
type Md5Lane = (md5::Md5, Option<ChecksumHasher>);

impl Update for Md5Lane {
    fn update_with(&mut self, data: &[u8]) {
        self.0.update(data);
        if let Some(h) = &mut self.1 {
            h.update(data);
        }
    }
}

impl Update for ChecksumHasher {
    fn update_with(&mut self, data: &[u8]) {
        self.update(data);
    }
}

fn is_crc(algorithm: &ChecksumAlgorithm) -> bool {
    matches!(
        algorithm,
        ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c | ChecksumAlgorithm::Crc64Nvme
    )
}

/// One hasher running on the blocking pool, fed batches through a bounded queue.
struct Lane<H> {
    tx: mpsc::Sender<Arc<Vec<Bytes>>>,
    job: JoinHandle<H>,
}

impl<H: Update> Lane<H> {
    fn spawn(mut hasher: H) -> Lane<H> {
        let (tx, mut rx) = mpsc::channel::<Arc<Vec<Bytes>>>(LANE_DEPTH);
        let job = tokio::task::spawn_blocking(move || {
            while let Some(batch) = rx.blocking_recv() {
                for b in batch.iter() {
                    hasher.update_with(b);
                }
            }
            hasher
        });
        Lane { tx, job }
    }

    async fn feed(&self, batch: Arc<Vec<Bytes>>) -> Result<(), StoreError> {
        self.tx
            .send(batch)
            .await
            .map_err(|_| StoreError::Internal("hashing lane stopped".into()))
    }

    async fn finish(self) -> Result<H, StoreError> {
        drop(self.tx);
        self.job
            .await
            .map_err(|e| StoreError::Internal(format!("hashing task failed: {e}")))
    }
}

/// The hashers of one body: computed in place for small bodies, on lanes for large ones.
enum BodyHasher {
    InPlace(Box<(md5::Md5, Option<ChecksumHasher>)>),
    Lanes(Lane<Md5Lane>, Option<Lane<ChecksumHasher>>),
}

impl BodyHasher {
    fn new(checksum: Option<&ChecksumAlgorithm>) -> BodyHasher {
        BodyHasher::InPlace(Box::new((
            md5::Md5::new(),
            checksum.map(ChecksumHasher::new),
        )))
    }

    /// Moves the hashers onto their lanes (once the body is known to be large).
    fn go_parallel(&mut self, algorithm: Option<&ChecksumAlgorithm>) {
        if let BodyHasher::InPlace(..) = self {
            let BodyHasher::InPlace(hashers) = std::mem::replace(self, BodyHasher::new(None))
            else {
                unreachable!()
            };
            let (md5, checksum) = *hashers;
            *self = match (checksum, algorithm) {
                (Some(c), Some(a)) if !is_crc(a) => {
                    BodyHasher::Lanes(Lane::spawn((md5, None)), Some(Lane::spawn(c)))
                }
                (c, _) => BodyHasher::Lanes(Lane::spawn((md5, c)), None),
            };
        }
    }

    async fn update(&mut self, batch: Vec<Bytes>) -> Result<(), StoreError> {
        match self {
            BodyHasher::InPlace(hashers) => {
                let (md5, checksum) = &mut **hashers;
                for b in &batch {
                    md5.update(b);
                    if let Some(c) = checksum {
                        c.update(b);
                    }
                }
                Ok(())
            }
            BodyHasher::Lanes(md5, checksum) => {
                let batch = Arc::new(batch);
                if let Some(c) = checksum {
                    c.feed(batch.clone()).await?;
                }
                md5.feed(batch).await
            }
        }
    }

    async fn finish(self) -> Result<([u8; 16], Option<Vec<u8>>), StoreError> {
        let (md5, checksum) = match self {
            BodyHasher::InPlace(hashers) => *hashers,
            BodyHasher::Lanes(md5, checksum) => {
                let (md5, in_md5_lane) = md5.finish().await?;
                let own = match checksum {
                    Some(lane) => Some(lane.finish().await?),
                    None => None,
                };
                (md5, own.or(in_md5_lane))
            }
        };
        Ok((md5.finalize().into(), checksum.map(ChecksumHasher::finish)))
    }
}

/// What can be wrong with a body while it streams in (S3 reports each differently).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request signature of a chunk does not match")]
    SignatureMismatch,
    #[error("x-amz-content-sha256 does not match the body")]
    ContentSha256Mismatch,
    #[error("the body ended early or was malformed: {0}")]
    Incomplete(String),
}

/// Where the bytes to store go: kept inline while they stay below the threshold, then into
/// the erasure writer.
struct Sink<'a> {
    disks: &'a DiskSet,
    identity: &'a [u8],
    threshold: usize,
    inline: BytesMut,
    writer: Option<ObjectWriter>,
    /// Held from the writer's start to the end of the ingest (finish or abort included).
    _write_slot: Option<meridian_erasure::WriteSlot>,
}

impl Sink<'_> {
    /// Stores `bytes`; true when this switched from inline to erasure coding.
    async fn put(&mut self, bytes: Bytes) -> Result<bool, StoreError> {
        match &mut self.writer {
            Some(w) => w.write(bytes).await?,
            None if self.inline.len() + bytes.len() < self.threshold => {
                self.inline.extend_from_slice(&bytes)
            }
            None => {
                self._write_slot = Some(self.disks.write_slot().await);
                let mut w = self.disks.writer(self.identity.to_vec());
                if !self.inline.is_empty() {
                    w.write(std::mem::take(&mut self.inline).freeze()).await?;
                }
                w.write(bytes).await?;
                self.writer = Some(w);
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Streams `body` through the hashers (and, with `opts.seal`, the encryption) into inline
/// bytes or the erasure writer. The caller says what went wrong with its body as a
/// [`BodyError`]; nothing is kept after an error.
pub async fn ingest<S>(
    disks: &DiskSet,
    mut body: S,
    opts: IngestOptions,
) -> Result<Ingested, StoreError>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    let mut hasher = BodyHasher::new(opts.checksum.as_ref());
    let mut sink = Sink {
        disks,
        identity: &opts.identity,
        threshold: opts.inline_threshold,
        inline: BytesMut::new(),
        writer: None,
        _write_slot: None,
    };
    let mut sealer = match &opts.seal {
        Some(key) => Some(Sealer::new(key).map_err(|e| StoreError::Internal(e.to_string()))?),
        None => None,
    };
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_len = 0usize;
    let mut size = 0u64;

    let result: Result<(), StoreError> = async {
        while let Some(item) = body.next().await {
            let chunk = item.map_err(StoreError::Body)?;
            if chunk.is_empty() {
                continue;
            }
            size += chunk.len() as u64;
            batch_len += chunk.len();
            batch.push(chunk.clone());

            let stored = match &mut sealer {
                Some(sealer) => sealer.push(&chunk),
                None => vec![chunk],
            };
            for bytes in stored {
                if sink.put(bytes).await? {
                    hasher.go_parallel(opts.checksum.as_ref());
                }
            }
            if batch_len >= HASH_BATCH {
                hasher.update(std::mem::take(&mut batch)).await?;
                batch_len = 0;
            }
        }
        if let Some(sealer) = sealer.take() {
            for bytes in sealer.finish() {
                sink.put(bytes).await?;
            }
        }
        if !batch.is_empty() {
            hasher.update(std::mem::take(&mut batch)).await?;
        }
        Ok(())
    }
    .await;

    // On failure the lanes are dropped with their queues and wind down on their own.
    let digests = match result {
        Ok(()) => hasher.finish().await,
        Err(e) => Err(e),
    };
    let (md5, checksum) = match digests {
        Ok(d) => d,
        Err(e) => {
            if let Some(w) = sink.writer.take() {
                w.abort().await;
            }
            return Err(e);
        }
    };
    let data = match sink.writer.take() {
        Some(w) => IngestedData::Erasure(w.finish().await?),
        None => IngestedData::Inline(std::mem::take(&mut sink.inline).freeze()),
    };
    Ok(Ingested {
        size,
        md5,
        checksum: opts.checksum.zip(checksum),
        data,
    })
}
