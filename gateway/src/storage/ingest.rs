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
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::StoreError;
use crate::checksum::ChecksumHasher;

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

trait Update: Send + 'static {
    fn update_with(&mut self, data: &[u8]);
}

impl Update for md5::Md5 {
    fn update_with(&mut self, data: &[u8]) {
        self.update(data);
    }
}

/// Our content checksum and the client's checksum share a lane: together they cost about
/// half of MD5, which has a lane (a core, when there are two) to itself.
type RestHashers = (sha2::Sha256, Option<ChecksumHasher>);

impl Update for RestHashers {
    fn update_with(&mut self, data: &[u8]) {
        self.0.update(data);
        if let Some(h) = &mut self.1 {
            h.update(data);
        }
    }
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

/// The hashers of one body: computed in place for small bodies, on two lanes for large ones.
enum BodyHasher {
    InPlace(Box<(md5::Md5, RestHashers)>),
    Lanes(Lane<md5::Md5>, Lane<RestHashers>),
}

impl BodyHasher {
    fn new(checksum: Option<&ChecksumAlgorithm>) -> BodyHasher {
        let rest = (sha2::Sha256::new(), checksum.map(ChecksumHasher::new));
        BodyHasher::InPlace(Box::new((md5::Md5::new(), rest)))
    }

    /// Moves the hashers onto their lanes (once the body is known to be large).
    fn go_parallel(&mut self) {
        if let BodyHasher::InPlace(..) = self {
            let BodyHasher::InPlace(hashers) = std::mem::replace(self, BodyHasher::new(None))
            else {
                unreachable!()
            };
            let (md5, rest) = *hashers;
            *self = BodyHasher::Lanes(Lane::spawn(md5), Lane::spawn(rest));
        }
    }

    async fn update(&mut self, batch: Vec<Bytes>) -> Result<(), StoreError> {
        match self {
            BodyHasher::InPlace(hashers) => {
                let (md5, rest) = &mut **hashers;
                for b in &batch {
                    md5.update_with(b);
                    rest.update_with(b);
                }
                Ok(())
            }
            BodyHasher::Lanes(md5, rest) => {
                let batch = Arc::new(batch);
                md5.feed(batch.clone()).await?;
                rest.feed(batch).await
            }
        }
    }

    async fn finish(self) -> Result<([u8; 16], [u8; 32], Option<Vec<u8>>), StoreError> {
        let (md5, (sha, checksum)) = match self {
            BodyHasher::InPlace(hashers) => *hashers,
            BodyHasher::Lanes(md5, rest) => (md5.finish().await?, rest.finish().await?),
        };
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
                    hasher.go_parallel();
                }
            }
            if batch_len >= HASH_BATCH {
                hasher.update(std::mem::take(&mut batch)).await?;
                batch_len = 0;
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
    let (md5, sha256, checksum) = match digests {
        Ok(d) => d,
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

/// A zstd-compressed body (a replica part sent with `x-meridian-replica-encoding: zstd`) as
/// the stream of its original bytes. The compressed body is read whole — it is one part or a
/// small object — then decoded on the blocking pool in 1 MiB chunks through a short queue,
/// so the decoded bytes are never all in memory. Malformed input ends the stream with an
/// error, which fails the write like any broken body.
pub async fn zstd_decoded<S>(
    mut body: S,
) -> Result<futures::stream::BoxStream<'static, BodyItem>, StoreError>
where
    S: Stream<Item = BodyItem> + Unpin,
{
    let mut compressed = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| StoreError::Body(BodyError::classify(e.as_ref())))?;
        compressed.extend_from_slice(&chunk);
    }
    let compressed = compressed.freeze();
    let (tx, rx) = mpsc::channel::<BodyItem>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let fail = |e: String| BodyError::Incomplete(format!("zstd body: {e}"));
        let mut decoder = match ruzstd::decoding::StreamingDecoder::new(&compressed[..]) {
            Ok(d) => d,
            Err(e) => {
                let _ = tx.blocking_send(Err(Box::new(fail(e.to_string()))));
                return;
            }
        };
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match decoder.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(Box::new(fail(e.to_string()))));
                    return;
                }
            }
        }
    });
    Ok(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed())
}
