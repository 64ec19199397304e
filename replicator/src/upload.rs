//! Uploading one version to a peer so that the copy is exact, then verifying it.
//!
//! - Small single-part objects: one PutObject with Content-MD5 and the stored checksum.
//! - Multipart objects: the same parts (boundaries, numbers, per-part checksums), so the
//!   peer derives the same `-N` ETag and composite or full-object checksum.
//! - Large single-part objects: split into `part_size` parts whose CRCs the SDK computes on
//!   the way out; the peer checks them and combines them into the full-object CRC the source
//!   stored, and keeps the source's ETag (carried in the replica headers).
//!
//! A multipart upload's id is persisted before the first part is sent; after a crash of
//! either side the next attempt lists the parts the peer already has and sends only the rest.
//! Bytes stream from the store to the socket: memory is a few stripes per part in flight.

use std::collections::BTreeMap;
use std::ops::Range;

use aws_sdk_s3::types::{
    ChecksumAlgorithm as SdkAlgorithm, ChecksumMode, ChecksumType as SdkChecksumType,
    CompletedMultipartUpload, CompletedPart,
};
use base64::Engine;
use futures::StreamExt;
use meridian_metadata::{Checksum, ChecksumAlgorithm, ChecksumType, PeerUpload, VersionRecord};

use crate::body::exact_body;
use crate::compress;
use crate::config::Compression;
use crate::error::{ErrorClass, SendError};
use crate::peer::{add_headers, control_call, data_call};
use crate::transfer::{metadata, Sender, Sent};
use aws_sdk_s3::primitives::ByteStream;
use meridian_api::version::{
    differences, http_date_seconds, Fidelity, ObservedVersion, ABSENT_CONTENT_TYPE,
};

/// S3's largest single PUT: foreign peers get single-part objects up to this in one piece,
/// so their ETag stays the MD5.
const MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;
/// Parts of one object in flight at once.
const PART_CONCURRENCY: usize = 4;

/// One part to send: its number, the object's bytes it holds, and what the source knows
/// of it (mirrored multipart parts only).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartPlan {
    number: i32,
    range: Range<u64>,
    etag: Option<String>,
    checksum: Option<Checksum>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    Single,
    /// `split`: cut from a single-part object in `part_size` pieces (0 when mirrored).
    Multipart {
        parts: Vec<PartPlan>,
        split: bool,
        part_size: u64,
    },
}

fn plan(record: &VersionRecord, part_size: u64, split_above: u64) -> Plan {
    if !record.parts.is_empty() {
        let mut offset = 0;
        let parts = record
            .parts
            .iter()
            .map(|p| {
                let range = offset..offset + p.size;
                offset += p.size;
                PartPlan {
                    number: p.number as i32,
                    range,
                    etag: Some(p.etag.clone()),
                    checksum: p.checksum.clone(),
                }
            })
            .collect();
        return Plan::Multipart {
            parts,
            split: false,
            part_size: 0,
        };
    }
    if record.size <= split_above {
        return Plan::Single;
    }
    let parts = (0..record.size.div_ceil(part_size))
        .map(|i| PartPlan {
            number: i as i32 + 1,
            range: i * part_size..((i + 1) * part_size).min(record.size),
            etag: None,
            checksum: None,
        })
        .collect();
    Plan::Multipart {
        parts,
        split: true,
        part_size,
    }
}

fn sdk_algorithm(a: &ChecksumAlgorithm) -> SdkAlgorithm {
    match a {
        ChecksumAlgorithm::Crc32 => SdkAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c => SdkAlgorithm::Crc32C,
        ChecksumAlgorithm::Crc64Nvme => SdkAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1 => SdkAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256 => SdkAlgorithm::Sha256,
    }
}

fn sdk_checksum_type(t: ChecksumType) -> SdkChecksumType {
    match t {
        ChecksumType::FullObject => SdkChecksumType::FullObject,
        ChecksumType::Composite => SdkChecksumType::Composite,
    }
}

fn is_crc(a: &ChecksumAlgorithm) -> bool {
    matches!(
        a,
        ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c | ChecksumAlgorithm::Crc64Nvme
    )
}

/// Sets the `x-amz-checksum-*` value of a checksum on any request builder that has them.
macro_rules! with_checksum {
    ($builder:expr, $checksum:expr) => {{
        let b = $builder;
        match $checksum {
            None => b,
            Some(c) => match c.algorithm {
                ChecksumAlgorithm::Crc32 => b.checksum_crc32(&c.value),
                ChecksumAlgorithm::Crc32c => b.checksum_crc32_c(&c.value),
                ChecksumAlgorithm::Crc64Nvme => b.checksum_crc64_nvme(&c.value),
                ChecksumAlgorithm::Sha1 => b.checksum_sha1(&c.value),
                ChecksumAlgorithm::Sha256 => b.checksum_sha256(&c.value),
            },
        }
    }};
}

/// The stored headers, user metadata and tags of a version, on any write that creates an
/// object (PutObject, CreateMultipartUpload).
macro_rules! with_object_fields {
    ($builder:expr, $record:expr) => {{
        let r: &VersionRecord = $record;
        let h = &r.headers;
        let metadata: std::collections::HashMap<String, String> =
            r.user_metadata.iter().cloned().collect();
        $builder
            .set_content_type(h.content_type.clone())
            .set_content_encoding(h.content_encoding.clone())
            .set_content_disposition(h.content_disposition.clone())
            .set_content_language(h.content_language.clone())
            .set_cache_control(h.cache_control.clone())
            .set_expires(h.expires.as_deref().and_then(|e| {
                aws_smithy_types::DateTime::from_str(
                    e,
                    aws_smithy_types::date_time::Format::HttpDate,
                )
                .ok()
            }))
            .set_website_redirect_location(h.website_redirect.clone())
            .set_metadata((!metadata.is_empty()).then_some(metadata))
            .set_tagging(tagging_header(&r.tags))
            .set_object_lock_mode(
                r.lock
                    .retention
                    .map(|x| crate::lock::sdk_mode(x.mode).as_str().into()),
            )
            .set_object_lock_retain_until_date(
                r.lock.retention.map(|x| crate::lock::sdk_date(x.until)),
            )
            .set_object_lock_legal_hold_status(
                r.lock
                    .legal_hold
                    .then_some(aws_sdk_s3::types::ObjectLockLegalHoldStatus::On),
            )
    }};
}

/// The encryption a replica asks the peer for: SSE-S3 as SSE-S3 (the peer seals it with its
/// own keys), SSE-KMS with the rule's `ReplicaKmsKeyID`; a clear version asks for nothing
/// (the peer's bucket default may still encrypt it).
macro_rules! with_encryption {
    ($builder:expr, $record:expr, $target:expr) => {{
        let record: &VersionRecord = $record;
        let target: &crate::rules::Delivery = $target;
        let b = $builder;
        match record.encryption.as_ref().and_then(|e| e.mode) {
            Some(meridian_metadata::EncryptionMode::S3) => {
                b.server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
            }
            Some(meridian_metadata::EncryptionMode::Kms) => b
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(target.replica_kms_key_id.clone()),
            _ => b,
        }
    }};
}

/// `mutate`, then, for a version stored without a Content-Type, the request's Content-Type
/// removed: the SDK sends `application/octet-stream` for any body without one, and the replica
/// must keep the absence (and so report `binary/octet-stream`, as its source does). Runs
/// before signing, so the signature covers the request as sent; a foreign S3 target keeps
/// the absence too.
fn with_absent_type<F>(
    record: &VersionRecord,
    mutate: F,
) -> impl Fn(&mut aws_sdk_s3::config::http::HttpRequest) + Send + Sync + 'static
where
    F: Fn(&mut aws_sdk_s3::config::http::HttpRequest) + Send + Sync + 'static,
{
    let absent = record.headers.content_type.is_none();
    move |req| {
        mutate(req);
        if absent {
            req.headers_mut().remove("content-type");
        }
    }
}

/// Tags as the `x-amz-tagging` header: a URL-encoded query string.
fn tagging_header(tags: &[(String, String)]) -> Option<String> {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const QUERY: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    (!tags.is_empty()).then(|| {
        tags.iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, QUERY),
                    utf8_percent_encode(v, QUERY)
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}

/// Whether `record`'s ETags (its own and its parts') are MD5s of the bytes: not for SSE-KMS
/// and SSE-C versions, whose ETags are keyed digests (the checksum vouches for them).
fn etags_are_md5(record: &VersionRecord) -> bool {
    !matches!(
        record.encryption.as_ref().and_then(|e| e.mode),
        Some(meridian_metadata::EncryptionMode::Kms | meridian_metadata::EncryptionMode::Customer)
    )
}

/// `Content-MD5` for a body whose MD5 is the hex `etag` (a single-part ETag or a part's).
fn content_md5(etag: &str) -> Option<String> {
    let raw = hex::decode(etag).ok().filter(|r| r.len() == 16)?;
    Some(base64::engine::general_purpose::STANDARD.encode(raw))
}

/// The peer answered that it does not hold the staged body a request named.
fn is_staged_body_gone(e: &SendError) -> bool {
    e.code.as_deref() == Some(crate::headers::NO_SUCH_STAGED_BODY)
}

/// A body as it goes on the wire.
struct WireBody {
    body: ByteStream,
    /// Bytes on the wire.
    len: u64,
    /// When compressed: the original bytes.
    original: Option<bytes::Bytes>,
}

/// A part the peer holds: what Complete names.
#[derive(Debug, Clone)]
struct UploadedPart {
    number: i32,
    size: u64,
    etag: String,
    checksum: Option<String>,
}

impl Sender<'_> {
    /// Uploads `record` (not a delete marker) and verifies the peer's copy.
    pub(crate) async fn send_version(&self, record: &VersionRecord) -> Result<Sent, SendError> {
        let sealed = self
            .shared
            .source
            .sealed_form(record)
            .map_err(|e| SendError::transient(format!("reading the source: {e}")))?;
        if let Some((stored, segments)) = sealed {
            return self.send_sealed(record, stored, segments).await;
        }
        let part_size = self.shared.settings.part_size.as_u64();
        let split_above = if self.peer.is_meridian() {
            part_size
        } else {
            MAX_SINGLE_PUT
        };
        let single = record.parts.is_empty();
        if let Some(staged) = single.then(|| self.staged_name(record, 0)).flatten() {
            // Another node of this region holds the body already (streamed to it while it
            // arrived here): the copy names it instead of carrying it. The node checks it
            // against the ETag and checksum as it would a body; without it, the body goes.
            let sent = self.put_single(record, Some(&staged)).await;
            if let Some(stored) = self.staged_outcome(record, 0, sent)? {
                return self.stored_as_sent(record, stored);
            }
        }
        let (target_version_id, etag_comparable) = match plan(record, part_size, split_above) {
            Plan::Single if self.peer.config.mirror => {
                // Another node of this region checked the body against the ETag and
                // checksum on arrival and answers with the version it stored: that is the
                // read-back (a HEAD would double the copy's round trips on every write).
                let stored = self.put_single(record, None).await?;
                return self.stored_as_sent(record, stored);
            }
            Plan::Single => (self.put_single(record, None).await?, true),
            Plan::Multipart {
                parts,
                split,
                part_size,
            } => {
                let id = self.put_multipart(record, parts, split, part_size).await?;
                // A foreign peer derives a `-N` ETag for a split object; a Meridian peer
                // keeps the source's.
                (id, !split || self.peer.is_meridian())
            }
        };
        self.verify(record, target_version_id.as_deref(), etag_comparable)
            .await?;
        Ok(Sent::Done { target_version_id })
    }

    /// The name under which the peer holds the body of `record`'s segment `index` already.
    fn staged_name(&self, record: &VersionRecord, index: usize) -> Option<String> {
        self.peer.config.staged.as_ref()?.0.name(record, index)
    }

    /// What a request naming a staged body came to: its answer (`Some`), or `None` when the
    /// peer does not hold the body (it is to be sent). The name is forgotten unless the
    /// request failed for a reason that may pass (the next attempt names it again).
    fn staged_outcome<T>(
        &self,
        record: &VersionRecord,
        index: usize,
        sent: Result<T, SendError>,
    ) -> Result<Option<T>, SendError> {
        let gone = sent.as_ref().is_err_and(is_staged_body_gone);
        let may_pass = sent
            .as_ref()
            .is_err_and(|e| e.class == ErrorClass::Transient && !gone);
        if !may_pass {
            if let Some(staged) = &self.peer.config.staged {
                staged.0.forget(record, index);
            }
        }
        match sent {
            Err(e) if gone => {
                tracing::info!(peer = %self.peer.config.name, error = %e.message,
                    "the peer no longer holds the staged body; sending the body");
                Ok(None)
            }
            sent => sent.map(Some),
        }
    }

    /// A copy to another node of this region is done when the node stored the version under
    /// the same id (its answer is the read-back).
    fn stored_as_sent(
        &self,
        record: &VersionRecord,
        stored: Option<String>,
    ) -> Result<Sent, SendError> {
        let expected = (record.version_id != "null").then_some(record.version_id.as_str());
        if stored.as_deref() != expected {
            return Err(SendError::permanent(format!(
                "{}: the node stored version {stored:?}",
                self.what("PutObject", record)
            )));
        }
        Ok(Sent::Done {
            target_version_id: None,
        })
    }

    /// Sends an SSE-C version as it is stored: its ciphertext is the body (one PUT, or parts
    /// cut where they fall), and its encryption record, plaintext size and checksum travel in
    /// the `sealed` replica header; the peer stores the ciphertext as it comes. Only the
    /// customer's key opens it there as here. The peer checked every byte's checksum on
    /// arrival; a HEAD of the copy would need the customer's key, so there is no read-back.
    async fn send_sealed(
        &self,
        record: &VersionRecord,
        stored: u64,
        segments: Vec<u64>,
    ) -> Result<Sent, SendError> {
        if !self.peer.is_meridian() {
            return Ok(Sent::Skipped(
                "an SSE-C version travels sealed, which only a Meridian peer can take",
            ));
        }
        let sender = Sender {
            shared: self.shared,
            peer: self.peer,
            target: self.target,
            sealed: Some(crate::headers::Sealed::new(
                record.encryption.clone().unwrap_or_default(),
                &segments,
                record.size,
                record.checksum.clone(),
            )),
        };
        // On the wire it is an object of `stored` bytes with no parts and no checksum of its
        // own: the SDK's checksums cover the ciphertext that travels.
        let wire = VersionRecord {
            size: stored,
            parts: Vec::new(),
            checksum: None,
            ..record.clone()
        };
        let part_size = self.shared.settings.part_size.as_u64();
        match plan(&wire, part_size, part_size) {
            Plan::Single => sender.put_single(&wire, None).await?,
            Plan::Multipart {
                parts,
                split,
                part_size,
            } => sender.put_multipart(&wire, parts, split, part_size).await?,
        };
        Ok(Sent::done())
    }

    /// The body of `range` as it goes on the wire: compressed when the peer takes that and
    /// it pays, else streamed from the store as it is.
    async fn wire_body(
        &self,
        record: &VersionRecord,
        range: Range<u64>,
    ) -> Result<WireBody, SendError> {
        if self.peer.config.compression == Compression::Zstd {
            if let Some(c) = compress::compress(&*self.shared.source, record, range.clone()).await?
            {
                let len = c.compressed.len() as u64;
                if let Some(t) = &self.peer.throttle {
                    tokio::time::sleep(t.reserve(len)).await;
                }
                self.peer.metrics.sent_bytes.inc_by(len);
                return Ok(WireBody {
                    body: ByteStream::from(c.compressed),
                    len,
                    original: Some(c.original),
                });
            }
        }
        let len = range.end - range.start;
        let stream = self
            .shared
            .source
            .read(record, range)
            .await
            .map_err(|e| SendError::transient(format!("reading the source: {e}")))?;
        Ok(WireBody {
            body: exact_body(
                stream,
                len,
                self.peer.throttle.clone(),
                Some(self.peer.metrics.sent_bytes.clone()),
            ),
            len,
            original: None,
        })
    }

    /// One PUT of the whole version; with `staged`, of no body but the name under which the
    /// peer holds it.
    async fn put_single(
        &self,
        record: &VersionRecord,
        staged: Option<&str>,
    ) -> Result<Option<String>, SendError> {
        let what = self.what("PutObject", record);
        let _stream = self.peer.streams.acquire().await.expect("never closed");
        let wire = match staged {
            Some(_) => WireBody {
                body: ByteStream::from_static(b""),
                len: 0,
                original: None,
            },
            None => self.wire_body(record, 0..record.size).await?,
        };
        let mut headers = self.replica_headers(record);
        if let Some(name) = staged {
            headers.push((crate::headers::STAGED, name.to_owned()));
        }
        if wire.original.is_some() {
            headers.push((compress::ENCODING, compress::ZSTD.to_owned()));
        }
        let full_object = record
            .checksum
            .as_ref()
            .filter(|c| c.kind == ChecksumType::FullObject);
        let request = self
            .peer
            .client
            .put_object()
            .bucket(&self.target.bucket)
            .key(crate::sdk_key(&record.key))
            .content_length(wire.len as i64)
            .body(wire.body)
            .set_content_md5(
                etags_are_md5(record)
                    .then(|| content_md5(&record.etag))
                    .flatten(),
            );
        let request = with_checksum!(request, full_object);
        let out = with_encryption!(with_object_fields!(request, record), record, self.target)
            .customize()
            .config_override(data_call(false))
            .mutate_request(with_absent_type(record, add_headers(headers)))
            .send()
            .await
            .map_err(|e| SendError::from_sdk(&what, e))?;
        Ok(out.version_id().map(str::to_owned))
    }

    async fn put_multipart(
        &self,
        record: &VersionRecord,
        parts: Vec<PartPlan>,
        split: bool,
        part_size: u64,
    ) -> Result<Option<String>, SendError> {
        // The upload's checksum: the source's for mirrored parts; for split parts the source's
        // full-object CRC (the peer combines the parts' CRCs and must arrive at it), else
        // CRC64NVME so that every part is still checked on arrival.
        let (algorithm, kind, complete_value) = match (&record.checksum, split) {
            (Some(c), false) => (Some(c.algorithm.clone()), Some(c.kind), None),
            (Some(c), true) if is_crc(&c.algorithm) => (
                Some(c.algorithm.clone()),
                Some(ChecksumType::FullObject),
                Some(c.clone()),
            ),
            (_, true) => (
                Some(ChecksumAlgorithm::Crc64Nvme),
                Some(ChecksumType::FullObject),
                None,
            ),
            (None, false) => (None, None, None),
        };
        let complete_value = complete_value.or_else(|| {
            record
                .checksum
                .clone()
                .filter(|c| !split && c.kind == ChecksumType::FullObject)
        });

        let (upload_id, mut uploaded) = self
            .resume_or_create(record, &parts, part_size, &algorithm, kind)
            .await?;
        let todo: Vec<PartPlan> = parts
            .iter()
            .filter(|p| !uploaded.contains_key(&p.number))
            .cloned()
            .collect();
        let sdk_trailer = split.then(|| algorithm.clone()).flatten();
        // When a part fails (a reset link), the parts already in flight still finish — they
        // land on the peer and the retry finds them with ListParts — but no new part starts.
        // Cancelling them would throw away their progress: on a link that resets every few
        // parts' worth of bytes, no part would ever complete.
        let failed = std::sync::atomic::AtomicBool::new(false);
        let outcomes: Vec<Option<Result<UploadedPart, SendError>>> = futures::stream::iter(todo)
            .map(|p| {
                let (failed, upload_id, trailer) = (&failed, &upload_id, sdk_trailer.as_ref());
                async move {
                    if failed.load(std::sync::atomic::Ordering::Relaxed) {
                        return None;
                    }
                    // A mirrored part may be on the peer already, streamed while it arrived.
                    let index = record
                        .parts
                        .iter()
                        .position(|part| part.number as i32 == p.number)
                        .filter(|_| !split);
                    let staged = index.and_then(|i| Some((i, self.staged_name(record, i)?)));
                    let named = match staged {
                        Some((i, name)) => {
                            let sent =
                                self.upload_part(record, upload_id, &p, trailer, Some(&name));
                            self.staged_outcome(record, i, sent.await).transpose()
                        }
                        None => None,
                    };
                    let sent = match named {
                        Some(sent) => sent,
                        None => self.upload_part(record, upload_id, &p, trailer, None).await,
                    };
                    if sent.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    Some(sent)
                }
            })
            .buffer_unordered(PART_CONCURRENCY)
            .collect()
            .await;
        let mut first_error = None;
        for outcome in outcomes.into_iter().flatten() {
            match outcome {
                Ok(p) => {
                    uploaded.insert(p.number, p);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }

        let completed: Vec<CompletedPart> = parts
            .iter()
            .map(|p| {
                let u = &uploaded[&p.number];
                let b = CompletedPart::builder()
                    .part_number(u.number)
                    .e_tag(format!("\"{}\"", u.etag));
                let value = u
                    .checksum
                    .clone()
                    .or_else(|| p.checksum.as_ref().map(|c| c.value.clone()));
                let c = algorithm.as_ref().zip(value).map(|(a, v)| Checksum {
                    algorithm: a.clone(),
                    value: v,
                    kind: ChecksumType::Composite,
                });
                with_checksum!(b, c.as_ref()).build()
            })
            .collect();
        let what = self.what("CompleteMultipartUpload", record);
        let request = self
            .peer
            .client
            .complete_multipart_upload()
            .bucket(&self.target.bucket)
            .key(crate::sdk_key(&record.key))
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            );
        let request = match &complete_value {
            Some(c) => with_checksum!(request, Some(c))
                .checksum_type(sdk_checksum_type(ChecksumType::FullObject)),
            None => request,
        };
        let out = request
            .customize()
            .config_override(control_call())
            .mutate_request(add_headers(self.replica_headers(record)))
            .send()
            .await
            .map_err(|e| SendError::from_sdk(&what, e))?;
        Ok(out.version_id().map(str::to_owned))
    }

    /// The upload to continue (and the parts the peer already holds that fit the plan), or a
    /// new one, recorded before any part is sent.
    async fn resume_or_create(
        &self,
        record: &VersionRecord,
        parts: &[PartPlan],
        part_size: u64,
        algorithm: &Option<ChecksumAlgorithm>,
        kind: Option<ChecksumType>,
    ) -> Result<(String, BTreeMap<i32, UploadedPart>), SendError> {
        let peer = self.peer.name().to_owned();
        let (b, k, v) = (
            record.bucket.clone(),
            record.key.clone(),
            record.version_id.clone(),
        );
        let (p2, b2, k2, v2) = (peer.clone(), b.clone(), k.clone(), v.clone());
        let known = metadata(&self.shared.meta, move |m| {
            m.peer_upload(&p2, &b2, &k2, &v2)
        })
        .await?;
        if let Some(upload) = known.filter(|u| u.part_size == part_size) {
            match self.list_parts(record, &upload.upload_id).await {
                Ok(listed) => {
                    let fitting: BTreeMap<i32, UploadedPart> = listed
                        .into_iter()
                        .filter(|u| {
                            parts.iter().any(|p| {
                                p.number == u.number
                                    && p.range.end - p.range.start == u.size
                                    && p.etag.as_ref().is_none_or(|e| *e == u.etag)
                            })
                        })
                        .map(|u| (u.number, u))
                        .collect();
                    tracing::info!(
                        peer = %peer, bucket = %b, key = %k, version = %v,
                        upload_id = %upload.upload_id, parts_done = fitting.len(), parts = parts.len(),
                        "resuming a multipart replication"
                    );
                    return Ok((upload.upload_id, fitting));
                }
                // Aborted or expired on the peer: start again.
                Err(e) if e.is_code("NoSuchUpload") => {}
                Err(e) => return Err(e),
            }
        }
        let what = self.what("CreateMultipartUpload", record);
        let request = self
            .peer
            .client
            .create_multipart_upload()
            .bucket(&self.target.bucket)
            .key(crate::sdk_key(&record.key))
            .set_checksum_algorithm(algorithm.as_ref().map(sdk_algorithm))
            .set_checksum_type(algorithm.as_ref().and(kind).map(sdk_checksum_type));
        // The region header marks the upload a replica's: it takes the source's lock
        // verbatim, not the destination bucket's default retention.
        let out = with_encryption!(with_object_fields!(request, record), record, self.target)
            .customize()
            .config_override(control_call())
            .mutate_request(with_absent_type(record, add_headers(self.change_headers())))
            .send()
            .await
            .map_err(|e| SendError::from_sdk(&what, e))?;
        let upload_id = out
            .upload_id()
            .ok_or_else(|| SendError::transient(format!("{what}: no upload id in the answer")))?
            .to_owned();
        let upload = PeerUpload {
            upload_id: upload_id.clone(),
            part_size,
            started: meridian_metadata::now_nanos(),
        };
        metadata(&self.shared.meta, move |m| {
            m.put_peer_upload(&peer, &b, &k, &v, &upload)
        })
        .await?;
        Ok((upload_id, BTreeMap::new()))
    }

    async fn list_parts(
        &self,
        record: &VersionRecord,
        upload_id: &str,
    ) -> Result<Vec<UploadedPart>, SendError> {
        let what = self.what("ListParts", record);
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .peer
                .client
                .list_parts()
                .bucket(&self.target.bucket)
                .key(crate::sdk_key(&record.key))
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .customize()
                .config_override(control_call())
                .send()
                .await
                .map_err(|e| SendError::from_sdk(&what, e))?;
            for p in page.parts() {
                let checksum = [
                    p.checksum_crc32(),
                    p.checksum_crc32_c(),
                    p.checksum_crc64_nvme(),
                    p.checksum_sha1(),
                    p.checksum_sha256(),
                ]
                .into_iter()
                .flatten()
                .next()
                .map(str::to_owned);
                out.push(UploadedPart {
                    number: p.part_number().unwrap_or_default(),
                    size: p.size().unwrap_or_default() as u64,
                    etag: p.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
                    checksum,
                });
            }
            match page.next_part_number_marker() {
                Some(next) if page.is_truncated() == Some(true) => marker = Some(next.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// One part; with `staged`, of no body but the name under which the peer holds it.
    async fn upload_part(
        &self,
        record: &VersionRecord,
        upload_id: &str,
        part: &PartPlan,
        sdk_trailer: Option<&ChecksumAlgorithm>,
        staged: Option<&str>,
    ) -> Result<UploadedPart, SendError> {
        let what = format!("{} part {}", self.what("UploadPart", record), part.number);
        let _stream = self.peer.streams.acquire().await.expect("never closed");
        let wire = match staged {
            Some(_) => WireBody {
                body: ByteStream::from_static(b""),
                len: 0,
                original: None,
            },
            None => self.wire_body(record, part.range.clone()).await?,
        };
        let len = part.range.end - part.range.start;
        let mut headers = Vec::new();
        if let Some(name) = staged {
            headers.push((crate::headers::STAGED, name.to_owned()));
        }
        // A compressed split part's checksum cannot be computed by the SDK on the way out (it
        // would cover the compressed bytes): it is computed here from the original ones.
        let (sdk_trailer, own_checksum) = match (sdk_trailer, &wire.original) {
            (Some(a), Some(original)) => (
                None,
                Some(Checksum {
                    algorithm: a.clone(),
                    value: compress::checksum_of(a, original),
                    kind: ChecksumType::Composite,
                }),
            ),
            (trailer, _) => (trailer, None),
        };
        if wire.original.is_some() {
            headers.push((compress::ENCODING, compress::ZSTD.to_owned()));
        }
        let request = self
            .peer
            .client
            .upload_part()
            .bucket(&self.target.bucket)
            .key(crate::sdk_key(&record.key))
            .upload_id(upload_id)
            .part_number(part.number)
            .content_length(wire.len as i64)
            .body(wire.body)
            .set_content_md5(
                part.etag
                    .as_deref()
                    .filter(|_| etags_are_md5(record))
                    .and_then(content_md5),
            );
        let request = match (sdk_trailer, &own_checksum) {
            (Some(a), _) => request.checksum_algorithm(sdk_algorithm(a)),
            (None, Some(c)) => with_checksum!(request, Some(c)),
            (None, None) => with_checksum!(request, part.checksum.as_ref()),
        };
        let out = request
            .customize()
            .config_override(data_call(sdk_trailer.is_some()))
            .mutate_request(add_headers(headers))
            .send()
            .await
            .map_err(|e| SendError::from_sdk(&what, e))?;
        let etag = out.e_tag().unwrap_or_default().trim_matches('"').to_owned();
        // A keyed ETag (SSE-KMS, SSE-C) is the peer's own; the part's checksum vouched for
        // its bytes.
        if let Some(expected) = part.etag.as_ref().filter(|_| etags_are_md5(record)) {
            if *expected != etag {
                return Err(SendError::transient(format!(
                    "{what}: the peer stored ETag {etag}, expected {expected}"
                )));
            }
        }
        let checksum = [
            out.checksum_crc32(),
            out.checksum_crc32_c(),
            out.checksum_crc64_nvme(),
            out.checksum_sha1(),
            out.checksum_sha256(),
        ]
        .into_iter()
        .flatten()
        .next()
        .map(str::to_owned);
        Ok(UploadedPart {
            number: part.number,
            size: len,
            etag,
            checksum,
        })
    }

    /// HEAD with checksum mode (and of part 1, for a multipart version on a Meridian peer):
    /// the peer's copy must be the source's version in every field a client can observe
    /// ([`meridian_api::version::differences`]) before the change counts as done; a foreign
    /// peer in the fields it can hold.
    async fn verify(
        &self,
        record: &VersionRecord,
        target_version_id: Option<&str>,
        etag_comparable: bool,
    ) -> Result<(), SendError> {
        let what = self.what("HeadObject", record);
        let meridian = self.peer.is_meridian();
        let version_id = if meridian {
            Some(record.version_id.as_str())
        } else {
            target_version_id
        };
        let head = |part: Option<i32>| {
            self.peer
                .client
                .head_object()
                .bucket(&self.target.bucket)
                .key(crate::sdk_key(&record.key))
                .set_version_id(version_id.map(str::to_owned))
                .checksum_mode(ChecksumMode::Enabled)
                .set_part_number(part)
                .customize()
                .config_override(control_call())
                .send()
        };
        let whole = head(None)
            .await
            .map_err(|e| SendError::from_sdk(&what, e))?;
        let part1 = if meridian && !record.parts.is_empty() {
            Some(
                head(Some(1))
                    .await
                    .map_err(|e| SendError::from_sdk(&what, e))?,
            )
        } else {
            None
        };
        let mut observed = ObservedVersion::from_head(&whole, part1.as_ref(), None);
        // An unversioned bucket's HEAD names no version: its one version is the null one.
        if meridian && record.version_id == "null" && observed.version_id.is_none() {
            observed.version_id = Some(record.version_id.clone());
        }
        let mut expected = expected_of(record, self.target);
        if part1.is_none() {
            expected.parts_count = None;
        }
        let fidelity = if meridian {
            Fidelity::Exact
        } else {
            Fidelity::Foreign {
                etag: etag_comparable,
            }
        };
        let differences = differences(&expected, &observed, fidelity);
        if differences.is_empty() {
            Ok(())
        } else {
            Err(SendError::permanent(format!(
                "{what}: the peer's copy differs from the source: {}",
                differences.join("; ")
            )))
        }
    }
}

/// What a client reading `record` from this region observes (as the gateway answers a HEAD
/// with checksum mode on): what the peer's copy must show.
fn expected_of(record: &VersionRecord, target: &crate::rules::Delivery) -> ObservedVersion {
    let (server_side_encryption, sse_kms_key_id) =
        match record.encryption.as_ref().and_then(|e| e.mode) {
            Some(meridian_metadata::EncryptionMode::S3) => (Some("AES256".to_owned()), None),
            Some(meridian_metadata::EncryptionMode::Kms) => (
                Some("aws:kms".to_owned()),
                target.replica_kms_key_id.clone(),
            ),
            _ => (None, None),
        };
    let h = &record.headers;
    let (checksums, checksum_type) = match &record.checksum {
        Some(c) => (
            [(
                crate::headers::algorithm_name(&c.algorithm).to_owned(),
                c.value.clone(),
            )]
            .into(),
            Some(
                match c.kind {
                    ChecksumType::FullObject => "FULL_OBJECT",
                    ChecksumType::Composite => "COMPOSITE",
                }
                .to_owned(),
            ),
        ),
        None => (Default::default(), None),
    };
    ObservedVersion {
        version_id: Some(record.version_id.clone()),
        size: Some(record.size as i64),
        etag: Some(record.etag.clone()),
        last_modified: Some(record.mtime.div_euclid(1_000_000_000)),
        content_type: Some(
            h.content_type
                .clone()
                .unwrap_or_else(|| ABSENT_CONTENT_TYPE.to_owned()),
        ),
        content_encoding: h.content_encoding.clone(),
        content_disposition: h.content_disposition.clone(),
        content_language: h.content_language.clone(),
        cache_control: h.cache_control.clone(),
        expires: h.expires.as_deref().and_then(http_date_seconds),
        website_redirect: h.website_redirect.clone(),
        storage_class: Some("STANDARD".to_owned()),
        metadata: record.user_metadata.iter().cloned().collect(),
        checksums,
        checksum_type,
        parts_count: (!record.parts.is_empty()).then_some(record.parts.len() as i32),
        tags: Some(record.tags.clone()),
        object_lock_mode: record
            .lock
            .retention
            .map(|r| crate::lock::sdk_mode(r.mode).as_str().to_owned()),
        object_lock_retain_until: record
            .lock
            .retention
            .map(|r| r.until.div_euclid(1_000_000_000)),
        object_lock_legal_hold: record.lock.legal_hold.then(|| "ON".to_owned()),
        server_side_encryption,
        sse_kms_key_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_metadata::ObjectPart;

    fn record(size: u64, parts: &[u64]) -> VersionRecord {
        VersionRecord {
            size,
            parts: parts
                .iter()
                .enumerate()
                .map(|(i, &s)| ObjectPart {
                    number: i as u32 + 1,
                    size: s,
                    etag: format!("e{i}"),
                    checksum: None,
                })
                .collect(),
            ..VersionRecord::default()
        }
    }

    #[test]
    fn small_objects_go_in_one_put() {
        assert_eq!(plan(&record(0, &[]), 16, 16), Plan::Single);
        assert_eq!(plan(&record(16, &[]), 16, 16), Plan::Single);
    }

    #[test]
    fn multipart_objects_keep_their_part_boundaries() {
        let Plan::Multipart { parts, split, .. } = plan(&record(13, &[5, 5, 3]), 4, 4) else {
            panic!("expected parts")
        };
        assert!(!split);
        let ranges: Vec<_> = parts.iter().map(|p| p.range.clone()).collect();
        assert_eq!(ranges, [0..5, 5..10, 10..13]);
        assert_eq!(parts[2].etag.as_deref(), Some("e2"));
    }

    #[test]
    fn large_single_part_objects_are_split_into_part_size_pieces() {
        let Plan::Multipart {
            parts,
            split,
            part_size,
        } = plan(&record(10, &[]), 4, 4)
        else {
            panic!("expected parts")
        };
        assert!(split);
        assert_eq!(part_size, 4);
        let ranges: Vec<_> = parts.iter().map(|p| (p.number, p.range.clone())).collect();
        assert_eq!(ranges, [(1, 0..4), (2, 4..8), (3, 8..10)]);
        assert_eq!(plan(&record(10, &[]), 4, 100), Plan::Single);
    }

    #[test]
    fn tags_become_a_url_encoded_header() {
        let tags = vec![
            ("project".to_string(), "llm v2".to_string()),
            ("a&b".to_string(), "=".to_string()),
        ];
        assert_eq!(tagging_header(&tags).unwrap(), "project=llm%20v2&a%26b=%3D");
        assert_eq!(tagging_header(&[]), None);
    }

    #[test]
    fn content_md5_comes_from_a_plain_etag_only() {
        assert_eq!(
            content_md5("d41d8cd98f00b204e9800998ecf8427e").as_deref(),
            Some("1B2M2Y8AsgTpgAmY7PhCfg==")
        );
        assert_eq!(content_md5("d41d8cd98f00b204e9800998ecf8427e-2"), None);
    }
}
