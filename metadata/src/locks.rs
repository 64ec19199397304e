//! In-process locks that make read-modify-write commits safe without a global lock.
//!
//! - a striped `RwLock` per bucket: every change inside a bucket holds it shared (and checks the
//!   bucket exists under it); deleting the bucket or changing its versioning holds it
//!   exclusively, so no put can slip into a bucket that is being deleted;
//! - a striped mutex per multipart upload: part writes, completion and abort of one upload are
//!   serialised;
//! - a striped mutex per (bucket, key): the read of the current versions and the synced write
//!   of the batch built from it happen under it.
//!
//! Lock order is bucket → upload → key. Distinct keys rarely share a stripe, so concurrent
//! writers to different keys reach RocksDB together and share one WAL sync (group commit).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

const BUCKET_STRIPES: usize = 64;
const UPLOAD_STRIPES: usize = 256;
const KEY_STRIPES: usize = 1024;

pub struct Locks {
    buckets: Vec<RwLock<()>>,
    uploads: Vec<Mutex<()>>,
    keys: Vec<Mutex<()>>,
    /// Serialises bucket creation (check-then-insert of the name).
    create: Mutex<()>,
}

pub type Shared<'a> = RwLockReadGuard<'a, ()>;
pub type Exclusive<'a> = RwLockWriteGuard<'a, ()>;
pub type Held<'a> = MutexGuard<'a, ()>;

impl Locks {
    pub fn new() -> Self {
        Locks {
            buckets: (0..BUCKET_STRIPES).map(|_| RwLock::new(())).collect(),
            uploads: (0..UPLOAD_STRIPES).map(|_| Mutex::new(())).collect(),
            keys: (0..KEY_STRIPES).map(|_| Mutex::new(())).collect(),
            create: Mutex::new(()),
        }
    }

    pub fn bucket_shared(&self, bucket: &str) -> Shared<'_> {
        let lock = &self.buckets[stripe(&[bucket], BUCKET_STRIPES)];
        lock.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn bucket_exclusive(&self, bucket: &str) -> Exclusive<'_> {
        let lock = &self.buckets[stripe(&[bucket], BUCKET_STRIPES)];
        lock.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> Held<'_> {
        let lock = &self.uploads[stripe(&[bucket, key, upload_id], UPLOAD_STRIPES)];
        lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn key(&self, bucket: &str, key: &str) -> Held<'_> {
        let lock = &self.keys[stripe(&[bucket, key], KEY_STRIPES)];
        lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn create(&self) -> Held<'_> {
        self.create.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn stripe(parts: &[&str], stripes: usize) -> usize {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    (h.finish() % stripes as u64) as usize
}
