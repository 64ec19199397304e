//! The write path of one object body: the stream from the client is hashed once, on the
//! way through (MD5 for the ETag, SHA-256 as our content checksum, and the client's flexible
//! checksum if it asked for one), and either kept inline (small objects) or streamed into
//! the erasure writer. Memory stays at a few stripes whatever the object size.
//!
//! Hashing runs on the blocking pool in two lanes (MD5 | SHA-256 + client checksum) that
//! overlap with each other, with the network and with erasure encoding: MD5 alone is the
//! most expensive step of a PUT, so it gets a core of its own.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use md5::Digest as _;
use meridian_erasure::{DiskSet, ObjectWriter, WriteOutcome};
use meridian_metadata::ChecksumAlgorithm;
use tokio::task::JoinHandle;

use super::StoreError;
use crate::checksum::ChecksumHasher;

/// Bytes gathered before a hashing job is handed to the blocking pool.
const HASH_BATCH: usize = 1 << 20;

pub struct IngestOptions {
    /// Written into every shard header, for disaster recovery.
    pub identity: Vec<u8>,
    /// The client's checksum algorithm, computed alongside MD5.
    pub checksum: Option<ChecksumAlgorithm>,
    /// Bodies below this size are returned inline instead of erasure-coded (0 = never).
    pub inline_threshold: usize,
}

pub struct Ingested {
    pub size: u64,
    pub md5: [u8; 16],
    pub sha256: [u8; 32],
    /// The client's algorithm and the digest we computed (big-endian bytes).
    pub checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
    pub data: IngestedData,
}

pub enum IngestedData {
    Inline(Bytes),
    Erasure(WriteOutcome),
}

/// The hashers of one body, each lane either idle or busy on the blocking pool.
struct BodyHasher {
    md5: Lane<md5::Md5>,
    rest: Lane<(sha2::Sha256, Option<ChecksumHasher>)>,
}

enum Lane<H> {
    Idle(H),
    Busy(JoinHandle<H>),
    Poisoned,
}

trait Update: Send + 'static {
    fn update_with(&mut self, data: &[u8]);
}

impl Update for md5::Md5 {
    fn update_with(&mut self, data: &[u8]) {
        self.update(data);
    }
}

impl Update for (sha2::Sha256, Option<ChecksumHasher>) {
    fn update_with(&mut self, data: &[u8]) {
        self.0.update(data);
        if let Some(h) = &mut self.1 {
            h.update(data);
        }
    }
}

impl<H: Update> Lane<H> {
    async fn idle(&mut self) -> Result<H, StoreError> {
        match std::mem::replace(self, Lane::Poisoned) {
            Lane::Idle(h) => Ok(h),
            Lane::Busy(job) => job
                .await
                .map_err(|e| StoreError::Internal(format!("hashing task failed: {e}"))),
            Lane::Poisoned => Err(StoreError::Internal("hasher used after failure".into())),
        }
    }

    /// Waits for the previous batch of this lane, then starts hashing `batch` in the background.
    async fn submit(&mut self, batch: Arc<Vec<Bytes>>) -> Result<(), StoreError> {
        let mut h = self.idle().await?;
        *self = Lane::Busy(tokio::task::spawn_blocking(move || {
            for b in batch.iter() {
                h.update_with(b);
            }
            h
        }));
        Ok(())
    }

    /// Hashes a small batch right here (cheaper than a trip through the blocking pool).
    async fn update_inline(&mut self, batch: &[Bytes]) -> Result<(), StoreError> {
        let mut h = self.idle().await?;
        for b in batch {
            h.update_with(b);
        }
        *self = Lane::Idle(h);
        Ok(())
    }
}

impl BodyHasher {
    fn new(checksum: Option<&ChecksumAlgorithm>) -> BodyHasher {
        BodyHasher {
            md5: Lane::Idle(md5::Md5::new()),
            rest: Lane::Idle((sha2::Sha256::new(), checksum.map(ChecksumHasher::new))),
        }
    }

    async fn update(&mut self, batch: Vec<Bytes>, len: usize) -> Result<(), StoreError> {
        if len < HASH_BATCH / 4 {
            self.md5.update_inline(&batch).await?;
            return self.rest.update_inline(&batch).await;
        }
        let batch = Arc::new(batch);
        self.md5.submit(batch.clone()).await?;
        self.rest.submit(batch).await
    }

    async fn finish(mut self) -> Result<([u8; 16], [u8; 32], Option<Vec<u8>>), StoreError> {
        let md5 = self.md5.idle().await?;
        let (sha, checksum) = self.rest.idle().await?;
        Ok((
            md5.finalize().into(),
            sha.finalize().into(),
            checksum.map(ChecksumHasher::finish),
        ))
    }
}

/// Errors of the client's body stream, as S3 reports them.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request signature of a chunk does not match")]
    SignatureMismatch,
    #[error("x-amz-content-sha256 does not match the body")]
    ContentSha256Mismatch,
    #[error("the body ended early or was malformed: {0}")]
    Incomplete(String),
}

impl BodyError {
    /// s3s keeps its body-stream error types private; their messages are stable and named.
    fn classify(e: &(dyn std::error::Error + Send + Sync)) -> BodyError {
        let text = e.to_string();
        if text.contains("SignatureMismatch") {
            BodyError::SignatureMismatch
        } else if text.contains("Sha256Mismatch") {
            BodyError::ContentSha256Mismatch
        } else {
            BodyError::Incomplete(text)
        }
    }
}

type BodyItem = Result<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Streams `body` through the hashers into inline bytes or the erasure writer.
pub async fn ingest<S>(
    disks: &DiskSet,
    mut body: S,
    opts: IngestOptions,
) -> Result<Ingested, StoreError>
where
    S: Stream<Item = BodyItem> + Unpin,
{
    let mut hasher = BodyHasher::new(opts.checksum.as_ref());
    let mut inline = BytesMut::new();
    let mut writer: Option<ObjectWriter> = None;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_len = 0usize;
    let mut size = 0u64;

    let result: Result<(), StoreError> = async {
        while let Some(item) = body.next().await {
            let chunk = item.map_err(|e| StoreError::Body(BodyError::classify(e.as_ref())))?;
            if chunk.is_empty() {
                continue;
            }
            size += chunk.len() as u64;
            batch_len += chunk.len();
            batch.push(chunk.clone());

            match &mut writer {
                Some(w) => w.write(chunk).await?,
                None if inline.len() + chunk.len() < opts.inline_threshold => {
                    inline.extend_from_slice(&chunk)
                }
                None => {
                    let mut w = disks.writer(opts.identity.clone());
                    if !inline.is_empty() {
                        w.write(std::mem::take(&mut inline).freeze()).await?;
                    }
                    w.write(chunk).await?;
                    writer = Some(w);
                }
            }
            if batch_len >= HASH_BATCH {
                hasher.update(std::mem::take(&mut batch), batch_len).await?;
                batch_len = 0;
            }
        }
        if !batch.is_empty() {
            hasher.update(std::mem::take(&mut batch), batch_len).await?;
        }
        Ok(())
    }
    .await;

    if let Err(e) = result {
        if let Some(w) = writer {
            w.abort().await;
        }
        return Err(e);
    }
    let (md5, sha256, checksum) = match hasher.finish().await {
        Ok(digests) => digests,
        Err(e) => {
            if let Some(w) = writer {
                w.abort().await;
            }
            return Err(e);
        }
    };
    let data = match writer {
        Some(w) => IngestedData::Erasure(w.finish().await?),
        None => IngestedData::Inline(inline.freeze()),
    };
    Ok(Ingested {
        size,
        md5,
        sha256,
        checksum: opts.checksum.zip(checksum),
        data,
    })
}
