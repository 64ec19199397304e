//! PutObject: validate the request, stream the body through the hashers into storage, verify
//! what the client claimed (Content-MD5, `x-amz-checksum-*` in a header or an aws-chunked
//! trailer), then commit the version in one metadata batch. Nothing is committed, and the
//! shards written are discarded, when any check fails.

use base64::Engine;
use meridian_metadata::{Checksum, ChecksumAlgorithm, ChecksumType, NewVersion, VersionRecord};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::conditions::check_write_preconditions;
use super::convert::{self, ChecksumFields};
use super::encryption::SseFields;
use super::replica::{apply_replica, note_existing};
use super::{reports_written_version, MeridianS3};
use crate::s3::errors::IntoS3;
use meridian_replicator::headers::ReplicaHeaders;
use meridian_store::checksum;
use meridian_store::encryption::{etag_of, DataKey};
use meridian_store::ingest::{ingest, IngestOptions, Ingested};
use meridian_store::Store;

use crate::cluster::stage::Tee;

/// S3's limit on the total size of user metadata (`x-amz-meta-*` names and values).
const MAX_USER_METADATA: usize = 2 * 1024;

/// What the client said about the body's flexible checksum.
pub(super) struct ChecksumClaim {
    pub algorithm: ChecksumAlgorithm,
    /// The value from a header; `None` when it comes in a trailer, or not at all.
    pub header_value: Option<Vec<u8>>,
    /// The trailer that will carry the value (`x-amz-checksum-crc32`, ...).
    pub trailer: Option<String>,
}

macro_rules! checksum_headers {
    ($input:expr) => {
        [
            (ChecksumAlgorithm::Crc32, $input.checksum_crc32.as_deref()),
            (ChecksumAlgorithm::Crc32c, $input.checksum_crc32c.as_deref()),
            (
                ChecksumAlgorithm::Crc64Nvme,
                $input.checksum_crc64nvme.as_deref(),
            ),
            (ChecksumAlgorithm::Sha1, $input.checksum_sha1.as_deref()),
            (ChecksumAlgorithm::Sha256, $input.checksum_sha256.as_deref()),
        ]
    };
}
pub(super) use checksum_headers;

impl ChecksumClaim {
    /// From the `x-amz-checksum-*` values, `x-amz-trailer` and `x-amz-sdk-checksum-algorithm`.
    pub fn from_request(
        values: [(ChecksumAlgorithm, Option<&str>); 5],
        declared: Option<&s3s::dto::ChecksumAlgorithm>,
        headers: &http::HeaderMap,
    ) -> S3Result<Option<ChecksumClaim>> {
        let given: Vec<_> = values
            .into_iter()
            .filter_map(|(a, v)| v.map(|v| (a, v)))
            .collect();
        if given.len() > 1 {
            return Err(s3_error!(
                InvalidRequest,
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
            ));
        }
        let trailer = headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty());
        let declared = declared.map(convert::parse_dto_algorithm).transpose()?;

        if let Some((algorithm, value)) = given.into_iter().next() {
            // A base64 value of the wrong length cannot match what the body gives: that is a
            // mismatch (BadDigest, from `verify`), as S3 answers; only non-base64 is invalid.
            let raw = checksum::decode_base64(value).ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "Value for x-amz-checksum-{} header is invalid.",
                    checksum::header_name(&algorithm)
                )
            })?;
            if declared.as_ref().is_some_and(|d| d != &algorithm) {
                return Err(s3_error!(
                    InvalidRequest,
                    "Value for x-amz-sdk-checksum-algorithm header is invalid."
                ));
            }
            return Ok(Some(ChecksumClaim {
                algorithm,
                header_value: Some(raw),
                trailer: None,
            }));
        }
        if let Some(trailer) = trailer {
            let algorithm = trailer
                .strip_prefix("x-amz-checksum-")
                .and_then(checksum::parse_algorithm)
                .ok_or_else(|| {
                    s3_error!(
                        InvalidRequest,
                        "The value specified in the x-amz-trailer header is not supported"
                    )
                })?;
            return Ok(Some(ChecksumClaim {
                algorithm,
                header_value: None,
                trailer: Some(trailer),
            }));
        }
        Ok(declared.map(|algorithm| ChecksumClaim {
            algorithm,
            header_value: None,
            trailer: None,
        }))
    }

    /// Checks the computed digest against the header or trailer value.
    pub fn verify(&self, computed: &[u8], trailers: Option<&s3s::TrailingHeaders>) -> S3Result<()> {
        let claimed = match (&self.header_value, &self.trailer) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(name)) => {
                let value = trailers
                    .and_then(|t| {
                        t.read(|h| {
                            h.get(name.as_str())
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        })
                    })
                    .flatten()
                    .ok_or_else(|| {
                        s3_error!(
                            InvalidRequest,
                            "The x-amz-trailer checksum was declared but not sent"
                        )
                    })?;
                Some(
                    checksum::from_base64(&self.algorithm, &value).ok_or_else(|| {
                        s3_error!(
                            InvalidRequest,
                            "Value for {name} trailing header is invalid."
                        )
                    })?,
                )
            }
            (None, None) => None,
        };
        match claimed {
            Some(c) if c != computed => Err(s3_error!(
                BadDigest,
                "The {} you specified did not match the calculated checksum.",
                checksum::header_name(&self.algorithm).to_ascii_uppercase()
            )),
            _ => Ok(()),
        }
    }
}

pub(super) fn parse_content_md5(value: Option<&str>) -> S3Result<Option<[u8; 16]>> {
    let Some(v) = value else { return Ok(None) };
    base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .ok()
        .and_then(|raw| <[u8; 16]>::try_from(raw).ok())
        .map(Some)
        .ok_or_else(|| s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid."))
}

pub(super) fn verify_content_md5(expected: Option<[u8; 16]>, computed: &[u8; 16]) -> S3Result<()> {
    match expected {
        Some(e) if &e != computed => Err(s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        )),
        _ => Ok(()),
    }
}

pub(super) fn check_user_metadata(meta: &[(String, String)]) -> S3Result<()> {
    let size: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_USER_METADATA {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size."
        ));
    }
    Ok(())
}

/// The identity blob stored in every shard header, so a disk alone tells what it holds.
pub(super) fn shard_identity(bucket: &str, key: &str) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({ "bucket": bucket, "key": key, "written": convert::now_nanos() }),
    )
    .expect("JSON of strings")
}

/// The checksum stored with a single-part object: the client's algorithm, or CRC64NVME
/// computed by default as S3 does for uploads that send none.
pub(super) fn stored_checksum(ingested: &Ingested) -> Option<Checksum> {
    ingested.checksum.as_ref().map(|(algorithm, raw)| Checksum {
        algorithm: algorithm.clone(),
        value: checksum::to_base64(raw),
        kind: ChecksumType::FullObject,
    })
}

/// Where a write's body goes, for [`MeridianS3::write_body`].
pub(super) struct WriteTo<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    /// The write is a copy from another node of this region (it may name a staged body).
    pub copy: bool,
    /// The body may be teed to the followers (not a sealed replica from a peer region, which
    /// travels on sealed).
    pub teed: bool,
    /// The body's length, when the request declares it.
    pub length: Option<u64>,
}

/// What a client claims about the body it sends, checked once the body is stored.
pub(super) struct BodyClaims {
    pub content_md5: Option<[u8; 16]>,
    pub checksum: Option<ChecksumClaim>,
    pub trailers: Option<s3s::TrailingHeaders>,
    /// A limit S3 enforces on the size (5 GiB for a part).
    pub max_size: Option<u64>,
    /// The body is zstd-compressed on the wire (replicas from a peer with compression on);
    /// every other claim is about the decompressed bytes.
    pub zstd: bool,
    /// `x-amz-decoded-content-length` of an aws-chunked body: s3s's decoder ends a body
    /// that stops before a complete chunk header as if it were complete (found by the
    /// `aws_chunked` fuzz target), so the length is checked here.
    pub decoded_length: Option<u64>,
}

impl BodyClaims {
    /// What a request's headers say about the body's encoding (replica headers only).
    pub fn zstd_of(headers: &http::HeaderMap) -> S3Result<bool> {
        meridian_replicator::headers::body_is_zstd(headers)
            .map_err(|reason| s3s::s3_error!(InvalidArgument, "{reason}"))
    }

    /// `x-amz-decoded-content-length`, when the body is aws-chunked.
    pub fn decoded_length_of(headers: &http::HeaderMap) -> S3Result<Option<u64>> {
        headers
            .get("x-amz-decoded-content-length")
            .map(|v| {
                v.to_str().ok().and_then(|v| v.parse().ok()).ok_or_else(|| {
                    s3_error!(
                        InvalidArgument,
                        "x-amz-decoded-content-length is not a length"
                    )
                })
            })
            .transpose()
    }
}

impl BodyClaims {
    pub(super) fn check(&self, ingested: &Ingested) -> S3Result<()> {
        verify_content_md5(self.content_md5, &ingested.md5)?;
        if let (Some(claim), Some((_, computed))) = (&self.checksum, &ingested.checksum) {
            claim.verify(computed, self.trailers.as_ref())?;
        }
        // A zstd body's declared length is of the compressed bytes (which the decoder checks).
        if !self.zstd
            && self
                .decoded_length
                .is_some_and(|declared| declared != ingested.size)
        {
            return Err(s3_error!(
                IncompleteBody,
                "You did not provide the number of bytes specified by the x-amz-decoded-content-length header"
            ));
        }
        if self.max_size.is_some_and(|max| ingested.size > max) {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed object size."
            ));
        }
        Ok(())
    }
}

impl MeridianS3 {
    /// Streams a client's body into storage (hashed with MD5 and `algorithm`, as the store
    /// does), through `tee` to the followers when there is one, and checks it against what
    /// the client claimed; on any mismatch the data is discarded and the S3 error returned,
    /// so nothing is stored.
    async fn ingest_verified(
        &self,
        body: Option<StreamingBlob>,
        to: &WriteTo<'_>,
        algorithm: Option<ChecksumAlgorithm>,
        claims: BodyClaims,
        seal: Option<&DataKey>,
        tee: Option<&mut Tee>,
    ) -> S3Result<Ingested> {
        let body = super::body::client_body(body);
        let body = if claims.zstd {
            super::body::zstd_decoded(body).await.s3()?
        } else {
            body
        };
        let body = match tee {
            Some(tee) => tee.body(body),
            None => body,
        };
        let opts = IngestOptions {
            identity: shard_identity(to.bucket, to.key),
            checksum: algorithm,
            inline_threshold: self.store.inline_threshold(),
            seal: seal.cloned(),
        };
        let ingested = ingest(&self.store.disks, body, opts).await.s3()?;
        if let Err(e) = claims.check(&ingested) {
            self.store.discard(ingested.data).await;
            return Err(e);
        }
        Ok(ingested)
    }

    pub(super) async fn put_object_impl(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let trailers = req.trailing_headers.clone();
        let headers = req.headers;
        let writer = super::principal_key(&req.extensions);
        let mut input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let acl = self
            .acl_of_write(
                &bucket,
                &writer,
                input.acl.as_ref(),
                super::acl::grant_headers!(input, None),
            )
            .await?;
        let replica = self.replica_of(&headers, &bucket)?;

        if input.write_offset_bytes.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "Appending to objects is not supported"
            ));
        }
        let content_md5 = parse_content_md5(input.content_md5.as_deref())?;
        let claim = ChecksumClaim::from_request(
            checksum_headers!(input),
            input.checksum_algorithm.as_ref(),
            &headers,
        )?;
        let lock_headers = super::object_lock::lock_headers!(input);
        let lock = self
            .lock_of_write(&bucket, replica.is_some(), &lock_headers)
            .await?;
        if replica.is_none() && !lock_headers.is_empty() && content_md5.is_none() && claim.is_none()
        {
            return Err(s3_error!(
                InvalidRequest,
                "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters"
            ));
        }
        let tags = match input.tagging.as_deref() {
            Some(t) => convert::parse_tagging_header(t)?,
            None => Vec::new(),
        };
        let user_metadata = convert::metadata_pairs(input.metadata.take());
        check_user_metadata(&user_metadata)?;
        let object_headers = convert::headers_of!(&input)?;
        let precondition = check_write_preconditions(
            &self.store,
            &input.bucket,
            &input.key,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
        )
        .await?;

        // A version that travels sealed (SSE-C from a peer) is stored as it comes; its
        // encryption record comes with it (`apply_replica`).
        let (data_key, encryption) = match replica.as_ref().is_some_and(|r| r.sealed.is_some()) {
            true => (None, None),
            false => self
                .encryption_of_write(
                    &input.bucket,
                    self.sse_request(&super::encryption::sse_headers!(input))?,
                )
                .await?
                .unzip(),
        };
        let algorithm = claim
            .as_ref()
            .map_or(ChecksumAlgorithm::Crc64Nvme, |c| c.algorithm.clone());
        let claims = BodyClaims {
            content_md5,
            checksum: claim,
            trailers,
            max_size: None,
            zstd: BodyClaims::zstd_of(&headers)?,
            decoded_length: BodyClaims::decoded_length_of(&headers)?,
        };
        let length = input.content_length.and_then(|l| u64::try_from(l).ok());
        let ingested = self
            .write_body(
                input.body.take(),
                &headers,
                WriteTo {
                    bucket: &input.bucket,
                    key: &input.key,
                    copy: replica.as_ref().is_some_and(|r| r.copy),
                    teed: replica.as_ref().is_none_or(|r| r.sealed.is_none()),
                    length,
                },
                Some(algorithm),
                claims,
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
            headers: object_headers,
            user_metadata,
            tags,
            storage: Store::storage_of(&ingested.data),
            precondition,
            lock,
            ..NewVersion::default()
        };
        let record = self
            .commit_version(&input.bucket, &input.key, new, ingested, replica.as_ref())
            .await?;

        let expiration = self.expiration_of(&record).await?;
        let output = convert::with_checksum_fields!(
            PutObjectOutput {
                e_tag: Some(convert::etag(&record.etag)),
                version_id: convert::reported_version_id(&record, reports_written_version(&bucket)),
                expiration: expiration,
            },
            ChecksumFields::of(record.checksum.as_ref())
        );
        Ok(S3Response::new(super::encryption::with_sse_fields!(
            output,
            SseFields::of(record.encryption.as_ref())
        )))
    }

    /// The body of a write, checked against the client's claims: streamed from the client
    /// (and teed to the followers of its key when this node leads it, the body is plain and
    /// `to.teed` allows it), or, for a copy from the partition's primary that names a staged
    /// body instead of carrying one, that body.
    pub(super) async fn write_body(
        &self,
        body: Option<StreamingBlob>,
        headers: &http::HeaderMap,
        to: WriteTo<'_>,
        algorithm: Option<ChecksumAlgorithm>,
        claims: BodyClaims,
        data_key: Option<&DataKey>,
    ) -> S3Result<Ingested> {
        let staged = self.staged_body(
            headers,
            to.copy,
            to.bucket,
            to.key,
            algorithm.as_ref(),
            data_key.is_some(),
        )?;
        if let Some(ingested) = staged {
            if let Err(e) = claims.check(&ingested) {
                self.store.discard(ingested.data).await;
                return Err(e);
            }
            crate::metrics::global()
                .staged_bodies
                .with_label_values(&["taken"])
                .inc();
            return Ok(ingested);
        }
        let length = claims.decoded_length.or(to.length);
        let mut tee = match (self.cluster.node(), data_key) {
            (Some(node), None) if to.teed && !to.copy && !claims.zstd => node.tee(
                to.bucket,
                to.key,
                algorithm.clone(),
                length,
                self.store.inline_threshold(),
            ),
            _ => None,
        };
        let ingested = self
            .ingest_verified(body, &to, algorithm, claims, data_key, tee.as_mut())
            .await;
        if let (Some(tee), Some(node)) = (tee, self.cluster.node()) {
            let storage = ingested.as_ref().ok().map(|i| Store::storage_of(&i.data));
            tee.finish(node, ingested.as_ref().ok().zip(storage.as_ref()))
                .await;
        }
        ingested
    }

    /// The body a copy from the partition's primary names instead of carrying it (streamed
    /// here while it arrived there: [`crate::cluster::stage`]), taken from those held. A
    /// copy naming one that is not held, or not one this write can use as it is (hashed with
    /// another algorithm, or the bucket would seal it here), is answered `NoSuchStagedBody`:
    /// its sender then sends the body.
    fn staged_body(
        &self,
        headers: &http::HeaderMap,
        copy: bool,
        bucket: &str,
        key: &str,
        algorithm: Option<&ChecksumAlgorithm>,
        sealed_here: bool,
    ) -> S3Result<Option<Ingested>> {
        let Some(name) = staged_name(headers) else {
            return Ok(None);
        };
        if !copy {
            return Err(s3_error!(
                InvalidArgument,
                "A staged body is named only by a copy between the nodes of a region"
            ));
        }
        let (found, mut gone) = self.staged.take(name, bucket, key);
        let usable = match found {
            Some(i) if !sealed_here && i.checksum.as_ref().map(|(a, _)| a) == algorithm => Some(i),
            Some(i) => {
                gone.push(i);
                None
            }
            None => None,
        };
        self.discard_staged(gone);
        match usable {
            Some(ingested) => Ok(Some(ingested)),
            None => {
                let mut e = s3s::S3Error::with_message(
                    s3s::S3ErrorCode::Custom(
                        meridian_replicator::headers::NO_SUCH_STAGED_BODY.into(),
                    ),
                    "The staged body this copy names is not held here; send the body",
                );
                e.set_status_code(http::StatusCode::NOT_FOUND);
                Err(e)
            }
        }
    }

    /// Commits a version whose data is already durable: a local one with PENDING for the
    /// peers its bucket's rules send it to, or a replica with the identity its headers carry.
    /// On failure the data is discarded.
    pub(super) async fn commit_version(
        &self,
        bucket: &str,
        key: &str,
        mut new: NewVersion,
        ingested: Ingested,
        replica: Option<&ReplicaHeaders>,
    ) -> S3Result<VersionRecord> {
        // An SSE-KMS or SSE-C ETag is not the body's MD5 (nor is it when the body is a
        // sealed version's ciphertext): the checksum vouches for the body.
        let etag_is_md5 =
            !super::encryption::keyed_etag(&new) && replica.is_none_or(|r| r.sealed.is_none());
        let prepared = match replica {
            Some(r) => apply_replica(&mut new, r, etag_is_md5)
                .map(|()| new.replication = self.replica_state(r, bucket, key)),
            None => self
                .local_replication(
                    bucket,
                    key,
                    &new.tags,
                    meridian_replicator::version_change(new.encryption.as_ref()),
                )
                .await
                .map(|state| new.replication = state),
        };
        if let Err(e) = prepared {
            self.store.discard(ingested.data).await;
            return Err(e);
        }
        let (replication, etag) = (new.replication.clone(), new.etag.clone());
        let (b, k) = (bucket.to_owned(), key.to_owned());
        match self.store.meta(move |m| m.put_version(&b, &k, new)).await {
            Ok(outcome) => {
                self.store.wake_reclaimer();
                self.store.heal_if_degraded(&ingested.data);
                if let Some(r) = replica {
                    note_existing(&outcome.version, r, &etag);
                }
                let v = &outcome.version;
                self.replication_queued(&v.bucket, &v.key, &v.version_id, v.size, &replication)
                    .await?;
                Ok(outcome.version)
            }
            Err(e) => {
                self.store.discard(ingested.data).await;
                Err(crate::s3::errors::s3_error_of(e))
            }
        }
    }
}

/// The name of the staged body a copy names instead of carrying one.
fn staged_name(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(meridian_replicator::headers::STAGED)
        .and_then(|v| v.to_str().ok())
}

/// A POST Object's PutObject with the form's `acl` and `tagging` (a `<Tagging>` document),
/// which s3s does not read itself, as [`crate::post_form`] passed them on. Other requests
/// never carry those headers.
pub(super) fn with_form_fields(
    mut req: S3Request<PutObjectInput>,
) -> S3Result<S3Request<PutObjectInput>> {
    let field = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (acl, tagging) = (
        field(crate::post_form::ACL_HEADER),
        field(crate::post_form::TAGGING_HEADER),
    );
    if let (None, Some(acl)) = (&req.input.acl, acl) {
        req.input.acl = Some(ObjectCannedACL::from(acl));
    }
    if let (None, Some(xml)) = (&req.input.tagging, tagging) {
        req.input.tagging = Some(tagging_of_form(&xml)?);
    }
    Ok(req)
}

/// The `x-amz-tagging` form (`k=v&...`) of a POST form's `<Tagging>` document.
fn tagging_of_form(xml: &str) -> S3Result<String> {
    use s3s::xml::Deserialize as _;
    let mut d = s3s::xml::Deserializer::new(xml.as_bytes());
    let tagging = Tagging::deserialize(&mut d).map_err(|_| {
        s3_error!(
            MalformedXML,
            "The form's tagging field is not a Tagging document"
        )
    })?;
    let mut out = form_urlencoded::Serializer::new(String::new());
    for tag in &tagging.tag_set {
        out.append_pair(
            tag.key.as_deref().unwrap_or_default(),
            tag.value.as_deref().unwrap_or_default(),
        );
    }
    Ok(out.finish())
}
