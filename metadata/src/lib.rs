//! Meridian's metadata store: every bucket, object version, multipart upload and bucket
//! configuration of a node, in RocksDB, with S3's versioning semantics.
//!
//! Guarantees:
//! - every change is one WriteBatch that writes the version, moves the latest pointer and
//!   appends its replication outbox entry; with `sync_writes` (the default) an acknowledged
//!   change survives kill -9 and power loss;
//! - the outbox holds one entry per committed change, in commit order, and readers never see
//!   a sequence number while an earlier one is still being committed;
//! - storage that no committed version references any more is queued for reclaim in the same
//!   batch that orphaned it;
//! - listing pages touch O(page size) rows: common prefixes are skipped by seeking.
//!
//! It knows nothing of HTTP or shard files: where object data lives is an opaque blob (or
//! inline bytes) handed in by the caller. All methods are blocking. See `schema` for the
//! on-disk layout.

// Without `db` (fuzz builds) the sequencer and some helpers have no caller.
#![cfg_attr(not(feature = "db"), allow(dead_code))]

#[cfg(feature = "db")]
mod access_keys;
#[cfg(feature = "db")]
mod bucket;
mod codec;
#[cfg(feature = "db")]
mod config_cache;
mod error;
#[cfg(feature = "db")]
mod keys;
#[cfg(feature = "db")]
mod lifecycle;
#[cfg(feature = "db")]
mod listing;
#[cfg(feature = "db")]
mod locks;
#[cfg(feature = "db")]
mod multipart;
mod object_lock;
#[cfg(feature = "db")]
mod outbox;
mod outbox_entry;
#[cfg(feature = "db")]
mod reclaim;
mod record;
#[cfg(feature = "db")]
mod replication;
#[cfg(feature = "db")]
mod replication_jobs;
#[cfg(feature = "db")]
mod schema;
#[cfg(feature = "db")]
mod settings;
#[cfg(feature = "db")]
mod store;
#[cfg(feature = "db")]
mod tuning;
mod version_id;
#[cfg(feature = "db")]
mod versions;
#[cfg(feature = "db")]
mod walk;
#[cfg(feature = "db")]
pub use walk::KeyFilter;

#[cfg(feature = "db")]
pub use access_keys::{AccessKeyRecord, GrantAccess, KeyGrant};
#[cfg(feature = "db")]
pub use bucket::{BucketDocs, BucketRecord, VersioningState};
pub use codec::FORMAT_VERSION;
#[cfg(feature = "db")]
pub use config_cache::{ConfigCache, DecodeDocument};
pub use error::MetaError;
#[cfg(feature = "db")]
pub use lifecycle::{DueEntry, DueKind, DueOutcome, DuePlanner, Verdict};
#[cfg(feature = "db")]
pub use listing::{
    ListObjectsPage, ListObjectsQuery, ListVersionsPage, ListVersionsQuery, ObjectSummary,
};
#[cfg(feature = "db")]
pub use multipart::{
    CompletedUpload, ListPartsPage, ListUploadsPage, ListUploadsQuery, PartRecord, UploadRecord,
    MAX_PART_NUMBER,
};
pub use object_lock::LockChange;
pub use outbox_entry::{OutboxEntry, OutboxKind};
pub use record::{
    ChangeSource, Checksum, ChecksumAlgorithm, ChecksumType, DeleteCondition, DeleteOptions,
    DeleteOutcome, Encryption, EncryptionMode, Nanos, NewVersion, ObjectHeaders, ObjectLock,
    ObjectPart, Origin, PeerStatus, Precondition, PutOutcome, ReclaimEntry, ReplicationState,
    Retention, RetentionMode, Storage, VersionRecord, NULL_VERSION_ID,
};
#[cfg(feature = "db")]
pub use replication::{
    BacklogFilter, PeerBacklog, PeerUpload, RetryRecord, Settlement, StatusUpdate,
};
#[cfg(feature = "db")]
pub use replication_jobs::{JobKind, ReplicationJob, Requeued};
#[cfg(feature = "db")]
pub use schema::SCHEMA_VERSION;
#[cfg(feature = "db")]
pub use store::{MetaOptions, MetaStore};
pub use version_id::{new_upload_id, new_version_id, now_nanos, set_clock_offset};
#[cfg(feature = "db")]
pub use versions::{SealedPage, MAX_KEY_LEN};

/// Decoders of stored records for `fuzz/`: bytes as read back from RocksDB must decode or
/// fail, never panic.
pub mod fuzzing {
    /// An outbox entry as the replicator reads it.
    pub fn outbox_entry(value: &[u8]) -> bool {
        crate::codec::decode::<crate::OutboxEntry>("outbox", b"fuzz", value).is_ok()
    }

    /// A version record as every read path decodes it.
    pub fn version_record(value: &[u8]) -> bool {
        crate::codec::decode::<crate::VersionRecord>("versions", b"fuzz", value).is_ok()
    }
}

#[cfg(all(test, feature = "db"))]
mod tests {
    #[test]
    fn store_handle_is_clone_send_and_sync() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<crate::MetaStore>();
    }
}
