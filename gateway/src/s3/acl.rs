//! ACLs as S3 has them since 2023: every bucket's Object Ownership is `BucketOwnerEnforced`,
//! so ACLs are disabled. Reading an ACL answers the owner with FULL_CONTROL; setting one is
//! accepted only when it grants nothing beyond that (`private`, `bucket-owner-full-control`,
//! or a policy naming only the owner) and answers `AccessControlListNotSupported` otherwise.
//! The same rule applies to the `x-amz-acl` and `x-amz-grant-*` headers of writes.

use meridian_metadata::BucketRecord;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result};

use super::MeridianS3;
use crate::s3::errors::IntoS3;

/// The bucket configuration document recording that ownership controls were deleted.
const OWNERSHIP_DOCUMENT: &str = "ownership-controls";
const OWNERSHIP_DELETED: &[u8] = b"deleted";

fn acls_not_supported() -> S3Error {
    super::errors::custom_error(
        "AccessControlListNotSupported",
        http::StatusCode::BAD_REQUEST,
        "The bucket does not allow ACLs",
    )
}

/// The grant headers of a request, present or not.
pub(super) struct GrantHeaders<'a> {
    pub full_control: Option<&'a str>,
    pub read: Option<&'a str>,
    pub read_acp: Option<&'a str>,
    pub write: Option<&'a str>,
    pub write_acp: Option<&'a str>,
}

/// The grant headers of any input type with the usual field names (`grant_write` only on
/// bucket inputs: pass `None` for objects).
macro_rules! grant_headers {
    ($i:expr, $write:expr) => {
        $crate::s3::acl::GrantHeaders {
            full_control: $i.grant_full_control.as_deref(),
            read: $i.grant_read.as_deref(),
            read_acp: $i.grant_read_acp.as_deref(),
            write: $write,
            write_acp: $i.grant_write_acp.as_deref(),
        }
    };
}
pub(super) use grant_headers;

impl GrantHeaders<'_> {
    /// The values given.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        [
            self.full_control,
            self.read,
            self.read_acp,
            self.write,
            self.write_acp,
        ]
        .into_iter()
        .flatten()
    }

    fn any(&self) -> bool {
        self.values().any(|v| !v.trim().is_empty())
    }
}

/// The ACL headers of an object write (PutObject, CopyObject, CreateMultipartUpload,
/// PutObjectAcl): `private` and `bucket-owner-full-control` say what is true anyway; any
/// other canned ACL or grant would share the object, which a bucket without ACLs refuses.
pub(super) fn check_object_acl(
    canned: Option<&ObjectCannedACL>,
    grants: GrantHeaders<'_>,
) -> S3Result<()> {
    let canned_ok = canned.is_none_or(|c| {
        matches!(
            c.as_str(),
            ObjectCannedACL::PRIVATE | ObjectCannedACL::BUCKET_OWNER_FULL_CONTROL
        )
    });
    if !canned_ok || grants.any() {
        return Err(acls_not_supported());
    }
    Ok(())
}

impl MeridianS3 {
    /// The ACL headers of an object write: AccessDenied when they are public and the bucket's
    /// public access block forbids that, else as [`check_object_acl`].
    pub(super) async fn check_write_acl(
        &self,
        bucket: &str,
        canned: Option<&ObjectCannedACL>,
        grants: GrantHeaders<'_>,
    ) -> S3Result<()> {
        self.refuse_blocked_acl(bucket, canned.map(ObjectCannedACL::as_str), &grants)
            .await?;
        check_object_acl(canned, grants)
    }
}

/// The ACL headers of CreateBucket: only `private`, and only the `BucketOwnerEnforced`
/// ownership this server implements.
pub(super) fn check_new_bucket_acl(input: &CreateBucketInput) -> S3Result<()> {
    if let Some(o) = &input.object_ownership {
        if o.as_str() != ObjectOwnership::BUCKET_OWNER_ENFORCED {
            return Err(s3_error!(
                NotImplemented,
                "Only the BucketOwnerEnforced object ownership is supported: ACLs are disabled"
            ));
        }
    }
    let canned_ok = input
        .acl
        .as_ref()
        .is_none_or(|c| c.as_str() == BucketCannedACL::PRIVATE);
    if !canned_ok || grant_headers!(input, input.grant_write.as_deref()).any() {
        return Err(super::errors::custom_error(
            "InvalidBucketAclWithObjectOwnership",
            http::StatusCode::BAD_REQUEST,
            "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
        ));
    }
    Ok(())
}

/// A policy that grants the owner FULL_CONTROL and nothing else changes nothing.
fn only_owner_full_control(policy: &AccessControlPolicy, owner: &str) -> bool {
    policy.grants.iter().flatten().all(|g| {
        g.permission
            .as_ref()
            .is_some_and(|p| p.as_str() == Permission::FULL_CONTROL)
            && g.grantee.as_ref().is_some_and(|e| {
                e.type_.as_str() == Type::CANONICAL_USER && e.id.as_deref() == Some(owner)
            })
    })
}

fn owner_policy(bucket: &BucketRecord) -> (Option<Owner>, Option<Grants>) {
    let owner = Owner {
        id: Some(bucket.owner.clone()),
        display_name: Some(bucket.owner.clone()),
    };
    let grant = Grant {
        grantee: Some(Grantee {
            display_name: Some(bucket.owner.clone()),
            email_address: None,
            id: Some(bucket.owner.clone()),
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    };
    (Some(owner), Some(vec![grant]))
}

fn enforced() -> OwnershipControls {
    OwnershipControls {
        rules: vec![OwnershipControlsRule {
            object_ownership: ObjectOwnership::from_static(ObjectOwnership::BUCKET_OWNER_ENFORCED),
        }],
    }
}

impl MeridianS3 {
    pub(super) async fn get_bucket_acl_impl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        let (owner, grants) = owner_policy(&bucket);
        Ok(S3Response::new(GetBucketAclOutput { owner, grants }))
    }

    pub(super) async fn put_bucket_acl_impl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        let input = &req.input;
        let bucket = self.bucket(&input.bucket).await?;
        self.refuse_blocked_acl(
            &input.bucket,
            input.acl.as_ref().map(BucketCannedACL::as_str),
            &grant_headers!(input, input.grant_write.as_deref()),
        )
        .await?;
        let canned_ok = input
            .acl
            .as_ref()
            .is_none_or(|c| c.as_str() == BucketCannedACL::PRIVATE);
        let policy_ok = input
            .access_control_policy
            .as_ref()
            .is_none_or(|p| only_owner_full_control(p, &bucket.owner));
        if !canned_ok || !policy_ok || grant_headers!(input, input.grant_write.as_deref()).any() {
            return Err(acls_not_supported());
        }
        Ok(S3Response::new(PutBucketAclOutput {}))
    }

    pub(super) async fn get_object_acl_impl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let input = &req.input;
        let bucket = self.bucket(&input.bucket).await?;
        self.resolve(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        let (owner, grants) = owner_policy(&bucket);
        Ok(S3Response::new(GetObjectAclOutput {
            owner,
            grants,
            request_charged: None,
        }))
    }

    pub(super) async fn put_object_acl_impl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        let input = &req.input;
        let bucket = self.bucket(&input.bucket).await?;
        self.resolve(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        self.check_write_acl(
            &input.bucket,
            input.acl.as_ref(),
            grant_headers!(input, None),
        )
        .await?;
        if input
            .access_control_policy
            .as_ref()
            .is_some_and(|p| !only_owner_full_control(p, &bucket.owner))
        {
            return Err(acls_not_supported());
        }
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }

    pub(super) async fn get_bucket_ownership_controls_impl(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        let name = req.input.bucket.clone();
        let doc = self
            .store
            .meta(move |m| m.get_bucket_config(&name, OWNERSHIP_DOCUMENT))
            .await
            .s3()?;
        if doc.as_deref() == Some(OWNERSHIP_DELETED) {
            return Err(super::errors::custom_error(
                "OwnershipControlsNotFoundError",
                http::StatusCode::NOT_FOUND,
                "The bucket ownership controls were not found",
            ));
        }
        Ok(S3Response::new(GetBucketOwnershipControlsOutput {
            ownership_controls: Some(enforced()),
        }))
    }

    pub(super) async fn put_bucket_ownership_controls_impl(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
        let input = req.input;
        self.bucket(&input.bucket).await?;
        let rules = &input.ownership_controls.rules;
        if rules.len() != 1 {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        // One rule, checked just above.
        if rules[0].object_ownership.as_str() != ObjectOwnership::BUCKET_OWNER_ENFORCED {
            return Err(s3_error!(
                NotImplemented,
                "Only the BucketOwnerEnforced object ownership is supported: ACLs are disabled"
            ));
        }
        let name = input.bucket.clone();
        self.store
            .meta(move |m| m.delete_bucket_config(&name, OWNERSHIP_DOCUMENT))
            .await
            .s3()?;
        Ok(S3Response::new(PutBucketOwnershipControlsOutput {}))
    }

    pub(super) async fn delete_bucket_ownership_controls_impl(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
        let name = req.input.bucket.clone();
        self.bucket(&name).await?;
        // ACLs stay disabled either way; GetBucketOwnershipControls reports the deletion.
        self.store
            .meta(move |m| {
                m.put_bucket_config(&name, OWNERSHIP_DOCUMENT, OWNERSHIP_DELETED.to_vec())
            })
            .await
            .s3()?;
        Ok(S3Response::new(DeleteBucketOwnershipControlsOutput {}))
    }
}
