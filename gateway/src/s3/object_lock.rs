//! Object Lock's S3 API: the bucket's configuration (PutObjectLockConfiguration,
//! GetObjectLockConfiguration), a version's retention and legal hold (Put/GetObjectRetention,
//! Put/GetObjectLegalHold), the `x-amz-object-lock-*` headers of writes and reads, and who
//! may bypass GOVERNANCE retention. The guarantee itself lives below: the metadata store
//! refuses, under the key lock, every removal and retention change the rules forbid
//! (`meridian_metadata::object_lock`), whoever asks.
//!
//! Lock changes are recorded with an outbox entry naming the peers the version replicates
//! to, so a retention extended or a legal hold cleared here is applied to the replicas too.

use meridian_documents::object_lock::{self as doc, LockConfig, RequestedLock, CONFIG_DOCUMENT};
use meridian_metadata::{
    BucketRecord, LockChange, ObjectLock, Retention, RetentionMode, VersionRecord,
};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result};

use super::convert;
use super::MeridianS3;
use crate::auth::BypassGovernance;
use crate::s3::errors::{document_error, IntoS3};

/// What AWS answers for lock headers or lock requests on a bucket without Object Lock; to a
/// peer replicating a locked version, also the reason its replication FAILED.
fn missing_configuration(replica: bool) -> S3Error {
    if replica {
        s3_error!(
            InvalidRequest,
            "Bucket is missing Object Lock Configuration (DstBucketObjectLockConfigMissing: a locked version replicates only to a bucket with Object Lock enabled)"
        )
    } else {
        s3_error!(
            InvalidRequest,
            "Bucket is missing Object Lock Configuration"
        )
    }
}

fn mode_of(m: doc::Mode) -> RetentionMode {
    match m {
        doc::Mode::Governance => RetentionMode::Governance,
        doc::Mode::Compliance => RetentionMode::Compliance,
    }
}

fn doc_mode(m: RetentionMode) -> doc::Mode {
    match m {
        RetentionMode::Governance => doc::Mode::Governance,
        RetentionMode::Compliance => doc::Mode::Compliance,
    }
}

fn retention_of(r: doc::Retention) -> Retention {
    Retention {
        mode: mode_of(r.mode),
        until: r.until,
    }
}

fn doc_retention(r: Retention) -> doc::Retention {
    doc::Retention {
        mode: doc_mode(r.mode),
        until: r.until,
    }
}

/// Whether the access hook found that this request may bypass GOVERNANCE retention (it asked
/// to, and its principal may).
pub(super) fn bypass_of(extensions: &http::Extensions) -> bool {
    extensions.get::<BypassGovernance>().is_some()
}

/// The `x-amz-object-lock-*` response headers of GET and HEAD.
#[derive(Default)]
pub(super) struct LockFields {
    pub mode: Option<ObjectLockMode>,
    pub retain_until_date: Option<Timestamp>,
    pub legal_hold_status: Option<ObjectLockLegalHoldStatus>,
}

impl LockFields {
    pub fn of(record: &VersionRecord) -> LockFields {
        let retention = record.lock.retention;
        LockFields {
            mode: retention.map(|r| ObjectLockMode::from_static(doc_mode(r.mode).as_str())),
            retain_until_date: retention.map(|r| doc::timestamp_of(r.until)),
            legal_hold_status: record
                .lock
                .legal_hold
                .then(|| ObjectLockLegalHoldStatus::from_static(ObjectLockLegalHoldStatus::ON)),
        }
    }
}

/// The `x-amz-object-lock-*` headers of a write (PutObject, CopyObject and
/// CreateMultipartUpload name them alike: see [`lock_headers!`]).
pub(super) struct LockHeaders<'a> {
    pub mode: Option<&'a ObjectLockMode>,
    pub until: Option<&'a Timestamp>,
    pub legal_hold: Option<&'a ObjectLockLegalHoldStatus>,
}

impl LockHeaders<'_> {
    pub fn is_empty(&self) -> bool {
        self.mode.is_none() && self.until.is_none() && self.legal_hold.is_none()
    }

    /// Read as AWS reads them; a replica's are the source's, verbatim (its date may have
    /// passed on the way), so `now` is not checked then.
    fn read(&self, replica: bool) -> S3Result<RequestedLock> {
        let now = if replica {
            i64::MIN
        } else {
            convert::now_nanos()
        };
        doc::requested_lock(
            self.mode.map(ObjectLockMode::as_str),
            self.until,
            self.legal_hold.map(ObjectLockLegalHoldStatus::as_str),
            now,
        )
        .map_err(document_error)
    }
}

/// The [`LockHeaders`] of a write's input.
macro_rules! lock_headers {
    ($input:expr) => {
        $crate::s3::object_lock::LockHeaders {
            mode: $input.object_lock_mode.as_ref(),
            until: $input.object_lock_retain_until_date.as_ref(),
            legal_hold: $input.object_lock_legal_hold_status.as_ref(),
        }
    };
}
pub(super) use lock_headers;

impl MeridianS3 {
    /// The bucket's Object Lock configuration; `None` when Object Lock is not enabled.
    async fn lock_config(&self, bucket: &BucketRecord) -> S3Result<Option<LockConfig>> {
        if !bucket.object_lock {
            return Ok(None);
        }
        let config = self
            .optional_document(&bucket.name, CONFIG_DOCUMENT, LockConfig::from_json)
            .await?;
        Ok(Some(config.unwrap_or_default()))
    }

    /// The lock a new version gets. A local one: what its write asked for, and the bucket's
    /// default retention when it asked for no retention (a legal hold alone does not
    /// suppress it). A replica: the source's. Lock headers on a bucket without Object Lock
    /// are refused, as on AWS.
    pub(super) async fn lock_of_write(
        &self,
        bucket: &BucketRecord,
        replica: bool,
        headers: &LockHeaders<'_>,
    ) -> S3Result<ObjectLock> {
        let requested = headers.read(replica)?;
        let Some(config) = self.lock_config(bucket).await? else {
            if !requested.is_empty() {
                return Err(missing_configuration(replica));
            }
            return Ok(ObjectLock::default());
        };
        let retention = match (requested.retention, config.default_retention, replica) {
            (Some(r), _, _) => Some(retention_of(r)),
            (None, Some(d), false) => Some(Retention {
                mode: mode_of(d.mode),
                until: d.until(convert::now_nanos()),
            }),
            (None, _, _) => None,
        };
        Ok(ObjectLock {
            retention,
            legal_hold: requested.legal_hold == Some(true),
        })
    }

    /// A bucket that has Object Lock enabled, or InvalidRequest as AWS answers.
    async fn lock_enabled_bucket(&self, name: &str, replica: bool) -> S3Result<BucketRecord> {
        let bucket = self.bucket(name).await?;
        if !bucket.object_lock {
            return Err(missing_configuration(replica));
        }
        Ok(bucket)
    }

    /// Changes one version's retention or legal hold. A local change goes to the peers the
    /// version's rules send it to; a change from a peer region (replica headers) is applied
    /// as the source decided (with the bypass: COMPLIANCE still only grows) and goes nowhere.
    async fn change_lock(
        &self,
        headers: &http::HeaderMap,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        change: LockChange,
        bypass: bool,
    ) -> S3Result<()> {
        let is_replica = meridian_replicator::headers::is_replica_request(headers);
        let bucket_record = self.lock_enabled_bucket(bucket, is_replica).await?;
        let replica = self.replica_of(headers, &bucket_record)?;
        let resolved = self.resolve(bucket, key, version_id).await?;
        // A peer's change is applied as its source decided (COMPLIANCE still only grows).
        let bypass = bypass || replica.is_some();
        let source = self
            .change_source(replica, &resolved.record, &resolved.record.tags)
            .await?;
        let queued = !source.peers.is_empty();
        let (b, k, v) = (
            bucket.to_owned(),
            key.to_owned(),
            resolved.record.version_id.clone(),
        );
        self.store
            .meta(move |m| m.set_object_lock(&b, &k, Some(&v), change, bypass, source))
            .await
            .s3()?;
        if queued {
            self.replicator.changed();
        }
        Ok(())
    }

    pub(super) async fn put_object_lock_configuration_impl(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        let input = req.input;
        self.bucket(&input.bucket).await?;
        let dto = input.object_lock_configuration.ok_or_else(|| {
            s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            )
        })?;
        let config = doc::config_of(&dto).map_err(document_error)?;
        let (name, json) = (input.bucket.clone(), config.to_json());
        self.store
            .meta(move |m| {
                m.enable_object_lock(&name)?;
                m.put_bucket_config(&name, CONFIG_DOCUMENT, json)
            })
            .await
            .s3()?;
        tracing::info!(bucket = %input.bucket, default = ?config.default_retention, "Object Lock configuration stored");
        Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
    }

    pub(super) async fn get_object_lock_configuration_impl(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        let config = self.lock_config(&bucket).await?.ok_or_else(|| {
            s3_error!(
                ObjectLockConfigurationNotFoundError,
                "Object Lock configuration does not exist for this bucket"
            )
        })?;
        Ok(S3Response::new(GetObjectLockConfigurationOutput {
            object_lock_configuration: Some(doc::config_dto(&config)),
        }))
    }

    pub(super) async fn put_object_retention_impl(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        let bypass = bypass_of(&req.extensions);
        let (headers, input) = (req.headers, req.input);
        // A replica's date may have passed on the way.
        let now = match meridian_replicator::headers::is_replica_request(&headers) {
            true => i64::MIN,
            false => convert::now_nanos(),
        };
        let retention = doc::retention_of(input.retention.as_ref(), now)
            .map_err(document_error)?
            .map(retention_of);
        self.change_lock(
            &headers,
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            LockChange::Retention(retention),
            bypass,
        )
        .await?;
        Ok(S3Response::new(PutObjectRetentionOutput::default()))
    }

    pub(super) async fn get_object_retention_impl(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        let input = req.input;
        self.lock_enabled_bucket(&input.bucket, false).await?;
        let resolved = self
            .resolve(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        let retention = resolved.record.lock.retention.ok_or_else(|| {
            s3_error!(
                NoSuchObjectLockConfiguration,
                "The specified object does not have a ObjectLock configuration"
            )
        })?;
        Ok(S3Response::new(GetObjectRetentionOutput {
            retention: Some(doc::retention_dto(Some(doc_retention(retention)))),
        }))
    }

    pub(super) async fn put_object_legal_hold_impl(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        let (headers, input) = (req.headers, req.input);
        let on = doc::legal_hold_of(input.legal_hold.as_ref()).map_err(document_error)?;
        self.change_lock(
            &headers,
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            LockChange::LegalHold(on),
            false,
        )
        .await?;
        Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
    }

    pub(super) async fn get_object_legal_hold_impl(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        let input = req.input;
        self.lock_enabled_bucket(&input.bucket, false).await?;
        let resolved = self
            .resolve(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        Ok(S3Response::new(GetObjectLegalHoldOutput {
            legal_hold: Some(doc::legal_hold_dto(resolved.record.lock.legal_hold)),
        }))
    }
}
