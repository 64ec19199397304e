//! Multipart uploads: each part is erasure-coded (or kept inline when tiny) as it arrives and
//! recorded with its MD5 and checksum; completion checks the client's part list and commits
//! one version whose layout is the parts' segments in order — no data is copied. The ETag is
//! `md5(concat(part md5s))-N`; the checksum is composite or, for CRCs, full-object.

use meridian_metadata::{
    Checksum, ChecksumAlgorithm, ChecksumType, ListUploadsQuery, NewVersion, ObjectPart,
    PartRecord, UploadRecord,
};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::conditions::check_write_preconditions;
use super::convert::{self, ChecksumFields};
use super::put::{
    checksum_headers, parse_content_md5, reject_encryption_requests, shard_identity,
    verify_content_md5, ChecksumClaim,
};
use super::{principal, versioned, MeridianS3};
use crate::checksum;
use crate::storage::ingest::{ingest, IngestOptions, Ingested, IngestedData};
use crate::storage::layout::{Layout, Segment};
use crate::storage::StoreError;

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
        self.store.meta(move |m| m.get_upload(&b, &k, &u)).await?.ok_or_else(|| {
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
    ) -> S3Result<PartRecord> {
        let part = PartRecord {
            number,
            size: ingested.size,
            etag: hex::encode(ingested.md5),
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
                Err(e.into())
            }
        }
    }

    pub(super) async fn create_multipart_upload_impl(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let owner = principal(&req)?.access_key.clone();
        let input = req.input;
        self.bucket(&input.bucket).await?;
        reject_encryption_requests(
            input.sse_customer_algorithm.as_deref(),
            input.ssekms_key_id.as_deref(),
            input.server_side_encryption.as_ref(),
        )?;
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
        let user_metadata = convert::metadata_pairs(input.metadata);
        super::put::check_user_metadata(&user_metadata)?;
        let upload = UploadRecord {
            upload_id: new_upload_id(),
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            initiated: convert::now_nanos(),
            owner,
            headers: convert::headers_of(
                input.content_type.map(|m| m.to_string()),
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.expires.as_ref(),
            ),
            user_metadata,
            tags,
            checksum_algorithm: algorithm.clone(),
            checksum_type,
        };
        let upload_id = upload.upload_id.clone();
        self.store.meta(move |m| m.create_upload(upload)).await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            checksum_algorithm: algorithm.as_ref().map(convert::dto_algorithm),
            checksum_type: checksum_type.map(convert::dto_checksum_type),
            ..Default::default()
        }))
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
        if input.sse_customer_algorithm.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "Server-side encryption with customer keys is not supported"
            ));
        }
        let content_md5 = parse_content_md5(input.content_md5.as_deref())?;
        let claim = ChecksumClaim::from_request(
            checksum_headers!(input),
            input.checksum_algorithm.as_ref(),
            &headers,
        )?;
        let algorithm = part_algorithm(&upload, claim.as_ref())?;

        let body = input
            .body
            .take()
            .map(futures::StreamExt::boxed)
            .unwrap_or_else(|| Box::pin(futures::stream::empty()));
        let ingested = ingest(
            &self.store.disks,
            body,
            IngestOptions {
                identity: shard_identity(&input.bucket, &input.key),
                checksum: algorithm,
                inline_threshold: self.store.inline_threshold(),
            },
        )
        .await?;
        let verified = (|| {
            verify_content_md5(content_md5, &ingested.md5)?;
            if let (Some(claim), Some((_, computed))) = (&claim, &ingested.checksum) {
                claim.verify(computed, trailers.as_ref())?;
            }
            if ingested.size > MAX_PART_SIZE {
                return Err(s3_error!(
                    EntityTooLarge,
                    "Your proposed upload exceeds the maximum allowed object size."
                ));
            }
            Ok::<(), s3s::S3Error>(())
        })();
        if let Err(e) = verified {
            self.store.discard(ingested.data).await;
            return Err(e);
        }
        let part = self.commit_part(&upload, number, ingested).await?;
        let fields = ChecksumFields::of(part.checksum.as_ref());
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(convert::etag(&part.etag)),
            checksum_crc32: fields.crc32,
            checksum_crc32c: fields.crc32c,
            checksum_crc64nvme: fields.crc64nvme,
            checksum_sha1: fields.sha1,
            checksum_sha256: fields.sha256,
            ..Default::default()
        }))
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
        let (source, source_versioned) = self.copy_source(&input.copy_source).await?;
        super::conditions::ReadConditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
        }
        .evaluate(&source, true)?;
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
        let body = self.store.read(&source.storage, range.clone())?;
        let ingested = ingest(
            &self.store.disks,
            body,
            IngestOptions {
                identity: shard_identity(&input.bucket, &input.key),
                checksum: upload.checksum_algorithm.clone(),
                inline_threshold: self.store.inline_threshold(),
            },
        )
        .await
        .map_err(|e| match e {
            StoreError::Body(b) => {
                StoreError::Internal(format!("reading the copy source failed: {b}"))
            }
            other => other,
        })?;
        if ingested.size != range.end - range.start {
            self.store.discard(ingested.data).await;
            return Err(s3_error!(
                InternalError,
                "The copy source changed size while it was read"
            ));
        }
        let part = self.commit_part(&upload, number, ingested).await?;
        let fields = ChecksumFields::of(part.checksum.as_ref());
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(convert::etag(&part.etag)),
                last_modified: Some(convert::timestamp(part.mtime)),
                checksum_crc32: fields.crc32,
                checksum_crc32c: fields.crc32c,
                checksum_crc64nvme: fields.crc64nvme,
                checksum_sha1: fields.sha1,
                checksum_sha256: fields.sha256,
            }),
            copy_source_version_id: source_versioned.then(|| source.version_id.clone()),
            ..Default::default()
        }))
    }

    pub(super) async fn complete_multipart_upload_impl(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let mut input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let upload = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let requested: Vec<CompletedPart> = input
            .multipart_upload
            .take()
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema"));
        }
        let precondition = check_write_preconditions(
            &self.store,
            &input.bucket,
            &input.key,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
        )
        .await?;

        let stored = self.all_parts(&upload).await?;
        let chosen = choose_parts(&requested, &stored, upload.checksum_algorithm.as_ref())?;
        let size: u64 = chosen.iter().map(|p| p.size).sum();
        if input.mpu_object_size.is_some_and(|s| s as u64 != size) {
            return Err(s3_error!(InvalidRequest, "The provided 'x-amz-mp-object-size' header value does not match what was computed."));
        }

        let md5s: Vec<[u8; 16]> = chosen
            .iter()
            .map(|p| {
                hex::decode(&p.etag)
                    .ok()
                    .and_then(|v| <[u8; 16]>::try_from(v).ok())
            })
            .collect::<Option<_>>()
            .ok_or_else(|| s3_error!(InternalError, "a stored part ETag is not an MD5"))?;
        let etag = checksum::multipart_etag(&md5s);
        let object_checksum = object_checksum(&upload, &chosen)?;
        verify_complete_checksum(&input, object_checksum.as_ref())?;

        let mut layout = Layout::default();
        for p in &chosen {
            layout.segments.extend(
                Layout::from_bytes(&p.storage)
                    .map_err(StoreError::from)?
                    .segments,
            );
        }
        let new = NewVersion {
            size,
            etag,
            checksum: object_checksum,
            headers: upload.headers.clone(),
            user_metadata: upload.user_metadata.clone(),
            tags: upload.tags.clone(),
            storage: meridian_metadata::Storage::Layout(layout.to_bytes()),
            parts: chosen
                .iter()
                .map(|p| ObjectPart {
                    number: p.number,
                    size: p.size,
                    etag: p.etag.clone(),
                    checksum: p.checksum.clone(),
                })
                .collect(),
            precondition,
            ..NewVersion::default()
        };
        let used: Vec<u32> = chosen.iter().map(|p| p.number).collect();
        let (b, k, u) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let outcome = self
            .store
            .meta(move |m| m.complete_upload(&b, &k, &u, &used, new))
            .await?;
        self.store.wake_reclaimer();
        let record = outcome.version;
        let fields = ChecksumFields::of(record.checksum.as_ref());
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            e_tag: Some(convert::etag(&record.etag)),
            version_id: convert::reported_version_id(&record, versioned(&bucket)),
            checksum_crc32: fields.crc32,
            checksum_crc32c: fields.crc32c,
            checksum_crc64nvme: fields.crc64nvme,
            checksum_sha1: fields.sha1,
            checksum_sha256: fields.sha256,
            checksum_type: fields.checksum_type,
            ..Default::default()
        }))
    }

    /// Every stored part of an upload, in part-number order.
    async fn all_parts(&self, upload: &UploadRecord) -> S3Result<Vec<PartRecord>> {
        let mut parts = Vec::new();
        let mut marker = 0u32;
        loop {
            let (b, k, u) = (
                upload.bucket.clone(),
                upload.key.clone(),
                upload.upload_id.clone(),
            );
            let page = self
                .store
                .meta(move |m| m.list_parts(&b, &k, &u, marker, 1000))
                .await?;
            parts.extend(page.parts);
            match page.next_part_number_marker {
                Some(next) if page.is_truncated => marker = next,
                _ => return Ok(parts),
            }
        }
    }

    pub(super) async fn abort_multipart_upload_impl(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.bucket(&input.bucket).await?;
        let (b, k, u) = (input.bucket, input.key, input.upload_id);
        self.store.meta(move |m| m.abort_upload(&b, &k, &u)).await?;
        self.store.wake_reclaimer();
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn list_parts_impl(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let upload = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let max = match input.max_parts {
            Some(n) if n < 0 => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Argument max-parts must be an integer between 0 and 2147483647"
                ))
            }
            Some(n) => n.min(DEFAULT_MAX_PARTS),
            None => DEFAULT_MAX_PARTS,
        };
        let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
        let (b, k, u) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let page = self
            .store
            .meta(move |m| m.list_parts(&b, &k, &u, marker, max as usize))
            .await?;
        let who = Owner {
            id: Some(upload.owner.clone()),
            display_name: Some(upload.owner.clone()),
        };
        let parts = page
            .parts
            .iter()
            .map(|p| {
                let f = ChecksumFields::of(p.checksum.as_ref());
                Part {
                    part_number: Some(p.number as i32),
                    e_tag: Some(convert::etag(&p.etag)),
                    size: Some(p.size as i64),
                    last_modified: Some(convert::timestamp(p.mtime)),
                    checksum_crc32: f.crc32,
                    checksum_crc32c: f.crc32c,
                    checksum_crc64nvme: f.crc64nvme,
                    checksum_sha1: f.sha1,
                    checksum_sha256: f.sha256,
                }
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: page.next_part_number_marker.map(|n| n as i32),
            max_parts: Some(max),
            is_truncated: Some(page.is_truncated),
            parts: Some(parts),
            initiator: Some(Initiator {
                id: who.id.clone(),
                display_name: who.display_name.clone(),
            }),
            owner: Some(who),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            checksum_algorithm: upload
                .checksum_algorithm
                .as_ref()
                .map(convert::dto_algorithm),
            checksum_type: upload.checksum_type.map(convert::dto_checksum_type),
            ..Default::default()
        }))
    }

    pub(super) async fn list_multipart_uploads_impl(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        self.bucket(&input.bucket).await?;
        let max = match input.max_uploads {
            Some(n) if n < 0 => {
                return Err(s3_error!(
                    InvalidArgument,
                    "max-uploads must be non-negative"
                ))
            }
            Some(n) => n.min(1000),
            None => 1000,
        };
        let query = ListUploadsQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            key_marker: input.key_marker.clone().filter(|k| !k.is_empty()),
            upload_id_marker: input.upload_id_marker.clone().filter(|u| !u.is_empty()),
            max_uploads: max as usize,
        };
        let b = input.bucket.clone();
        let page = if max == 0 {
            meridian_metadata::ListUploadsPage {
                uploads: vec![],
                common_prefixes: vec![],
                is_truncated: false,
                next_key_marker: None,
                next_upload_id_marker: None,
            }
        } else {
            self.store.meta(move |m| m.list_uploads(&b, &query)).await?
        };
        let uploads = page
            .uploads
            .into_iter()
            .map(|u| {
                let who = Owner {
                    id: Some(u.owner.clone()),
                    display_name: Some(u.owner.clone()),
                };
                MultipartUpload {
                    key: Some(u.key),
                    upload_id: Some(u.upload_id),
                    initiated: Some(convert::timestamp(u.initiated)),
                    initiator: Some(Initiator {
                        id: who.id.clone(),
                        display_name: who.display_name.clone(),
                    }),
                    owner: Some(who),
                    storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                    checksum_algorithm: u.checksum_algorithm.as_ref().map(convert::dto_algorithm),
                    checksum_type: u.checksum_type.map(convert::dto_checksum_type),
                }
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max),
            is_truncated: Some(page.is_truncated),
            next_key_marker: page.next_key_marker,
            next_upload_id_marker: page.next_upload_id_marker,
            uploads: Some(uploads),
            common_prefixes: (!page.common_prefixes.is_empty()).then(|| {
                page.common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect()
            }),
            encoding_type: input.encoding_type,
            request_charged: None,
        }))
    }
}

/// `bytes=first-last` within the source (both required, as S3 demands).
fn parse_copy_source_range(value: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let invalid = || {
        s3_error!(InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy")
    };
    let spec = value.trim().strip_prefix("bytes=").ok_or_else(invalid)?;
    let (a, b) = spec.split_once('-').ok_or_else(invalid)?;
    let first: u64 = a.parse().map_err(|_| invalid())?;
    let last: u64 = b.parse().map_err(|_| invalid())?;
    if first > last {
        return Err(invalid());
    }
    if last >= size {
        return Err(s3_error!(
            InvalidRange,
            "The requested range is not satisfiable"
        ));
    }
    Ok(first..last + 1)
}

/// Checks the client's part list against what was uploaded: ascending numbers, matching
/// ETags (and checksums when given), every part but the last at least 5 MiB.
fn choose_parts(
    requested: &[CompletedPart],
    stored: &[PartRecord],
    algorithm: Option<&ChecksumAlgorithm>,
) -> S3Result<Vec<PartRecord>> {
    let invalid_part = || {
        s3_error!(
            InvalidPart,
            "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
        )
    };
    let mut chosen = Vec::with_capacity(requested.len());
    let mut previous = 0;
    for r in requested {
        let number = r.part_number.ok_or_else(invalid_part)?;
        let number = check_part_number(number)?;
        if number <= previous {
            return Err(s3_error!(InvalidPartOrder, "The list of parts was not in ascending order. The parts list must be specified in order by part number."));
        }
        previous = number;
        let part = stored
            .iter()
            .find(|p| p.number == number)
            .ok_or_else(invalid_part)?;
        if let Some(etag) = &r.e_tag {
            if etag.value().trim_matches('"') != part.etag {
                return Err(invalid_part());
            }
        }
        if let (Some(alg), Some(stored_sum)) = (algorithm, &part.checksum) {
            let claimed = checksum_headers!(r)
                .into_iter()
                .find(|(a, v)| a == alg && v.is_some())
                .and_then(|(_, v)| v);
            if claimed.is_some_and(|c| c != stored_sum.value) {
                return Err(invalid_part());
            }
        }
        chosen.push(part.clone());
    }
    for p in &chosen[..chosen.len() - 1] {
        if p.size < MIN_PART_SIZE {
            return Err(s3_error!(
                EntityTooSmall,
                "Your proposed upload is smaller than the minimum allowed object size."
            ));
        }
    }
    Ok(chosen)
}

/// The object's checksum from its parts: composite ("-N") or, for CRCs, full-object.
fn object_checksum(upload: &UploadRecord, parts: &[PartRecord]) -> S3Result<Option<Checksum>> {
    let Some(algorithm) = &upload.checksum_algorithm else {
        return Ok(None);
    };
    let mut digests = Vec::with_capacity(parts.len());
    for p in parts {
        let Some(c) = p.checksum.as_ref().filter(|c| &c.algorithm == algorithm) else {
            return Err(s3_error!(
                InvalidRequest,
                "Part {} has no {} checksum",
                p.number,
                checksum::header_name(algorithm)
            ));
        };
        let raw = checksum::from_base64(algorithm, &c.value)
            .ok_or_else(|| s3_error!(InternalError, "stored part checksum is malformed"))?;
        digests.push((raw, p.size));
    }
    let kind = upload.checksum_type.unwrap_or(ChecksumType::Composite);
    let value = match kind {
        ChecksumType::Composite => checksum::composite(
            algorithm,
            &digests.into_iter().map(|(d, _)| d).collect::<Vec<_>>(),
        ),
        ChecksumType::FullObject => checksum::to_base64(
            &checksum::combine_crcs(algorithm, &digests)
                .ok_or_else(|| s3_error!(InternalError, "checksum does not combine"))?,
        ),
    };
    Ok(Some(Checksum {
        algorithm: algorithm.clone(),
        value,
        kind,
    }))
}

/// A full-object checksum sent with CompleteMultipartUpload must match what the parts give.
fn verify_complete_checksum(
    input: &CompleteMultipartUploadInput,
    computed: Option<&Checksum>,
) -> S3Result<()> {
    for (alg, value) in checksum_headers!(input) {
        let Some(value) = value else { continue };
        match computed {
            Some(c) if c.algorithm == alg => {
                let bare = c.value.split('-').next().unwrap_or_default();
                if value.split('-').next().unwrap_or_default() != bare {
                    return Err(s3_error!(BadDigest, "The {} you specified did not match the calculated checksum.", checksum::header_name(&alg).to_ascii_uppercase()));
                }
            }
            _ => {
                return Err(s3_error!(InvalidRequest, "The upload was created using a different checksum algorithm than x-amz-checksum-{}.", checksum::header_name(&alg)))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: u32, size: u64) -> PartRecord {
        PartRecord {
            number,
            size,
            etag: format!("{number:032x}"),
            checksum: None,
            mtime: 0,
            storage: Vec::new(),
        }
    }

    fn completed(number: i32, etag: &str) -> CompletedPart {
        CompletedPart {
            part_number: Some(number),
            e_tag: Some(ETag::Strong(etag.into())),
            ..Default::default()
        }
    }

    #[test]
    fn parts_must_ascend_match_and_be_big_enough() {
        let stored = vec![part(1, MIN_PART_SIZE), part(2, MIN_PART_SIZE), part(3, 10)];
        let ok = choose_parts(
            &[completed(1, &stored[0].etag), completed(3, &stored[2].etag)],
            &stored,
            None,
        )
        .unwrap();
        assert_eq!(ok.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 3]);

        let err = choose_parts(
            &[completed(2, &stored[1].etag), completed(1, &stored[0].etag)],
            &stored,
            None,
        )
        .unwrap_err();
        assert_eq!(err.code().as_str(), "InvalidPartOrder");
        let err = choose_parts(&[completed(1, "ffff")], &stored, None).unwrap_err();
        assert_eq!(err.code().as_str(), "InvalidPart");
        let err = choose_parts(&[completed(4, "x")], &stored, None).unwrap_err();
        assert_eq!(err.code().as_str(), "InvalidPart");
        let err = choose_parts(
            &[completed(3, &stored[2].etag), completed(4, "x")],
            &[part(3, 10), part(4, 10)],
            None,
        )
        .unwrap_err();
        assert!(matches!(
            err.code().as_str(),
            "EntityTooSmall" | "InvalidPart"
        ));
        let small_first = vec![part(1, 10), part(2, 10)];
        let err = choose_parts(
            &[
                completed(1, &small_first[0].etag),
                completed(2, &small_first[1].etag),
            ],
            &small_first,
            None,
        )
        .unwrap_err();
        assert_eq!(err.code().as_str(), "EntityTooSmall");
    }

    #[test]
    fn copy_source_ranges_are_inclusive_and_bounded() {
        assert_eq!(parse_copy_source_range("bytes=0-9", 100).unwrap(), 0..10);
        assert_eq!(
            parse_copy_source_range("bytes=99-99", 100).unwrap(),
            99..100
        );
        assert!(parse_copy_source_range("bytes=5-", 100).is_err());
        assert!(parse_copy_source_range("bytes=9-5", 100).is_err());
        assert_eq!(
            parse_copy_source_range("bytes=0-100", 100)
                .unwrap_err()
                .code()
                .as_str(),
            "InvalidRange"
        );
    }
}
