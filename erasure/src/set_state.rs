//! The state every clone of a [`crate::DiskSet`] shares with its writers, readers, healers and
//! scrubs: the set's configuration and identity, its disks, the damage channel and the
//! per-object locks. A leaf, so the workers need not know the `DiskSet` handle.

use uuid::Uuid;

use crate::damage::DamageHub;
use crate::object_lock::ObjectLocks;
use crate::open::Disk;
use crate::DiskSetConfig;

/// State shared by all clones of a [`crate::DiskSet`] and by its writers, readers and healers.
pub(crate) struct SetInner {
    pub config: DiskSetConfig,
    pub set_id: Uuid,
    pub disks: Vec<Disk>,
    pub damage: DamageHub,
    pub locks: ObjectLocks,
    /// Places for object writes in flight (each runs k+m+1 threads): see
    /// [`crate::DiskSet::write_slot`].
    pub write_slots: std::sync::Arc<tokio::sync::Semaphore>,
}
