//! What a version of an object is: the typed record stored per version (also delete markers),
//! what a caller supplies to create one, and the pieces both share (headers, checksums,
//! storage, replication state).
//!
//! Records are stored as self-describing MessagePack maps (see `codec`); every struct that is
//! stored carries `#[serde(default)]`, so a record written before a field existed still decodes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::bytes;

/// Nanoseconds since the Unix epoch.
pub type Nanos = i64;

/// The version id of writes to unversioned and suspended buckets.
pub const NULL_VERSION_ID: &str = "null";

/// Standard headers stored with a version or upload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    /// `x-amz-website-redirect-location`.
    pub website_redirect: Option<String>,
}

/// The S3 checksum algorithms (`x-amz-checksum-*`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

/// Whether a checksum covers the whole object or is a checksum of part checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChecksumType {
    FullObject,
    Composite,
}

/// A client-visible checksum, as on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    /// Base64, as on the wire; composite ones include the "-N" part count.
    pub value: String,
    pub kind: ChecksumType,
}

/// Where the bytes of a version are: inline for small objects, else an opaque layout blob
/// owned by the gateway. The store never interprets either.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Storage {
    Inline(#[serde(with = "bytes")] Vec<u8>),
    Layout(#[serde(with = "bytes")] Vec<u8>),
}

impl Default for Storage {
    fn default() -> Self {
        Storage::Inline(Vec::new())
    }
}

/// One part of a multipart object, as recorded in the completed version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectPart {
    pub number: u32,
    pub size: u64,
    pub etag: String,
    pub checksum: Option<Checksum>,
}

/// Where a version was written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// Written by a client of this region.
    #[default]
    Local,
    /// Received from the peer region `region`; never replicated again.
    Replica { region: String },
}

/// Replication progress of one version towards one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerStatus {
    #[default]
    Pending,
    Completed,
    /// Retried with backoff; `attempts` so far, `error` the last failure.
    Failed {
        error: String,
        attempts: u32,
    },
}

/// Origin of a version and its replication status per peer name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicationState {
    pub origin: Origin,
    pub peers: BTreeMap<String, PeerStatus>,
    /// For peers that assign their own version ids (foreign S3 targets): the id this
    /// version has there, per peer name.
    pub target_versions: BTreeMap<String, String>,
}

impl ReplicationState {
    /// A local change that the named peers must take (each PENDING).
    pub fn pending_for(peers: impl IntoIterator<Item = String>) -> ReplicationState {
        ReplicationState {
            origin: Origin::Local,
            peers: peers
                .into_iter()
                .map(|p| (p, PeerStatus::Pending))
                .collect(),
            target_versions: BTreeMap::new(),
        }
    }

    /// A change received from the peer region `region`.
    pub fn replica_from(region: &str) -> ReplicationState {
        ReplicationState {
            origin: Origin::Replica {
                region: region.to_owned(),
            },
            ..ReplicationState::default()
        }
    }
}

/// S3 Object Lock retention modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RetentionMode {
    /// Removable or shortened early by a principal allowed to bypass governance retention.
    Governance,
    /// Nobody, root included, removes the version or shortens the date before it passes.
    Compliance,
}

/// A version's retention: protected from removal until `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Retention {
    pub mode: RetentionMode,
    pub until: Nanos,
}

/// The Object Lock state of one version (see `object_lock` for the rules that guard it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectLock {
    pub retention: Option<Retention>,
    pub legal_hold: bool,
}

/// Which server-side encryption protects a version's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EncryptionMode {
    /// SSE-S3: the data key is sealed by a key of the region's keyring.
    S3,
    /// SSE-KMS: the data key is sealed by the named keyring key.
    Kms,
    /// SSE-C: the data key is sealed by the customer's key, which is never stored.
    Customer,
}

/// How a version's bytes are encrypted at rest: its own data key, sealed. The bytes
/// themselves are AEAD packages (`meridian-store`'s `encryption::package`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Encryption {
    pub mode: Option<EncryptionMode>,
    /// SSE-KMS: the key id as S3 reports it (the client's, or the default key's).
    pub kms_key_id: Option<String>,
    /// The data key sealed by its key-encryption key (opaque here).
    #[serde(with = "crate::codec::bytes")]
    pub sealed_key: Vec<u8>,
    /// SSE-C: the base64 MD5 of the customer's key, as S3 returns it.
    pub customer_key_md5: Option<String>,
    /// The plaintext sizes of the sealed segments, in order, when they are not one per
    /// stored segment: a replica whose ciphertext arrived cut in other places (SSE-C travels
    /// sealed). Empty: each stored segment is one sealed segment.
    pub segments: Vec<u64>,
}

/// Who made a change that is not a new version (a tag change), and which peers take it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeSource {
    pub origin: Origin,
    pub peers: Vec<String>,
}

/// What the caller supplies for a new version.
///
/// `version_id` and `mtime` are `None` for local writes: the store assigns a time-ordered
/// unique id (or "null" when the bucket is unversioned or suspended) and the commit time. A
/// replica supplies both and they are kept verbatim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewVersion {
    pub version_id: Option<String>,
    pub mtime: Option<Nanos>,
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    pub checksum: Option<Checksum>,
    /// Our own content checksum (hex or raw, the gateway decides).
    pub content_sha256: Option<Vec<u8>>,
    pub headers: ObjectHeaders,
    pub user_metadata: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    /// Retention and legal hold (decided by the gateway: the request's headers or the
    /// bucket's default retention).
    pub lock: ObjectLock,
    /// Set when the bytes in `storage` are encrypted.
    pub encryption: Option<Encryption>,
    pub storage: Storage,
    /// Empty unless the object was uploaded in parts.
    pub parts: Vec<ObjectPart>,
    pub replication: ReplicationState,
    /// For replicated delete markers; local markers come from `delete_object`.
    pub delete_marker: bool,
    /// Checked against the key's latest version under the key lock, in the same commit
    /// (conditional writes: `If-None-Match: *`, `If-Match`).
    pub precondition: Option<Precondition>,
    /// The version's ACL (opaque to this crate), in buckets whose Object Ownership enables
    /// ACLs.
    pub acl: Option<Vec<u8>>,
}

/// A condition on the current (latest, not deleted) version of a key that a write requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// No current version may exist (create only).
    NoneMatch,
    /// The current version must exist and have this ETag (without quotes).
    IfMatch(String),
    /// The current version, if any, must not have this ETag (without quotes).
    NoneMatchEtag(String),
}

/// A committed version of an object (delete markers included).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionRecord {
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub mtime: Nanos,
    pub is_delete_marker: bool,
    pub size: u64,
    pub etag: String,
    pub checksum: Option<Checksum>,
    #[serde(with = "crate::codec::opt_bytes")]
    pub content_sha256: Option<Vec<u8>>,
    pub headers: ObjectHeaders,
    pub user_metadata: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub lock: ObjectLock,
    pub encryption: Option<Encryption>,
    pub storage: Storage,
    pub parts: Vec<ObjectPart>,
    pub replication: ReplicationState,
    /// The version's ACL (opaque to this crate), in buckets whose Object Ownership enables
    /// ACLs.
    #[serde(with = "crate::codec::opt_bytes")]
    pub acl: Option<Vec<u8>>,
    /// Format version of the stored record this was read from (not itself stored: the codec
    /// writes it in front of every record).
    #[serde(skip)]
    pub format_version: u8,
}

impl VersionRecord {
    /// The record a commit of `new` produces, once id and mtime are decided.
    pub(crate) fn from_new(
        bucket: &str,
        key: &str,
        version_id: String,
        mtime: Nanos,
        new: NewVersion,
    ) -> Self {
        VersionRecord {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id,
            mtime,
            is_delete_marker: new.delete_marker,
            size: new.size,
            etag: new.etag,
            checksum: new.checksum,
            content_sha256: new.content_sha256,
            headers: new.headers,
            user_metadata: new.user_metadata,
            tags: new.tags,
            lock: new.lock,
            encryption: new.encryption,
            acl: new.acl,
            storage: new.storage,
            parts: new.parts,
            replication: new.replication,
            format_version: crate::codec::FORMAT_VERSION,
        }
    }
}

/// Result of committing a new version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    pub version: VersionRecord,
}

/// Options of `delete_object`. Local deletes use the default; a replica supplies the marker's
/// version id, mtime and origin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Replication state of the delete marker (if one is created).
    pub replication: ReplicationState,
    /// Version id of the marker, kept verbatim (replicas).
    pub version_id: Option<String>,
    /// mtime of the marker (replicas).
    pub mtime: Option<Nanos>,
    /// Removal by version id may remove a version under GOVERNANCE retention (the caller
    /// checked that the principal may bypass it). Nothing removes one under COMPLIANCE
    /// retention or a legal hold.
    pub bypass_governance: bool,
    /// No Object Lock check at all: the removal is another node's copy of one its primary
    /// already allowed.
    pub unlocked: bool,
    /// A conditional delete's conditions, checked under the key lock.
    pub condition: Option<DeleteCondition>,
}

/// What a conditional delete (`If-Match`, `x-amz-if-match-size`,
/// `x-amz-if-match-last-modified-time`, or the same in a DeleteObjects entry) requires of the
/// version it addresses: the named version, else the current one. Every condition given must
/// hold; a target that does not exist, or is a delete marker, fails them all (S3 answers 404).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteCondition {
    /// `Some(None)` for `If-Match: *` (the version exists), `Some(Some(etag))` for that ETag
    /// (without quotes).
    pub etag: Option<Option<String>>,
    pub size: Option<u64>,
    /// Last-Modified in whole seconds since the epoch (HTTP dates have no finer grain).
    pub mtime_secs: Option<i64>,
}

impl DeleteCondition {
    /// Whether `target` satisfies every condition.
    pub fn holds_for(&self, target: &VersionRecord) -> bool {
        let etag = match &self.etag {
            None | Some(None) => true,
            Some(Some(e)) => &target.etag == e,
        };
        etag && self.size.is_none_or(|s| s == target.size)
            && self
                .mtime_secs
                .is_none_or(|t| t == target.mtime.div_euclid(1_000_000_000))
    }
}

/// Result of `delete_object`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The marker created, or the version removed.
    pub version_id: Option<String>,
    /// True if a marker was created, or the removed version was a marker.
    pub delete_marker: bool,
    /// The removed (or replaced) version; its storage is already queued for reclaim.
    pub removed: Option<VersionRecord>,
}

/// Storage waiting to be deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReclaimEntry {
    /// Acknowledge with `reclaim_done(seq)` once the data is gone.
    pub seq: u64,
    pub storage: Storage,
}

/// The stored form of a reclaim entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ReclaimRecord {
    pub storage: Storage,
    pub queued: Nanos,
}
