//! The disk set: N directories, one shard of every object on each, and the entry points for
//! writing, reading, healing, scrubbing and deleting objects.

use std::ops::Range;
use std::sync::Arc;

use crate::damage::{DamageHub, DamageReceiver};
use crate::durable_fs::remove_if_present;
use crate::health::check_disk;
use crate::object_lock::ObjectLocks;
use crate::open::{io_error, open_disks};
use crate::set_state::SetInner;
use crate::{
    DataId, DiskHealth, DiskSetConfig, ErasureError, HealReport, ObjectDescriptor, ObjectReader,
    ObjectWriter, ScrubReport,
};

/// Object writes that may run at once on one disk set.
pub const MAX_CONCURRENT_WRITES: usize = 64;

/// A place for one object write ([`DiskSet::write_slot`]); dropping it frees the place.
pub struct WriteSlot(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

/// An open set of disks. Cheap to clone; all clones share the same state. Open one `DiskSet`
/// per set of directories per process: opening sweeps staging, which would destroy the
/// in-flight writes of another instance.
#[derive(Clone)]
pub struct DiskSet {
    inner: Arc<SetInner>,
}

impl DiskSet {
    /// Creates or validates the format files, refuses foreign disks
    /// ([`ErasureError::ForeignDisk`]), accepts empty directories as replacements (to be filled
    /// by healing) and sweeps staging leftovers of interrupted writes. Missing directories are
    /// created if the whole set is new; in an existing set they are offline disks. Fails with
    /// [`ErasureError::NotEnoughDisks`] when fewer than `k` disks are usable.
    pub async fn open(config: DiskSetConfig) -> Result<DiskSet, ErasureError> {
        let opened = tokio::task::spawn_blocking(move || {
            open_disks(&config).map(|(set_id, disks)| SetInner {
                write_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_WRITES)),
                config,
                set_id,
                disks,
                damage: DamageHub::default(),
                locks: ObjectLocks::default(),
            })
        })
        .await
        .expect("opening the disk set panicked")?;
        tracing::info!(
            set_id = %opened.set_id,
            layout = %format!("{}+{}", opened.config.data_shards, opened.config.parity_shards),
            "disk set open"
        );
        Ok(DiskSet {
            inner: Arc::new(opened),
        })
    }

    /// `k`: data shards of new objects.
    pub fn data_shards(&self) -> usize {
        self.inner.config.data_shards
    }

    /// `m`: parity shards of new objects.
    pub fn parity_shards(&self) -> usize {
        self.inner.config.parity_shards
    }

    /// Object bytes per stripe for new writes.
    pub fn stripe_size(&self) -> usize {
        self.inner.config.stripe_size
    }

    /// A place for one object write: at most [`MAX_CONCURRENT_WRITES`] run at once on a
    /// disk set (each is an encoder thread and one thread per shard), whatever asks for
    /// them — PUTs, copies, parts, replicas. Waits for a place; hold it until the writer is
    /// finished or aborted.
    pub async fn write_slot(&self) -> WriteSlot {
        WriteSlot(
            self.inner
                .write_slots
                .clone()
                .acquire_owned()
                .await
                .expect("the write semaphore is never closed"),
        )
    }

    /// Starts a streaming write of a new object with a fresh random [`DataId`]. `identity` is
    /// an opaque blob (at most 64 KiB; the caller puts bucket/key/version there) written into
    /// every shard header for disaster recovery.
    /// Take a [`DiskSet::write_slot`] first when writes can come from anywhere.
    pub fn writer(&self, identity: Vec<u8>) -> ObjectWriter {
        ObjectWriter::start(self.inner.clone(), identity)
    }

    /// Streams bytes `[range.start, range.end)` of the object; the range must lie within
    /// `0..desc.size`, otherwise the stream yields one [`ErasureError::InvalidRange`].
    pub fn reader(&self, desc: &ObjectDescriptor, range: Range<u64>) -> ObjectReader {
        ObjectReader::start(self.inner.clone(), desc.clone(), range)
    }

    /// Verifies every shard of one object and rebuilds missing or corrupt ones onto their
    /// disks. Fails with [`ErasureError::NotEnoughShards`] when some stripe has fewer than `k`
    /// good blocks (nothing is changed then).
    pub async fn heal(&self, desc: &ObjectDescriptor) -> Result<HealReport, ErasureError> {
        crate::heal::heal_object(&self.inner, desc).await
    }

    /// Every object stored on the set, with its identity blob and when its shards last
    /// changed (for finding shards that no caller metadata references).
    pub async fn inventory(&self) -> Vec<crate::StoredObject> {
        crate::inventory::inventory(&self.inner).await
    }

    /// Verifies every shard file of every disk and heals what it can, rebuilding descriptors
    /// from the shard headers. Objects that cannot be rebuilt are listed, not fatal.
    pub async fn scrub(&self) -> Result<ScrubReport, ErasureError> {
        crate::scrub::scrub_set(&self.inner).await
    }

    /// Removes all shards of a data id on all disks; missing files (or disks) are not an error.
    pub async fn delete(&self, data_id: DataId) -> Result<(), ErasureError> {
        let _guard = self.inner.locks.lock(data_id).await;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut first_error = None;
            for disk in &inner.disks {
                let path = disk.layout.shard_file(data_id);
                if let Err(e) = remove_if_present(&path) {
                    tracing::warn!(%data_id, path = %path.display(), error = %e, "cannot delete shard");
                    first_error.get_or_insert(io_error(&path, e));
                }
            }
            first_error.map_or(Ok(()), Err)
        })
        .await
        .expect("delete panicked")
    }

    /// Damage found by readers (missing/short/corrupt shards), for a background healer.
    /// `Some` the first time it is called, `None` afterwards. Reports sent while nobody holds
    /// the receiver are dropped; reporting never blocks a read; the queue is bounded and holds
    /// an object once (see [`crate::damage`]).
    pub fn take_damage_receiver(&self) -> Option<DamageReceiver> {
        self.inner.damage.take_receiver()
    }

    /// Per-disk health for a readiness probe. Performs small blocking filesystem checks
    /// (read the format file, create and remove a probe file) on the calling thread.
    pub fn disk_health(&self) -> Vec<DiskHealth> {
        self.inner
            .disks
            .iter()
            .map(|disk| check_disk(self.inner.set_id, disk))
            .collect()
    }
}
