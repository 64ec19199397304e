//! Multipart uploads: each part is erasure-coded (or kept inline when tiny) as it arrives and
//! recorded with its MD5 and checksum; completion checks the client's part list and commits
//! one version whose layout is the parts' segments in order — no data is copied. The ETag is
//! `md5(concat(part md5s))-N`; the checksum is composite or, for CRCs, full-object.

mod complete;
mod listing;

use meridian_metadata::{
    Checksum, ChecksumAlgorithm, ChecksumType, ListUploadsQuery, MetaError, NewVersion, ObjectPart,
    PartRecord, UploadRecord,
};
use s3s::dto::*;
use s3s::{s3_error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::conditions::check_write_preconditions;
use super::convert::{self, ChecksumFields};
use super::encryption::{
    copy_source_customer_headers, customer_headers, with_sse_fields, SseFields,
};
use super::put::{checksum_headers, parse_content_md5, BodyClaims, ChecksumClaim};
use super::replica::{apply_replica, note_existing};
use super::{principal, reports_written_version, MeridianS3};
use crate::s3::errors::IntoS3;
use meridian_store::checksum;
use meridian_store::encryption::{etag_of, DataKey};
use meridian_store::ingest::{Ingested, IngestedData};
use meridian_store::layout::{Layout, Segment};
use meridian_store::StoreError;

/// S3's part rules.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;
const DEFAULT_MAX_PARTS: i32 = 1000;

fn check_part_number(n: i32) -> S3Result<u32> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        Ok(n as u32)
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ))
    }
}

fn new_upload_id() -> String {
    // Time-ordered so uploads of one key list in initiation order, random so they are unguessable.
    let nanos = convert::now_nanos() as u64;
    format!("{:016x}{}", nanos, uuid::Uuid::new_v4().simple())
}

fn layout_bytes(data: &IngestedData) -> Vec<u8> {
    let segment = match data {
        IngestedData::Inline(b) => Segment::Inline(b.to_vec()),
        IngestedData::Erasure(outcome) => Segment::Erasure(outcome.descriptor.clone()),
    };
    Layout {
        segments: vec![segment],
    }
    .to_bytes()
}

fn part_checksum(ingested: &Ingested) -> Option<Checksum> {
    ingested.checksum.as_ref().map(|(a, raw)| Checksum {
        algorithm: a.clone(),
        value: checksum::to_base64(raw),
        kind: ChecksumType::Composite,
    })
}

/// The algorithm a part is hashed with: the upload's, or the one the part itself claims.
fn part_algorithm(
    upload: &UploadRecord,
    claim: Option<&ChecksumClaim>,
) -> S3Result<Option<ChecksumAlgorithm>> {
    match (&upload.checksum_algorithm, claim) {
        (Some(expected), Some(c)) if &c.algorithm != expected => Err(s3_error!(
            InvalidRequest,
            "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
            checksum::header_name(expected),
            checksum::header_name(&c.algorithm)
        )),
        (Some(expected), _) => Ok(Some(expected.clone())),
        (None, c) => Ok(c.map(|c| c.algorithm.clone())),
    }
}

impl MeridianS3 {
    async fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> S3Result<UploadRecord> {
        self.bucket(bucket).await?;
        let (b, k, u) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        self.store.meta(move |m| m.get_upload(&b, &k, &u)).await.s3()?.ok_or_else(|| {
            s3_error!(
                NoSuchUpload,
                "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
            )
        })
    }

    /// Records a part whose data is durable; discards the data if the upload vanished.
    async fn commit_part(
        &self,
        upload: &UploadRecord,
        number: u32,
        ingested: Ingested,
        data_key: Option<&DataKey>,
    ) -> S3Result<PartRecord> {
        let mode = upload.encryption.as_ref().and_then(|e| e.mode);
        let part = PartRecord {
            number,
            size: ingested.size,
            etag: etag_of(mode, data_key, &ingested.md5),
            checksum: part_checksum(&ingested),
            mtime: convert::now_nanos(),
            storage: layout_bytes(&ingested.data),
        };
        let (b, k, u, p) = (
            upload.bucket.clone(),
            upload.key.clone(),
            upload.upload_id.clone(),
            part.clone(),
        );
        match self.store.meta(move |m| m.put_part(&b, &k, &u, p)).await {
            Ok(()) => {
                self.store.wake_reclaimer();
                self.store.heal_if_degraded(&ingested.data);
                Ok(part)
            }
            Err(e) => {
                self.store.discard(ingested.data).await;
                Err(crate::s3::errors::s3_error_of(e))
            }
        }
    }

    pub(super) async fn create_multipart_upload_impl(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let owner = principal(&req)?.access_key.clone();
        let replica = meridian_replicator::headers::is_replica_request(&req.headers);
        let req_headers = req.headers;
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let acl = self
            .acl_of_write(
                &bucket,
                &owner,
                input.acl.as_ref(),
                super::acl::grant_headers!(input, None),
            )
            .await?;
        // Decided now (a default retention counts from the upload's start) and given to the
        // completed version.
        let lock = self
            .lock_of_write(&bucket, replica, &super::object_lock::lock_headers!(input))
            .await?;
        // The upload's data key: every part is sealed with it, and the completed version
        // keeps it.
        // An upload of a version that travels sealed (SSE-C from a peer) keeps its parts as
        // they come; the completion brings the version's encryption record.
        let sealed = meridian_replicator::headers::ReplicaHeaders::from_headers(&req_headers)
            .map_err(|reason| s3_error!(InvalidArgument, "{reason}"))?
            .is_some_and(|r| r.sealed.is_some());
        let encryption = match sealed {
            true => None,
            false => self
                .encryption_of_write(
                    &input.bucket,
                    self.sse_request(&super::encryption::sse_headers!(input))?,
                )
                .await?
                .map(|(_, e)| e),
        };
        let algorithm = input
            .checksum_algorithm
            .as_ref()
            .map(convert::parse_dto_algorithm)
            .transpose()?;
        let requested_type = input
            .checksum_type
            .as_ref()
            .map(convert::parse_checksum_type)
            .transpose()?;
        let checksum_type = match (&algorithm, requested_type) {
            (None, Some(_)) => {
                return Err(s3_error!(InvalidRequest, "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."))
            }
            (None, None) => None,
            (Some(ChecksumAlgorithm::Crc64Nvme), Some(ChecksumType::Composite)) => {
                return Err(s3_error!(InvalidRequest, "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm."))
            }
            (Some(a), Some(ChecksumType::FullObject)) if !checksum::combinable(a) => {
                return Err(s3_error!(InvalidRequest, "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm.", checksum::header_name(a)))
            }
            (Some(_), Some(t)) => Some(t),
            (Some(ChecksumAlgorithm::Crc64Nvme), None) => Some(ChecksumType::FullObject),
            (Some(_), None) => Some(ChecksumType::Composite),
        };
        let tags = match input.tagging.as_deref() {
            Some(t) => convert::parse_tagging_header(t)?,
            None => Vec::new(),
        };
        let headers = convert::headers_of!(&input)?;
        let user_metadata = convert::metadata_pairs(input.metadata);
        super::put::check_user_metadata(&user_metadata)?;
        let upload = UploadRecord {
            upload_id: new_upload_id(),
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            initiated: convert::now_nanos(),
            owner,
            headers,
            user_metadata,
            tags,
            checksum_algorithm: algorithm.clone(),
            checksum_type,
            lock,
            encryption,
            acl,
        };
        let upload_id = upload.upload_id.clone();
        let sse = SseFields::of(upload.encryption.as_ref());
        self.store
            .meta(move |m| m.create_upload(upload))
            .await
            .s3()?;
        let output = CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            checksum_algorithm: algorithm.as_ref().map(convert::dto_algorithm),
            checksum_type: checksum_type.map(convert::dto_checksum_type),
            ..Default::default()
        };
        Ok(S3Response::new(with_sse_fields!(output, sse)))
    }

    pub(super) async fn upload_part_impl(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let trailers = req.trailing_headers.clone();
        let headers = req.headers;
        let mut input = req.input;
        let number = check_part_number(input.part_number)?;
        if input
            .content_length
            .is_some_and(|l| l as u64 > MAX_PART_SIZE)
        {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed object size."
            ));
        }
        let upload = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let data_key = self
            .upload_data_key(upload.encryption.as_ref(), &customer_headers!(input))
            .await?;
        let content_md5 = parse_content_md5(input.content_md5.as_deref())?;
        let claim = ChecksumClaim::from_request(
            checksum_headers!(input),
            input.checksum_algorithm.as_ref(),
            &headers,
        )?;
        let algorithm = part_algorithm(&upload, claim.as_ref())?;

        let claims = BodyClaims {
            content_md5,
            checksum: claim,
            trailers,
            max_size: Some(MAX_PART_SIZE),
            zstd: BodyClaims::zstd_of(&headers)?,
            decoded_length: BodyClaims::decoded_length_of(&headers)?,
        };
        // A part is teed to the followers as it arrives (when this node leads the key and
        // the upload is not sealed here); the copy of the completed object names each part
        // a follower holds instead of sending it again.
        let copy = self.cluster.node().is_some() && headers.contains_key(crate::cluster::FROM);
        let ingested = self
            .write_body(
                input.body.take(),
                &headers,
                super::put::WriteTo {
                    bucket: &input.bucket,
                    key: &input.key,
                    copy,
                    teed: true,
                    length: input.content_length.and_then(|l| u64::try_from(l).ok()),
                },
                algorithm,
                claims,
                data_key.as_ref(),
            )
            .await?;
        let part = self
            .commit_part(&upload, number, ingested, data_key.as_ref())
            .await?;
        let fields = ChecksumFields::of(part.checksum.as_ref());
        let output = UploadPartOutput {
            e_tag: Some(convert::etag(&part.etag)),
            checksum_crc32: fields.crc32,
            checksum_crc32c: fields.crc32c,
            checksum_crc64nvme: fields.crc64nvme,
            checksum_sha1: fields.sha1,
            checksum_sha256: fields.sha256,
            ..Default::default()
        };
        Ok(S3Response::new(with_sse_fields!(
            output,
            SseFields::of(upload.encryption.as_ref())
        )))
    }

    pub(super) async fn upload_part_copy_impl(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let number = check_part_number(input.part_number)?;
        let upload = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let from = self
            .copy_source(&input.copy_source, &copy_source_customer_headers!(input))
            .await?;
        let source = &from.record;
        super::conditions::ReadConditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
        }
        .evaluate(source, true)?;
        let range = match input.copy_source_range.as_deref() {
            None => 0..source.size,
            Some(r) => parse_copy_source_range(r, source.size)?,
        };
        if range.end - range.start > MAX_PART_SIZE {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed object size."
            ));
        }
        let source_key = self
            .source_key(&from, &copy_source_customer_headers!(input))
            .await?;
        let data_key = self
            .upload_data_key(upload.encryption.as_ref(), &customer_headers!(input))
            .await?;
        let ingested = self
            .ingest_copy(
                &from,
                range,
                &input.bucket,
                &input.key,
                upload.checksum_algorithm.clone(),
                source_key.as_ref(),
                data_key.as_ref(),
            )
            .await?;
        let part = self
            .commit_part(&upload, number, ingested, data_key.as_ref())
            .await?;
        let fields = ChecksumFields::of(part.checksum.as_ref());
        let output = UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(convert::etag(&part.etag)),
                last_modified: Some(convert::timestamp(part.mtime)),
                checksum_crc32: fields.crc32,
                checksum_crc32c: fields.crc32c,
                checksum_crc64nvme: fields.crc64nvme,
                checksum_sha1: fields.sha1,
                checksum_sha256: fields.sha256,
            }),
            copy_source_version_id: from.versioned.then(|| source.version_id.clone()),
            ..Default::default()
        };
        Ok(S3Response::new(with_sse_fields!(
            output,
            SseFields::of(upload.encryption.as_ref())
        )))
    }

    pub(super) async fn abort_multipart_upload_impl(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.bucket(&input.bucket).await?;
        let (b, k, u) = (input.bucket, input.key, input.upload_id);
        self.store
            .meta(move |m| m.abort_upload(&b, &k, &u))
            .await
            .s3()?;
        self.store.wake_reclaimer();
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}

/// `x-amz-copy-source-range` against the source's size, with S3's errors.
fn parse_copy_source_range(value: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    use meridian_documents::headers::{copy_source_range, CopyRangeError};
    copy_source_range(value, size).map_err(|e| match e {
        CopyRangeError::Malformed => s3_error!(InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"),
        CopyRangeError::NotSatisfiable => s3_error!(InvalidRange, "The requested range is not satisfiable"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_range_errors_are_s3s() {
        assert_eq!(parse_copy_source_range("bytes=0-9", 100).unwrap(), 0..10);
        assert_eq!(
            parse_copy_source_range("bytes=5-", 100)
                .unwrap_err()
                .code()
                .as_str(),
            "InvalidArgument"
        );
        assert_eq!(
            parse_copy_source_range("bytes=0-100", 100)
                .unwrap_err()
                .code()
                .as_str(),
            "InvalidRange"
        );
    }
}
