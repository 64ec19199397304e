//! Who may do what: the users from the config, the secret-key lookup s3s uses to verify
//! signatures, and the access hook that every request passes through.
//!
//! The hook denies by default: s3s calls it for unsigned requests too, and a request
//! without valid credentials never reaches storage.

use std::collections::HashMap;
use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{CopyObjectInput, UploadPartCopyInput};
use s3s::path::S3Path;
use s3s::{s3_error, S3Request, S3Result};

use crate::config::{Access, Config, GrantConfig};

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
    pub fn from_config(config: &Config) -> Users {
        let (root_key, root_secret, _) = config.root_credentials();
        let mut map = HashMap::new();
        for u in &config.users {
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

/// The access hook: authenticated principals with a grant on the bucket, nothing else;
/// while the region is fenced, no client writes.
#[derive(Clone)]
pub struct AccessPolicy {
    users: Users,
    fence: Option<crate::fence::Fence>,
}

impl AccessPolicy {
    pub fn new(users: Users, fence: Option<crate::fence::Fence>) -> AccessPolicy {
        AccessPolicy { users, fence }
    }

    fn principal_of(&self, cx: &S3AccessContext<'_>) -> S3Result<Principal> {
        let Some(credentials) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        };
        self.users
            .principal(&credentials.access_key)
            .cloned()
            .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))
    }
}

fn principal_in<T>(req: &S3Request<T>) -> S3Result<&Principal> {
    req.extensions
        .get::<Principal>()
        .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))
}

fn require_read_of_copy_source(principal: &Principal, source_bucket: &str) -> S3Result<()> {
    if principal.can_read(source_bucket) {
        Ok(())
    } else {
        Err(s3_error!(AccessDenied, "Access Denied"))
    }
}

#[async_trait::async_trait]
impl S3Access for AccessPolicy {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let slot = cx
            .extensions_mut()
            .get::<crate::server::RequestSlot>()
            .cloned();
        if let Some(slot) = &slot {
            let (bucket, key) = match cx.s3_path() {
                S3Path::Root => (None, None),
                S3Path::Bucket { bucket } => (Some(bucket.to_string()), None),
                S3Path::Object { bucket, key } => (Some(bucket.to_string()), Some(key.to_string())),
            };
            let operation = cx.s3_op().name().to_owned();
            let principal = cx.credentials().map(|c| c.access_key.clone());
            slot.update(|facts| {
                facts.operation = Some(operation);
                facts.principal = principal;
                facts.bucket = bucket;
                facts.key = key;
            });
        }
        let principal = self.principal_of(cx)?;
        let need = need_of(cx.s3_op().name());
        let allowed = match (cx.s3_path(), need) {
            (_, Need::Authenticated) => true,
            (S3Path::Root, _) => principal.is_root,
            (S3Path::Bucket { bucket } | S3Path::Object { bucket, .. }, Need::Read) => {
                principal.can_read(bucket)
            }
            (S3Path::Bucket { bucket } | S3Path::Object { bucket, .. }, _) => {
                principal.can_write(bucket)
            }
        };
        if !allowed {
            return Err(s3_error!(AccessDenied, "Access Denied"));
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
            let may = match cx.s3_path() {
                S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => {
                    principal.can_replicate(bucket)
                }
                S3Path::Root => principal.is_root,
            };
            if !may {
                tracing::warn!(principal = %principal.access_key, "replica headers from a principal without the replicate grant; refused");
                return Err(s3_error!(AccessDenied, "Access Denied"));
            }
        }
        cx.extensions_mut().insert(principal);
        Ok(())
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        if let s3s::dto::CopySource::Bucket { bucket, .. } = &req.input.copy_source {
            require_read_of_copy_source(principal_in(req)?, bucket)?;
        }
        Ok(())
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        if let s3s::dto::CopySource::Bucket { bucket, .. } = &req.input.copy_source {
            require_read_of_copy_source(principal_in(req)?, bucket)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserConfig;

    fn users() -> Users {
        let mut config = Config::default();
        config.users.push(UserConfig {
            access_key: "reader".into(),
            secret_key: "reader-secret".into(),
            metrics: false,
            grants: vec![GrantConfig {
                bucket: "models".into(),
                access: Access::Read,
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
                },
                GrantConfig {
                    bucket: "models".into(),
                    access: Access::Read,
                },
            ],
        });
        Users::from_config(&config)
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
            }],
        });
        let users = Users::from_config(&config);
        let peer = users.principal("peer").unwrap();
        assert!(peer.can_read("any") && peer.can_write("any") && peer.can_replicate("any"));
        let writer = users.principal(crate::config::DEV_ROOT_USER).unwrap();
        assert!(writer.can_replicate("any"), "root may write replicas");
        let users = super::tests::users();
        assert!(!users.principal("writer").unwrap().can_replicate("ml-train"));
    }

    #[test]
    fn root_can_do_everything_and_unknown_keys_are_nobody() {
        let users = users();
        let root = users.principal(crate::config::DEV_ROOT_USER).unwrap();
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
