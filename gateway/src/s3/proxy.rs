//! Proxy reads: a GET or HEAD of an object (or version) that does not exist here, in a
//! bucket replicated active-active, is answered from the peer — the version may simply not
//! have arrived yet. The proxied request carries `x-meridian-no-proxy` so the peer never
//! proxies back, and the answer carries `x-meridian-proxied-from: PEER`.
//!
//! Only a peer whose bucket replicates to this one is a copy of it: the proxied request says
//! which region and bucket it reads for (`x-meridian-proxy-for: REGION/BUCKET`), and the peer
//! answers only when one of its enabled rules sends that bucket there (else NoSuchKey, as if
//! it had nothing). So a one-way rule (we send to the peer, it sends nothing back) never
//! serves the peer's data — possibly stale, possibly never ours — as current here. Regions
//! are told apart by their `region` names.
//!
//! Only true absence is proxied: a key whose latest version here is a delete marker answers
//! as deleted (a local NoSuchKey means the key has no history here at all, so no delete
//! marker of ours is older than what the peer serves), and the peer applies its own delete
//! markers too. Peers with `proxy_reads = false` are never asked.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use aws_sdk_s3::error::ProvideErrorMetadata;
use bytes::Bytes;
use futures::Stream;
use http::{HeaderMap, HeaderValue};
use meridian_replicator::{Delivery, PeerKind};
use s3s::dto::*;
use s3s::stream::{ByteStream as S3ByteStream, RemainingLength};
use s3s::{S3Error, S3Response, S3Result};

use super::errors::custom_error;
use super::MeridianS3;

/// Set on proxied requests: the peer must answer from its own data.
pub use meridian_api::NO_PROXY;
/// Set on answers served from a peer.
pub const PROXIED_FROM: &str = "x-meridian-proxied-from";
/// Set on proxied requests: `REGION/BUCKET` the read is for.
pub const PROXY_FOR: &str = "x-meridian-proxy-for";

/// Request headers a proxied read carries over (conditions, range, checksum mode).
const FORWARDED: [&str; 6] = [
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "x-amz-checksum-mode",
];

/// Whether a local miss may be proxied: not already proxied, and a true absence (a delete
/// marker is an answer, not a miss).
pub(super) fn may_proxy(headers: &HeaderMap, err: &S3Error) -> bool {
    let missing = matches!(err.code().as_str(), "NoSuchKey" | "NoSuchVersion");
    // A missing key says `x-amz-delete-marker: false`; only `true` means deleted here.
    let marker = err
        .headers()
        .and_then(|h| h.get("x-amz-delete-marker"))
        .is_some_and(|v| v.as_bytes() == b"true");
    missing && !marker && !headers.contains_key(NO_PROXY)
}

/// The body of a proxied GET: the peer's bytes as they arrive. `Sync` because s3s requires
/// response bodies to be; the lock is never contended.
struct PeerBody {
    inner: Mutex<aws_sdk_s3::primitives::ByteStream>,
    remaining: usize,
}

impl Stream for PeerBody {
    type Item = Result<Bytes, Box<dyn std::error::Error + Send + Sync>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let inner = this.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        match Pin::new(inner).poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                this.remaining = this.remaining.saturating_sub(b.len());
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl S3ByteStream for PeerBody {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(self.remaining)
    }
}

fn timestamp(t: Option<&aws_smithy_types::DateTime>) -> Option<Timestamp> {
    let t = t?;
    let odt = time::OffsetDateTime::from_unix_timestamp(t.secs()).ok()?;
    Some(Timestamp::from(
        odt + time::Duration::nanoseconds(i64::from(t.subsec_nanos())),
    ))
}

/// The peer's error as ours (same code and status).
fn peer_error<E: ProvideErrorMetadata>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> S3Error {
    let status = e
        .raw_response()
        .and_then(|r| http::StatusCode::from_u16(r.status().as_u16()).ok())
        .unwrap_or(http::StatusCode::BAD_GATEWAY);
    let code = e.code().unwrap_or("InternalError");
    custom_error(code, status, "answered by the peer region")
}

/// The peers a read of `bucket` may be proxied to, with the bucket name there.
fn candidates(s3: &MeridianS3, bucket: &str) -> Vec<Delivery> {
    let Ok(Some(rules)) = s3.replicator.rules().get(bucket) else {
        return Vec::new();
    };
    let mut out: Vec<Delivery> = Vec::new();
    for rule in rules.rules.iter().filter(|r| r.enabled) {
        let d = &rule.destination;
        let eligible = s3
            .replicator
            .peers()
            .any(|p| p.name == d.peer && p.proxy_reads && p.kind == PeerKind::Meridian);
        if eligible && !out.iter().any(|t| t.peer == d.peer) {
            out.push(Delivery {
                peer: d.peer.clone(),
                bucket: d.bucket.clone(),
                rule_id: rule.id.clone(),
                replica_kms_key_id: d.replica_kms_key_id.clone(),
            });
        }
    }
    out
}

fn forwarded(headers: &HeaderMap, region: &str, bucket: &str) -> Vec<(&'static str, String)> {
    let mut out = vec![
        (NO_PROXY, "1".to_owned()),
        (PROXY_FOR, format!("{region}/{bucket}")),
    ];
    for name in FORWARDED {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            out.push((name, v.to_owned()));
        }
    }
    out
}

fn add_headers(
    headers: Vec<(&'static str, String)>,
) -> impl Fn(&mut aws_sdk_s3::config::http::HttpRequest) + Send + Sync + 'static {
    move |req| {
        for (name, value) in &headers {
            req.headers_mut().insert(*name, value.clone());
        }
    }
}

fn proxied_from(peer: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(peer) {
        h.insert(PROXIED_FROM, v);
    }
    h
}

/// Copies the fields GetObject and HeadObject answers share from the peer's answer.
macro_rules! from_peer {
    ($ty:ident, $o:expr, { $($extra:ident: $value:expr),* $(,)? }) => {{
        let o = $o;
        $ty {
            accept_ranges: o.accept_ranges().map(str::to_owned),
            content_length: o.content_length(),
            content_range: o.content_range().map(str::to_owned),
            content_type: o.content_type().and_then(|t| t.parse().ok()),
            content_encoding: o.content_encoding().map(str::to_owned),
            content_disposition: o.content_disposition().map(str::to_owned),
            content_language: o.content_language().map(str::to_owned),
            cache_control: o.cache_control().map(str::to_owned),
            website_redirect_location: o.website_redirect_location().map(str::to_owned),
            e_tag: o.e_tag().map(|e| ETag::Strong(e.trim_matches('"').to_owned())),
            last_modified: timestamp(o.last_modified()),
            metadata: o.metadata().cloned(),
            version_id: o.version_id().map(str::to_owned),
            parts_count: o.parts_count(),
            checksum_crc32: o.checksum_crc32().map(str::to_owned),
            checksum_crc32c: o.checksum_crc32_c().map(str::to_owned),
            checksum_crc64nvme: o.checksum_crc64_nvme().map(str::to_owned),
            checksum_sha1: o.checksum_sha1().map(str::to_owned),
            checksum_sha256: o.checksum_sha256().map(str::to_owned),
            checksum_type: o.checksum_type().map(|t| ChecksumType::from(t.as_str().to_owned())),
            replication_status: o.replication_status().map(|s| ReplicationStatus::from(s.as_str().to_owned())),
            $($extra: $value,)*
            ..Default::default()
        }
    }};
}

impl MeridianS3 {
    /// GetObject served by a peer, if one has it.
    pub(super) async fn proxied_get(
        &self,
        headers: &HeaderMap,
        input: &GetObjectInput,
        local: S3Error,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        for target in self.proxy_candidates(&input.bucket).await {
            let Some(client) = self.replicator.peer_client(&target.peer) else {
                continue;
            };
            let answer = client
                .get_object()
                .bucket(&target.bucket)
                .key(meridian_replicator::sdk_key(&input.key))
                .set_version_id(input.version_id.clone())
                .set_part_number(input.part_number)
                .customize()
                .mutate_request(add_headers(forwarded(headers, &self.region, &input.bucket)))
                .send()
                .await;
            match answer {
                Ok(o) => {
                    tracing::debug!(bucket = %input.bucket, key = %input.key, peer = %target.peer, "read proxied to the peer");
                    let len = o.content_length().unwrap_or(0).max(0) as usize;
                    let tag_count = o.tag_count();
                    let expires = o.expires_string().and_then(super::convert::parse_http_date);
                    let mut out =
                        from_peer!(GetObjectOutput, &o, { tag_count: tag_count, expires: expires });
                    out.body = Some(StreamingBlob::new(PeerBody {
                        inner: Mutex::new(o.body),
                        remaining: len,
                    }));
                    let mut resp = S3Response::new(out);
                    resp.headers = proxied_from(&target.peer);
                    return Ok(resp);
                }
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => continue,
                Err(e) if e.raw_response().is_some() => return Err(peer_error(&e)),
                Err(e) => {
                    tracing::debug!(peer = %target.peer, error = %e, "proxy read failed; answering from here");
                }
            }
        }
        Err(local)
    }

    /// HeadObject served by a peer, if one has it.
    pub(super) async fn proxied_head(
        &self,
        headers: &HeaderMap,
        input: &HeadObjectInput,
        local: S3Error,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        for target in self.proxy_candidates(&input.bucket).await {
            let Some(client) = self.replicator.peer_client(&target.peer) else {
                continue;
            };
            let answer = client
                .head_object()
                .bucket(&target.bucket)
                .key(meridian_replicator::sdk_key(&input.key))
                .set_version_id(input.version_id.clone())
                .set_part_number(input.part_number)
                .customize()
                .mutate_request(add_headers(forwarded(headers, &self.region, &input.bucket)))
                .send()
                .await;
            match answer {
                Ok(o) => {
                    let expires = o.expires_string().and_then(super::convert::parse_http_date);
                    let out = from_peer!(HeadObjectOutput, &o, { expires: expires });
                    let mut resp = S3Response::new(out);
                    resp.headers = proxied_from(&target.peer);
                    return Ok(resp);
                }
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => continue,
                Err(e) if e.raw_response().is_some() => return Err(peer_error(&e)),
                Err(e) => {
                    tracing::debug!(peer = %target.peer, error = %e, "proxy read failed; answering from here");
                }
            }
        }
        Err(local)
    }

    /// On a proxied read (one carrying `x-meridian-proxy-for`): NoSuchKey unless `bucket`
    /// replicates to the region and bucket the read is for.
    pub(super) async fn refuse_foreign_proxy(
        &self,
        headers: &HeaderMap,
        bucket: &str,
    ) -> S3Result<()> {
        let Some(value) = headers.get(PROXY_FOR) else {
            return Ok(());
        };
        let refused = |why: &str| {
            Err(s3s::s3_error!(
                NoSuchKey,
                "Not served to a proxied read: {why}"
            ))
        };
        let Some((region, dest)) = value.to_str().ok().and_then(|v| v.split_once('/')) else {
            return refused("malformed x-meridian-proxy-for");
        };
        let (r, b, region2, dest2) = (
            self.replicator.clone(),
            bucket.to_owned(),
            region.to_owned(),
            dest.to_owned(),
        );
        let allowed = tokio::task::spawn_blocking(move || r.replicates_to(&b, &region2, &dest2))
            .await
            .map_err(|e| s3s::s3_error!(InternalError, "replication rules task failed: {e}"))?
            .map_err(meridian_store::StoreError::from)
            .map_err(crate::s3::errors::s3_error_of)?;
        if allowed {
            Ok(())
        } else {
            refused(&format!(
                "bucket {bucket} does not replicate to {dest} in region {region}"
            ))
        }
    }

    async fn proxy_candidates(&self, bucket: &str) -> Vec<Delivery> {
        if !self.replicator.has_peers() {
            return Vec::new();
        }
        let (s3, b) = (self.clone(), bucket.to_owned());
        tokio::task::spawn_blocking(move || candidates(&s3, &b))
            .await
            .unwrap_or_default()
    }
}
