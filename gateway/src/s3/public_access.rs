//! Public Access Block on a bucket: PutPublicAccessBlock, GetPublicAccessBlock and
//! DeletePublicAccessBlock, stored as the bucket's `public-access-block` document, and what
//! each setting does here:
//! - `BlockPublicAcls`: a write or ACL change naming a public canned ACL (`public-read`,
//!   `public-read-write`, `authenticated-read`) or a grant to the AllUsers or
//!   AuthenticatedUsers group is refused with AccessDenied (without it, such ACLs answer
//!   `AccessControlListNotSupported`: buckets have ACLs disabled);
//! - `IgnorePublicAcls`: kept and reported; no public ACL can exist to ignore;
//! - `BlockPublicPolicy`: PutBucketPolicy of a public policy is refused with AccessDenied;
//! - `RestrictPublicBuckets`: a public policy stops letting anonymous requests in (the
//!   access hook reads it with the policy: `auth::AccessPolicy::policy`).

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};

use super::acl::GrantHeaders;
use super::MeridianS3;

/// The bucket configuration document.
pub const DOCUMENT: &str = "public-access-block";

/// The four settings, as stored (and as `[public_access_block]` in the config file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublicAccessBlock {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

/// The region's settings (`[public_access_block]`), set once when the server starts; both
/// the S3 handlers and the access check read them, as they read a bucket's own.
static REGION: std::sync::OnceLock<PublicAccessBlock> = std::sync::OnceLock::new();

impl PublicAccessBlock {
    pub fn from_json(doc: &[u8]) -> Result<PublicAccessBlock, serde_json::Error> {
        serde_json::from_slice(doc)
    }

    /// Puts the region's settings in force (the first call wins; a server makes one).
    pub fn set_region(block: PublicAccessBlock) {
        let _ = REGION.set(block);
    }

    /// What is in force on a bucket whose own settings are `self`: a setting is on when
    /// the bucket or the region turns it on.
    pub fn with_region(self) -> PublicAccessBlock {
        let region = REGION.get().copied().unwrap_or_default();
        PublicAccessBlock {
            block_public_acls: self.block_public_acls || region.block_public_acls,
            ignore_public_acls: self.ignore_public_acls || region.ignore_public_acls,
            block_public_policy: self.block_public_policy || region.block_public_policy,
            restrict_public_buckets: self.restrict_public_buckets || region.restrict_public_buckets,
        }
    }
}

const PUBLIC_GROUPS: [&str; 2] = [
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
];

/// Whether a canned ACL or the grant headers would make something public.
pub(super) fn acl_is_public(canned: Option<&str>, grants: &GrantHeaders<'_>) -> bool {
    let canned = canned.is_some_and(|c| {
        matches!(
            c,
            ObjectCannedACL::PUBLIC_READ
                | ObjectCannedACL::PUBLIC_READ_WRITE
                | ObjectCannedACL::AUTHENTICATED_READ
        )
    });
    canned
        || grants
            .values()
            .any(|v| PUBLIC_GROUPS.iter().any(|g| v.contains(g)))
}

impl MeridianS3 {
    /// The settings in force on the bucket: its own (all off when it has none) with the
    /// region's.
    pub(super) async fn public_access_block(&self, bucket: &str) -> S3Result<PublicAccessBlock> {
        let block = self
            .optional_document(bucket, DOCUMENT, PublicAccessBlock::from_json)
            .await?;
        Ok(block.unwrap_or_default().with_region())
    }

    /// AccessDenied for a public ACL on a bucket that blocks them.
    pub(super) async fn refuse_blocked_acl(
        &self,
        bucket: &str,
        canned: Option<&str>,
        grants: &GrantHeaders<'_>,
    ) -> S3Result<()> {
        if acl_is_public(canned, grants)
            && self.public_access_block(bucket).await?.block_public_acls
        {
            return Err(s3_error!(
                AccessDenied,
                "Access Denied: the bucket's public access block forbids public ACLs"
            ));
        }
        Ok(())
    }

    pub(super) async fn put_public_access_block_impl(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        let input = req.input;
        self.bucket(&input.bucket).await?;
        let c = input.public_access_block_configuration;
        let block = PublicAccessBlock {
            block_public_acls: c.block_public_acls.unwrap_or(false),
            ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
            block_public_policy: c.block_public_policy.unwrap_or(false),
            restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
        };
        let doc = serde_json::to_vec(&block).expect("four booleans serialize");
        self.put_document(&input.bucket, DOCUMENT, doc).await?;
        // The access hook caches each bucket's policy with this applied.
        self.policies.forget(&input.bucket);
        tracing::info!(bucket = %input.bucket, ?block, "public access block stored");
        Ok(S3Response::new(PutPublicAccessBlockOutput {}))
    }

    pub(super) async fn get_public_access_block_impl(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        let name = req.input.bucket;
        self.bucket(&name).await?;
        let missing = super::errors::custom_error(
            "NoSuchPublicAccessBlockConfiguration",
            http::StatusCode::NOT_FOUND,
            "The public access block configuration was not found",
        );
        let block = self
            .stored_document(&name, DOCUMENT, missing, PublicAccessBlock::from_json)
            .await?;
        Ok(S3Response::new(GetPublicAccessBlockOutput {
            public_access_block_configuration: Some(PublicAccessBlockConfiguration {
                block_public_acls: Some(block.block_public_acls),
                ignore_public_acls: Some(block.ignore_public_acls),
                block_public_policy: Some(block.block_public_policy),
                restrict_public_buckets: Some(block.restrict_public_buckets),
            }),
        }))
    }

    pub(super) async fn delete_public_access_block_impl(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        let name = req.input.bucket;
        self.bucket(&name).await?;
        self.delete_document(&name, DOCUMENT).await?;
        self.policies.forget(&name);
        Ok(S3Response::new(DeletePublicAccessBlockOutput {}))
    }
}
