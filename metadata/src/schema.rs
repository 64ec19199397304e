//! The column families and the layout of their keys and values — the whole on-disk schema on
//! one page. `esc(x)` is the escaped, terminated component of [`crate::keys`]; integers are
//! big-endian so byte order is numeric order.
//!
//! | column family     | key                                              | value |
//! |-------------------|--------------------------------------------------|-------|
//! | `meta`            | `"schema"`, `"outbox_floor"`, `"setting/<name>"`  | u32 / u64 BE / the setting |
//! | `buckets`         | bucket name                                      | `BucketRecord` |
//! | `bucket_configs`  | `esc(bucket)` config name                        | the document, raw |
//! | `versions`        | `esc(bucket) esc(key)` version id                | `VersionRecord` |
//! | `history`         | `esc(bucket) esc(key)` newest-first(mtime, vid)  | `VersionSummary`, every version and marker |
//! | `listing`         | `esc(bucket) esc(key)`                           | `VersionSummary` of the latest version, only while it is not a delete marker |
//! | `uploads`         | `esc(bucket) esc(key) esc(upload id)`            | `UploadRecord` |
//! | `uploads_by_time` | initiated(i64) `esc(bucket) esc(key) esc(upload id)` | empty |
//! | `parts`           | `esc(bucket) esc(key) esc(upload id)` part(u32)  | `PartRecord` |
//! | `completed_uploads` | `esc(bucket) esc(key) esc(upload id)`          | `CompletedUpload`, kept a day to answer a repeated completion |
//! | `outbox`          | seq(u64)                                         | `OutboxEntry` |
//! | `outbox_cursors`  | peer name                                        | u64 BE: first unacknowledged seq |
//! | `reclaim`         | seq(u64)                                         | `ReclaimRecord` |
//! | `replication_retry` | `esc(peer)` due(i64) seq(u64)                  | `RetryRecord`: a change the peer has yet to take |
//! | `replication_uploads` | `esc(peer) esc(bucket) esc(key)` version id  | `PeerUpload`: a multipart upload to the peer in progress |
//! | `replication_jobs` | `esc(peer) esc(bucket)`                         | `ReplicationJob`: a backfill or resync walk and its position |
//! | `lifecycle_due`   | due(i64) kind(u8) `esc(bucket) esc(key) esc(id)`  | empty: a lifecycle obligation (see `lifecycle`) |
//! | `access_keys`     | access key                                       | `AccessKeyRecord` (secrets sealed; a deleted key stays as a tombstone) |
//! | `admin_outbox`    | seq(u64)                                         | access key: a change every peer is to be sent (its cursors are settings `admin-outbox/<peer>`) |
//!
//! Invariants kept by every commit (one WriteBatch each): `versions` and `history` hold the
//! same set of versions; the first `history` entry of a key is its latest version; `listing`
//! holds a key exactly when that latest version is not a delete marker.

use serde::{Deserialize, Serialize};

use crate::keys;
use crate::record::{ChecksumAlgorithm, Nanos, VersionRecord};

pub const META: &str = "meta";
pub const BUCKETS: &str = "buckets";
pub const BUCKET_CONFIGS: &str = "bucket_configs";
pub const VERSIONS: &str = "versions";
pub const HISTORY: &str = "history";
pub const LISTING: &str = "listing";
pub const UPLOADS: &str = "uploads";
pub const UPLOADS_BY_TIME: &str = "uploads_by_time";
pub const PARTS: &str = "parts";
pub const OUTBOX: &str = "outbox";
pub const OUTBOX_CURSORS: &str = "outbox_cursors";
pub const RECLAIM: &str = "reclaim";
pub const REPLICATION_RETRY: &str = "replication_retry";
pub const REPLICATION_UPLOADS: &str = "replication_uploads";
pub const REPLICATION_JOBS: &str = "replication_jobs";
pub const COMPLETED_UPLOADS: &str = "completed_uploads";
pub const LIFECYCLE_DUE: &str = "lifecycle_due";
pub const ACCESS_KEYS: &str = "access_keys";
pub const ADMIN_OUTBOX: &str = "admin_outbox";

/// Every column family, in creation order.
pub const ALL: [&str; 19] = [
    META,
    BUCKETS,
    BUCKET_CONFIGS,
    VERSIONS,
    HISTORY,
    LISTING,
    UPLOADS,
    UPLOADS_BY_TIME,
    PARTS,
    OUTBOX,
    OUTBOX_CURSORS,
    RECLAIM,
    REPLICATION_RETRY,
    REPLICATION_UPLOADS,
    REPLICATION_JOBS,
    COMPLETED_UPLOADS,
    LIFECYCLE_DUE,
    ACCESS_KEYS,
    ADMIN_OUTBOX,
];

/// Column families read mostly by point lookups: they get bloom filters.
pub const POINT_LOOKUP: [&str; 10] = [
    META,
    ACCESS_KEYS,
    BUCKETS,
    BUCKET_CONFIGS,
    VERSIONS,
    UPLOADS,
    OUTBOX_CURSORS,
    PARTS,
    REPLICATION_UPLOADS,
    COMPLETED_UPLOADS,
];

/// Schema version of this build, stored under `meta/"schema"`. Version 2 added the
/// replication column families (`replication_retry`, `replication_uploads`,
/// `replication_jobs`) and the `peers` and `size` of outbox entries; version 3 added
/// `completed_uploads`; version 4 added `lifecycle_due`; version 5 added `access_keys` and
/// `admin_outbox`. An older database is upgraded in place at open (the new column
/// families start empty, old outbox entries name no peers).
pub const SCHEMA_VERSION: u32 = 5;
pub const META_SCHEMA: &[u8] = b"schema";
/// Lowest outbox sequence the next entry may take (survives trimming the outbox empty).
pub const META_OUTBOX_FLOOR: &[u8] = b"outbox_floor";

/// What listings need of a version, stored in `history` and `listing` so a page never reads
/// full records (which may carry inline data).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionSummary {
    pub version_id: String,
    pub mtime: Nanos,
    pub size: u64,
    pub etag: String,
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    pub delete_marker: bool,
}

impl VersionSummary {
    pub fn of(v: &VersionRecord) -> Self {
        VersionSummary {
            version_id: v.version_id.clone(),
            mtime: v.mtime,
            size: v.size,
            etag: v.etag.clone(),
            checksum_algorithm: v.checksum.as_ref().map(|c| c.algorithm.clone()),
            delete_marker: v.is_delete_marker,
        }
    }
}

pub fn version_key(bucket: &str, key: &str, version_id: &str) -> Vec<u8> {
    let mut k = keys::object_prefix(bucket, key);
    k.extend_from_slice(version_id.as_bytes());
    k
}

pub fn history_key(bucket: &str, key: &str, mtime: Nanos, version_id: &str) -> Vec<u8> {
    let mut k = keys::object_prefix(bucket, key);
    keys::push_newest_first(&mut k, mtime, version_id);
    k
}

pub fn upload_key(bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut k = keys::object_prefix(bucket, key);
    keys::push_component(&mut k, upload_id.as_bytes());
    k
}

pub fn upload_time_key(initiated: Nanos, bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut k = keys::order_preserving_i64(initiated).to_be_bytes().to_vec();
    k.extend_from_slice(&upload_key(bucket, key, upload_id));
    k
}

pub fn part_key(bucket: &str, key: &str, upload_id: &str, number: u32) -> Vec<u8> {
    let mut k = upload_key(bucket, key, upload_id);
    k.extend_from_slice(&number.to_be_bytes());
    k
}

pub fn config_key(bucket: &str, name: &str) -> Vec<u8> {
    let mut k = keys::bucket_prefix(bucket);
    k.extend_from_slice(name.as_bytes());
    k
}
