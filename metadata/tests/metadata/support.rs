//! Helpers shared by the tests: a store in a temporary directory and terse writers.

use meridian_metadata::{
    BucketRecord, MetaOptions, MetaStore, NewVersion, Storage, VersionRecord, VersioningState,
};
use tempfile::TempDir;

/// A store in its own temporary directory (kept alive with it).
pub struct TestStore {
    pub dir: TempDir,
    pub store: MetaStore,
}

impl std::ops::Deref for TestStore {
    type Target = MetaStore;
    fn deref(&self) -> &MetaStore {
        &self.store
    }
}

impl TestStore {
    /// Unsynced writes: these tests are about semantics, the crash test covers durability.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path(), MetaOptions { sync_writes: false }).unwrap();
        TestStore { dir, store }
    }

    /// Closes and reopens the same database.
    pub fn reopen(self) -> Self {
        let TestStore { dir, store } = self;
        drop(store);
        let store = MetaStore::open(dir.path(), MetaOptions { sync_writes: false }).unwrap();
        TestStore { dir, store }
    }
}

pub fn bucket_record(name: &str, versioning: VersioningState) -> BucketRecord {
    BucketRecord {
        name: name.into(),
        created: 1,
        owner: "owner".into(),
        region: "local".into(),
        versioning,
        ..BucketRecord::default()
    }
}

pub fn make_bucket(store: &MetaStore, name: &str, versioning: VersioningState) {
    store
        .create_bucket(bucket_record(name, versioning))
        .unwrap();
}

/// A new local version whose inline data is `content`.
pub fn inline(content: &str) -> NewVersion {
    NewVersion {
        size: content.len() as u64,
        etag: format!("etag-{content}"),
        storage: Storage::Inline(content.as_bytes().to_vec()),
        ..NewVersion::default()
    }
}

/// A new local version stored out of line, with layout blob `blob`.
pub fn layout(blob: &str) -> NewVersion {
    NewVersion {
        size: 1 << 20,
        etag: "e".into(),
        storage: Storage::Layout(blob.as_bytes().to_vec()),
        ..NewVersion::default()
    }
}

pub fn put(store: &MetaStore, bucket: &str, key: &str, content: &str) -> VersionRecord {
    store
        .put_version(bucket, key, inline(content))
        .unwrap()
        .version
}

/// The inline content of a version record ("" for markers).
pub fn content(v: &VersionRecord) -> String {
    match &v.storage {
        Storage::Inline(b) | Storage::Layout(b) => String::from_utf8(b.clone()).unwrap(),
    }
}
