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

use meridian_metadata::{AccessKeyRecord, GrantAccess, KeyGrant, Nanos};
use meridian_store::access_keys::{AccessKeys, KeyError, OpenKey, Secret};
use zeroize::Zeroizing;

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
    /// How ACLs and owners name this user: its canonical user id (default: the access key),
    /// display name and e-mail address (for grants by `emailAddress`).
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// How ACLs and owners name a user.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub user_id: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
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

/// What a grant in the configuration file allows. `read-write` is today's name for read
/// plus write (it no longer includes the bucket's configuration: that is `owner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    Read,
    ReadWrite,
    /// Read-write, plus writing replicas (`x-meridian-replica-*`): for the user a peer
    /// region replicates as.
    Replicate,
    Write,
    Owner,
    Create,
    Admin,
}

impl Access {
    /// The grants of the run-time model this access stands for.
    fn grants(self) -> &'static [GrantAccess] {
        match self {
            Access::Read => &[GrantAccess::Read],
            Access::ReadWrite => &[GrantAccess::Read, GrantAccess::Write],
            Access::Replicate => &[GrantAccess::Replicate],
            Access::Write => &[GrantAccess::Write],
            Access::Owner => &[GrantAccess::Owner],
            Access::Create => &[GrantAccess::Create],
            Access::Admin => &[GrantAccess::Admin],
        }
    }
}

/// An authenticated caller, put into the request's extensions by the access hook.
#[derive(Debug, Clone)]
pub struct Principal {
    pub access_key: String,
    pub is_root: bool,
    /// May read `/_meridian/metrics`.
    pub metrics: bool,
    grants: Arc<[KeyGrant]>,
    /// Bucket patterns where GOVERNANCE retention may be bypassed.
    bypass: Arc<[String]>,
}

impl Principal {
    /// Whether a grant gives `access` on `bucket` (`replicate` includes read and write).
    pub fn has(&self, bucket: &str, access: GrantAccess) -> bool {
        self.is_root
            || self.grants.iter().any(|g| {
                grant_matches(&g.bucket, bucket)
                    && (g.access == access
                        || (g.access == GrantAccess::Replicate
                            && matches!(access, GrantAccess::Read | GrantAccess::Write)))
            })
    }

    pub fn can_read(&self, bucket: &str) -> bool {
        self.has(bucket, GrantAccess::Read)
    }

    pub fn can_write(&self, bucket: &str) -> bool {
        self.has(bucket, GrantAccess::Write)
    }

    /// Any grant at all on `bucket` (ListBuckets shows it).
    pub fn sees(&self, bucket: &str) -> bool {
        self.is_root || self.grants.iter().any(|g| grant_matches(&g.bucket, bucket))
    }

    /// May use the admin API (keys, grants, replication, lifecycle).
    pub fn is_admin(&self) -> bool {
        self.is_root || self.grants.iter().any(|g| g.access == GrantAccess::Admin)
    }

    /// Has a grant allowing it to bypass GOVERNANCE retention in `bucket` (root always may).
    pub fn may_bypass_governance(&self, bucket: &str) -> bool {
        self.is_root || self.bypass.iter().any(|p| grant_matches(p, bucket))
    }

    /// May write replicas (requests with `x-meridian-replica-*` headers) into `bucket`.
    pub fn can_replicate(&self, bucket: &str) -> bool {
        self.is_root
            || self
                .grants
                .iter()
                .any(|g| g.access == GrantAccess::Replicate && grant_matches(&g.bucket, bucket))
    }

    /// May send this region a peer's key changes: root, or a `replicate` grant on `*`.
    pub fn replicates_everything(&self) -> bool {
        self.is_root
            || self
                .grants
                .iter()
                .any(|g| g.access == GrantAccess::Replicate && g.bucket == "*")
    }
}

fn grant_matches(pattern: &str, bucket: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => bucket.starts_with(prefix),
        None => pattern == bucket,
    }
}

/// One identity of the user table.
struct User {
    principal: Principal,
    secret: Secret,
    /// The secret before a rotation, and until when it is accepted.
    previous: Option<(Secret, Nanos)>,
    enabled: bool,
    expires: Option<Nanos>,
    /// From the configuration file (root, `[[users]]`): read-only at run time.
    bootstrap: bool,
    record: Option<AccessKeyRecord>,
    identity: Identity,
}

impl User {
    fn usable(&self, now: Nanos) -> bool {
        self.enabled && self.expires.is_none_or(|t| now < t)
    }
}

/// The user table, shared by the signature check, the access hook and the admin API: the
/// configuration file's identities, and the run-time keys of the store, kept in memory
/// (secrets in clear only here, wiped when an entry goes) and updated on every change.
#[derive(Clone)]
pub struct Users {
    table: Arc<std::sync::RwLock<HashMap<String, Arc<User>>>>,
    /// The bootstrap identities, which run-time keys cannot shadow.
    bootstrap: Arc<std::collections::HashSet<String>>,
    keys: Option<Arc<AccessKeys>>,
    /// Keys with an old secret still kept (in grace, or expired but not yet changed again):
    /// while none, the grace check of a request costs nothing.
    in_grace: Arc<std::sync::atomic::AtomicUsize>,
}

impl Users {
    /// Root with its key and secret, and the configured users.
    pub fn new((root_key, root_secret): (String, String), users: &[UserConfig]) -> Users {
        let mut map = HashMap::new();
        for u in users {
            let grants: Vec<KeyGrant> = u
                .grants
                .iter()
                .flat_map(|g| {
                    g.access.grants().iter().map(|&access| KeyGrant {
                        bucket: g.bucket.clone(),
                        access,
                    })
                })
                .collect();
            let bypass: Vec<String> = u
                .grants
                .iter()
                .filter(|g| g.bypass_governance_retention)
                .map(|g| g.bucket.clone())
                .collect();
            let principal = Principal {
                access_key: u.access_key.clone(),
                is_root: false,
                metrics: u.metrics,
                grants: grants.into(),
                bypass: bypass.into(),
            };
            let identity = Identity {
                user_id: u.user_id.clone(),
                display_name: u.display_name.clone(),
                email: u.email.clone(),
            };
            map.insert(
                u.access_key.clone(),
                Arc::new(User::bootstrap(principal, &u.secret_key, identity)),
            );
        }
        // Root last, so a configured user cannot shadow it.
        let principal = Principal {
            access_key: root_key.clone(),
            is_root: true,
            metrics: true,
            grants: Arc::new([]),
            bypass: Arc::new([]),
        };
        map.insert(
            root_key,
            Arc::new(User::bootstrap(
                principal,
                &root_secret,
                Identity::default(),
            )),
        );
        Users {
            bootstrap: Arc::new(map.keys().cloned().collect()),
            table: Arc::new(std::sync::RwLock::new(map)),
            keys: None,
            in_grace: Arc::default(),
        }
    }

    /// Adds the store's run-time keys, and keeps them current from now on.
    pub fn with_keys(mut self, keys: Arc<AccessKeys>) -> Result<Users, KeyError> {
        {
            let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
            for key in keys.load_all()? {
                if let Some((access_key, user)) = self.user_of(key) {
                    table.insert(access_key, Arc::new(user));
                }
            }
            self.recount(&table);
        }
        self.keys = Some(keys);
        Ok(self)
    }

    pub fn keys(&self) -> Option<&Arc<AccessKeys>> {
        self.keys.as_ref()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<User>>> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The table entry of a run-time key; `None` when a configured user has its access key.
    fn user_of(&self, key: OpenKey) -> Option<(String, User)> {
        let access_key = key.record.access_key.clone();
        if self.bootstrap.contains(&access_key) {
            tracing::warn!(%access_key, "a run-time key has the access key of a configured user; the configured one is used");
            return None;
        }
        let user = User {
            principal: Principal {
                access_key: access_key.clone(),
                is_root: false,
                metrics: false,
                grants: key.record.grants.clone().into(),
                bypass: Arc::new([]),
            },
            secret: key.secret,
            previous: key.previous.zip(key.record.previous_until),
            enabled: key.record.enabled,
            expires: key.record.expires,
            bootstrap: false,
            identity: Identity {
                display_name: (!key.record.name.is_empty()).then(|| key.record.name.clone()),
                ..Identity::default()
            },
            record: Some(key.record),
        };
        Some((access_key, user))
    }

    fn install(&self, key: OpenKey) {
        let Some((access_key, user)) = self.user_of(key) else {
            return;
        };
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        table.insert(access_key, Arc::new(user));
        self.recount(&table);
    }

    fn recount(&self, table: &HashMap<String, Arc<User>>) {
        let n = table.values().filter(|u| u.previous.is_some()).count();
        self.in_grace.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether any key has an old secret that may still be in grace.
    pub fn any_in_grace(&self) -> bool {
        self.in_grace.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    /// Takes the stored state of `access_key` (after a change here or from a peer): the
    /// next request sees it.
    pub fn reload(&self, access_key: &str) -> Result<(), KeyError> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        match keys.record(access_key)? {
            Some(record) if !record.deleted => self.install(keys.open_key(record)?),
            _ => {
                if !self.bootstrap.contains(access_key) {
                    let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
                    table.remove(access_key);
                    self.recount(&table);
                }
            }
        }
        Ok(())
    }

    /// The principal of a usable (enabled, unexpired) key.
    pub fn principal(&self, access_key: &str) -> Option<Principal> {
        let now = meridian_metadata::now_nanos();
        self.read()
            .get(access_key)
            .filter(|u| u.usable(now))
            .map(|u| u.principal.clone())
    }

    /// The secret a signature by `access_key` is checked with: the current one, or the one
    /// before a rotation when the request was signed with it during its grace period.
    fn secret(&self, access_key: &str) -> Option<Secret> {
        let now = meridian_metadata::now_nanos();
        let table = self.read();
        let user = table.get(access_key).filter(|u| u.usable(now))?;
        if let Some((previous, until)) = &user.previous {
            if now < *until && crate::grace::signed_with_previous() {
                return Some(previous.clone());
            }
        }
        Some(user.secret.clone())
    }

    /// The secrets a signature by `access_key` may be made with now: the current one, and
    /// the one before a rotation while its grace period lasts.
    pub fn secrets(&self, access_key: &str) -> Vec<Secret> {
        let now = meridian_metadata::now_nanos();
        let table = self.read();
        let Some(user) = table.get(access_key).filter(|u| u.usable(now)) else {
            return Vec::new();
        };
        let previous = user.previous.as_ref().filter(|(_, until)| now < *until);
        std::iter::once(user.secret.clone())
            .chain(previous.map(|(s, _)| s.clone()))
            .collect()
    }

    /// The old secret of `access_key` while its rotation's grace period lasts.
    pub fn previous_secret(&self, access_key: &str) -> Option<Secret> {
        let now = meridian_metadata::now_nanos();
        let table = self.read();
        let user = table.get(access_key).filter(|u| u.usable(now))?;
        user.previous
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(s, _)| s.clone())
    }

    /// Root's canonical id, display name and e-mail address (from `[root]`).
    pub fn with_root_identity(self, root: &str, identity: Identity) -> Users {
        {
            let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
            if let Some(user) = table.get(root) {
                let user = User {
                    principal: user.principal.clone(),
                    secret: user.secret.clone(),
                    previous: None,
                    enabled: true,
                    expires: None,
                    bootstrap: true,
                    record: None,
                    identity,
                };
                table.insert(root.to_owned(), Arc::new(user));
            }
        }
        self
    }

    /// How ACLs and owners name `access_key`: (canonical id, display name).
    pub fn canonical(&self, access_key: &str) -> (String, String) {
        let table = self.read();
        let identity = table.get(access_key).map(|u| &u.identity);
        let id = identity
            .and_then(|i| i.user_id.clone())
            .unwrap_or_else(|| access_key.to_owned());
        let display = identity
            .and_then(|i| i.display_name.clone())
            .unwrap_or_else(|| id.clone());
        (id, display)
    }

    /// Whether `access_key` is one of the configuration file's identities.
    pub fn is_bootstrap(&self, access_key: &str) -> bool {
        self.bootstrap.contains(access_key)
    }

    /// Every identity for `key list`: the configured ones (read-only) and the run-time keys.
    pub fn list(&self) -> Vec<meridian_api::KeyInfo> {
        let mut out: Vec<_> = self.read().values().map(|u| u.info()).collect();
        out.sort_by(|a, b| a.access_key.cmp(&b.access_key));
        out
    }

    pub fn info(&self, access_key: &str) -> Option<meridian_api::KeyInfo> {
        self.read().get(access_key).map(|u| u.info())
    }
}

impl User {
    fn bootstrap(principal: Principal, secret: &str, identity: Identity) -> User {
        User {
            principal,
            secret: Zeroizing::new(secret.to_owned()),
            previous: None,
            enabled: true,
            expires: None,
            bootstrap: true,
            record: None,
            identity,
        }
    }

    fn info(&self) -> meridian_api::KeyInfo {
        let p = &self.principal;
        let mut grants: Vec<meridian_api::GrantInfo> = if p.is_root {
            vec![meridian_api::GrantInfo {
                bucket: "*".into(),
                access: "root".into(),
            }]
        } else {
            p.grants
                .iter()
                .map(|g| meridian_api::GrantInfo {
                    bucket: g.bucket.clone(),
                    access: g.access.as_str().into(),
                })
                .collect()
        };
        grants.sort();
        let r = self.record.as_ref();
        meridian_api::KeyInfo {
            access_key: p.access_key.clone(),
            name: r
                .map(|r| r.name.clone())
                .unwrap_or_else(|| if p.is_root { "root" } else { "configured user" }.to_owned()),
            source: if self.bootstrap { "config" } else { "runtime" }.into(),
            enabled: self.enabled,
            created: r.map(|r| rfc3339(r.created)),
            expires: self.expires.map(rfc3339),
            previous_secret_valid_until: self.previous.as_ref().map(|(_, t)| rfc3339(*t)),
            grants,
            changed_by: r.map(|r| r.changed_by.clone()),
            changed_in: r.map(|r| r.changed_in.clone()),
        }
    }
}

/// A time as RFC 3339, for the admin API.
pub fn rfc3339(t: Nanos) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(t as i128)
        .ok()
        .and_then(|t| {
            t.replace_nanosecond(0)
                .ok()?
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

#[async_trait::async_trait]
impl S3Auth for Users {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.secret(access_key) {
            Some(secret) => Ok(SecretKey::from(secret.as_str())),
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
    /// The bucket's configuration, and DeleteBucket.
    Owner,
    /// CreateBucket.
    Create,
}

/// A read of a bucket's configuration, which its `owner` grant may do too.
fn reads_configuration(operation: &str) -> bool {
    operation.starts_with("GetBucket")
        || matches!(
            operation,
            "GetObjectLockConfiguration" | "GetPublicAccessBlock" | "HeadBucket"
        )
}

fn need_of(operation: &str) -> Need {
    match operation {
        "ListBuckets" => Need::Authenticated,
        "CreateBucket" => Need::Create,
        "PutObjectLockConfiguration" | "PutPublicAccessBlock" | "DeletePublicAccessBlock" => {
            Need::Owner
        }
        op if op.starts_with("PutBucket") || op.starts_with("DeleteBucket") => Need::Owner,
        op if op.starts_with("Get") || op.starts_with("Head") || op.starts_with("List") => {
            Need::Read
        }
        _ => Need::Write,
    }
}

/// The access hook. A request is allowed when nothing denies it explicitly (a bucket
/// policy's Deny) and something allows it: a grant of the signed principal, or the bucket's
/// policy (which alone can let anonymous requests in). While the region is fenced, or the
/// node of a cluster does not hold its lease, no client writes.
#[derive(Clone)]
pub struct AccessPolicy {
    users: Users,
    fence: Option<crate::fence::Fence>,
    cluster: crate::cluster::ClusterGate,
    /// Where bucket policies are read from, and their cache.
    policies: Option<(meridian_metadata::MetaStore, Policies)>,
    /// Buckets' Object Ownership and ACLs (consulted when grants and policy do not decide).
    acls: Option<crate::s3::acl::AclCache>,
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
            bypass: Arc::new([]),
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
            cluster: crate::cluster::ClusterGate::default(),
            policies,
            acls: None,
        }
    }

    /// The same hook, refusing client writes while this node of a cluster does not hold
    /// its lease.
    pub fn with_cluster(self, cluster: crate::cluster::ClusterGate) -> AccessPolicy {
        AccessPolicy { cluster, ..self }
    }

    /// The same hook, letting the ACLs of ACL-enabled buckets allow requests too.
    pub fn with_acls(self, acls: crate::s3::acl::AclCache) -> AccessPolicy {
        AccessPolicy {
            acls: Some(acls),
            ..self
        }
    }

    /// Whether the bucket's (or object's) ACL allows `operation` to `signer` (`None`:
    /// anonymous), in a bucket whose Object Ownership enables ACLs.
    fn acl_allows(
        &self,
        signer: Option<&Principal>,
        operation: &str,
        bucket: &str,
        key: Option<&str>,
        version_id: Option<&str>,
    ) -> bool {
        let Some(acls) = &self.acls else {
            return false;
        };
        let caller = match signer {
            Some(p) => meridian_documents::acl::Caller::Signed(&p.access_key),
            None => meridian_documents::acl::Caller::Anonymous,
        };
        // The public access block is read only for buckets whose ACLs count.
        let ignore_public = || {
            self.policies
                .as_ref()
                .is_some_and(|(meta, _)| public_access_block(meta, bucket).ignore_public_acls)
        };
        off_the_runtime(|| acls.allows(caller, operation, bucket, key, version_id, ignore_public))
    }

    /// The signed principal; `None` for an unsigned request.
    fn principal_of(&self, cx: &S3AccessContext<'_>) -> S3Result<Option<Principal>> {
        let Some(credentials) = cx.credentials() else {
            return Ok(None);
        };
        self.users
            .principal(&credentials.access_key)
            .map(Some)
            .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))
    }

    /// Whether `principal` created `bucket` (its recorded owner has every right on it).
    fn owns(&self, principal: &Principal, bucket: &str) -> bool {
        let Some((meta, _)) = &self.policies else {
            return false;
        };
        off_the_runtime(|| meta.get_bucket(bucket))
            .ok()
            .flatten()
            .is_some_and(|b| b.owner == principal.access_key)
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
            Decision::NoOpinion => {
                (signed && (principal.can_read(bucket) || self.owns(principal, bucket)))
                    || self.acl_allows(
                        signed.then_some(principal),
                        "GetObject",
                        bucket,
                        Some(key),
                        version_id,
                    )
            }
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
                (Some(bucket), Need::Read) => {
                    principal.can_read(bucket)
                        || (reads_configuration(operation)
                            && principal.has(bucket, GrantAccess::Owner))
                        || self.owns(&principal, bucket)
                }
                (Some(bucket), Need::Write) => {
                    principal.can_write(bucket) || self.owns(&principal, bucket)
                }
                (Some(bucket), Need::Owner) => {
                    principal.has(bucket, GrantAccess::Owner) || self.owns(&principal, bucket)
                }
                (Some(bucket), Need::Create) => {
                    [GrantAccess::Create, GrantAccess::Write, GrantAccess::Owner]
                        .into_iter()
                        .any(|a| principal.has(bucket, a))
                }
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
                let copy_source = header("x-amz-copy-source").map(|v| {
                    percent_encoding::percent_decode_str(v.trim_start_matches('/'))
                        .decode_utf8_lossy()
                        .into_owned()
                });
                let others: Vec<(&str, &str)> = meridian_policy::HEADER_KEYS
                    .iter()
                    .chain(meridian_policy::AWS_HEADER_KEYS.iter())
                    .filter_map(|&name| match name {
                        "x-amz-copy-source" => Some((name, copy_source.as_deref()?)),
                        _ => Some((name, header(name)?)),
                    })
                    .collect();
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
                        others: &others,
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
            Decision::NoOpinion => {
                granted
                    || (operation == "DeleteObjects" && has_policy)
                    || bucket.as_deref().is_some_and(|b| {
                        let version_id = crate::query::value(cx.uri().query(), "versionId");
                        self.acl_allows(
                            is_signed.then_some(&principal),
                            operation,
                            b,
                            key.as_deref(),
                            version_id.as_deref(),
                        )
                    })
            }
        };
        if !allowed {
            return Err(denied());
        }
        let replica = meridian_replicator::headers::is_replica_request(cx.headers());
        if !matches!(need, Need::Read | Need::Authenticated)
            && !replica
            && self.fence.as_ref().is_some_and(|f| f.is_up())
        {
            return Err(s3_error!(
                SlowDown,
                "This region is fenced for a failover: write to its peer region"
            ));
        }
        if !matches!(need, Need::Read | Need::Authenticated) && !self.cluster.may_write() {
            return Err(s3_error!(
                SlowDown,
                "This node does not hold its lease in the cluster's control plane: it takes no writes until it does"
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
        let granted = signed && (principal.can_write(bucket) || self.owns(principal, bucket));
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
    off_the_runtime(|| public_access_block(meta, bucket)).restrict_public_buckets
}

/// The public access block in force on the bucket (its own with the region's). Blocking.
fn public_access_block(
    meta: &meridian_metadata::MetaStore,
    bucket: &str,
) -> crate::s3::public_access::PublicAccessBlock {
    use crate::s3::public_access::{PublicAccessBlock, DOCUMENT};
    meta.get_bucket_config(bucket, DOCUMENT)
        .ok()
        .flatten()
        .and_then(|doc| PublicAccessBlock::from_json(&doc).ok())
        .unwrap_or_default()
        .with_region()
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

impl meridian_documents::acl::Users for Users {
    fn by_id(&self, id: &str) -> Option<String> {
        let table = self.read();
        if table.contains_key(id) {
            return Some(id.to_owned());
        }
        table
            .iter()
            .find(|(_, u)| u.identity.user_id.as_deref() == Some(id))
            .map(|(k, _)| k.clone())
    }

    fn by_email(&self, email: &str) -> Option<String> {
        self.read()
            .iter()
            .find(|(_, u)| u.identity.email.as_deref() == Some(email))
            .map(|(k, _)| k.clone())
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
            user_id: None,
            display_name: None,
            email: None,
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
            user_id: None,
            display_name: None,
            email: None,
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
        assert!(
            !writer.has("ml-train", GrantAccess::Owner),
            "read-write is read + write, not the bucket's configuration"
        );
        assert!(!writer.is_admin() && users.principal(DEV_ROOT_USER).unwrap().is_admin());
    }

    #[test]
    fn replicate_grants_include_read_write() {
        let mut config = Config::default();
        config.users.push(UserConfig {
            access_key: "peer".into(),
            secret_key: "peer-secret".into(),
            metrics: false,
            user_id: None,
            display_name: None,
            email: None,
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
        assert_eq!(need_of("CreateBucket"), Need::Create);
        assert_eq!(need_of("ListBuckets"), Need::Authenticated);
        for config in [
            "PutBucketPolicy",
            "DeleteBucketPolicy",
            "PutBucketReplication",
            "PutBucketVersioning",
            "PutBucketLifecycleConfiguration",
            "PutObjectLockConfiguration",
            "PutBucketEncryption",
            "PutBucketTagging",
            "PutBucketOwnershipControls",
            "PutPublicAccessBlock",
            "DeleteBucket",
        ] {
            assert_eq!(need_of(config), Need::Owner, "{config}");
        }
        assert_eq!(need_of("PutObjectTagging"), Need::Write);
        assert_eq!(need_of("PutObjectRetention"), Need::Write);
    }
}
