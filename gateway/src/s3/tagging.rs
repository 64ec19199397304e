//! Object tagging: replace, read and remove the tag set of one version (the latest when no
//! version id is given). A tag change is recorded like any other change, with an outbox
//! entry, so it replicates.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use super::convert::{self, dto_tags};
use super::MeridianS3;
use crate::s3::errors::IntoS3;

impl MeridianS3 {
    /// Replaces the tags of a version. A local change goes to the peers whose rules match
    /// the version with its new tags; a change from a peer region (replica headers) is
    /// recorded as a replica and goes nowhere.
    async fn replace_tags(
        &self,
        headers: &http::HeaderMap,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        tags: Vec<(String, String)>,
    ) -> S3Result<Option<String>> {
        let bucket_record = self.bucket(bucket).await?;
        let replica = self.replica_of(headers, &bucket_record)?;
        let resolved = self.resolve(bucket, key, version_id).await?;
        let change = self.change_source(replica, &resolved.record, &tags).await?;
        let queued = !change.peers.is_empty();
        let (b, k, v) = (
            bucket.to_owned(),
            key.to_owned(),
            resolved.record.version_id.clone(),
        );
        let record = self
            .store
            .meta(move |m| m.set_tags(&b, &k, Some(&v), tags, change))
            .await
            .s3()?;
        if queued {
            self.replicator.changed();
        }
        Ok(convert::reported_version_id(
            &record,
            resolved.versioned_bucket,
        ))
    }

    pub(super) async fn put_object_tagging_impl(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let (headers, input) = (req.headers, req.input);
        let tags: Vec<(String, String)> = input
            .tagging
            .tag_set
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect();
        convert::validate_tags(&tags)?;
        let version_id = self
            .replace_tags(
                &headers,
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                tags,
            )
            .await?;
        Ok(S3Response::new(PutObjectTaggingOutput { version_id }))
    }

    pub(super) async fn get_object_tagging_impl(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let input = req.input;
        let resolved = self
            .resolve(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: dto_tags(&resolved.record.tags),
            version_id: convert::reported_version_id(&resolved.record, resolved.versioned_bucket),
        }))
    }

    pub(super) async fn delete_object_tagging_impl(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let (headers, input) = (req.headers, req.input);
        let version_id = self
            .replace_tags(
                &headers,
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                Vec::new(),
            )
            .await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput { version_id }))
    }
}
