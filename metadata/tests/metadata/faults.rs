//! Damage is reported, not panicked on or silently ignored: an undecodable record, a database
//! from a newer schema.

use meridian_metadata::{MetaError, MetaOptions, MetaStore, VersioningState};

use crate::support::{make_bucket, put, TestStore};

/// Opens the raw database behind a (closed) store.
fn raw_db(path: &std::path::Path) -> rocksdb::DB {
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
    rocksdb::DB::open_cf(&rocksdb::Options::default(), path, cfs).unwrap()
}

#[test]
fn a_corrupt_version_record_is_reported_as_corrupt() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    let v = put(&s, "b", "k", "a");
    let TestStore { dir, store } = s;
    drop(store);
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("versions").unwrap();
        let mut it = db.raw_iterator_cf(cf);
        it.seek_to_first();
        let key = it.key().unwrap().to_vec();
        drop(it);
        db.put_cf(cf, key, b"\x01garbage that is not msgpack")
            .unwrap();
    }
    let store = MetaStore::open(dir.path(), MetaOptions { sync_writes: false }).unwrap();
    match store.get_version("b", "k", Some(&v.version_id)) {
        Err(MetaError::Corrupt { cf, .. }) => assert_eq!(cf, "versions"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_database_from_a_newer_schema_is_refused_by_its_version_and_what_to_do() {
    let s = TestStore::new();
    let TestStore { dir, store } = s;
    drop(store);
    {
        // What a newer release leaves behind: a higher version and a column family this
        // binary has never heard of (RocksDB alone would refuse to open without naming it).
        let mut db = raw_db(dir.path());
        db.put_cf(
            db.cf_handle("meta").unwrap(),
            b"schema",
            99u32.to_be_bytes(),
        )
        .unwrap();
        db.create_cf("from_the_future", &rocksdb::Options::default())
            .unwrap();
    }
    match MetaStore::open(dir.path(), MetaOptions::default()) {
        Err(e @ MetaError::UnsupportedSchema { found: 99, .. }) => {
            let text = e.to_string();
            assert!(text.contains("schema version 99"), "{text}");
            assert!(
                text.contains(&format!("up to {}", meridian_metadata::SCHEMA_VERSION)),
                "{text}"
            );
            assert!(text.contains("Upgrade the binary"), "{text}");
            assert!(text.contains("restore the data directory"), "{text}");
            assert!(!text.contains("from_the_future"), "{text}");
        }
        other => panic!("expected UnsupportedSchema, got {other:?}"),
    }
}
