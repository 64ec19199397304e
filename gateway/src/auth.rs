//! Who may do what: the users (their `[[users]]` configuration is defined here), the
//! secret-key lookup s3s uses to verify signatures, and the access hook that every request
//! passes through.
//!
//! The hook denies by default: s3s calls it for unsigned requests too, and one reaches
//! storage only where a bucket policy allows everyone.

use std::collections::HashMap;
use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{CopyObjectInput, DeleteObjectsInput, UploadPartCopyInput};
use s3s::path::S3Path;
use s3s::{s3_error, S3Request, S3Result};
use serde::Deserialize;

use crate::bucket_policy::{action_of, resource_of, Decision, Policies, Policy, RequestContext};

/// A `[[users]]` entry: an access key, its secret and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub access_key: String,
    pub secret_key: String,
    #[serde(default)]
    pub grants: Vec<GrantConfig>,
    /// May read `/_meridian/metrics` (e.g. the user Prometheus scrapes as).
    #[serde(default)]
    pub metrics: bool,
}

/// Access to a bucket, or to the buckets a pattern names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// A bucket name, or a prefix ending in `*` (`"ml-*"`), or `"*"` for every bucket.
    pub bucket: String,
    pub access: Access,
    /// May remove or shorten GOVERNANCE Object Lock retention with
    /// `x-amz-bypass-governance-retention: true` (`s3:BypassGovernanceRetention`).
    #[serde(default)]
    pub bypass_governance_retention: bool,
}

/// What a grant allows, each level including the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    Read,
    ReadWrite,
    /// Read-write, plus writing replicas (`x-meridian-replica-*`): for the user a peer
    /// region replicates as.
    Replicate,
}

/// An authenticated caller, put into the request's extensions by the access hook.
#[derive(Debug, Clone)]
pub struct Principal {
    pub access_key: String,
    pub is_root: bool,
    /// May read `/_meridian/metrics`.
    pub metrics: bool,
    grants: Arc<[GrantConfig]>,
}

impl Principal {
    /// The strongest access this principal has on `bucket`, if any.
    pub fn access_to(&self, bucket: &str) -> Option<Access> {
        if self.is_root {
            return Some(Access::Replicate);
        }
        self.grants
            .iter()
            .filter(|g| grant_matches(&g.bucket, bucket))
            .map(|g| g.access)
            .max()
    }

    pub fn can_read(&self, bucket: &str) -> bool {
        self.access_to(bucket).is_some()
    }

    pub fn can_write(&self, bucket: &str) -> bool {
        self.access_to(bucket) >= Some(Access::ReadWrite)
    }

    /// Has a grant allowing it to bypass GOVERNANCE retention in `bucket` (root always may).
    pub fn may_bypass_governance(&self, bucket: &str) -> bool {
        self.is_root
            || self
                .grants
                .iter()
                .any(|g| g.bypass_governance_retention && grant_matches(&g.bucket, bucket))
    }

    /// May write replicas (requests with `x-meridian-replica-*` headers) into `bucket`.
    pub fn can_replicate(&self, bucket: &str) -> bool {
        self.access_to(bucket) == Some(Access::Replicate)
    }
}

fn grant_matches(pattern: &str, bucket: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => bucket.starts_with(prefix),
        None => pattern == bucket,
    }
}

struct User {
    secret_key: String,
    principal: Principal,
}

/// The user table, shared by the signature check and the access hook.
#[derive(Clone)]
pub struct Users {
    by_access_key: Arc<HashMap<String, User>>,
}

impl Users {
    /// Root with its key and secret, and the configured users.
    pub fn new((root_key, root_secret): (String, String), users: &[UserConfig]) -> Users {
        let mut map = HashMap::new();
        for u in users {
            let principal = Principal {
                access_key: u.access_key.clone(),
                is_root: false,
                metrics: u.metrics,
                grants: u.grants.clone().into(),
            };
            map.insert(
                u.access_key.clone(),
                User {
                    secret_key: u.secret_key.clone(),
                    principal,
                },
            );
        }
        // Root last, so a configured user cannot shadow it.
        let principal = Principal {
            access_key: root_key.clone(),
            is_root: true,
            metrics: true,
            grants: Arc::new([]),
        };
        map.insert(
            root_key,
            User {
                secret_key: root_secret,
                principal,
            },
        );
        Users {
            by_access_key: Arc::new(map),
        }
    }

    pub fn principal(&self, access_key: &str) -> Option<&Principal> {
        self.by_access_key.get(access_key).map(|u| &u.principal)
    }

    /// The principal and secret key of `access_key` (for verifying signatures).
    pub fn credentials(&self, access_key: &str) -> Option<(Principal, String)> {
        self.by_access_key
            .get(access_key)
            .map(|u| (u.principal.clone(), u.secret_key.clone()))
    }
}

#[async_trait::async_trait]
impl S3Auth for Users {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.by_access_key.get(access_key) {
            Some(user) => Ok(SecretKey::from(user.secret_key.as_str())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

/// What an operation needs on its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Any authenticated principal (ListBuckets filters its answer per principal).
    Authenticated,
    Read,
    Write,
}

fn need_of(operation: &str) -> Need {
    match operation {
        "ListBuckets" => Need::Authenticated,
        op if op.starts_with("Get") || op.starts_with("Head") || op.starts_with("List") => {
            Need::Read
        }
        _ => Need::Write,
    }
}

/// The access hook. A request is allowed when nothing denies it explicitly (a bucket
/// policy's Deny) and something allows it: a grant of the signed principal, or the bucket's
/// policy (which alone can let anonymous requests in). While the region is fenced, no
/// client writes.
#[derive(Clone)]
pub struct AccessPolicy {
    users: Users,
    fence: Option<crate::fence::Fence>,
    /// Where bucket policies are read from, and their cache.
    policies: Option<(meridian_metadata::MetaStore, Policies)>,
}

impl Principal {
    /// The caller of an unsigned request: no grants, allowed only what a bucket policy
    /// allows everyone.
    pub fn anonymous() -> Principal {
        Principal {
            access_key: "anonymous".into(),
            is_root: false,
            metrics: false,
            grants: Arc::new([]),
        }
    }
}

/// What a policy check knows of the request beyond principal, action and resource.
#[derive(Clone, Copy, Default)]
struct Facts<'a> {
    secure: bool,
    source_ip: Option<std::net::IpAddr>,
    prefix: Option<&'a str>,
    encryption: meridian_policy::EncryptionHeaders<'a>,
}

impl AccessPolicy {
    pub fn new(
        users: Users,
        fence: Option<crate::fence::Fence>,
        policies: Option<(meridian_metadata::MetaStore, Policies)>,
    ) -> AccessPolicy {
        AccessPolicy {
            users,
            fence,
            policies,
        }
    }

    /// The signed principal; `None` for an unsigned request.
    fn principal_of(&self, cx: &S3AccessContext<'_>) -> S3Result<Option<Principal>> {
        let Some(credentials) = cx.credentials() else {
            return Ok(None);
        };
        self.users
            .principal(&credentials.access_key)
            .cloned()
            .map(Some)
            .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))
    }

    /// The bucket's policy, if it has one (parsed once, then cached until it changes).
    fn policy(&self, bucket: &str) -> Option<Arc<Policy>> {
        let (meta, policies) = self.policies.as_ref()?;
        if let Some(cached) = policies.cached(bucket) {
            return cached;
        }
        let policy = match off_the_runtime(|| {
            meta.get_bucket_config(bucket, crate::bucket_policy::DOCUMENT)
        }) {
            Ok(Some(doc)) => {
                match Policy::parse(&String::from_utf8_lossy(&doc), bucket, &|_| true) {
                    Ok(mut p) => {
                        if restricts_public(meta, bucket) {
                            p.restrict_public();
                        }
                        Some(Arc::new(p))
                    }
                    Err(e) => {
                        // Stored policies were checked; an unreadable one denies nothing it
                        // should not allow: it allows nothing either.
                        tracing::error!(bucket, error = %e, "stored bucket policy unreadable; ignored");
                        None
                    }
                }
            }
            _ => None,
        };
        policies.remember(bucket, policy.clone());
        policy
    }

    /// The bucket policy's decision on `action` by `signer` (`None`: anonymous) on
    /// `bucket`/`key`.
    fn decide(
        &self,
        signer: Option<&Principal>,
        action: &str,
        bucket: &str,
        key: Option<&str>,
        version_id: Option<&str>,
        facts: Facts<'_>,
    ) -> Decision {
        let Some(policy) = self.policy(bucket) else {
            return Decision::NoOpinion;
        };
        let tags = match (key, policy.needs_object_tags()) {
            (Some(key), true) => self.policies.as_ref().and_then(|(meta, _)| {
                off_the_runtime(|| meta.get_version(bucket, key, version_id))
                    .ok()
                    .flatten()
                    .filter(|v| !v.is_delete_marker)
                    .map(|v| v.tags)
            }),
            _ => None,
        };
        policy.evaluate(&RequestContext {
            principal: signer.map(|p| p.access_key.as_str()),
            action,
            resource: resource_of(bucket, key),
            secure: facts.secure,
            source_ip: facts.source_ip,
            prefix: facts.prefix,
            object_tags: tags.as_deref(),
            encryption: facts.encryption,
        })
    }

    /// A copy (CopyObject, UploadPartCopy) must be allowed to read its source.
    fn check_copy_source(
        &self,
        extensions: &http::Extensions,
        source: &s3s::dto::CopySource,
    ) -> S3Result<()> {
        let s3s::dto::CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = source
        else {
            return Ok(());
        };
        let principal = extensions.get::<Principal>().ok_or_else(denied)?;
        let signed = extensions.get::<Signed>().is_some_and(|s| s.0);
        let facts = facts_of(extensions);
        if self.may_read_copy_source(principal, signed, bucket, key, version_id.as_deref(), facts) {
            Ok(())
        } else {
            Err(denied())
        }
    }

    /// Reading the source of a copy: the source bucket's policy, then the grants.
    fn may_read_copy_source(
        &self,
        principal: &Principal,
        signed: bool,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        facts: Facts<'_>,
    ) -> bool {
        let action = if version_id.is_some() {
            "s3:GetObjectVersion"
        } else {
            "s3:GetObject"
        };
        let signer = signed.then_some(principal);
        match self.decide(signer, action, bucket, Some(key), version_id, facts) {
            Decision::Deny => false,
            Decision::Allow => true,
            Decision::NoOpinion => signed && principal.can_read(bucket),
        }
    }
}

fn principal_in<T>(req: &S3Request<T>) -> S3Result<&Principal> {
    req.extensions
        .get::<Principal>()
        .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))
}

fn facts_of(extensions: &http::Extensions) -> Facts<'static> {
    let conn = extensions.get::<crate::request::Connection>();
    Facts {
        secure: conn.is_some_and(|c| c.secure),
        source_ip: conn.map(|c| c.remote.ip()),
        prefix: None,
        encryption: Default::default(),
    }
}

fn denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

#[async_trait::async_trait]
impl S3Access for AccessPolicy {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let slot = cx
            .extensions_mut()
            .get::<crate::request::RequestSlot>()
            .cloned();
        let (bucket, key) = match cx.s3_path() {
            S3Path::Root => (None, None),
            S3Path::Bucket { bucket } => (Some(bucket.to_string()), None),
            S3Path::Object { bucket, key } => (Some(bucket.to_string()), Some(key.to_string())),
        };
        let operation = cx.s3_op().name().to_owned();
        let operation = operation.as_str();
        if let Some(slot) = &slot {
            let principal = cx.credentials().map(|c| c.access_key.clone());
            let (b, k) = (bucket.clone(), key.clone());
            slot.update(|facts| {
                facts.operation = Some(operation.to_owned());
                facts.principal = principal;
                facts.bucket = b;
                facts.key = k;
            });
        }
        let signed = self.principal_of(cx)?;
        let is_signed = signed.is_some();
        let principal = signed.unwrap_or_else(Principal::anonymous);
        let need = need_of(operation);
        let granted = is_signed
            && match (&bucket, need) {
                (_, Need::Authenticated) => true,
                (None, _) => principal.is_root,
                (Some(bucket), Need::Read) => principal.can_read(bucket),
                (Some(bucket), _) => principal.can_write(bucket),
            };
        // Without a bucket policy (the common case) the grants alone decide, and nothing
        // below is computed.
        let has_policy = bucket.as_deref().is_some_and(|b| self.policy(b).is_some());
        let decision = match (&bucket, has_policy) {
            // DeleteObjects is decided per key, in its own hook below.
            (Some(_), true) if operation == "DeleteObjects" => Decision::NoOpinion,
            (Some(bucket), true) => {
                let query = cx.uri().query();
                let version_id = crate::query::value(query, "versionId");
                let prefix = crate::query::value(query, "prefix");
                let conn = cx
                    .extensions_mut()
                    .get::<crate::request::Connection>()
                    .copied();
                let header = |name: &str| cx.headers().get(name).and_then(|v| v.to_str().ok());
                let facts = Facts {
                    secure: conn.is_some_and(|c| c.secure),
                    source_ip: conn.map(|c| c.remote.ip()),
                    prefix: prefix.as_deref(),
                    encryption: meridian_policy::EncryptionHeaders {
                        server_side_encryption: header("x-amz-server-side-encryption"),
                        kms_key_id: header("x-amz-server-side-encryption-aws-kms-key-id"),
                        customer_algorithm: header(
                            "x-amz-server-side-encryption-customer-algorithm",
                        ),
                    },
                };
                match action_of(operation, version_id.is_some()) {
                    Some(action) => self.decide(
                        is_signed.then_some(&principal),
                        action,
                        bucket,
                        key.as_deref(),
                        version_id.as_deref(),
                        facts,
                    ),
                    None => Decision::NoOpinion,
                }
            }
            _ => Decision::NoOpinion,
        };
        // Root can always manage a bucket's policy, so a policy cannot lock everyone out.
        let policy_management = principal.is_root
            && matches!(
                operation,
                "GetBucketPolicy" | "PutBucketPolicy" | "DeleteBucketPolicy"
            );
        let allowed = match decision {
            Decision::Deny => policy_management,
            Decision::Allow => true,
            Decision::NoOpinion => granted || (operation == "DeleteObjects" && has_policy),
        };
        if !allowed {
            return Err(denied());
        }
        let replica = meridian_replicator::headers::is_replica_request(cx.headers());
        if need == Need::Write && !replica && self.fence.as_ref().is_some_and(|f| f.is_up()) {
            return Err(s3_error!(
                SlowDown,
                "This region is fenced for a failover: write to its peer region"
            ));
        }
        // Replica headers make the server keep a version id, mtime and ETag it did not
        // compute: only root and replication users may send them, whatever the operation.
        if replica {
            let may = is_signed
                && match &bucket {
                    Some(bucket) => principal.can_replicate(bucket),
                    None => principal.is_root,
                };
            if !may {
                tracing::warn!(principal = %principal.access_key, "replica headers from a principal without the replicate grant; refused");
                return Err(denied());
            }
        }
        if let (Some(bucket), true) = (&bucket, asks_bypass(cx.headers())) {
            let decision = match has_policy {
                true => self.decide(
                    is_signed.then_some(&principal),
                    "s3:BypassGovernanceRetention",
                    bucket,
                    key.as_deref(),
                    None,
                    facts_of(cx.extensions_mut()),
                ),
                false => Decision::NoOpinion,
            };
            let may = match decision {
                Decision::Deny => false,
                Decision::Allow => true,
                Decision::NoOpinion => is_signed && principal.may_bypass_governance(bucket),
            };
            if may {
                cx.extensions_mut().insert(BypassGovernance);
            }
        }
        cx.extensions_mut().insert(Signed(is_signed));
        cx.extensions_mut().insert(principal);
        Ok(())
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        self.check_copy_source(&req.extensions, &req.input.copy_source)
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        self.check_copy_source(&req.extensions, &req.input.copy_source)
    }

    /// Every key of a batch delete is decided as its own DeleteObject. As on S3, the keys
    /// denied are answered with an AccessDenied entry each and the others are deleted: the
    /// handler reads the denied ones from [`DeniedDeletes`].
    async fn delete_objects(&self, req: &mut S3Request<DeleteObjectsInput>) -> S3Result<()> {
        let principal = principal_in(req)?;
        let signed = req.extensions.get::<Signed>().is_some_and(|s| s.0);
        let bucket = &req.input.bucket;
        if self.policy(bucket).is_none() {
            // The grants decided, in `check`.
            return Ok(());
        }
        let granted = signed && principal.can_write(bucket);
        let facts = facts_of(&req.extensions);
        let mut denied = std::collections::HashSet::new();
        for object in &req.input.delete.objects {
            let version_id = object.version_id.as_deref();
            let action = if version_id.is_some() {
                "s3:DeleteObjectVersion"
            } else {
                "s3:DeleteObject"
            };
            let decision = self.decide(
                signed.then_some(principal),
                action,
                bucket,
                Some(&object.key),
                version_id,
                facts,
            );
            let allowed = match decision {
                Decision::Deny => false,
                Decision::Allow => true,
                Decision::NoOpinion => granted,
            };
            if !allowed {
                denied.insert((object.key.clone(), object.version_id.clone()));
            }
        }
        req.extensions.insert(DeniedDeletes(Arc::new(denied)));
        Ok(())
    }
}

/// The keys (and version ids) of a DeleteObjects request its caller may not delete.
#[derive(Clone, Debug, Default)]
pub struct DeniedDeletes(pub Arc<std::collections::HashSet<(String, Option<String>)>>);

impl DeniedDeletes {
    pub fn contains(&self, key: &str, version_id: Option<&str>) -> bool {
        self.0
            .contains(&(key.to_owned(), version_id.map(str::to_owned)))
    }
}

/// The request asks to bypass GOVERNANCE retention (`x-amz-bypass-governance-retention:
/// true`) and its principal may: root, a grant with `bypass_governance_retention`, or a
/// bucket policy allowing `s3:BypassGovernanceRetention`. Without it the header is ignored
/// (and a locked version stays locked: AccessDenied).
#[derive(Clone, Copy, Debug)]
pub struct BypassGovernance;

fn asks_bypass(headers: &http::HeaderMap) -> bool {
    headers
        .get("x-amz-bypass-governance-retention")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Whether the request was signed (an extension beside the [`Principal`], which is the
/// anonymous one otherwise).
#[derive(Clone, Copy, Debug)]
struct Signed(bool);

/// Whether the bucket's public access block sets RestrictPublicBuckets.
fn restricts_public(meta: &meridian_metadata::MetaStore, bucket: &str) -> bool {
    use crate::s3::public_access::{PublicAccessBlock, DOCUMENT};
    off_the_runtime(|| meta.get_bucket_config(bucket, DOCUMENT))
        .ok()
        .flatten()
        .and_then(|doc| PublicAccessBlock::from_json(&doc).ok())
        .is_some_and(|b| b.restrict_public_buckets)
}

/// Runs a blocking RocksDB read from inside the (synchronous) access check: on a
/// multi-threaded runtime the worker hands its other tasks to the rest of the pool first
/// (`block_in_place`), so a slow read stalls this request only. Elsewhere (a test on a
/// single-threaded runtime, no runtime) it simply runs.
fn off_the_runtime<T>(read: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(read)
        }
        _ => read(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEV_ROOT_USER};

    fn from_config(config: &Config) -> Users {
        let (root_key, root_secret, _) = config.root_credentials();
        Users::new((root_key, root_secret), &config.users)
    }

    fn users() -> Users {
        let mut config = Config::default();
        config.users.push(UserConfig {
            access_key: "reader".into(),
            secret_key: "reader-secret".into(),
            metrics: false,
            grants: vec![GrantConfig {
                bucket: "models".into(),
                access: Access::Read,
                bypass_governance_retention: false,
            }],
        });
        config.users.push(UserConfig {
            access_key: "writer".into(),
            secret_key: "writer-secret".into(),
            metrics: false,
            grants: vec![
                GrantConfig {
                    bucket: "ml-*".into(),
                    access: Access::ReadWrite,
                    bypass_governance_retention: false,
                },
                GrantConfig {
                    bucket: "models".into(),
                    access: Access::Read,
                    bypass_governance_retention: false,
                },
            ],
        });
        from_config(&config)
    }

    #[test]
    fn grants_are_per_bucket_and_prefix() {
        let users = users();
        let reader = users.principal("reader").unwrap();
        assert!(reader.can_read("models"));
        assert!(!reader.can_write("models"));
        assert!(!reader.can_read("other"));
        let writer = users.principal("writer").unwrap();
        assert!(writer.can_write("ml-train"));
        assert!(!writer.can_write("models"));
        assert!(writer.can_read("models"));
        assert!(
            !writer.can_read("ml"),
            "prefix grant ml-* does not cover ml"
        );
    }

    #[test]
    fn replicate_grants_include_read_write() {
        let mut config = Config::default();
        config.users.push(UserConfig {
            access_key: "peer".into(),
            secret_key: "peer-secret".into(),
            metrics: false,
            grants: vec![GrantConfig {
                bucket: "*".into(),
                access: Access::Replicate,
                bypass_governance_retention: false,
            }],
        });
        let users = from_config(&config);
        let peer = users.principal("peer").unwrap();
        assert!(peer.can_read("any") && peer.can_write("any") && peer.can_replicate("any"));
        let writer = users.principal(DEV_ROOT_USER).unwrap();
        assert!(writer.can_replicate("any"), "root may write replicas");
        let users = super::tests::users();
        assert!(!users.principal("writer").unwrap().can_replicate("ml-train"));
    }

    #[test]
    fn root_can_do_everything_and_unknown_keys_are_nobody() {
        let users = users();
        let root = users.principal(DEV_ROOT_USER).unwrap();
        assert!(root.is_root && root.can_write("anything"));
        assert!(users.principal("stranger").is_none());
    }

    #[test]
    fn operations_map_to_read_or_write() {
        assert_eq!(need_of("GetObject"), Need::Read);
        assert_eq!(need_of("HeadBucket"), Need::Read);
        assert_eq!(need_of("ListObjectsV2"), Need::Read);
        assert_eq!(need_of("PutObject"), Need::Write);
        assert_eq!(need_of("DeleteObjects"), Need::Write);
        assert_eq!(need_of("CreateBucket"), Need::Write);
        assert_eq!(need_of("ListBuckets"), Need::Authenticated);
    }
}
