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

mod config;
mod descriptor;
mod disk_set;
mod error;
mod heal;
mod reader;
mod scrub;
mod writer;

pub use config::{DiskSetConfig, Durability};
pub use descriptor::ObjectDescriptor;
pub use disk_set::{DamageReport, DiskHealth, DiskSet};
pub use error::ErasureError;
pub use heal::HealReport;
pub use reader::ObjectReader;
pub use scrub::ScrubReport;
pub use writer::{ObjectWriter, WriteOutcome};

/// Identity of one stored object's shards: a random UUID, never derived from the object key.
pub type DataId = uuid::Uuid;
