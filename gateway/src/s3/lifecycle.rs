//! PutBucketLifecycleConfiguration, GetBucketLifecycleConfiguration and
//! DeleteBucketLifecycle: the XML becomes the lifecycle model (checked as AWS checks it) and
//! is stored as the bucket's `lifecycle` document; a put starts the pass that indexes the
//! versions already stored. Also `x-amz-expiration`, which PUT, GET and HEAD of a current
//! version carry when a rule will expire it.

use meridian_documents::lifecycle::xml::{config_of, dto_of};
use meridian_documents::lifecycle::{LifecycleConfig, CONFIG_DOCUMENT};
use meridian_metadata::VersionRecord;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::convert;
use super::MeridianS3;
use crate::s3::errors::{document_error, IntoS3};

/// `x-amz-expiration`'s value: `expiry-date="<HTTP date>", rule-id="<id>"`.
pub(super) fn expiration_header(at: i64, rule_id: &str) -> String {
    let date = convert::format_http_date(&convert::timestamp(at));
    format!("expiry-date=\"{date}\", rule-id=\"{rule_id}\"")
}

impl MeridianS3 {
    pub(super) async fn put_bucket_lifecycle_configuration_impl(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let input = req.input;
        self.bucket(&input.bucket).await?;
        let dto = input.lifecycle_configuration.ok_or_else(|| {
            s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            )
        })?;
        let config = config_of(dto).map_err(document_error)?;
        config.validate().map_err(document_error)?;
        let (name, doc) = (input.bucket.clone(), config.to_json());
        let store = self.store.clone();
        self.store
            .meta(move |m| {
                m.put_bucket_config(&name, CONFIG_DOCUMENT, doc)?;
                store.lifecycle.invalidate(&name);
                Ok(())
            })
            .await
            .s3()?;
        meridian_store::lifecycle::start_pass(&self.store, &input.bucket);
        tracing::info!(bucket = %input.bucket, rules = config.rules.len(), "lifecycle configuration stored");
        Ok(S3Response::new(
            PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    pub(super) async fn get_bucket_lifecycle_configuration_impl(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let config = self
            .stored_document(
                &req.input.bucket,
                CONFIG_DOCUMENT,
                s3_error!(
                    NoSuchLifecycleConfiguration,
                    "The lifecycle configuration does not exist"
                ),
                LifecycleConfig::from_json,
            )
            .await?;
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(dto_of(&config)),
            ..Default::default()
        }))
    }

    pub(super) async fn delete_bucket_lifecycle_impl(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        let name = req.input.bucket;
        let store = self.store.clone();
        let n = name.clone();
        self.store
            .meta(move |m| {
                m.delete_bucket_config(&n, CONFIG_DOCUMENT)?;
                store.lifecycle.invalidate(&n);
                Ok(())
            })
            .await
            .s3()?;
        tracing::info!(bucket = %name, "lifecycle configuration deleted");
        Ok(S3Response::new(DeleteBucketLifecycleOutput {}))
    }

    /// `x-amz-expiration` for a current version, when a rule will expire it.
    pub(super) async fn expiration_of(&self, record: &VersionRecord) -> S3Result<Option<String>> {
        let lifecycle = self.store.lifecycle.clone();
        let config = match lifecycle.cached_rules(&record.bucket) {
            Some(found) => found,
            None => {
                let bucket = record.bucket.clone();
                let lc = lifecycle.clone();
                tokio::task::spawn_blocking(move || lc.rules(&bucket))
                    .await
                    .map_err(|e| s3_error!(InternalError, "lifecycle task failed: {e}"))?
                    .map_err(meridian_store::StoreError::from)
                    .s3()?
            }
        };
        Ok(config
            .and_then(|c| lifecycle.header_expiry_of(&c, record))
            .map(|(at, id)| expiration_header(at, &id)))
    }
}
