//! Access keys managed at run time: one record per key in `access_keys` (its secret sealed by
//! the caller; this crate never sees it in clear), and an entry in `admin_outbox` for every
//! change, in the same WriteBatch, so each peer region can be sent the keys that changed.
//!
//! Changes converge by last writer wins: every record carries when it changed and in which
//! region, a change older than the stored one is ignored, and a deleted key stays as a
//! tombstone so a deletion made during a partition wins over the older state a peer still
//! holds. An outbox entry names only the key: the sender reads the record as it is when it
//! sends, so entries can be replayed and reordered without harm.

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::MetaError;
use crate::record::Nanos;
use crate::schema;
use crate::store::MetaStore;

/// What a grant allows on the buckets it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantAccess {
    /// GET, HEAD and listings.
    Read,
    /// Object writes and deletes, multipart uploads.
    Write,
    /// The bucket's configuration (policy, replication, versioning, lifecycle, object lock,
    /// encryption, tagging, ownership) and DeleteBucket.
    Owner,
    /// CreateBucket of the names the grant matches.
    Create,
    /// The admin API (keys and grants, replication, lifecycle); its bucket is `*`.
    Admin,
    /// Read and write, plus writing replicas (`x-meridian-replica-*`): for the key a peer
    /// region replicates as.
    Replicate,
}

impl GrantAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantAccess::Read => "read",
            GrantAccess::Write => "write",
            GrantAccess::Owner => "owner",
            GrantAccess::Create => "create",
            GrantAccess::Admin => "admin",
            GrantAccess::Replicate => "replicate",
        }
    }
}

impl std::str::FromStr for GrantAccess {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "read" => GrantAccess::Read,
            "write" => GrantAccess::Write,
            "owner" => GrantAccess::Owner,
            "create" => GrantAccess::Create,
            "admin" => GrantAccess::Admin,
            "replicate" => GrantAccess::Replicate,
            _ => {
                return Err(format!(
                    "unknown access {s:?}: read, write, owner, create, admin or replicate"
                ))
            }
        })
    }
}

/// One grant: an access on a bucket, or on the buckets a pattern names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyGrant {
    /// A bucket name, a prefix ending in `*`, or `*`.
    pub bucket: String,
    pub access: GrantAccess,
}

/// A run-time access key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessKeyRecord {
    pub access_key: String,
    /// A label for people (`training-job-7`).
    pub name: String,
    /// The secret, sealed by the node's key-encryption key.
    #[serde(with = "codec::bytes")]
    pub sealed_secret: Vec<u8>,
    /// The secret before the last rotation, still accepted until `previous_until`.
    #[serde(with = "codec::opt_bytes")]
    pub previous_sealed_secret: Option<Vec<u8>>,
    pub previous_until: Option<Nanos>,
    pub enabled: bool,
    /// A tombstone: the key was deleted (kept so the deletion replicates and wins).
    pub deleted: bool,
    /// Refused from this time on.
    pub expires: Option<Nanos>,
    pub created: Nanos,
    pub grants: Vec<KeyGrant>,
    /// Who made the last change (an access key), for `key info`.
    pub changed_by: String,
    /// When the last change was made and in which region: the newer change wins, the region
    /// name breaks a tie.
    pub changed: Nanos,
    pub changed_in: String,
}

impl AccessKeyRecord {
    /// Whether this change is newer than `other` (the one it would replace).
    pub fn supersedes(&self, other: &AccessKeyRecord) -> bool {
        (self.changed, &self.changed_in) > (other.changed, &other.changed_in)
    }
}

fn cursor_setting(peer: &str) -> String {
    format!("admin-outbox/{peer}")
}

impl MetaStore {
    /// Stores `record` if it is newer than the stored one (or there is none), with an admin
    /// outbox entry in the same batch. Returns whether it was stored.
    pub fn put_access_key(&self, record: &AccessKeyRecord) -> Result<bool, MetaError> {
        let inner = &self.inner;
        let mut next = inner.access_keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stored) = self.access_key(&record.access_key)? {
            if !record.supersedes(&stored) {
                return Ok(false);
            }
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            inner.cf(schema::ACCESS_KEYS),
            record.access_key.as_bytes(),
            codec::encode(record),
        );
        batch.put_cf(
            inner.cf(schema::ADMIN_OUTBOX),
            next.to_be_bytes(),
            record.access_key.as_bytes(),
        );
        inner.commit(batch, None, "storing an access key")?;
        *next += 1;
        Ok(true)
    }

    /// The record of `access_key` (a tombstone too), if any.
    pub fn access_key(&self, access_key: &str) -> Result<Option<AccessKeyRecord>, MetaError> {
        Ok(self
            .inner
            .get_record(schema::ACCESS_KEYS, access_key.as_bytes())?
            .map(|(r, _)| r))
    }

    /// Every record, tombstones included, in access key order.
    pub fn access_keys(&self) -> Result<Vec<AccessKeyRecord>, MetaError> {
        let mut it = self.inner.iter(schema::ACCESS_KEYS, b"", None);
        let mut out = Vec::new();
        while it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            out.push(codec::decode(schema::ACCESS_KEYS, k, v)?.0);
            it.next();
        }
        it.status().map_err(MetaError::db("reading access keys"))?;
        Ok(out)
    }

    /// Up to `limit` admin outbox entries from `from` on: (sequence, access key).
    pub fn admin_changes(&self, from: u64, limit: usize) -> Result<Vec<(u64, String)>, MetaError> {
        let mut it = self
            .inner
            .iter(schema::ADMIN_OUTBOX, &from.to_be_bytes(), None);
        let mut out = Vec::new();
        while it.valid() && out.len() < limit {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            let seq = k
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| MetaError::corrupt(schema::ADMIN_OUTBOX, k, "key is not a u64"))?;
            out.push((seq, String::from_utf8_lossy(v).into_owned()));
            it.next();
        }
        it.status()
            .map_err(MetaError::db("reading the admin outbox"))?;
        Ok(out)
    }

    /// The sequence the next admin outbox entry takes: every change made so far is below it.
    pub fn admin_next(&self) -> u64 {
        *self
            .inner
            .access_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The first admin outbox sequence `peer` has not acknowledged.
    pub fn admin_cursor(&self, peer: &str) -> Result<u64, MetaError> {
        Ok(self
            .setting(&cursor_setting(peer))?
            .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(1))
    }

    pub fn set_admin_cursor(&self, peer: &str, next: u64) -> Result<(), MetaError> {
        self.put_setting(&cursor_setting(peer), Some(&next.to_be_bytes()))
    }
}
