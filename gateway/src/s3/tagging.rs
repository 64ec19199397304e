//! Object tagging: replace, read and remove the tag set of one version (the latest when no
//! version id is given). A tag change is recorded like any other change, with an outbox
//! entry, so it replicates. Bucket tagging: the bucket's own tags, a configuration document
//! of the bucket (not replicated, like the bucket's other configurations).

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
        let tags = pairs(input.tagging.tag_set);
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

/// A tag set as (key, value) pairs.
fn pairs(tag_set: Vec<Tag>) -> Vec<(String, String)> {
    tag_set
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect()
}

/// The bucket configuration document holding a bucket's own tags (JSON pairs).
const BUCKET_DOCUMENT: &str = "tagging";
/// S3's limit on a bucket's tags.
const MAX_BUCKET_TAGS: usize = 50;

fn decode_bucket_tags(doc: &[u8]) -> Result<Vec<(String, String)>, serde_json::Error> {
    serde_json::from_slice(doc)
}

impl MeridianS3 {
    /// PutBucketTagging: the bucket's own tags (cost allocation and the like), replaced whole.
    pub(super) async fn put_bucket_tagging_impl(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let input = req.input;
        self.bucket(&input.bucket).await?;
        let tags = pairs(input.tagging.tag_set);
        if tags.len() > MAX_BUCKET_TAGS {
            return Err(s3s::s3_error!(
                InvalidTag,
                "Bucket tag count cannot be greater than {MAX_BUCKET_TAGS}"
            ));
        }
        if tags.iter().any(|(k, _)| k.starts_with("aws:")) {
            return Err(s3s::s3_error!(
                InvalidTag,
                "System tags cannot be added/updated by requester"
            ));
        }
        convert::validate_each_tag(&tags)?;
        let doc = serde_json::to_vec(&tags).expect("tags serialize");
        self.put_document(&input.bucket, BUCKET_DOCUMENT, doc)
            .await?;
        Ok(S3Response::new(PutBucketTaggingOutput::default()))
    }

    pub(super) async fn get_bucket_tagging_impl(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        let missing = super::errors::custom_error(
            "NoSuchTagSet",
            http::StatusCode::NOT_FOUND,
            "The TagSet does not exist",
        );
        let tags = self
            .stored_document(bucket, BUCKET_DOCUMENT, missing, decode_bucket_tags)
            .await?;
        Ok(S3Response::new(GetBucketTaggingOutput {
            tag_set: dto_tags(&tags),
        }))
    }

    pub(super) async fn delete_bucket_tagging_impl(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        self.delete_document(bucket, BUCKET_DOCUMENT).await?;
        Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
    }
}
