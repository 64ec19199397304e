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

mod bucket;
mod codec;
mod error;
mod keys;
mod listing;
mod locks;
mod multipart;
mod outbox;
mod outbox_entry;
mod reclaim;
mod record;
mod replication;
mod replication_jobs;
mod schema;
mod settings;
mod store;
mod tuning;
mod version_id;
mod versions;
mod walk;

pub use bucket::{BucketRecord, VersioningState};
pub use codec::FORMAT_VERSION;
pub use error::MetaError;
pub use listing::{
    ListObjectsPage, ListObjectsQuery, ListVersionsPage, ListVersionsQuery, ObjectSummary,
};
pub use multipart::{
    CompletedUpload, ListPartsPage, ListUploadsPage, ListUploadsQuery, PartRecord, UploadRecord,
    MAX_PART_NUMBER,
};
pub use outbox_entry::{OutboxEntry, OutboxKind};
pub use record::{
    ChangeSource, Checksum, ChecksumAlgorithm, ChecksumType, DeleteOptions, DeleteOutcome, Nanos,
    NewVersion, ObjectHeaders, ObjectPart, Origin, PeerStatus, Precondition, PutOutcome,
    ReclaimEntry, ReplicationState, Storage, VersionRecord, NULL_VERSION_ID,
};
pub use replication::{
    BacklogFilter, PeerBacklog, PeerUpload, RetryRecord, Settlement, StatusUpdate,
};
pub use replication_jobs::{JobKind, ReplicationJob, Requeued};
pub use schema::SCHEMA_VERSION;
pub use store::{MetaOptions, MetaStore};
pub use version_id::{new_upload_id, new_version_id, now_nanos, set_clock_offset};
pub use versions::MAX_KEY_LEN;

#[cfg(test)]
mod tests {
    #[test]
    fn store_handle_is_clone_send_and_sync() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<crate::MetaStore>();
    }
}
