//! Whole-object operations shared by the workloads: naming keys, writing an object by single
//! PUT or multipart upload, and reading one whole or as parallel ranges, with its size and
//! (under `--verify`) its content checked.

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::bench::stats::{OpKind, Recorder};
use crate::error::OpError;
use crate::payload::Payload;
use crate::s3::S3Client;

/// Everything an operation needs; shared by all workers of a run.
pub struct Ctx {
    pub client: S3Client,
    pub payload: Payload,
    pub prefix: String,
    pub size: u64,
    pub keys: u64,
    pub part_size: u64,
    pub part_concurrency: usize,
    pub verify: bool,
    pub op_timeout: Duration,
}

impl Ctx {
    /// The key of object `index` (taken modulo the number of keys by callers that cycle).
    pub fn key(&self, index: u64) -> String {
        format!("{}obj-{index:08}", self.prefix)
    }

    /// `bucket/key`, for error messages.
    pub fn target(&self, key: &str) -> String {
        format!("{}/{key}", self.client.bucket())
    }

    /// Writes `key`'s content with one PutObject.
    pub async fn put(&self, key: &str) -> Result<(), OpError> {
        self.client
            .put_object(key, self.payload.body(key, 0, self.size))
            .await
    }

    /// Writes `key`'s content as a multipart upload of `part_size` parts, `part_concurrency`
    /// in flight, recording each part as [`OpKind::UploadPart`]. A failed upload is aborted.
    pub async fn put_multipart(&self, key: &str, rec: &mut Recorder) -> Result<(), OpError> {
        let upload_id = self.client.create_multipart_upload(key).await?;
        let parts = self.size.div_ceil(self.part_size).max(1);
        let mut etags = vec![String::new(); parts as usize];
        let mut uploads = futures::stream::iter(0..parts)
            .map(|i| {
                let upload_id = &upload_id;
                async move {
                    let start = i * self.part_size;
                    let len = self.part_size.min(self.size - start);
                    let began = Instant::now();
                    let body = self.payload.body(key, start, len);
                    let result = self
                        .client
                        .upload_part(key, upload_id, i as u32 + 1, body)
                        .await;
                    (i, len, began.elapsed(), result)
                }
            })
            .buffer_unordered(self.part_concurrency);
        let mut failure = None;
        while let Some((i, len, latency, result)) = uploads.next().await {
            match result {
                Ok(etag) => {
                    rec.ok(OpKind::UploadPart, latency, len, 0);
                    etags[i as usize] = etag;
                }
                Err(e) => {
                    rec.error(OpKind::UploadPart, &e);
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(uploads);
        if let Some(e) = failure {
            // Best effort: the upload's parts would otherwise linger until the server expires them.
            let _ = self.client.abort_multipart_upload(key, &upload_id).await;
            return Err(e);
        }
        self.client
            .complete_multipart_upload(key, &upload_id, &etags)
            .await
    }

    /// Reads `key` whole, or as ranged GETs of `part_size` when `ranged` (each recorded as
    /// [`OpKind::GetRange`]); checks the size, and the content when verifying. Returns the
    /// bytes received.
    pub async fn get(&self, key: &str, ranged: bool, rec: &mut Recorder) -> Result<u64, OpError> {
        if !ranged || self.size <= self.part_size {
            return self.get_range(key, 0, self.size, false).await;
        }
        let ranges = self.size.div_ceil(self.part_size);
        let mut reads = futures::stream::iter(0..ranges)
            .map(|i| async move {
                let start = i * self.part_size;
                let len = self.part_size.min(self.size - start);
                let began = Instant::now();
                (len, began, self.get_range(key, start, len, true).await)
            })
            .buffer_unordered(self.part_concurrency);
        let mut received = 0;
        while let Some((len, began, result)) = reads.next().await {
            match result {
                Ok(n) => {
                    rec.ok(OpKind::GetRange, began.elapsed(), len, 0);
                    received += n;
                }
                Err(e) => {
                    rec.error(OpKind::GetRange, &e);
                    return Err(e);
                }
            }
        }
        Ok(received)
    }

    /// One GET of `len` bytes from `start` (a Range request when `ranged`).
    async fn get_range(
        &self,
        key: &str,
        start: u64,
        len: u64,
        ranged: bool,
    ) -> Result<u64, OpError> {
        let mut check = self.verify.then(|| self.payload.checker(key, start));
        let range = ranged.then_some((start, len));
        let received = self.client.get_object(key, range, check.as_mut()).await?;
        if received != len {
            return Err(OpError::SizeMismatch {
                target: self.target(key),
                expected: len,
                received,
            });
        }
        Ok(received)
    }
}
