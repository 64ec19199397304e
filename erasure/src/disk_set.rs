//! The disk set: N directories, one shard of every object on each.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::{
    DataId, DiskSetConfig, ErasureError, HealReport, ObjectDescriptor, ObjectReader,
    ObjectWriter, ScrubReport,
};

/// Damage found by a reader: shards of an object that were missing, short or corrupt.
#[derive(Clone, Debug)]
pub struct DamageReport {
    pub descriptor: ObjectDescriptor,
    pub damaged_shards: Vec<usize>,
}

/// Health of one disk slot, for readiness probes.
#[derive(Clone, Debug)]
pub struct DiskHealth {
    pub slot: usize,
    pub path: PathBuf,
    /// Directory present, format file valid, writable.
    pub ok: bool,
    pub error: Option<String>,
}

/// An open set of disks. Cheap to clone; all clones share the same state.
#[derive(Clone)]
pub struct DiskSet {
    #[allow(dead_code)]
    inner: Arc<()>,
}

impl DiskSet {
    /// Creates or validates the format files, refuses foreign disks, accepts empty
    /// directories as replacements and sweeps staging leftovers of interrupted writes.
    /// Missing directories are created if the whole set is new.
    pub async fn open(_config: DiskSetConfig) -> Result<DiskSet, ErasureError> {
        todo!()
    }

    /// `k`.
    pub fn data_shards(&self) -> usize {
        todo!()
    }

    /// `m`.
    pub fn parity_shards(&self) -> usize {
        todo!()
    }

    /// Object bytes per stripe for new writes.
    pub fn stripe_size(&self) -> usize {
        todo!()
    }

    /// Starts a streaming write of a new object with a fresh random [`DataId`]. `identity` is
    /// an opaque blob written into every shard header (for disaster recovery).
    pub fn writer(&self, _identity: Vec<u8>) -> ObjectWriter {
        todo!()
    }

    /// Streams bytes `[range.start, range.end)` of the object.
    pub fn reader(&self, _desc: &ObjectDescriptor, _range: Range<u64>) -> ObjectReader {
        todo!()
    }

    /// Rebuilds missing or corrupt shards of one object onto their disks.
    pub async fn heal(&self, _desc: &ObjectDescriptor) -> Result<HealReport, ErasureError> {
        todo!()
    }

    /// Verifies every shard file of every disk and heals what it can.
    pub async fn scrub(&self) -> Result<ScrubReport, ErasureError> {
        todo!()
    }

    /// Removes all shards of a data id on all disks; missing files are not an error.
    pub async fn delete(&self, _data_id: DataId) -> Result<(), ErasureError> {
        todo!()
    }

    /// Damage found by readers, for a background healer. `Some` the first time only.
    pub fn take_damage_receiver(&self) -> Option<UnboundedReceiver<DamageReport>> {
        todo!()
    }

    /// Per-disk health for a readiness probe.
    pub fn disk_health(&self) -> Vec<DiskHealth> {
        todo!()
    }
}
