//! Configuration of a disk set: which directories, how many data and parity shards, stripe size
//! and durability of writes.

use std::path::PathBuf;

/// Default amount of object data per stripe (1 MiB).
pub const DEFAULT_STRIPE_SIZE: usize = 1024 * 1024;

/// Durability of shard writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `finish()` returns only after the shard files and their directory entries are fsynced.
    #[default]
    Fsync,
    /// Leave flushing to the OS: faster, but a power loss may lose recently finished objects.
    NoSync,
}

/// How to open a [`crate::DiskSet`].
#[derive(Clone, Debug)]
pub struct DiskSetConfig {
    /// `data_shards + parity_shards` directories, in slot order.
    pub disks: Vec<PathBuf>,
    /// `k`: shards that carry object data.
    pub data_shards: usize,
    /// `m`: parity shards; up to `m` shards of an object may be lost. `m <= k`.
    pub parity_shards: usize,
    /// Object data per stripe for new writes (default 1 MiB); each shard block of a stripe is
    /// `ceil(stripe_size / k)` bytes.
    pub stripe_size: usize,
    /// Durability of new writes (default [`Durability::Fsync`]).
    pub durability: Durability,
}

impl DiskSetConfig {
    /// A configuration with the default stripe size and durability.
    pub fn new(disks: Vec<PathBuf>, data_shards: usize, parity_shards: usize) -> Self {
        DiskSetConfig {
            disks,
            data_shards,
            parity_shards,
            stripe_size: DEFAULT_STRIPE_SIZE,
            durability: Durability::Fsync,
        }
    }
}
