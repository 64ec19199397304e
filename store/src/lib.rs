//! The storage service of one node: the erasure-coded disk set (`meridian-erasure`) and the
//! version metadata (`meridian-metadata`) behind one handle, with the object write path
//! (hashing and erasure coding a body), the read path (a verified byte range), the checksums
//! S3 objects carry, and the background work that keeps disks tidy (reclaiming shards no
//! version references any more, healing damage readers found, scrubbing, collecting orphans).
//!
//! Nothing here knows HTTP, s3s or S3 XML: the gateway translates requests into calls on
//! [`Store`]. Storage semantics that must hold whoever calls — lifecycle expiry, object-lock
//! enforcement, encryption before erasure coding — belong in this crate.

pub mod access_keys;
pub mod background;
pub mod checksum;
pub mod config;
pub mod encryption;
pub mod ingest;
pub mod layout;
pub mod lifecycle;
pub mod metrics;
pub mod orphans;
pub mod read;

pub use config::{Durability, StoreConfig};

use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use meridian_erasure::{DiskSet, DiskSetConfig, ErasureError};
use meridian_metadata::{MetaError, MetaOptions, MetaStore, Storage};
use tokio::sync::Notify;

use ingest::{BodyError, IngestedData};
use layout::{Layout, LayoutError};
use read::ObjectStream;

/// Takes an exclusive lock on every existing disk directory not locked yet, so a second
/// server pointed at the same disks (even with its metadata elsewhere) fails before the disk
/// set's start-up sweep could delete this one's in-flight writes. Called before the disk set
/// opens (existing disks) and after (the directories it created for a new set).
fn lock_disks(
    paths: &[PathBuf],
    held: &mut Vec<(PathBuf, std::fs::File)>,
) -> Result<(), StoreError> {
    for path in paths.iter().filter(|p| p.is_dir()) {
        if held.iter().any(|(p, _)| p == path) {
            continue;
        }
        let in_use = |reason: String| StoreError::Open {
            what: "disk",
            path: path.clone(),
            reason,
        };
        let dir = std::fs::File::open(path).map_err(|e| in_use(e.to_string()))?;
        match dir.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(in_use("locked by another meridian process".into()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(in_use(e.to_string())),
        }
        held.push((path.clone(), dir));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Erasure(#[from] ErasureError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Body(BodyError),
    #[error("opening {what} at {path}: {reason}")]
    Open {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

/// The node's storage: cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub meta: MetaStore,
    pub disks: DiskSet,
    inline_threshold: usize,
    /// Every bucket's lifecycle rules and the length of a lifecycle day.
    pub lifecycle: Arc<lifecycle::Lifecycle>,
    /// Data keys: made, sealed and opened for encrypted versions.
    pub sse: Arc<encryption::Sse>,
    reclaim_wakeup: Arc<Notify>,
    /// Held for the life of the store: no other process may use these disks.
    _disk_locks: Arc<Vec<(PathBuf, std::fs::File)>>,
    /// When the disk check of a readiness probe that has not finished began.
    disk_check: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Told the data ids the reclaimer deleted (see [`Store::on_reclaim`]).
    reclaimed: Arc<OnceLock<ReclaimListener>>,
}

/// See [`Store::on_reclaim`].
pub type ReclaimListener = Arc<dyn Fn(&[meridian_erasure::DataId]) + Send + Sync>;

/// How long a readiness probe waits for the disk check (a probe must answer within 1 s).
pub const DISK_CHECK_WAIT: std::time::Duration = std::time::Duration::from_millis(800);

impl Store {
    /// Opens (creating on first start) the disks and the metadata store the config names.
    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        // Metadata first: RocksDB's lock refuses a second process on the same data before the
        // disk set's start-up sweep could delete a running server's in-flight writes.
        let meta_path = config.metadata_path.clone();
        let opts = MetaOptions {
            sync_writes: config.durability == Durability::Fsync,
        };
        let path = meta_path.clone();
        let meta = tokio::task::spawn_blocking(move || MetaStore::open(&path, opts))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .map_err(|e| StoreError::Open {
                what: "metadata",
                path: meta_path,
                reason: e.to_string(),
            })?;

        let mut disk_config = DiskSetConfig::new(
            config.disks.clone(),
            config.data_shards,
            config.parity_shards,
        );
        disk_config.durability = config.durability;
        let mut disk_locks = Vec::new();
        lock_disks(&config.disks, &mut disk_locks)?;
        let disks = DiskSet::open(disk_config).await?;
        lock_disks(&config.disks, &mut disk_locks)?;

        let lifecycle = Arc::new(lifecycle::Lifecycle::new(
            meta.clone(),
            config.lifecycle_day,
        ));
        let planner: Arc<dyn meridian_metadata::DuePlanner> = lifecycle.clone();
        meta.set_due_planner(&planner);
        let sse = encryption::Sse::open(config.keyring.as_ref()).map_err(|e| StoreError::Open {
            what: "keyring",
            path: config
                .keyring
                .as_ref()
                .map(|k| k.path.clone())
                .unwrap_or_default(),
            reason: e.to_string(),
        })?;
        Ok(Store {
            sse: Arc::new(sse),
            lifecycle,
            meta,
            disks,
            inline_threshold: config.inline_threshold,
            reclaim_wakeup: Arc::new(Notify::new()),
            _disk_locks: Arc::new(disk_locks),
            disk_check: Arc::default(),
            reclaimed: Arc::default(),
        })
    }

    /// Sets what is told the data ids of shards deleted because nothing references them
    /// (by the reclaimer, or discarded before a commit): a node of a region of several nodes
    /// drops the copies of them its followers hold staged. Set once.
    pub fn on_reclaim(&self, listener: ReclaimListener) {
        let _ = self.reclaimed.set(listener);
    }

    pub(crate) fn reclaimed(&self, data_ids: &[meridian_erasure::DataId]) {
        if let Some(listener) = self.reclaimed.get() {
            listener(data_ids);
        }
    }

    /// After a commit: a write that met quorum with shards missing (a disk was down) gets
    /// them rebuilt in the background, now that a version references the data.
    pub fn heal_if_degraded(&self, data: &IngestedData) {
        let IngestedData::Erasure(outcome) = data else {
            return;
        };
        if outcome.missing_shards.is_empty() {
            return;
        }
        let (disks, descriptor) = (self.disks.clone(), outcome.descriptor.clone());
        tracing::warn!(data_id = %descriptor.data_id, missing = ?outcome.missing_shards, "degraded write; healing");
        tokio::spawn(async move {
            if let Err(e) = disks.heal(&descriptor).await {
                tracing::warn!(data_id = %descriptor.data_id, error = %e, "healing a degraded write failed; scrub will retry");
            }
        });
    }

    pub fn inline_threshold(&self) -> usize {
        self.inline_threshold
    }

    /// Runs a metadata operation on the blocking pool (RocksDB calls block; synced commits
    /// from many requests group-commit there).
    pub async fn meta<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&MetaStore) -> Result<R, MetaError> + Send + 'static,
    {
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || f(&meta))
            .await
            .map_err(|e| StoreError::Internal(format!("metadata task failed: {e}")))?
            .map_err(StoreError::from)
    }

    /// The plaintext `range` of an object stored as `storage`: decrypted with `key` when the
    /// version is encrypted, the stored bytes otherwise (range already validated).
    pub fn read_plain(
        &self,
        storage: &Storage,
        range: Range<u64>,
        key: Option<&encryption::DataKey>,
        segments: &[u64],
    ) -> Result<ObjectStream, StoreError> {
        let Some(key) = key else {
            return self.read(storage, range);
        };
        if !segments.is_empty() {
            let layout = match storage {
                Storage::Inline(data) => Layout {
                    segments: vec![layout::Segment::Inline(data.clone())],
                },
                Storage::Layout(blob) => Layout::from_bytes(blob)?,
            };
            return ObjectStream::sealed_over(&self.disks, layout, segments, range, key);
        }
        match storage {
            Storage::Inline(data) => ObjectStream::sealed_inline(&self.disks, data, range, key),
            Storage::Layout(blob) => {
                ObjectStream::sealed(&self.disks, &Layout::from_bytes(blob)?.segments, range, key)
            }
        }
    }

    /// How many bytes an object stored as `storage` takes (its ciphertext, when encrypted).
    pub fn stored_size(storage: &Storage) -> Result<u64, StoreError> {
        Ok(match storage {
            Storage::Inline(data) => data.len() as u64,
            Storage::Layout(blob) => Layout::from_bytes(blob)?.size(),
        })
    }

    /// The plaintext sizes of the sealed segments of an encrypted object stored as `storage`.
    pub fn sealed_segments(storage: &Storage, segments: &[u64]) -> Result<Vec<u64>, StoreError> {
        if !segments.is_empty() {
            return Ok(segments.to_vec());
        }
        let stored: Vec<u64> = match storage {
            Storage::Inline(data) => vec![data.len() as u64],
            Storage::Layout(blob) => Layout::from_bytes(blob)?
                .segments
                .iter()
                .map(layout::Segment::size)
                .collect(),
        };
        stored
            .into_iter()
            .map(|s| {
                encryption::package::plain_size(s).map_err(|e| StoreError::Internal(e.to_string()))
            })
            .collect()
    }

    /// The stored bytes `range` of an object stored as `storage`: ciphertext for an encrypted
    /// version (range already validated).
    pub fn read(&self, storage: &Storage, range: Range<u64>) -> Result<ObjectStream, StoreError> {
        match storage {
            Storage::Inline(data) => Ok(ObjectStream::inline(Bytes::copy_from_slice(data), range)),
            Storage::Layout(blob) => Ok(ObjectStream::layout(
                &self.disks,
                &Layout::from_bytes(blob)?,
                range,
            )),
        }
    }

    /// The storage record for freshly ingested data.
    pub fn storage_of(data: &IngestedData) -> Storage {
        match data {
            IngestedData::Inline(b) => Storage::Inline(b.to_vec()),
            IngestedData::Erasure(outcome) => {
                Storage::Layout(Layout::single(outcome.descriptor.clone()).to_bytes())
            }
        }
    }

    /// Deletes the shards of data that was written but will never be committed.
    pub async fn discard(&self, data: IngestedData) {
        if let IngestedData::Erasure(outcome) = data {
            self.reclaimed(&[outcome.descriptor.data_id]);
            if let Err(e) = self.disks.delete(outcome.descriptor.data_id).await {
                tracing::warn!(data_id = %outcome.descriptor.data_id, error = %e, "discarding uncommitted shards failed; queueing for reclaim");
                let storage = Storage::Layout(Layout::single(outcome.descriptor).to_bytes());
                let _ = self
                    .meta(move |m| m.reclaim_add(Self::storage_bytes(storage)))
                    .await;
                self.wake_reclaimer();
            }
        }
    }

    fn storage_bytes(storage: Storage) -> Vec<u8> {
        match storage {
            Storage::Layout(b) | Storage::Inline(b) => b,
        }
    }

    /// Tells the reclaimer that a commit queued storage for deletion.
    pub fn wake_reclaimer(&self) {
        self.reclaim_wakeup.notify_one();
    }

    fn reclaim_wakeup(&self) -> Arc<Notify> {
        self.reclaim_wakeup.clone()
    }

    /// Disks and metadata usable: what `/_meridian/health/ready` reports. Answers within
    /// [`DISK_CHECK_WAIT`] plus a metadata read even when a disk hangs: the disk check runs on
    /// the blocking pool, a check still running after the wait makes the store not ready, and
    /// no second check starts while one hangs (a hung disk does not eat a thread per probe).
    pub async fn readiness(&self) -> Result<(), String> {
        {
            let mut running = self.disk_check.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(since) = *running {
                return Err(format!(
                    "the disk check started {:.1} s ago has not finished (a disk hangs?)",
                    since.elapsed().as_secs_f64()
                ));
            }
            *running = Some(std::time::Instant::now());
        }
        let (disks, flag) = (self.disks.clone(), self.disk_check.clone());
        let check = tokio::task::spawn_blocking(move || {
            #[cfg(feature = "fault-injection")]
            if let Some(ms) = std::env::var("MERIDIAN_FAULT_DISK_CHECK_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            let health = disks.disk_health();
            *flag.lock().unwrap_or_else(|p| p.into_inner()) = None;
            health
        });
        let health = match tokio::time::timeout(DISK_CHECK_WAIT, check).await {
            Ok(Ok(health)) => health,
            Ok(Err(e)) => return Err(format!("the disk check failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "the disk check did not finish within {DISK_CHECK_WAIT:?} (a disk hangs?)"
                ))
            }
        };
        let bad: Vec<String> = health
            .into_iter()
            .filter(|d| !d.ok)
            .map(|d| {
                format!(
                    "disk {} ({}): {}",
                    d.slot,
                    d.path.display(),
                    d.error.unwrap_or_default()
                )
            })
            .collect();
        let usable = self.disks.data_shards() + self.disks.parity_shards() - bad.len();
        if usable < self.write_quorum() {
            return Err(format!(
                "too few usable disks for writes: {}",
                bad.join("; ")
            ));
        }
        self.meta(|m| m.check())
            .await
            .map_err(|e| format!("metadata: {e}"))
    }

    fn write_quorum(&self) -> usize {
        let k = self.disks.data_shards();
        if self.disks.parity_shards() > 0 {
            k + 1
        } else {
            k
        }
    }
}
