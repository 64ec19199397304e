//! A real S3 endpoint for the bench's own tests: s3s (which verifies SigV4 for real) in front
//! of an in-memory store, on an ephemeral loopback port. Tests can read and tamper with the
//! stored objects directly, to check what the bench wrote and that `--verify` notices damage.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::TryStreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

pub const ACCESS_KEY: &str = "benchtest";
pub const SECRET_KEY: &str = "benchtest-secret";

type Bucket = BTreeMap<String, Bytes>;

/// Objects by bucket and key, and multipart uploads in progress.
#[derive(Default)]
pub struct MemoryS3 {
    buckets: Mutex<HashMap<String, Bucket>>,
    uploads: Mutex<HashMap<String, BTreeMap<i32, Bytes>>>,
    next_upload: AtomicU64,
}

impl MemoryS3 {
    pub fn object(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.buckets.lock().unwrap().get(bucket)?.get(key).cloned()
    }

    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.buckets
            .lock()
            .unwrap()
            .get(bucket)
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Overwrites a stored object behind the bench's back.
    pub fn replace(&self, bucket: &str, key: &str, content: Bytes) {
        self.buckets
            .lock()
            .unwrap()
            .get_mut(bucket)
            .expect("bucket exists")
            .insert(key.to_string(), content);
    }

    fn with_bucket<T>(
        &self,
        bucket: &str,
        f: impl FnOnce(&mut Bucket) -> S3Result<T>,
    ) -> S3Result<T> {
        let mut buckets = self.buckets.lock().unwrap();
        let bucket = buckets
            .get_mut(bucket)
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        f(bucket)
    }
}

async fn read_body(body: Option<StreamingBlob>) -> S3Result<Bytes> {
    let Some(body) = body else {
        return Ok(Bytes::new());
    };
    let chunks: Vec<Bytes> = body
        .try_collect()
        .await
        .map_err(|_| s3_error!(IncompleteBody))?;
    Ok(chunks.concat().into())
}

fn etag_of(content: &[u8]) -> ETag {
    ETag::Strong(format!(
        "{:016x}",
        content.len() as u64 ^ content.iter().map(|b| *b as u64).sum::<u64>()
    ))
}

#[async_trait::async_trait]
impl S3 for SharedStore {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let mut buckets = self.buckets.lock().unwrap();
        if buckets.contains_key(&req.input.bucket) {
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        buckets.insert(req.input.bucket, Bucket::new());
        Ok(S3Response::new(CreateBucketOutput::default()))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.with_bucket(&req.input.bucket, |_| Ok(()))?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let content = read_body(req.input.body).await?;
        let e_tag = etag_of(&content);
        self.with_bucket(&req.input.bucket, |b| Ok(b.insert(req.input.key, content)))?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(e_tag),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let content = self.with_bucket(&input.bucket, |b| {
            b.get(&input.key)
                .cloned()
                .ok_or_else(|| s3_error!(NoSuchKey))
        })?;
        let len = content.len() as u64;
        let (body, content_range) = match input.range {
            None => (content, None),
            Some(range) => {
                let r = range.check(len)?;
                let range_header = format!("bytes {}-{}/{len}", r.start, r.end - 1);
                (
                    content.slice(r.start as usize..r.end as usize),
                    Some(range_header),
                )
            }
        };
        let content_length = body.len() as i64;
        // Several chunks, so the bench's streaming verification sees more than one frame.
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..body.len())
            .step_by(16 << 10)
            .map(|i| Ok(body.slice(i..(i + (16 << 10)).min(body.len()))))
            .collect();
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(futures::stream::iter(chunks))),
            content_length: Some(content_length),
            content_range,
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.with_bucket(&req.input.bucket, |b| Ok(b.remove(&req.input.key)))?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max_keys = input.max_keys.unwrap_or(1000).max(1) as usize;
        let after = input.continuation_token.clone().unwrap_or_default();
        let (contents, truncated) = self.with_bucket(&input.bucket, |b| {
            let mut matching = b
                .range::<String, _>((
                    std::ops::Bound::Excluded(&after),
                    std::ops::Bound::Unbounded,
                ))
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| Object {
                    key: Some(k.clone()),
                    size: Some(v.len() as i64),
                    ..Default::default()
                });
            let page: Vec<Object> = matching.by_ref().take(max_keys).collect();
            Ok((page, matching.next().is_some()))
        })?;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            key_count: Some(contents.len() as i32),
            is_truncated: Some(truncated),
            next_continuation_token: if truncated {
                contents.last().and_then(|o| o.key.clone())
            } else {
                None
            },
            contents: Some(contents),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.with_bucket(&req.input.bucket, |_| Ok(()))?;
        let id = format!(
            "upload/{}+{}",
            self.next_upload.fetch_add(1, Ordering::Relaxed),
            req.input.key
        );
        self.uploads
            .lock()
            .unwrap()
            .insert(id.clone(), BTreeMap::new());
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(req.input.bucket),
            key: Some(req.input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let content = read_body(input.body).await?;
        let e_tag = etag_of(&content);
        let mut uploads = self.uploads.lock().unwrap();
        let upload = uploads
            .get_mut(&input.upload_id)
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        upload.insert(input.part_number, content);
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(e_tag),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let parts = self
            .uploads
            .lock()
            .unwrap()
            .remove(&input.upload_id)
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        let listed = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        let mut content = Vec::new();
        for (i, part) in listed.iter().enumerate() {
            let number = part.part_number.unwrap_or_default();
            let stored = parts.get(&number).ok_or_else(|| s3_error!(InvalidPart))?;
            if number != i as i32 + 1
                || part.e_tag.as_ref().map(|e| e.value()) != Some(etag_of(stored).value())
            {
                return Err(s3_error!(InvalidPart));
            }
            content.extend_from_slice(stored);
        }
        let e_tag = etag_of(&content);
        self.with_bucket(&input.bucket, |b| Ok(b.insert(input.key, content.into())))?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            e_tag: Some(e_tag),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.uploads.lock().unwrap().remove(&req.input.upload_id);
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}

/// A running test endpoint; stops when dropped.
pub struct TestS3 {
    pub endpoint: String,
    pub store: Arc<MemoryS3>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestS3 {
    pub async fn start() -> TestS3 {
        let store = Arc::new(MemoryS3::default());
        let mut builder = S3ServiceBuilder::new(SharedStore(store.clone()));
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestS3 {
            endpoint,
            store,
            server,
        }
    }
}

/// The S3 service over a store the test also holds.
struct SharedStore(Arc<MemoryS3>);

impl std::ops::Deref for SharedStore {
    type Target = MemoryS3;

    fn deref(&self) -> &MemoryS3 {
        &self.0
    }
}
