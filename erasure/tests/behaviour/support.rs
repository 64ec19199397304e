//! Shared helpers: a disk set on temporary directories, deterministic data, and direct
//! access to the shard files so faults can be injected for real.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use meridian_erasure::{
    DiskSet, DiskSetConfig, Durability, ErasureError, ObjectDescriptor, WriteOutcome,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use tempfile::TempDir;

pub const MIB: usize = 1024 * 1024;

/// A disk set on `k + m` fresh temporary directories.
pub struct TestSet {
    /// Keeps the directories alive for the test.
    _dir: TempDir,
    pub config: DiskSetConfig,
    pub set: DiskSet,
}

impl TestSet {
    pub async fn new(k: usize, m: usize) -> TestSet {
        TestSet::with_stripe(k, m, MIB).await
    }

    pub async fn with_stripe(k: usize, m: usize, stripe_size: usize) -> TestSet {
        let dir = tempfile::tempdir().unwrap();
        let disks = (0..k + m)
            .map(|i| dir.path().join(format!("disk{i}")))
            .collect();
        let mut config = DiskSetConfig::new(disks, k, m);
        config.stripe_size = stripe_size;
        config.durability = Durability::NoSync;
        let set = DiskSet::open(config.clone()).await.unwrap();
        TestSet {
            _dir: dir,
            config,
            set,
        }
    }

    pub fn disk(&self, slot: usize) -> &Path {
        &self.config.disks[slot]
    }

    /// Opens the same directories again (as a restarted process would).
    pub async fn reopen(&mut self) {
        self.set = DiskSet::open(self.config.clone()).await.unwrap();
    }

    /// Writes `data` in chunks of `chunk` bytes and finishes.
    pub async fn write_chunked(&self, data: &[u8], chunk: usize) -> WriteOutcome {
        let mut writer = self.set.writer(b"bucket/key/v1".to_vec());
        for piece in data.chunks(chunk.max(1)) {
            writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        writer.finish().await.unwrap()
    }

    /// Writes `data` in odd-sized chunks and returns the descriptor; all shards must land.
    pub async fn write(&self, data: &[u8]) -> ObjectDescriptor {
        let outcome = self.write_chunked(data, 100_003).await;
        assert!(
            outcome.missing_shards.is_empty(),
            "{:?}",
            outcome.missing_shards
        );
        outcome.descriptor
    }

    /// Reads `range`; the first error is returned (bytes before it are checked to be a prefix
    /// of nothing: an error must come before any wrong byte could).
    pub async fn read(
        &self,
        desc: &ObjectDescriptor,
        range: Range<u64>,
    ) -> Result<Vec<u8>, ErasureError> {
        let mut reader = self.set.reader(desc, range);
        let mut out = Vec::new();
        while let Some(chunk) = reader.next().await {
            let chunk = chunk?;
            assert!(
                chunk.len() <= desc.stripe_size as usize,
                "chunk larger than a stripe"
            );
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    pub async fn read_all(&self, desc: &ObjectDescriptor) -> Result<Vec<u8>, ErasureError> {
        self.read(desc, 0..desc.size).await
    }

    /// Path of shard `shard` of `desc` (the documented on-disk layout).
    pub fn shard_path(&self, desc: &ObjectDescriptor, shard: usize) -> PathBuf {
        let id = desc.data_id.simple().to_string();
        self.disk(desc.placement[shard] as usize)
            .join("data")
            .join(&id[..2])
            .join(format!("{}.shard", desc.data_id.hyphenated()))
    }

    /// Contents of every shard file of `desc` (`None` where missing).
    pub fn snapshot(&self, desc: &ObjectDescriptor) -> Vec<Option<Vec<u8>>> {
        (0..desc.placement.len())
            .map(|s| fs::read(self.shard_path(desc, s)).ok())
            .collect()
    }

    /// Files currently in the staging directories of all disks.
    pub fn staging_files(&self) -> Vec<PathBuf> {
        files_under(&self.config.disks, "staging")
    }

    /// Committed shard files on all disks.
    pub fn shard_files(&self) -> Vec<PathBuf> {
        files_under(&self.config.disks, "data")
    }

    /// Makes a disk vanish (its whole directory) until [`Self::bring_back`].
    pub fn take_away(&self, slot: usize) {
        fs::rename(self.disk(slot), away(self.disk(slot))).unwrap();
    }

    pub fn bring_back(&self, slot: usize) {
        fs::rename(away(self.disk(slot)), self.disk(slot)).unwrap();
    }
}

fn away(path: &Path) -> PathBuf {
    path.with_extension("away")
}

fn files_under(disks: &[PathBuf], sub: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = disks.iter().map(|d| d.join(sub)).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.map(Result::unwrap) {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut data = vec![0u8; len];
    rng.fill(&mut data[..]);
    data
}

/// Flips `count` random bytes of a file at offsets `>= from`, each to a different value.
pub fn flip_bytes(path: &Path, from: u64, count: usize, seed: u64) {
    let mut bytes = fs::read(path).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..count {
        let at = rng.gen_range(from as usize..bytes.len());
        bytes[at] ^= rng.gen_range(1..=255u8);
    }
    fs::write(path, bytes).unwrap();
}

/// Length of the shard header written by [`TestSet::write_chunked`]'s identity.
pub fn header_len() -> u64 {
    48 + b"bucket/key/v1".len() as u64 + 4
}
