//! Meridian's S3 API: the `s3s::S3` trait, implemented by family (buckets, objects, deletes,
//! copies, listings, tagging, multipart), each file thin and delegating to the storage
//! service. Operations not listed here answer `NotImplemented` (the trait's default).

pub(crate) mod acl;
mod attributes;
mod body;
mod buckets;
mod conditions;
pub mod convert;
mod copy;
pub mod cors;
mod delegated;
mod delete;
pub mod encryption;
mod errors;
mod get;
mod lifecycle;
mod listing;
mod multipart;
mod object_lock;
mod policy;
mod proxy;
pub mod public_access;
mod put;
mod replica;
mod replication;
mod tagging;

use std::sync::Arc;

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

use crate::auth::Principal;
use crate::s3::errors::IntoS3;
use meridian_metadata::{BucketRecord, VersioningState};
use meridian_replicator::Replicator;
use meridian_store::Store;

/// The S3 front of one node.
#[derive(Clone)]
pub struct MeridianS3 {
    store: Store,
    region: String,
    replicator: Replicator,
    /// The buckets' parsed policies, shared with the access hook.
    policies: crate::bucket_policy::Policies,
    /// Principals a bucket policy may name.
    users: crate::auth::Users,
    /// What `[encryption]` allows and defaults to.
    sse: encryption::SseSettings,
    /// Every bucket's default encryption, read once (every PUT without SSE headers asks).
    encryption_defaults: Arc<meridian_metadata::ConfigCache<encryption::BucketDefault>>,
    /// Every bucket's CORS rules, shared with the HTTP layer that answers browsers.
    cors: crate::cors::CorsRules,
    /// Every bucket's Object Ownership and ACL, shared with the access hook.
    acls: acl::AclCache,
    /// The Object Ownership of new buckets that do not name one.
    default_ownership: acl::Ownership,
    /// This node's region of several nodes, if it is in one.
    cluster: crate::cluster::ClusterGate,
    /// Bodies the primaries of this region's partitions streamed here while they arrived,
    /// held for the copies that will name them.
    staged: Arc<crate::cluster::stage::Received>,
}

impl MeridianS3 {
    pub fn new(
        store: Store,
        region: String,
        replicator: Replicator,
        policies: crate::bucket_policy::Policies,
        users: crate::auth::Users,
        sse: encryption::SseSettings,
        cors: crate::cors::CorsRules,
    ) -> MeridianS3 {
        let store_meta = store.meta.clone();
        let encryption_defaults = Arc::new(meridian_metadata::ConfigCache::new(
            store.meta.clone(),
            encryption::DOCUMENT,
            |doc| encryption::BucketDefault::from_json(doc).map_err(|e| e.to_string()),
        ));
        MeridianS3 {
            store,
            region,
            replicator,
            policies,
            users,
            sse,
            encryption_defaults,
            cors,
            acls: acl::AclCache::new(store_meta),
            default_ownership: acl::Ownership::Enforced,
            cluster: crate::cluster::ClusterGate::default(),
            staged: Arc::default(),
        }
    }

    /// The same service with `acls` shared with the access hook, and new buckets getting
    /// `default_ownership` when they name none.
    /// The same service as a node of a region of several nodes: versions it leads are
    /// copied to their followers, listings span the region.
    pub fn with_cluster(self, cluster: crate::cluster::ClusterGate) -> MeridianS3 {
        MeridianS3 { cluster, ..self }
    }

    pub fn with_acls(self, acls: acl::AclCache, default_ownership: acl::Ownership) -> MeridianS3 {
        MeridianS3 {
            acls,
            default_ownership,
            ..self
        }
    }

    /// The bucket's configuration document `name`, decoded; `missing` when it has none.
    async fn stored_document<T>(
        &self,
        bucket: &str,
        name: &'static str,
        missing: s3s::S3Error,
        decode: fn(&[u8]) -> Result<T, serde_json::Error>,
    ) -> S3Result<T> {
        self.optional_document(bucket, name, decode)
            .await?
            .ok_or(missing)
    }

    /// The bucket's configuration document `name`, decoded, if it has one.
    async fn optional_document<T>(
        &self,
        bucket: &str,
        name: &'static str,
        decode: fn(&[u8]) -> Result<T, serde_json::Error>,
    ) -> S3Result<Option<T>> {
        let b = bucket.to_owned();
        let doc = self
            .store
            .meta(move |m| m.get_bucket_config(&b, name))
            .await
            .s3()?;
        doc.map(|d| decode(&d)).transpose().map_err(|e| {
            s3_error!(
                InternalError,
                "stored {name} configuration is unreadable: {e}"
            )
        })
    }

    /// Stores `doc` as the bucket's configuration document `name`.
    async fn put_document(&self, bucket: &str, name: &'static str, doc: Vec<u8>) -> S3Result<()> {
        let b = bucket.to_owned();
        self.store
            .meta(move |m| m.put_bucket_config(&b, name, doc))
            .await
            .s3()
    }

    /// Removes the bucket's configuration document `name` (none is no error).
    async fn delete_document(&self, bucket: &str, name: &'static str) -> S3Result<()> {
        let b = bucket.to_owned();
        self.store
            .meta(move |m| m.delete_bucket_config(&b, name))
            .await
            .s3()
    }

    /// The bucket record, or `NoSuchBucket`.
    async fn bucket(&self, name: &str) -> S3Result<BucketRecord> {
        let n = name.to_owned();
        self.store
            .meta(move |m| m.get_bucket(&n))
            .await
            .s3()?
            .ok_or_else(|| s3_error!(NoSuchBucket, "The specified bucket does not exist"))
    }
}

/// Whether responses of this bucket carry version ids.
fn versioned(bucket: &BucketRecord) -> bool {
    bucket.versioning != VersioningState::Unversioned
}

/// Whether the answer to a write carries the new version's id: only where versioning is
/// enabled (a write into a suspended bucket makes the `null` version, and S3 names none).
fn reports_written_version(bucket: &BucketRecord) -> bool {
    bucket.versioning == VersioningState::Enabled
}

/// The access key of the request's principal (`anonymous` for an unsigned one).
fn principal_key(extensions: &http::Extensions) -> String {
    extensions
        .get::<Principal>()
        .map_or_else(|| "anonymous".to_owned(), |p| p.access_key.clone())
}

fn principal<T>(req: &S3Request<T>) -> S3Result<&Principal> {
    req.extensions
        .get::<Principal>()
        .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))
}

#[async_trait::async_trait]
impl S3 for MeridianS3 {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.list_buckets_impl(req).await
    }
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.create_bucket_impl(req).await
    }
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.head_bucket_impl(req).await
    }
    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.delete_bucket_impl(req).await
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.get_bucket_location_impl(req).await
    }
    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        self.put_bucket_versioning_impl(req).await
    }
    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.get_bucket_versioning_impl(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        // POST Object comes here too (s3s's default `post_object`).
        let req = put::with_form_fields(req)?;
        self.put_object_impl(req).await
    }
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.get_object_impl(req).await
    }
    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.head_object_impl(req).await
    }
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.delete_object_impl(req).await
    }
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.delete_objects_impl(req).await
    }
    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.copy_object_impl(req).await
    }

    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        self.put_bucket_encryption_impl(req).await
    }
    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        self.get_bucket_encryption_impl(req).await
    }
    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        self.delete_bucket_encryption_impl(req).await
    }
    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        self.put_bucket_tagging_impl(req).await
    }
    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        self.get_bucket_tagging_impl(req).await
    }
    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.delete_bucket_tagging_impl(req).await
    }
    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        self.put_bucket_cors_impl(req).await
    }
    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        self.get_bucket_cors_impl(req).await
    }
    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.delete_bucket_cors_impl(req).await
    }
    async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        self.put_public_access_block_impl(req).await
    }
    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        self.get_public_access_block_impl(req).await
    }
    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        self.delete_public_access_block_impl(req).await
    }
    async fn put_object_lock_configuration(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        self.put_object_lock_configuration_impl(req).await
    }
    async fn get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        self.get_object_lock_configuration_impl(req).await
    }
    async fn put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        self.put_object_retention_impl(req).await
    }
    async fn get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        self.get_object_retention_impl(req).await
    }
    async fn put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        self.put_object_legal_hold_impl(req).await
    }
    async fn get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        self.get_object_legal_hold_impl(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.list_objects_impl(req).await
    }
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.list_objects_v2_impl(req).await
    }
    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        self.list_object_versions_impl(req).await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        self.put_object_tagging_impl(req).await
    }
    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        self.get_object_tagging_impl(req).await
    }
    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        self.delete_object_tagging_impl(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.create_multipart_upload_impl(req).await
    }
    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.upload_part_impl(req).await
    }
    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.upload_part_copy_impl(req).await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.complete_multipart_upload_impl(req).await
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.abort_multipart_upload_impl(req).await
    }
    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.list_parts_impl(req).await
    }
    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.list_multipart_uploads_impl(req).await
    }
    async fn put_bucket_replication(
        &self,
        req: S3Request<PutBucketReplicationInput>,
    ) -> S3Result<S3Response<PutBucketReplicationOutput>> {
        self.put_bucket_replication_impl(req).await
    }
    async fn get_bucket_replication(
        &self,
        req: S3Request<GetBucketReplicationInput>,
    ) -> S3Result<S3Response<GetBucketReplicationOutput>> {
        self.get_bucket_replication_impl(req).await
    }
    async fn delete_bucket_replication(
        &self,
        req: S3Request<DeleteBucketReplicationInput>,
    ) -> S3Result<S3Response<DeleteBucketReplicationOutput>> {
        self.delete_bucket_replication_impl(req).await
    }
    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        self.put_bucket_lifecycle_configuration_impl(req).await
    }
    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        self.get_bucket_lifecycle_configuration_impl(req).await
    }
    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.delete_bucket_lifecycle_impl(req).await
    }
    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        self.get_object_attributes_impl(req).await
    }
    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        self.get_bucket_acl_impl(req).await
    }
    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        self.put_bucket_acl_impl(req).await
    }
    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        self.get_object_acl_impl(req).await
    }
    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        self.put_object_acl_impl(req).await
    }
    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        self.get_bucket_ownership_controls_impl(req).await
    }
    async fn put_bucket_ownership_controls(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
        self.put_bucket_ownership_controls_impl(req).await
    }
    async fn delete_bucket_ownership_controls(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
        self.delete_bucket_ownership_controls_impl(req).await
    }
    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        self.put_bucket_policy_impl(req).await
    }
    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        self.get_bucket_policy_impl(req).await
    }
    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        self.delete_bucket_policy_impl(req).await
    }
    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        self.get_bucket_policy_status_impl(req).await
    }
}
