//! Bucket operations: list, create, head, delete, location and versioning state.

use meridian_metadata::{BucketRecord, MetaError, VersioningState};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::convert::{now_nanos, timestamp};
use super::{principal, MeridianS3};
use crate::s3::errors::IntoS3;

impl MeridianS3 {
    pub(super) async fn list_buckets_impl(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let who = principal(&req)?.clone();
        let prefix = req.input.prefix.clone().unwrap_or_default();
        let all = self.store.meta(|m| m.list_buckets()).await.s3()?;
        let buckets = all
            .into_iter()
            .filter(|b| {
                (who.sees(&b.name) || b.owner == who.access_key) && b.name.starts_with(&prefix)
            })
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created)),
                bucket_region: Some(b.region),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some({
                let (id, display) = self.users.canonical(&who.access_key);
                Owner {
                    id: Some(id),
                    display_name: Some(display),
                }
            }),
            prefix: req.input.prefix,
            continuation_token: None,
        }))
    }

    pub(super) async fn create_bucket_impl(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let who = principal(&req)?.clone();
        let input = req.input;
        let (ownership, acl) = super::acl::new_bucket_acl(
            &input,
            &who.access_key,
            self.default_ownership,
            &self.users,
        )?;
        // Object Lock comes with versioning, for ever.
        let object_lock = input.object_lock_enabled_for_bucket == Some(true);
        let constraint = input
            .create_bucket_configuration
            .and_then(|c| c.location_constraint)
            .map(|c| c.as_str().to_owned())
            .filter(|c| !c.is_empty());
        if let Some(c) = &constraint {
            if c != &self.region {
                return Err(s3_error!(
                    IllegalLocationConstraintException,
                    "The {c} location constraint is incompatible for the region specific endpoint this request was sent to."
                ));
            }
        }
        let record = BucketRecord {
            name: input.bucket.clone(),
            created: now_nanos(),
            owner: who.access_key.clone(),
            region: self.region.clone(),
            versioning: if object_lock {
                VersioningState::Enabled
            } else {
                VersioningState::Unversioned
            },
            object_lock,
        };
        let created = self.store.meta(move |m| m.create_bucket(record)).await;
        self.policies.forget(&input.bucket);
        match created {
            Ok(()) => {
                let ownership_doc = ownership.as_str().as_bytes().to_vec();
                self.put_document(&input.bucket, super::acl::OWNERSHIP_DOCUMENT, ownership_doc)
                    .await?;
                if let Some(acl) = acl {
                    self.put_document(&input.bucket, super::acl::ACL_DOCUMENT, acl.to_json())
                        .await?;
                }
                self.acls.invalidate(&input.bucket);
                if let Some(algorithm) = &self.sse.bucket_default {
                    let default = super::encryption::BucketDefault {
                        algorithm: algorithm.clone(),
                        kms_key_id: None,
                        bucket_key_enabled: false,
                    };
                    self.store_bucket_encryption(&input.bucket, &default).await?;
                }
                Ok(S3Response::new(CreateBucketOutput {
                    location: Some(format!("/{}", input.bucket)),
                }))
            }
            Err(meridian_store::StoreError::Meta(MetaError::BucketExists { owner, .. })) if owner == who.access_key => {
                Err(s3_error!(
                    BucketAlreadyOwnedByYou,
                    "Your previous request to create the named bucket succeeded and you already own it."
                ))
            }
            Err(e) => Err(crate::s3::errors::s3_error_of(e)),
        }
    }

    pub(super) async fn head_bucket_impl(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(bucket.region),
            ..Default::default()
        }))
    }

    pub(super) async fn delete_bucket_impl(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let name = req.input.bucket;
        // In a region of several nodes the bucket must be empty on every node, not only here
        // (the node the client reached asks; the other nodes then delete it as told).
        if let Some(c) = self.cluster.node() {
            if !c.is_hop(&req.headers) {
                match c.holds_versions(&name).await {
                    Ok(false) => {}
                    Ok(true) => {
                        return Err(s3_error!(
                            BucketNotEmpty,
                            "The bucket you tried to delete is not empty"
                        ))
                    }
                    Err(e) => {
                        tracing::warn!(bucket = %name, error = %e, "could not check that a bucket is empty on every node");
                        return Err(s3_error!(
                            ServiceUnavailable,
                            "Not every node of the region answered; try again"
                        ));
                    }
                }
            }
        }
        // A node's copies of versions removed a moment ago may still wait for the removal to
        // arrive from their primary (removals are copied after the answer): a region gives
        // them a few seconds.
        let patience = match self.cluster.node() {
            Some(_) => std::time::Duration::from_secs(5),
            None => std::time::Duration::ZERO,
        };
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let n = name.clone();
            match self.store.meta(move |m| m.delete_bucket(&n)).await {
                Err(meridian_store::StoreError::Meta(
                    meridian_metadata::MetaError::BucketNotEmpty { .. },
                )) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                done => {
                    done.s3()?;
                    break;
                }
            }
        }
        self.bucket_gone(&name);
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    /// What is cached of a bucket read again from the store at next use.
    pub(super) fn forget_bucket(&self, name: &str) {
        self.replicator.rules().invalidate(name);
        self.store.lifecycle.invalidate(name);
        self.encryption_defaults.invalidate(name);
        self.cors.invalidate(name);
        self.acls.invalidate(name);
        self.policies.forget(name);
    }

    /// A bucket was deleted from the store.
    pub(super) fn bucket_gone(&self, name: &str) {
        // Parts of the uploads it aborted were queued for reclaim: delete them now, not at
        // the reclaimer's next idle poll (30 s).
        self.store.wake_reclaimer();
        // Its configuration documents went with it.
        self.forget_bucket(name);
    }

    pub(super) async fn get_bucket_location_impl(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        // S3 reports us-east-1 as an empty constraint.
        let location_constraint = (bucket.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(bucket.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint,
        }))
    }

    pub(super) async fn put_bucket_versioning_impl(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let config = req.input.versioning_configuration;
        if config
            .mfa_delete
            .as_ref()
            .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
        {
            return Err(s3_error!(NotImplemented, "MFA Delete is not supported"));
        }
        let state = match config.status.as_ref().map(BucketVersioningStatus::as_str) {
            Some(BucketVersioningStatus::ENABLED) => VersioningState::Enabled,
            Some(BucketVersioningStatus::SUSPENDED) => VersioningState::Suspended,
            _ => {
                return Err(s3_error!(
                    MalformedXML,
                    "The XML you provided was not well-formed or did not validate against our published schema"
                ))
            }
        };
        let name = req.input.bucket;
        if state == VersioningState::Suspended && self.has_replication(&name).await? {
            return Err(s3_error!(
                InvalidBucketState,
                "A replication configuration is present on this bucket, so the versioning state cannot be changed."
            ));
        }
        self.store
            .meta(move |m| m.set_versioning(&name, state))
            .await
            .s3()?;
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }

    pub(super) async fn get_bucket_versioning_impl(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        let status = match bucket.versioning {
            VersioningState::Unversioned => None,
            VersioningState::Enabled => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::ENABLED,
            )),
            VersioningState::Suspended => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::SUSPENDED,
            )),
        };
        Ok(S3Response::new(GetBucketVersioningOutput {
            status,
            mfa_delete: None,
        }))
    }
}
