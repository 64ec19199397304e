//! What the store needs to open: its disks, the erasure layout, where RocksDB lives, how
//! durable writes are and which objects stay inline. The server's configuration builds one;
//! tests and `meridian bench pipeline` build one for a directory.

use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use meridian_erasure::Durability;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Disk directories in slot order, `data_shards + parity_shards` of them.
    pub disks: Vec<PathBuf>,
    pub data_shards: usize,
    pub parity_shards: usize,
    /// The RocksDB directory (never inside a data disk).
    pub metadata_path: PathBuf,
    /// Shards and metadata commits fsynced before a write is acknowledged, or not.
    pub durability: Durability,
    /// Objects smaller than this many bytes live in their version record (0 = never).
    pub inline_threshold: usize,
    /// A lifecycle day this long instead of AWS's (midnight UTC): tests only.
    pub lifecycle_day: Option<std::time::Duration>,
    /// The keyring of SSE-S3 and SSE-KMS (none: only SSE-C can encrypt).
    pub keyring: Option<crate::encryption::KeyringConfig>,
}

/// Objects below this size are kept in their version record by default.
pub const DEFAULT_INLINE_THRESHOLD: usize = 128 * 1024;

impl StoreConfig {
    /// A `k+m` store under `dir`: disks at `dir/disk1..N`, metadata at `dir/meta`, fsynced
    /// writes, the default inline threshold.
    pub fn in_dir(dir: &Path, data_shards: usize, parity_shards: usize) -> StoreConfig {
        StoreConfig {
            disks: (1..=data_shards + parity_shards)
                .map(|i| dir.join(format!("disk{i}")))
                .collect(),
            data_shards,
            parity_shards,
            metadata_path: dir.join("meta"),
            durability: Durability::Fsync,
            inline_threshold: DEFAULT_INLINE_THRESHOLD,
            lifecycle_day: None,
            keyring: None,
        }
    }
}

/// `K+M`, as written on the command line and in `MERIDIAN_ERASURE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasureSpec {
    pub data: usize,
    pub parity: usize,
}

impl FromStr for ErasureSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, m) = s
            .split_once('+')
            .ok_or_else(|| format!("expected K+M (like 4+2), got {s:?}"))?;
        let data = k
            .trim()
            .parse()
            .map_err(|_| format!("bad data shard count in {s:?}"))?;
        let parity = m
            .trim()
            .parse()
            .map_err(|_| format!("bad parity shard count in {s:?}"))?;
        Ok(ErasureSpec { data, parity })
    }
}
