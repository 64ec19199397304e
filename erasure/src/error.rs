//! The crate's error type. Every variant names the disk, file or object it is about.

use std::path::PathBuf;

use crate::DataId;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    /// The configuration or a descriptor is not usable.
    #[error("invalid disk set configuration: {0}")]
    InvalidConfig(String),
    /// A directory in a slot belongs to another set or another position.
    #[error("disk {path} in slot {slot} is refused: {reason}")]
    ForeignDisk {
        slot: usize,
        path: PathBuf,
        reason: String,
    },
    /// A filesystem operation failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Too few disks are usable to open the set.
    #[error("only {usable} of {total} disks are usable, at least {needed} are needed")]
    NotEnoughDisks {
        usable: usize,
        needed: usize,
        total: usize,
    },
    /// Fewer than `k` good shards remain for (a stripe of) an object.
    #[error("object {data_id}: only {available} good shards, {needed} needed ({details})")]
    NotEnoughShards {
        data_id: DataId,
        needed: usize,
        available: usize,
        details: String,
    },
    /// A write could not place enough shards.
    #[error("object {data_id}: write quorum not met, {succeeded} shards written, {needed} needed ({details})")]
    WriteQuorum {
        data_id: DataId,
        needed: usize,
        succeeded: usize,
        details: String,
    },
    /// Stored bytes failed validation (a format file, shard header or descriptor).
    #[error("corrupt {what}: {reason}")]
    Corrupt { what: String, reason: String },
    /// A read asked for bytes outside the object.
    #[error("object {data_id}: range {start}..{end} is not within 0..{size}")]
    InvalidRange {
        data_id: DataId,
        start: u64,
        end: u64,
        size: u64,
    },
}
