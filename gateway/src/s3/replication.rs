//! PutBucketReplication, GetBucketReplication and DeleteBucketReplication: the standard API,
//! so `aws s3api put-bucket-replication` and boto3 work unmodified. The XML becomes the
//! replicator's rule model (checked as AWS checks it), destinations are checked on Meridian
//! peers when reachable, and the rules are stored as the bucket's `replication` document.

use meridian_metadata::VersioningState;
use meridian_replicator::rules::xml::{config_of, dto_of};
use meridian_replicator::rules::{ReplicationConfig, CONFIG_DOCUMENT};
use meridian_replicator::{DestinationCheck, PeerKind, RuleError};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::MeridianS3;
use crate::s3::errors::IntoS3;

fn rule_error(e: RuleError) -> S3Error {
    let code = S3ErrorCode::from_bytes(e.code.as_bytes()).expect("error codes are UTF-8");
    S3Error::with_message(code, e.message)
}

impl MeridianS3 {
    /// Every destination bucket on a Meridian peer must exist with versioning enabled; a
    /// peer that cannot be asked now is accepted (the problem shows as FAILED later).
    async fn check_destinations(&self, config: &ReplicationConfig) -> S3Result<()> {
        let mut checked = std::collections::HashSet::new();
        for rule in &config.rules {
            let d = &rule.destination;
            let kind = self
                .replicator
                .peers()
                .find(|p| p.name == d.peer)
                .map(|p| p.kind);
            if kind != Some(PeerKind::Meridian)
                || !checked.insert((d.peer.clone(), d.bucket.clone()))
            {
                continue;
            }
            match self.replicator.check_destination(&d.peer, &d.bucket).await {
                DestinationCheck::Ready => {}
                DestinationCheck::Missing | DestinationCheck::NotVersioned => {
                    return Err(s3_error!(
                        InvalidRequest,
                        "Destination bucket must have versioning enabled."
                    ))
                }
                DestinationCheck::Unknown(reason) => tracing::warn!(
                    peer = %d.peer, bucket = %d.bucket, %reason,
                    "could not check the replication destination; accepting the rule"
                ),
            }
        }
        Ok(())
    }

    pub(super) async fn put_bucket_replication_impl(
        &self,
        req: S3Request<PutBucketReplicationInput>,
    ) -> S3Result<S3Response<PutBucketReplicationOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let peers: Vec<String> = self.replicator.peers().map(|p| p.name.clone()).collect();
        let config = config_of(input.replication_configuration, &peers).map_err(rule_error)?;
        config.validate().map_err(rule_error)?;
        if bucket.versioning != VersioningState::Enabled {
            return Err(s3_error!(
                InvalidRequest,
                "Versioning must be 'Enabled' on the bucket to apply a replication configuration"
            ));
        }
        self.check_destinations(&config).await?;
        self.put_document(&input.bucket, CONFIG_DOCUMENT, config.to_json())
            .await?;
        self.replicator.rules().invalidate(&input.bucket);
        tracing::info!(bucket = %input.bucket, rules = config.rules.len(), "replication configuration stored");
        self.backfill_existing(&input.bucket, &config).await;
        Ok(S3Response::new(PutBucketReplicationOutput {}))
    }

    /// Rules with ExistingObjectReplication send what the bucket held before them, once.
    pub(super) async fn backfill_existing(&self, bucket: &str, config: &ReplicationConfig) {
        let mut backfilled = std::collections::HashSet::new();
        for rule in config
            .rules
            .iter()
            .filter(|r| r.enabled && r.existing_objects)
        {
            let peer = &rule.destination.peer;
            if backfilled.insert(peer.clone()) {
                if let Err(e) = self.replicator.backfill_once(peer, bucket).await {
                    tracing::warn!(%bucket, %peer, error = %e, "starting the backfill failed");
                }
            }
        }
    }

    pub(super) async fn get_bucket_replication_impl(
        &self,
        req: S3Request<GetBucketReplicationInput>,
    ) -> S3Result<S3Response<GetBucketReplicationOutput>> {
        let config = self
            .stored_document(
                &req.input.bucket,
                CONFIG_DOCUMENT,
                s3_error!(
                    ReplicationConfigurationNotFoundError,
                    "The replication configuration was not found"
                ),
                ReplicationConfig::from_json,
            )
            .await?;
        Ok(S3Response::new(GetBucketReplicationOutput {
            replication_configuration: Some(dto_of(&config)),
        }))
    }

    pub(super) async fn delete_bucket_replication_impl(
        &self,
        req: S3Request<DeleteBucketReplicationInput>,
    ) -> S3Result<S3Response<DeleteBucketReplicationOutput>> {
        let name = req.input.bucket;
        self.delete_document(&name, CONFIG_DOCUMENT).await?;
        self.replicator.rules().invalidate(&name);
        tracing::info!(bucket = %name, "replication configuration deleted");
        Ok(S3Response::new(DeleteBucketReplicationOutput {}))
    }

    /// Whether the bucket has a replication configuration (versioning cannot be suspended
    /// while it does).
    pub(super) async fn has_replication(&self, bucket: &str) -> S3Result<bool> {
        let (replicator, b) = (self.replicator.clone(), bucket.to_owned());
        let found = tokio::task::spawn_blocking(move || replicator.rules().get(&b))
            .await
            .map_err(|e| s3_error!(InternalError, "rules task failed: {e}"))?
            .map_err(meridian_store::StoreError::from)
            .s3()?;
        Ok(found.is_some())
    }
}
