//! CopyObject: a new version whose bytes are streamed from a source version (any bucket the
//! caller may read), with metadata and tags copied or replaced per the directives.
//!
//! Bytes are re-encoded rather than shared, so every version owns its shards outright and
//! reclaiming one never touches another.

use std::ops::Range;
use std::pin::Pin;

use futures::StreamExt;
use meridian_cluster::layout::NodeId;

use meridian_metadata::{NewVersion, VersionRecord};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::conditions::{check_write_preconditions, ReadConditions};
use super::convert::{self, ChecksumFields};
use super::encryption::{
    copy_source_customer_headers, sse_headers, with_sse_fields, CustomerHeaders, SseFields,
};
use super::put::{check_user_metadata, shard_identity, stored_checksum};
use super::{reports_written_version, versioned, MeridianS3};
use crate::cluster::SourceAsk;
use crate::s3::errors::IntoS3;
use meridian_store::encryption::{etag_of, DataKey};
use meridian_store::ingest::{ingest, BodyError, IngestOptions, Ingested};
use meridian_store::{Store, StoreError};

/// S3's limit for a single CopyObject (larger objects are copied part by part).
const MAX_COPY_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// The source version of a copy, and where its bytes are read.
pub(super) struct CopyFrom {
    pub record: VersionRecord,
    /// The source bucket is versioned: the answer names the version copied.
    pub versioned: bool,
    /// The node that leads the source's partition, when that is not this one: it reads and
    /// decrypts the bytes.
    pub at: Option<(NodeId, SourceAsk)>,
}

type SourceBytes = Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, BodyError>> + Send>>;

/// The bucket, key and version a copy names (access points and outposts are not supported).
fn bucket_source(source: &CopySource) -> S3Result<(&str, &str, Option<&str>)> {
    match source {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((bucket, key, version_id.as_deref())),
        _ => Err(s3_error!(
            NotImplemented,
            "Copying from access points is not supported"
        )),
    }
}

/// Whether `ingested` (the whole source, copied) has the source's checksum, or else the MD5
/// its plain ETag is; true when the source has neither to compare.
fn matches_source(source: &VersionRecord, ingested: &Ingested) -> bool {
    if let (Some(want), Some(got)) = (&source.checksum, stored_checksum(ingested)) {
        if want.kind == meridian_metadata::ChecksumType::FullObject
            && want.algorithm == got.algorithm
        {
            return want.value == got.value;
        }
    }
    let plain_md5 = source.encryption.as_ref().and_then(|e| e.mode).is_none()
        && source.etag.len() == 32
        && source.etag.bytes().all(|b| b.is_ascii_hexdigit());
    !plain_md5 || source.etag.eq_ignore_ascii_case(&hex::encode(ingested.md5))
}

impl MeridianS3 {
    /// The source version of a copy: must exist and must not be a delete marker. In a region
    /// of several nodes, a source whose partition another node leads is looked up there
    /// (with the copy's SSE-C key, `customer`, checked there too).
    pub(super) async fn copy_source(
        &self,
        source: &CopySource,
        customer: &CustomerHeaders<'_>,
    ) -> S3Result<CopyFrom> {
        let (bucket, key, version_id) = bucket_source(source)?;
        let versioned = versioned(&self.bucket(bucket).await?);
        let cluster = self.cluster.node();
        if let Some((cluster, node)) =
            cluster.and_then(|c| Some((c, c.leader_elsewhere(bucket, key)?)))
        {
            let mut ask = SourceAsk {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                version_id: version_id.map(str::to_owned),
                customer: [customer.algorithm, customer.key, customer.key_md5]
                    .map(|h| h.map(str::to_owned)),
            };
            let record = cluster
                .source_at(node, &ask)
                .await
                .map_err(|r| super::delegated::s3_error_of(&r))?;
            // The bytes read are those of this version, whatever is written meanwhile.
            ask.version_id = Some(record.version_id.clone());
            return Ok(CopyFrom {
                record,
                versioned,
                at: Some((node, ask)),
            });
        }
        let record = self.source_here(source).await?;
        Ok(CopyFrom {
            record,
            versioned,
            at: None,
        })
    }

    /// The source version of a copy, from this node's metadata.
    pub(super) async fn source_here(&self, source: &CopySource) -> S3Result<VersionRecord> {
        let (bucket, key, version_id) = bucket_source(source)?;
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
        match (record, version_id) {
            (Some(r), Some(_)) if r.is_delete_marker => Err(s3_error!(
                InvalidRequest,
                "The source of a copy request may not specifically refer to a delete marker by version id."
            )),
            (Some(r), None) if r.is_delete_marker => Err(s3_error!(NoSuchKey, "The specified key does not exist.")),
            (Some(r), _) => Ok(r),
            (None, Some(_)) => Err(s3_error!(NoSuchVersion, "The specified version does not exist.")),
            (None, None) => Err(s3_error!(NoSuchKey, "The specified key does not exist.")),
        }
    }

    /// The key that opens an encrypted copy source here (`None` when the source is read by
    /// another node, which opens it itself).
    pub(super) async fn source_key(
        &self,
        from: &CopyFrom,
        customer: &CustomerHeaders<'_>,
    ) -> S3Result<Option<DataKey>> {
        match from.at {
            Some(_) => Ok(None),
            None => {
                self.data_key_of(from.record.encryption.as_ref(), customer)
                    .await
            }
        }
    }

    /// Stores `range` of the copy source (opened with `source_key` when it is encrypted) as
    /// new data for `bucket`/`key`, hashed as any body and sealed with `seal` if given.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn ingest_copy(
        &self,
        from: &CopyFrom,
        range: Range<u64>,
        bucket: &str,
        key: &str,
        checksum: Option<meridian_metadata::ChecksumAlgorithm>,
        source_key: Option<&DataKey>,
        seal: Option<&DataKey>,
    ) -> S3Result<Ingested> {
        let source = &from.record;
        let expected = range.end - range.start;
        let whole = range == (0..source.size);
        let body: SourceBytes = match (&from.at, self.cluster.node()) {
            (Some((node, ask)), Some(cluster)) => Box::pin(
                cluster
                    .read_at(*node, ask, range)
                    .await
                    .map_err(|r| super::delegated::s3_error_of(&r))?
                    .map(|r| r.map_err(BodyError::Incomplete)),
            ),
            _ => Box::pin(
                self.store
                    .read_plain(
                        &source.storage,
                        range,
                        source_key,
                        source.encryption.as_ref().map_or(&[][..], |e| &e.segments),
                    )
                    .s3()?
                    .map(|r| r.map_err(|e| BodyError::Incomplete(e.to_string()))),
            ),
        };
        let ingested = ingest(
            &self.store.disks,
            body,
            IngestOptions {
                identity: shard_identity(bucket, key),
                checksum,
                inline_threshold: self.store.inline_threshold(),
                seal: seal.cloned(),
            },
        )
        .await
        .map_err(|e| match e {
            // The "body" here is our own source object: a failure to read it is ours.
            StoreError::Body(b) => {
                StoreError::Internal(format!("reading the copy source failed: {b}"))
            }
            other => other,
        })
        .s3()?;
        if ingested.size != expected {
            self.store.discard(ingested.data).await;
            return Err(s3_error!(
                InternalError,
                "The copy source changed size while it was read"
            ));
        }
        // Bytes that crossed the network are checked against the source's own checksum or
        // plain MD5 ETag, when it has one of the same kind.
        if from.at.is_some() && whole && !matches_source(source, &ingested) {
            self.store.discard(ingested.data).await;
            return Err(s3_error!(
                InternalError,
                "The copy source's bytes arrived from the node that holds them damaged"
            ));
        }
        Ok(ingested)
    }

    pub(super) async fn copy_object_impl(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let writer = super::principal_key(&req.extensions);
        // s3s 0.14's CopyObjectInput has no fields for the destination's conditions (AWS
        // added them in 2024): they are read from the headers and checked as PutObject's are.
        let dest_if_match = destination_condition(&req.headers, "if-match")?;
        let dest_if_none_match = destination_condition(&req.headers, "if-none-match")?;
        let input = req.input;
        let target_bucket = self.bucket(&input.bucket).await?;
        let acl = self
            .acl_of_write(
                &target_bucket,
                &writer,
                input.acl.as_ref(),
                super::acl::grant_headers!(input, None),
            )
            .await?;
        let sse = self.sse_request(&sse_headers!(input))?;
        let changes_encryption = sse.is_some();
        let from = self
            .copy_source(&input.copy_source, &copy_source_customer_headers!(input))
            .await?;
        let source = &from.record;
        let precondition = check_write_preconditions(
            &self.store,
            &input.bucket,
            &input.key,
            dest_if_match.as_ref(),
            dest_if_none_match.as_ref(),
        )
        .await?;
        let source_key = self
            .source_key(&from, &copy_source_customer_headers!(input))
            .await?;
        ReadConditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
        }
        .evaluate(source, true)?;
        if source.size > MAX_COPY_SIZE {
            return Err(s3_error!(
                InvalidRequest,
                "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120"
            ));
        }

        let replace_metadata = match input
            .metadata_directive
            .as_ref()
            .map(MetadataDirective::as_str)
        {
            None | Some(MetadataDirective::COPY) => false,
            Some(MetadataDirective::REPLACE) => true,
            Some(_) => return Err(s3_error!(InvalidArgument, "Unknown metadata directive.")),
        };
        let replace_tags = match input
            .tagging_directive
            .as_ref()
            .map(TaggingDirective::as_str)
        {
            None | Some(TaggingDirective::COPY) => false,
            Some(TaggingDirective::REPLACE) => true,
            Some(_) => return Err(s3_error!(InvalidArgument, "Unknown tagging directive.")),
        };
        let onto_itself = matches!(&input.copy_source, CopySource::Bucket { bucket, key, .. }
            if **bucket == *input.bucket && **key == *input.key);
        if onto_itself
            && !replace_metadata
            && !replace_tags
            && input.checksum_algorithm.is_none()
            && input.website_redirect_location.is_none()
            && !changes_encryption
        {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }

        // The website redirect is never copied: the copy has the one this request names,
        // whatever the metadata directive (as S3 does).
        let (headers, user_metadata) = if replace_metadata {
            let headers = convert::headers_of!(&input)?;
            let meta = convert::metadata_pairs(input.metadata);
            check_user_metadata(&meta)?;
            (headers, meta)
        } else {
            let mut headers = source.headers.clone();
            headers.website_redirect = convert::headers_from(
                None,
                None,
                None,
                None,
                None,
                None,
                input.website_redirect_location.clone(),
            )?
            .website_redirect;
            (headers, source.user_metadata.clone())
        };
        let tags = match (replace_tags, input.tagging.as_deref()) {
            (true, Some(t)) => convert::parse_tagging_header(t)?,
            (true, None) => Vec::new(),
            (false, _) => source.tags.clone(),
        };
        let algorithm = match &input.checksum_algorithm {
            Some(a) => convert::parse_dto_algorithm(a)?,
            None => source
                .checksum
                .as_ref()
                .map_or(meridian_metadata::ChecksumAlgorithm::Crc64Nvme, |c| {
                    c.algorithm.clone()
                }),
        };

        // The copy's lock is what this request asks for (or the bucket default), never the
        // source's, as on AWS.
        let lock = self
            .lock_of_write(
                &target_bucket,
                false,
                &super::object_lock::lock_headers!(input),
            )
            .await?;
        // The copy is encrypted as this request (or the target bucket's default) says, never
        // as its source was.
        let (data_key, encryption) = self.encryption_of_write(&input.bucket, sse).await?.unzip();
        let ingested = self
            .ingest_copy(
                &from,
                0..source.size,
                &input.bucket,
                &input.key,
                Some(algorithm),
                source_key.as_ref(),
                data_key.as_ref(),
            )
            .await?;

        let mode = encryption.as_ref().and_then(|e| e.mode);
        let new = NewVersion {
            acl,
            size: ingested.size,
            etag: etag_of(mode, data_key.as_ref(), &ingested.md5),
            encryption,
            checksum: stored_checksum(&ingested),
            content_sha256: ingested.content_sha256(),
            headers,
            user_metadata,
            tags,
            lock,
            storage: Store::storage_of(&ingested.data),
            precondition,
            ..NewVersion::default()
        };
        let record = self
            .commit_version(&input.bucket, &input.key, new, ingested, None)
            .await?;
        let output = CopyObjectOutput {
            copy_object_result: Some(convert::with_checksum_fields!(
                CopyObjectResult {
                    e_tag: Some(convert::etag(&record.etag)),
                    last_modified: Some(convert::timestamp(record.mtime)),
                },
                ChecksumFields::of(record.checksum.as_ref())
            )),
            copy_source_version_id: from.versioned.then(|| source.version_id.clone()),
            version_id: convert::reported_version_id(
                &record,
                reports_written_version(&target_bucket),
            ),
            ..Default::default()
        };
        Ok(S3Response::new(with_sse_fields!(
            output,
            SseFields::of(record.encryption.as_ref())
        )))
    }
}

/// A destination condition of CopyObject (`If-Match` / `If-None-Match`), as the header says.
fn destination_condition(headers: &http::HeaderMap, name: &str) -> S3Result<Option<ETagCondition>> {
    headers
        .get(name)
        .map(|v| {
            ETagCondition::parse_http_header(v.as_bytes())
                .map_err(|_| s3_error!(InvalidArgument, "Invalid {name} header"))
        })
        .transpose()
}
