//! The crate's error type. Every variant names the disk, file or object it is about.

use std::path::PathBuf;

use crate::DataId;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    /// The configuration, or a descriptor handed back by the caller, is not usable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A directory in a slot belongs to another set or another position, or holds unrelated
    /// files. Nothing was changed on it.
    #[error("disk {path} in slot {slot} is refused: {reason}")]
    ForeignDisk {
        /// Position in the configured disk list.
        slot: usize,
        /// The refused directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A filesystem operation failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory operated on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Too few disks are usable to open the set (fewer than `k`).
    #[error("only {usable} of {total} disks are usable, at least {needed} are needed")]
    NotEnoughDisks {
        /// Disks that are present and formatted for this set.
        usable: usize,
        /// `k`.
        needed: usize,
        /// `k + m`.
        total: usize,
    },
    /// Fewer than `k` good shards remain for (a stripe of) an object: the bytes cannot be
    /// returned or rebuilt.
    #[error("object {data_id}: only {available} good shards, {needed} needed ({details})")]
    NotEnoughShards {
        /// The object.
        data_id: DataId,
        /// `k`.
        needed: usize,
        /// Good shards found for the failing stripe.
        available: usize,
        /// Which stripe, and what is wrong with each bad shard.
        details: String,
    },
    /// A write could not place enough shards; nothing of it is left on disk.
    #[error("object {data_id}: write quorum not met, {succeeded} shards written, {needed} needed ({details})")]
    WriteQuorum {
        /// The object being written.
        data_id: DataId,
        /// Write quorum: `k + 1` when `m > 0`, `k` when `m = 0`.
        needed: usize,
        /// Shards that were (or could still be) written.
        succeeded: usize,
        /// What went wrong with each failed shard.
        details: String,
        /// At least one shard failed because its disk is full.
        storage_full: bool,
    },
    /// Stored bytes failed validation (a format file or an encoded descriptor).
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// What was being decoded.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A read asked for bytes outside the object.
    #[error("object {data_id}: range {start}..{end} is not within 0..{size}")]
    InvalidRange {
        /// The object.
        data_id: DataId,
        /// Requested start (inclusive).
        start: u64,
        /// Requested end (exclusive).
        end: u64,
        /// Object size.
        size: u64,
    },
}
