//! The object descriptor: what a caller stores to find an object's shards again.

use crate::{DataId, ErasureError};

/// Where and how an object's shards are stored. Returned by [`crate::ObjectWriter::finish`];
/// the caller stores it (see [`ObjectDescriptor::to_bytes`]) and hands it back to read, heal
/// or delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectDescriptor {
    pub data_id: DataId,
    /// Object size in bytes.
    pub size: u64,
    pub data_shards: u8,
    pub parity_shards: u8,
    /// Bytes of one shard block per (full) stripe: `ceil(stripe_size / data_shards)`.
    pub block_size: u32,
    /// Object bytes per stripe.
    pub stripe_size: u32,
    /// `placement[shard_index]` = disk slot index holding that shard.
    pub placement: Vec<u8>,
    /// Version of the shard file format the shards were written with.
    pub format_version: u8,
}

impl ObjectDescriptor {
    /// Compact, versioned binary encoding for the caller to store as an opaque blob.
    pub fn to_bytes(&self) -> Vec<u8> {
        todo!()
    }

    /// Decodes [`ObjectDescriptor::to_bytes`] output; refuses truncated, corrupt or
    /// inconsistent input.
    pub fn from_bytes(_bytes: &[u8]) -> Result<ObjectDescriptor, ErasureError> {
        todo!()
    }
}
