//! Healing one object: rebuilding missing or corrupt shards onto their disks.

/// What a heal did.
#[derive(Clone, Debug, Default)]
pub struct HealReport {
    /// Shards rebuilt and written back.
    pub healed_shards: Vec<usize>,
}
