//! Reed-Solomon erasure-coded object storage over a node's local disks.
//!
//! A [`DiskSet`] turns a byte stream into `k` data + `m` parity shards, one per disk, each a
//! file of `[crc32c][block]` frames behind a self-describing header, and turns them back into
//! bytes. Every block is checked on every read; a missing, short or corrupt shard is rebuilt
//! from parity on the fly and reported for healing. With fewer than `k` good shards a read
//! fails with [`ErasureError::NotEnoughShards`]: this crate never returns a corrupted byte.
//!
//! It knows nothing of S3, HTTP or the metadata store: callers keep the
//! [`ObjectDescriptor`] returned by [`ObjectWriter::finish`] and hand it back to read,
//! heal or delete.
//!
//! Guarantees:
//! - A finished write has at least the write quorum of shards renamed into place (`k + 1`
//!   when `m > 0`); a failed, aborted, dropped or killed write leaves only staging files,
//!   which the next [`DiskSet::open`] removes. Shards are never named after object keys.
//! - Reads verify every block they return; damaged shards are reported on
//!   [`DiskSet::take_damage_receiver`]. Heal and scrub rebuild them stripe by stripe,
//!   byte-identical to the original write.
//! - Encoding, decoding and checksums run on dedicated threads or tokio's blocking pool,
//!   never on the async reactor; a writer or reader holds only a few stripes in memory.
//!   The async methods and [`ObjectReader`] must therefore run inside a Tokio runtime.
//!
//! On disk (see the `disk_layout` and `shard_format` modules): `<disk>/format.json`,
//! `<disk>/data/<2 hex>/<data id>.shard`, `<disk>/staging/`.

#![warn(missing_docs)]

mod buffer_pool;
mod checksum;
mod codec;
mod config;
pub mod damage;
mod descriptor;
mod disk_format;
mod disk_layout;
mod disk_set;
mod durable_fs;
mod error;
mod geometry;
mod heal;
mod health;
mod inventory;
mod object_lock;
mod open;
mod reader;
mod scrub;
mod set_state;
mod shard_format;
mod shard_source;
mod write_pipeline;
mod writer;

pub use config::{DiskSetConfig, Durability, DEFAULT_STRIPE_SIZE, MAX_DISKS, MAX_STRIPE_SIZE};
pub use damage::{DamageReceiver, DamageReport, DAMAGE_QUEUE};
pub use descriptor::ObjectDescriptor;
pub use disk_set::{DiskSet, WriteSlot, MAX_CONCURRENT_WRITES};
pub use error::ErasureError;
pub use heal::HealReport;
pub use health::DiskHealth;
pub use inventory::StoredObject;
pub use reader::ObjectReader;
pub use scrub::ScrubReport;
pub use shard_format::{MAX_IDENTITY_LEN, SHARD_FORMAT_VERSION};
pub use writer::{ObjectWriter, WriteOutcome};

/// Entry points for `fuzz/` (cargo fuzz): the decoders of what is read back from disk.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes a shard file header; must never panic, whatever the bytes.
    pub fn shard_header(bytes: &[u8]) -> bool {
        crate::shard_format::ShardHeader::decode(bytes).is_ok()
    }

    /// Decodes an object descriptor (the layout blob of a version); must never panic.
    pub fn descriptor(bytes: &[u8]) -> bool {
        crate::ObjectDescriptor::from_bytes(bytes).is_ok()
    }
}

/// Identity of one stored object's shards: a random UUID, never derived from the object key.
pub type DataId = uuid::Uuid;

#[cfg(test)]
mod contract {
    //! The thread-safety promises of the public API, checked at compile time.
    use super::*;

    fn send_static<T: Send + 'static>() {}
    fn send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    fn byte_stream<
        T: futures::Stream<Item = Result<bytes::Bytes, ErasureError>> + Send + Unpin + 'static,
    >() {
    }

    #[test]
    fn public_types_can_cross_tasks() {
        send_sync_clone::<DiskSet>();
        send_static::<ObjectWriter>();
        byte_stream::<ObjectReader>();
        send_static::<ErasureError>();
        send_sync_clone::<ObjectDescriptor>();
    }
}
