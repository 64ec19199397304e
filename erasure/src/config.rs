//! Configuration of a disk set: which directories, how many data and parity shards, stripe size
//! and durability of writes. [`DiskSetConfig::validate`] is the one place the limits live.

use std::path::PathBuf;

use crate::ErasureError;

/// Default amount of object data per stripe (1 MiB).
pub const DEFAULT_STRIPE_SIZE: usize = 1024 * 1024;
/// Largest supported stripe (object bytes per stripe).
pub const MAX_STRIPE_SIZE: usize = 64 * 1024 * 1024;
/// Largest supported number of disks (`k + m`).
pub const MAX_DISKS: usize = 16;

/// Durability of writes: of shard files here, and of the metadata commits the store makes with
/// them. Written `"fsync"` or `"none"` in configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `finish()` returns only after the shard files and their directory entries are fsynced.
    #[default]
    Fsync,
    /// Leave flushing to the OS: faster, but a power loss may lose recently finished objects.
    #[serde(rename = "none")]
    NoSync,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Durability, String> {
        match s {
            "fsync" => Ok(Durability::Fsync),
            "none" => Ok(Durability::NoSync),
            _ => Err(format!("expected fsync or none, got {s:?}")),
        }
    }
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

    /// Checks `1 <= k`, `m <= k`, `N = k + m = disks.len() <= 16`, distinct disk paths and
    /// `1 <= stripe_size <= 64 MiB`.
    pub fn validate(&self) -> Result<(), ErasureError> {
        let (k, m, n) = (self.data_shards, self.parity_shards, self.disks.len());
        let invalid = |msg: String| Err(ErasureError::InvalidConfig(msg));
        if k == 0 {
            return invalid("data_shards must be at least 1".into());
        }
        if m > k {
            return invalid(format!(
                "parity_shards ({m}) must not exceed data_shards ({k})"
            ));
        }
        if k + m > MAX_DISKS {
            return invalid(format!(
                "{k}+{m} needs {} disks, at most {MAX_DISKS} are supported",
                k + m
            ));
        }
        if n != k + m {
            return invalid(format!(
                "{k}+{m} needs exactly {} disks, {n} were given",
                k + m
            ));
        }
        for (i, a) in self.disks.iter().enumerate() {
            if self.disks[..i].contains(a) {
                return invalid(format!("disk {} is listed twice", a.display()));
            }
        }
        if self.stripe_size == 0 || self.stripe_size > MAX_STRIPE_SIZE {
            return invalid(format!(
                "stripe_size {} is outside 1..={MAX_STRIPE_SIZE}",
                self.stripe_size
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disks(n: usize) -> Vec<PathBuf> {
        (0..n).map(|i| PathBuf::from(format!("/d{i}"))).collect()
    }

    #[test]
    fn default_layout_and_single_disk_are_valid() {
        DiskSetConfig::new(disks(6), 4, 2).validate().unwrap();
        DiskSetConfig::new(disks(1), 1, 0).validate().unwrap();
        DiskSetConfig::new(disks(16), 8, 8).validate().unwrap();
    }

    #[test]
    fn impossible_layouts_are_rejected() {
        for (n, k, m) in [(6, 2, 4), (0, 0, 0), (17, 9, 8), (5, 4, 2), (2, 1, 0)] {
            let err = DiskSetConfig::new(disks(n), k, m).validate().unwrap_err();
            assert!(
                matches!(err, ErasureError::InvalidConfig(_)),
                "{n} {k}+{m}: {err}"
            );
        }
        let mut dup = DiskSetConfig::new(disks(2), 1, 1);
        dup.disks[1] = dup.disks[0].clone();
        assert!(dup.validate().is_err());
        let mut zero = DiskSetConfig::new(disks(2), 1, 1);
        zero.stripe_size = 0;
        assert!(zero.validate().is_err());
    }
}
