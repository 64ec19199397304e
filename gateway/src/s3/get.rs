//! GetObject and HeadObject: find the version (answering for delete markers as S3 does),
//! evaluate preconditions, resolve the range or part, and stream verified bytes.

use std::ops::Range;

use http::{HeaderMap, HeaderValue};
use meridian_metadata::VersionRecord;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result};

use super::conditions::ReadConditions;
use super::convert::{self, ChecksumFields};
use super::{versioned, MeridianS3};
use crate::s3::errors::IntoS3;
use meridian_store::encryption::DataKey;

/// Which bytes of the object a request wants.
struct Selection {
    range: Range<u64>,
    /// `Content-Range` when the answer is partial (206).
    content_range: Option<String>,
    /// The part served for `partNumber` requests on multipart objects.
    part: Option<usize>,
}

/// What GET and HEAD share: the version, looked up and checked.
pub(super) struct Resolved {
    pub record: VersionRecord,
    pub versioned_bucket: bool,
}

fn delete_marker_error(record: &VersionRecord, by_version_id: bool) -> S3Error {
    let mut headers = HeaderMap::new();
    headers.insert("x-amz-delete-marker", HeaderValue::from_static("true"));
    if let Ok(v) = HeaderValue::from_str(&record.version_id) {
        headers.insert("x-amz-version-id", v);
    }
    headers.insert("content-type", HeaderValue::from_static("application/xml"));
    let mut err = if by_version_id {
        if let Ok(v) = HeaderValue::from_str(&convert::format_http_date(&convert::timestamp(
            record.mtime,
        ))) {
            headers.insert("last-modified", v);
        }
        s3_error!(
            MethodNotAllowed,
            "The specified method is not allowed against this resource."
        )
    } else {
        s3_error!(NoSuchKey, "The specified key does not exist.")
    };
    err.set_headers(headers);
    err
}

/// A part number the object does not have: 400, as the s3-tests suite expects (AWS's error
/// table lists 416 for this code).
fn invalid_part_number() -> S3Error {
    super::errors::custom_error(
        "InvalidPartNumber",
        http::StatusCode::BAD_REQUEST,
        "The requested partnumber is not satisfiable",
    )
}

fn select(
    record: &VersionRecord,
    range: Option<&s3s::dto::Range>,
    part_number: Option<i32>,
) -> S3Result<Selection> {
    let size = record.size;
    match (range, part_number) {
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        )),
        (Some(r), None) => {
            let range = meridian_documents::headers::byte_range(r, size)
                .ok_or_else(|| s3_error!(InvalidRange, "The requested range is not satisfiable"))?;
            let content_range = format!("bytes {}-{}/{}", range.start, range.end - 1, size);
            Ok(Selection {
                range,
                content_range: Some(content_range),
                part: None,
            })
        }
        (None, Some(n)) => {
            if !(1..=10_000).contains(&n) {
                return Err(s3_error!(
                    InvalidArgument,
                    "Part number must be an integer between 1 and 10000, inclusive"
                ));
            }
            let n = n as usize;
            if record.parts.is_empty() {
                // A single-part object is its own part 1.
                if n != 1 {
                    return Err(invalid_part_number());
                }
                return Ok(Selection {
                    range: 0..size,
                    content_range: None,
                    part: None,
                });
            }
            if n > record.parts.len() {
                return Err(invalid_part_number());
            }
            // 1 <= n <= parts.len(), checked above.
            let start: u64 = record.parts[..n - 1].iter().map(|p| p.size).sum();
            let end = start + record.parts[n - 1].size;
            let content_range =
                (end > start).then(|| format!("bytes {}-{}/{}", start, end - 1, size));
            Ok(Selection {
                range: start..end,
                content_range,
                part: Some(n - 1),
            })
        }
        (None, None) => Ok(Selection {
            range: 0..size,
            content_range: None,
            part: None,
        }),
    }
}

fn checksum_fields(
    record: &VersionRecord,
    sel: &Selection,
    mode: Option<&ChecksumMode>,
) -> ChecksumFields {
    if mode.is_none_or(|m| m.as_str() != ChecksumMode::ENABLED) {
        return ChecksumFields::default();
    }
    match sel.part {
        // The part's own checksum, under the object's checksum type: a part of a FULL_OBJECT
        // upload reports FULL_OBJECT, as S3 does.
        Some(i) => {
            let mut fields = ChecksumFields::of(record.parts[i].checksum.as_ref());
            if let (Some(_), Some(object)) = (&fields.checksum_type, &record.checksum) {
                fields.checksum_type = Some(convert::dto_checksum_type(object.kind));
            }
            fields
        }
        // A byte range is not what the stored checksum covers.
        None if sel.content_range.is_some() => ChecksumFields::default(),
        None => ChecksumFields::of(record.checksum.as_ref()),
    }
}

/// The parts of a GetObject or HeadObject request that decide what is answered.
struct ReadRequest<'a> {
    bucket: &'a str,
    key: &'a str,
    version_id: Option<&'a str>,
    conditions: ReadConditions<'a>,
    range: Option<&'a s3s::dto::Range>,
    part_number: Option<i32>,
    checksum_mode: Option<&'a ChecksumMode>,
    customer: super::encryption::CustomerHeaders<'a>,
}

/// The [`ReadRequest`] of a GetObjectInput or a HeadObjectInput (same field names).
macro_rules! read_request {
    ($i:expr) => {
        ReadRequest {
            bucket: &$i.bucket,
            key: &$i.key,
            version_id: $i.version_id.as_deref(),
            conditions: ReadConditions {
                if_match: $i.if_match.as_ref(),
                if_none_match: $i.if_none_match.as_ref(),
                if_modified_since: $i.if_modified_since.as_ref(),
                if_unmodified_since: $i.if_unmodified_since.as_ref(),
            },
            range: $i.range.as_ref(),
            part_number: $i.part_number,
            checksum_mode: $i.checksum_mode.as_ref(),
            customer: super::encryption::customer_headers!($i),
        }
    };
}

/// The response fields GetObject and HeadObject have in common.
struct ObjectFields {
    content_length: i64,
    content_range: Option<String>,
    content_type: ContentType,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
    website_redirect_location: Option<String>,
    e_tag: ETag,
    last_modified: Timestamp,
    metadata: Option<Metadata>,
    version_id: Option<String>,
    parts_count: Option<i32>,
    checksums: ChecksumFields,
    replication_status: Option<ReplicationStatus>,
    /// `x-amz-expiration`, for the current version a rule will expire.
    expiration: Option<String>,
    lock: super::object_lock::LockFields,
    sse: super::encryption::SseFields,
}

/// Fills an output type with the [`ObjectFields`]: GetObjectOutput and HeadObjectOutput are
/// different types with the same field names.
macro_rules! object_output {
    ($ty:ident, $f:expr, { $($extra:ident: $value:expr),* $(,)? }) => {{
        let f = $f;
        $ty {
            accept_ranges: Some("bytes".into()),
            content_length: Some(f.content_length),
            content_range: f.content_range,
            content_type: Some(f.content_type),
            content_encoding: f.content_encoding,
            content_disposition: f.content_disposition,
            content_language: f.content_language,
            cache_control: f.cache_control,
            expires: f.expires,
            website_redirect_location: f.website_redirect_location,
            e_tag: Some(f.e_tag),
            last_modified: Some(f.last_modified),
            metadata: f.metadata,
            version_id: f.version_id,
            parts_count: f.parts_count,
            checksum_crc32: f.checksums.crc32,
            checksum_crc32c: f.checksums.crc32c,
            checksum_crc64nvme: f.checksums.crc64nvme,
            checksum_sha1: f.checksums.sha1,
            checksum_sha256: f.checksums.sha256,
            checksum_type: f.checksums.checksum_type,
            replication_status: f.replication_status,
            expiration: f.expiration,
            object_lock_mode: f.lock.mode,
            object_lock_retain_until_date: f.lock.retain_until_date,
            object_lock_legal_hold_status: f.lock.legal_hold_status,
            server_side_encryption: f.sse.server_side_encryption,
            ssekms_key_id: f.sse.ssekms_key_id,
            sse_customer_algorithm: f.sse.sse_customer_algorithm,
            sse_customer_key_md5: f.sse.sse_customer_key_md5,
            $($extra: $value,)*
            ..Default::default()
        }
    }};
}

impl MeridianS3 {
    pub(super) async fn resolve(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<Resolved> {
        let bucket_record = self.bucket(bucket).await?;
        let (b, k, v) = (
            bucket.to_owned(),
            key.to_owned(),
            version_id.map(str::to_owned),
        );
        let record = self
            .store
            .meta(move |m| m.get_version(&b, &k, v.as_deref()))
            .await
            .s3()?;
        let record = match (record, version_id) {
            (Some(r), _) => r,
            (None, Some(_)) => {
                return Err(s3_error!(
                    NoSuchVersion,
                    "The specified version does not exist."
                ))
            }
            (None, None) => {
                // As RGW (and the s3-tests delete-marker cases): say that no marker is there.
                let mut err = s3_error!(NoSuchKey, "The specified key does not exist.");
                let mut headers = HeaderMap::new();
                headers.insert("x-amz-delete-marker", HeaderValue::from_static("false"));
                err.set_headers(headers);
                return Err(err);
            }
        };
        if record.is_delete_marker {
            return Err(delete_marker_error(&record, version_id.is_some()));
        }
        Ok(Resolved {
            record,
            versioned_bucket: versioned(&bucket_record),
        })
    }

    /// What GET and HEAD share: the version (delete markers answered as S3 does), its
    /// preconditions, its data key (SSE-C needs the request's key, on HEAD too), the bytes
    /// selected and the response fields that describe them.
    async fn describe(
        &self,
        req: ReadRequest<'_>,
    ) -> S3Result<(VersionRecord, Option<DataKey>, Selection, ObjectFields)> {
        let Resolved {
            record,
            versioned_bucket,
        } = self.resolve(req.bucket, req.key, req.version_id).await?;
        req.conditions.evaluate(&record, false)?;
        let data_key = self
            .data_key_of(record.encryption.as_ref(), &req.customer)
            .await?;
        let sel = select(&record, req.range, req.part_number)?;
        let h = &record.headers;
        let fields = ObjectFields {
            content_length: (sel.range.end - sel.range.start) as i64,
            content_range: sel.content_range.clone(),
            content_type: h
                .content_type
                .as_deref()
                .unwrap_or("binary/octet-stream")
                .parse()
                .map_err(|_| {
                    s3_error!(
                        InternalError,
                        "stored content type is not a valid header value"
                    )
                })?,
            content_encoding: h.content_encoding.clone(),
            content_disposition: h.content_disposition.clone(),
            content_language: h.content_language.clone(),
            cache_control: h.cache_control.clone(),
            expires: h.expires.as_deref().and_then(convert::parse_http_date),
            website_redirect_location: h.website_redirect.clone(),
            e_tag: convert::etag(&record.etag),
            last_modified: convert::timestamp(record.mtime),
            metadata: convert::user_metadata(&record.user_metadata),
            version_id: convert::reported_version_id(&record, versioned_bucket),
            parts_count: (!record.parts.is_empty() && req.part_number.is_some())
                .then_some(record.parts.len() as i32),
            checksums: checksum_fields(&record, &sel, req.checksum_mode),
            replication_status: super::replica::replication_status(&record),
            expiration: match req.version_id {
                None => self.expiration_of(&record).await?,
                Some(_) => None,
            },
            lock: super::object_lock::LockFields::of(&record),
            sse: super::encryption::SseFields::of(record.encryption.as_ref()),
        };
        Ok((record, data_key, sel, fields))
    }

    pub(super) async fn get_object_impl(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let i = &req.input;
        Self::refuse_read_sse_headers(&req.headers)?;
        self.refuse_foreign_proxy(&req.headers, &i.bucket).await?;
        let (record, data_key, sel, fields) = match self.describe(read_request!(i)).await {
            Ok(found) => found,
            Err(e) if super::proxy::may_proxy(&req.headers, &e) => {
                return self.proxied_get(&req.headers, i, e).await
            }
            Err(e) => return Err(e),
        };
        let mut body = self
            .store
            .read_plain(
                &record.storage,
                sel.range.clone(),
                data_key.as_ref(),
                record.encryption.as_ref().map_or(&[][..], |e| &e.segments),
            )
            .s3()?;
        body.first_chunk().await.s3()?;
        let tag_count = (!record.tags.is_empty()).then_some(record.tags.len() as i32);
        Ok(S3Response::new(object_output!(GetObjectOutput, fields, {
            body: Some(StreamingBlob::new(super::body::ObjectBody(body))),
            tag_count: tag_count,
        })))
    }

    pub(super) async fn head_object_impl(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = &req.input;
        Self::refuse_read_sse_headers(&req.headers)?;
        self.refuse_foreign_proxy(&req.headers, &i.bucket).await?;
        let (record, _, _, fields) = match self.describe(read_request!(i)).await {
            Ok(found) => found,
            Err(e) if super::proxy::may_proxy(&req.headers, &e) => {
                return self.proxied_head(&req.headers, i, e).await
            }
            Err(e) => return Err(e),
        };
        let mut response = S3Response::new(object_output!(HeadObjectOutput, fields, {}));
        // GET's `x-amz-tagging-count`, which s3s's HeadObjectOutput has no field for (RGW and
        // MinIO send it on HEAD too).
        if !record.tags.is_empty() {
            response
                .headers
                .insert("x-amz-tagging-count", HeaderValue::from(record.tags.len()));
        }
        Ok(response)
    }
}
