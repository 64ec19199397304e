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
pub(crate) const OWNERSHIP_DOCUMENT: &str = "ownership-controls";
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
/// PutObjectAcl) in a bucket without ACLs: only `bucket-owner-full-control` (what is true
/// anyway) is accepted; any other canned ACL or grant is refused, as on AWS.
pub(super) fn check_object_acl(
    canned: Option<&ObjectCannedACL>,
    grants: GrantHeaders<'_>,
) -> S3Result<()> {
    // As on AWS, even `private` is refused (it would make the writer the owner): only
    // `bucket-owner-full-control` says what a bucket without ACLs does anyway.
    let canned_ok = canned.is_none_or(|c| c.as_str() == ObjectCannedACL::BUCKET_OWNER_FULL_CONTROL);
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

/// The Object Ownership and ACL of a new bucket: `x-amz-object-ownership` (else the region's
/// default); with BucketOwnerEnforced only `private` is accepted (as on AWS), otherwise the
/// ACL the headers ask for, owned by the creator.
pub(super) fn new_bucket_acl(
    input: &CreateBucketInput,
    owner: &str,
    default: Ownership,
    users: &dyn doc::Users,
) -> S3Result<(Ownership, Option<Acl>)> {
    let ownership = match &input.object_ownership {
        Some(o) => Ownership::parse(o.as_str())
            .ok_or_else(|| s3_error!(InvalidArgument, "Invalid x-amz-object-ownership header"))?,
        None => default,
    };
    let grants = grant_headers!(input, input.grant_write.as_deref());
    if ownership == Ownership::Enforced {
        let canned_ok = input
            .acl
            .as_ref()
            .is_none_or(|c| c.as_str() == BucketCannedACL::PRIVATE);
        if !canned_ok || grants.any() {
            return Err(super::errors::custom_error(
                "InvalidBucketAclWithObjectOwnership",
                http::StatusCode::BAD_REQUEST,
                "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
            ));
        }
        return Ok((ownership, None));
    }
    let canned = input.acl.as_ref().map(BucketCannedACL::as_str);
    let acl = acl_of_headers(canned, &grants, owner, owner, users)?;
    Ok((ownership, Some(acl)))
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

fn owner_policy(
    bucket: &BucketRecord,
    users: &crate::auth::Users,
) -> (Option<Owner>, Option<Grants>) {
    let (id, display) = users.canonical(&bucket.owner);
    let owner = Owner {
        id: Some(id.clone()),
        display_name: Some(display.clone()),
    };
    let grant = Grant {
        grantee: Some(Grantee {
            display_name: Some(display),
            email_address: None,
            id: Some(id),
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    };
    (Some(owner), Some(vec![grant]))
}

fn controls(ownership: Ownership) -> OwnershipControls {
    OwnershipControls {
        rules: vec![OwnershipControlsRule {
            object_ownership: ObjectOwnership::from_static(ownership.as_str()),
        }],
    }
}

impl MeridianS3 {
    pub(super) async fn get_bucket_acl_impl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        let (owner, grants) = match self.acls_of(&bucket.name).await {
            Ownership::Enforced => owner_policy(&bucket, &self.users),
            _ => {
                let cache = self.acls.clone();
                let name = bucket.name.clone();
                let acl = tokio::task::spawn_blocking(move || cache.bucket_acl(&name))
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| Acl::private(&bucket.owner));
                dto_of_acl(&acl, &self.users)
            }
        };
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
        if self.acls_of(&bucket.name).await == Ownership::Enforced {
            // AWS refuses every canned ACL here, `private` included; a body that grants only
            // the owner full control says nothing new and is accepted.
            let canned_ok = input.acl.is_none();
            let policy_ok = input
                .access_control_policy
                .as_ref()
                .is_none_or(|p| only_owner_full_control(p, &bucket.owner));
            if !canned_ok || !policy_ok || grant_headers!(input, input.grant_write.as_deref()).any()
            {
                return Err(acls_not_supported());
            }
            return Ok(S3Response::new(PutBucketAclOutput {}));
        }
        let acl = match &input.access_control_policy {
            Some(policy) if policy.grants.is_some() => {
                acl_of_policy(policy, &bucket.owner, &self.users)?
            }
            _ => acl_of_headers(
                input.acl.as_ref().map(BucketCannedACL::as_str),
                &grant_headers!(input, input.grant_write.as_deref()),
                &bucket.owner,
                &bucket.owner,
                &self.users,
            )?,
        };
        self.refuse_public_acl_body(&bucket.name, &acl).await?;
        self.put_document(&bucket.name, ACL_DOCUMENT, acl.to_json())
            .await?;
        self.acls.invalidate(&bucket.name);
        Ok(S3Response::new(PutBucketAclOutput {}))
    }

    pub(super) async fn get_object_acl_impl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let input = &req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let resolved = self
            .resolve(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        let (owner, grants) = match self.acls_of(&bucket.name).await {
            Ownership::Enforced => owner_policy(&bucket, &self.users),
            _ => {
                let acl = resolved
                    .record
                    .acl
                    .as_deref()
                    .and_then(|a| Acl::from_json(a).ok())
                    .unwrap_or_else(|| Acl::private(&bucket.owner));
                dto_of_acl(&acl, &self.users)
            }
        };
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
        let resolved = self
            .resolve(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        if self.acls_of(&bucket.name).await == Ownership::Enforced {
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
            return Ok(S3Response::new(PutObjectAclOutput::default()));
        }
        self.refuse_blocked_acl(
            &input.bucket,
            input.acl.as_ref().map(ObjectCannedACL::as_str),
            &grant_headers!(input, None),
        )
        .await?;
        let owner = resolved
            .record
            .acl
            .as_deref()
            .and_then(|a| Acl::from_json(a).ok())
            .map_or_else(|| bucket.owner.clone(), |a| a.owner);
        let acl = match &input.access_control_policy {
            Some(policy) if policy.grants.is_some() => acl_of_policy(policy, &owner, &self.users)?,
            _ => acl_of_headers(
                input.acl.as_ref().map(ObjectCannedACL::as_str),
                &grant_headers!(input, None),
                &owner,
                &bucket.owner,
                &self.users,
            )?,
        };
        self.refuse_public_acl_body(&bucket.name, &acl).await?;
        let (b, k, v) = (
            input.bucket.clone(),
            input.key.clone(),
            resolved.record.version_id.clone(),
        );
        let json = acl.to_json();
        self.store
            .meta(move |m| m.set_acl(&b, &k, Some(&v), json))
            .await
            .s3()?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }

    /// The bucket's Object Ownership.
    pub(super) async fn acls_of(&self, bucket: &str) -> Ownership {
        if let Some(ownership) = self.acls.cached_ownership(bucket) {
            return ownership;
        }
        let cache = self.acls.clone();
        let b = bucket.to_owned();
        tokio::task::spawn_blocking(move || cache.ownership(&b))
            .await
            .unwrap_or(Ownership::Enforced)
    }

    /// A public ACL given as a document: refused where the public access block says so.
    async fn refuse_public_acl_body(&self, bucket: &str, acl: &Acl) -> S3Result<()> {
        if acl.is_public() && self.public_access_block(bucket).await?.block_public_acls {
            return Err(s3_error!(
                AccessDenied,
                "Access Denied: the bucket's public access block forbids public ACLs"
            ));
        }
        Ok(())
    }

    /// The ACL of a new object version: `None` in a bucket without ACLs (after checking the
    /// headers ask for nothing it cannot do), else the one the headers ask for, owned by the
    /// writer (ObjectWriter; BucketOwnerPreferred unless `bucket-owner-full-control` gives it
    /// to the bucket owner).
    pub(super) async fn acl_of_write(
        &self,
        bucket: &BucketRecord,
        writer: &str,
        canned: Option<&ObjectCannedACL>,
        grants: GrantHeaders<'_>,
    ) -> S3Result<Option<Vec<u8>>> {
        let ownership = self.acls_of(&bucket.name).await;
        if ownership == Ownership::Enforced {
            self.check_write_acl(&bucket.name, canned, grants).await?;
            return Ok(None);
        }
        let canned = canned.map(ObjectCannedACL::as_str);
        self.refuse_blocked_acl(&bucket.name, canned, &grants)
            .await?;
        let owner = match (ownership, canned) {
            (Ownership::Preferred, Some(ObjectCannedACL::BUCKET_OWNER_FULL_CONTROL)) => {
                bucket.owner.as_str()
            }
            _ => writer,
        };
        let acl = acl_of_headers(canned, &grants, owner, &bucket.owner, &self.users)?;
        Ok(Some(acl.to_json()))
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
        let ownership = Ownership::of_document(doc.as_deref());
        Ok(S3Response::new(GetBucketOwnershipControlsOutput {
            ownership_controls: Some(controls(ownership)),
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
        let Some(ownership) = Ownership::parse(rules[0].object_ownership.as_str()) else {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        };
        if ownership == Ownership::Enforced {
            // AWS refuses to disable ACLs while the bucket's ACL grants beyond its owner.
            let cache = self.acls.clone();
            let name = input.bucket.clone();
            let acl = tokio::task::spawn_blocking(move || cache.bucket_acl(&name))
                .await
                .ok()
                .flatten();
            if acl.is_some_and(|a| {
                a.grants
                    .iter()
                    .any(|g| g.grantee != doc::Grantee::User(a.owner.clone()))
            }) {
                return Err(super::errors::custom_error(
                    "InvalidBucketAclWithObjectOwnership",
                    http::StatusCode::BAD_REQUEST,
                    "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
                ));
            }
        }
        self.put_document(
            &input.bucket,
            OWNERSHIP_DOCUMENT,
            ownership.as_str().as_bytes().to_vec(),
        )
        .await?;
        self.acls.invalidate(&input.bucket);
        Ok(S3Response::new(PutBucketOwnershipControlsOutput {}))
    }

    pub(super) async fn delete_bucket_ownership_controls_impl(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
        let name = req.input.bucket.clone();
        self.bucket(&name).await?;
        // As on AWS, the bucket then behaves as ObjectWriter (ACLs enabled);
        // GetBucketOwnershipControls reports the deletion.
        let n = name.clone();
        self.store
            .meta(move |m| m.put_bucket_config(&n, OWNERSHIP_DOCUMENT, OWNERSHIP_DELETED.to_vec()))
            .await
            .s3()?;
        self.acls.invalidate(&name);
        Ok(S3Response::new(DeleteBucketOwnershipControlsOutput {}))
    }
}

// ---------------------------------------------------------------------------------------
// ACLs enabled: buckets whose Object Ownership is ObjectWriter or BucketOwnerPreferred.

use meridian_documents::acl::{self as doc, Acl, Caller};

/// The bucket configuration document holding a bucket's ACL (JSON).
pub(crate) const ACL_DOCUMENT: &str = "acl";

/// A bucket's Object Ownership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// ACLs disabled: the bucket owner owns every object (AWS's default for new buckets).
    Enforced,
    /// ACLs enabled; an object written with `bucket-owner-full-control` goes to the bucket
    /// owner, others to their writer.
    Preferred,
    /// ACLs enabled; the writer owns each object.
    Writer,
}

impl Ownership {
    pub fn parse(s: &str) -> Option<Ownership> {
        Some(match s {
            ObjectOwnership::BUCKET_OWNER_ENFORCED => Ownership::Enforced,
            ObjectOwnership::BUCKET_OWNER_PREFERRED => Ownership::Preferred,
            ObjectOwnership::OBJECT_WRITER => Ownership::Writer,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Ownership::Enforced => ObjectOwnership::BUCKET_OWNER_ENFORCED,
            Ownership::Preferred => ObjectOwnership::BUCKET_OWNER_PREFERRED,
            Ownership::Writer => ObjectOwnership::OBJECT_WRITER,
        }
    }

    /// The stored `ownership-controls` document: none is the region's default for buckets
    /// made before ownership was recorded (Enforced); a deletion leaves ObjectWriter, as on
    /// AWS.
    fn of_document(doc: Option<&[u8]>) -> Ownership {
        match doc {
            None => Ownership::Enforced,
            Some(OWNERSHIP_DELETED) => Ownership::Writer,
            Some(d) => std::str::from_utf8(d)
                .ok()
                .and_then(Ownership::parse)
                .unwrap_or(Ownership::Enforced),
        }
    }
}

/// Every bucket's ownership and ACL, read once and cached: the access hook asks on every
/// request that its grants and policy did not decide.
#[derive(Clone)]
pub struct AclCache {
    meta: meridian_metadata::MetaStore,
    ownership: Arc<meridian_metadata::ConfigCache<Ownership>>,
    acls: Arc<meridian_metadata::ConfigCache<Acl>>,
}

use std::sync::Arc;

impl AclCache {
    pub fn new(meta: meridian_metadata::MetaStore) -> AclCache {
        AclCache {
            ownership: Arc::new(meridian_metadata::ConfigCache::new(
                meta.clone(),
                OWNERSHIP_DOCUMENT,
                |d| Ok(Ownership::of_document(Some(d))),
            )),
            acls: Arc::new(meridian_metadata::ConfigCache::new(
                meta.clone(),
                ACL_DOCUMENT,
                |d| Acl::from_json(d).map_err(|e| e.to_string()),
            )),
            meta,
        }
    }

    pub fn invalidate(&self, bucket: &str) {
        self.ownership.invalidate(bucket);
        self.acls.invalidate(bucket);
    }

    /// The ownership, if the cache holds it (no I/O).
    pub fn cached_ownership(&self, bucket: &str) -> Option<Ownership> {
        self.ownership
            .cached(bucket)
            .map(|o| o.map_or(Ownership::Enforced, |o| *o))
    }

    /// Blocking (a cached read, RocksDB on a miss).
    pub fn ownership(&self, bucket: &str) -> Ownership {
        match self.ownership.get(bucket) {
            Ok(Some(o)) => *o,
            _ => Ownership::Enforced,
        }
    }

    /// The bucket's ACL (its owner's FULL_CONTROL when none was set). Blocking.
    pub fn bucket_acl(&self, bucket: &str) -> Option<Acl> {
        if let Ok(Some(acl)) = self.acls.get(bucket) {
            return Some((*acl).clone());
        }
        let record = self.meta.get_bucket(bucket).ok()??;
        Some(Acl::private(&record.owner))
    }

    /// The ACL of a version (the latest when `None`): its own, else its bucket owner's
    /// FULL_CONTROL; `None` when there is no such version (or it is a delete marker).
    /// Blocking.
    pub fn object_acl(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Option<Acl> {
        let record = self.meta.get_version(bucket, key, version_id).ok()??;
        if record.is_delete_marker {
            return None;
        }
        match record.acl.as_deref().map(Acl::from_json) {
            Some(Ok(acl)) => Some(acl),
            _ => {
                let bucket = self.meta.get_bucket(bucket).ok()??;
                Some(Acl::private(&bucket.owner))
            }
        }
    }

    /// Whether the ACLs of an ACL-enabled bucket let `caller` do `operation`. Blocking.
    pub fn allows(
        &self,
        caller: Caller<'_>,
        operation: &str,
        bucket: &str,
        key: Option<&str>,
        version_id: Option<&str>,
        ignore_public: impl FnOnce() -> bool,
    ) -> bool {
        use doc::Permission as P;
        if self.ownership(bucket) == Ownership::Enforced {
            return false;
        }
        let (permission, on_object) = match operation {
            "GetObject" | "HeadObject" | "GetObjectAttributes" => (P::Read, true),
            "GetObjectAcl" => (P::ReadAcp, true),
            "PutObjectAcl" => (P::WriteAcp, true),
            "ListObjects"
            | "ListObjectsV2"
            | "ListObjectVersions"
            | "HeadBucket"
            | "ListMultipartUploads"
            | "ListParts" => (P::Read, false),
            "PutObject"
            | "PostObject"
            | "DeleteObject"
            | "DeleteObjects"
            | "CreateMultipartUpload"
            | "UploadPart"
            | "UploadPartCopy"
            | "CompleteMultipartUpload"
            | "AbortMultipartUpload"
            | "CopyObject" => (P::Write, false),
            "GetBucketAcl" => (P::ReadAcp, false),
            "PutBucketAcl" => (P::WriteAcp, false),
            _ => return false,
        };
        let acl = match (on_object, key) {
            // As on AWS, a caller who may list the bucket learns that an object is missing
            // (404) rather than being refused (403): with no object, the bucket's READ counts.
            (true, Some(key)) => self
                .object_acl(bucket, key, version_id)
                .map(|acl| (acl, permission))
                .or_else(|| self.bucket_acl(bucket).map(|acl| (acl, P::Read))),
            (true, None) => None,
            (false, _) => self.bucket_acl(bucket).map(|acl| (acl, permission)),
        };
        acl.is_some_and(|(acl, permission)| acl.allows(caller, permission, ignore_public()))
    }
}

fn document_error(e: meridian_documents::DocumentError) -> S3Error {
    super::errors::document_error(e)
}

/// The ACL `x-amz-acl` and `x-amz-grant-*` ask for (the owner's FULL_CONTROL when neither).
pub(super) fn acl_of_headers(
    canned: Option<&str>,
    grants: &GrantHeaders<'_>,
    owner: &str,
    bucket_owner: &str,
    users: &dyn doc::Users,
) -> S3Result<Acl> {
    use doc::Permission as P;
    if grants.any() {
        if canned.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "Specifying both Canned ACLs and Header Grants is not allowed"
            ));
        }
        // The order RGW lists them in (and the s3-tests expect): from the least to the most.
        let headers: Vec<(P, &str)> = [
            (P::Read, grants.read),
            (P::Write, grants.write),
            (P::ReadAcp, grants.read_acp),
            (P::WriteAcp, grants.write_acp),
            (P::FullControl, grants.full_control),
        ]
        .into_iter()
        .filter_map(|(p, v)| Some((p, v?)))
        .collect();
        return Acl::from_grant_headers(owner, &headers, users).map_err(document_error);
    }
    Acl::canned(canned.unwrap_or("private"), owner, bucket_owner).map_err(document_error)
}

/// An `AccessControlPolicy` document as an ACL.
pub(super) fn acl_of_policy(
    policy: &AccessControlPolicy,
    owner: &str,
    users: &dyn doc::Users,
) -> S3Result<Acl> {
    let mut grants = Vec::new();
    for g in policy.grants.iter().flatten() {
        let (Some(grantee), Some(permission)) = (&g.grantee, &g.permission) else {
            return Err(s3_error!(
                MalformedACLError,
                "A grant needs a grantee and a permission"
            ));
        };
        let permission = doc::Permission::parse(permission.as_str())
            .ok_or_else(|| s3_error!(MalformedACLError, "Unknown permission"))?;
        let grantee = match grantee.type_.as_str() {
            Type::CANONICAL_USER => {
                doc::user(grantee.id.as_deref().unwrap_or(""), users).map_err(document_error)?
            }
            Type::GROUP => grantee
                .uri
                .as_deref()
                .and_then(doc::Grantee::group)
                .ok_or_else(|| s3_error!(InvalidArgument, "Invalid group uri"))?,
            Type::AMAZON_CUSTOMER_BY_EMAIL => doc::Grantee::User(
                grantee
                    .email_address
                    .as_deref()
                    .and_then(|e| users.by_email(e))
                    .ok_or_else(|| document_error(doc::unresolvable_email()))?,
            ),
            _ => return Err(s3_error!(MalformedACLError, "Unknown grantee type")),
        };
        grants.push(doc::Grant {
            grantee,
            permission,
        });
    }
    Ok(Acl {
        owner: owner.to_owned(),
        grants,
    })
}

/// An ACL as S3 answers it.
pub(super) fn dto_of_acl(acl: &Acl, users: &crate::auth::Users) -> (Option<Owner>, Option<Grants>) {
    let (id, display) = users.canonical(&acl.owner);
    let owner = Owner {
        id: Some(id),
        display_name: Some(display),
    };
    // Group grants first, then users', each in the order stored.
    let (groups, people): (Vec<_>, Vec<_>) = acl
        .grants
        .iter()
        .partition(|g| !matches!(g.grantee, doc::Grantee::User(_)));
    let grants = groups
        .into_iter()
        .chain(people)
        .map(|g| {
            let grantee = match &g.grantee {
                doc::Grantee::User(key) => {
                    let (id, display) = users.canonical(key);
                    Grantee {
                        display_name: Some(display),
                        email_address: None,
                        id: Some(id),
                        type_: Type::from_static(Type::CANONICAL_USER),
                        uri: None,
                    }
                }
                group => Grantee {
                    display_name: None,
                    email_address: None,
                    id: None,
                    type_: Type::from_static(Type::GROUP),
                    uri: group.uri().map(str::to_owned),
                },
            };
            Grant {
                grantee: Some(grantee),
                permission: Some(Permission::from(g.permission.as_str().to_owned())),
            }
        })
        .collect();
    (Some(owner), Some(grants))
}
