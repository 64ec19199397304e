//! Buckets: uniqueness, listing, emptiness rules for delete, versioning state, config docs.

use std::sync::Arc;

use meridian_metadata::{DeleteOptions, MetaError, PartRecord, UploadRecord, VersioningState};

use crate::support::{bucket_record, make_bucket, put, TestStore};

#[test]
fn bucket_names_are_unique_and_the_owner_is_reported() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Unversioned);
    let mut again = bucket_record("b", VersioningState::Enabled);
    again.owner = "someone-else".into();
    match s.create_bucket(again) {
        Err(MetaError::BucketExists { bucket, owner }) => {
            assert_eq!((bucket.as_str(), owner.as_str()), ("b", "owner"))
        }
        other => panic!("expected BucketExists, got {other:?}"),
    }
    assert_eq!(
        s.get_bucket("b").unwrap().unwrap(),
        bucket_record("b", VersioningState::Unversioned)
    );
    assert_eq!(s.get_bucket("c").unwrap(), None);
}

#[test]
fn buckets_are_listed_by_name() {
    let s = TestStore::new();
    for name in ["zeta", "alpha", "mid"] {
        make_bucket(&s, name, VersioningState::Unversioned);
    }
    let names: Vec<String> = s
        .list_buckets()
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
}

#[test]
fn bucket_delete_requires_no_versions_or_markers_and_aborts_uploads() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    let v = put(&s, "b", "k", "a");
    assert!(matches!(
        s.delete_bucket("b"),
        Err(MetaError::BucketNotEmpty { .. })
    ));
    let marker = s
        .delete_object("b", "k", None, DeleteOptions::default())
        .unwrap()
        .version_id
        .unwrap();
    s.delete_object("b", "k", Some(&v.version_id), DeleteOptions::default())
        .unwrap();
    // Only a delete marker is left: still not empty.
    assert!(matches!(
        s.delete_bucket("b"),
        Err(MetaError::BucketNotEmpty { .. })
    ));
    s.delete_object("b", "k", Some(&marker), DeleteOptions::default())
        .unwrap();
    let upload = UploadRecord {
        upload_id: "u1".into(),
        bucket: "b".into(),
        key: "k".into(),
        ..Default::default()
    };
    s.create_upload(upload).unwrap();
    let part = PartRecord {
        number: 1,
        storage: b"part-layout".to_vec(),
        ..Default::default()
    };
    s.put_part("b", "k", "u1", part).unwrap();
    let reclaim_before = s.reclaim_pending(100).unwrap().len();
    // Only an upload in progress is left: the delete aborts it, as S3 does.
    s.delete_bucket("b").unwrap();
    assert_eq!(s.reclaim_pending(100).unwrap().len(), reclaim_before + 1);
    make_bucket(&s, "b", VersioningState::Enabled);
    assert_eq!(s.get_upload("b", "k", "u1").unwrap(), None);
    assert!(s
        .list_uploads("b", &Default::default())
        .unwrap()
        .uploads
        .is_empty());
    s.delete_bucket("b").unwrap();
    assert_eq!(s.get_bucket("b").unwrap(), None);
    assert!(matches!(
        s.delete_bucket("b"),
        Err(MetaError::NoSuchBucket { .. })
    ));
}

#[test]
fn a_bucket_whose_name_prefixes_another_is_independent() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Unversioned);
    make_bucket(&s, "b2", VersioningState::Unversioned);
    put(&s, "b2", "k", "x");
    s.delete_bucket("b").unwrap();
    assert!(s.get_version("b2", "k", None).unwrap().is_some());
}

#[test]
fn bucket_delete_and_a_concurrent_put_never_both_succeed() {
    let s = Arc::new(TestStore::new());
    for round in 0..100 {
        make_bucket(&s, "race", VersioningState::Unversioned);
        let putter = {
            let s = s.clone();
            std::thread::spawn(move || {
                s.put_version("race", &format!("k{round}"), crate::support::inline("x"))
                    .is_ok()
            })
        };
        let deleted = s.delete_bucket("race").is_ok();
        let put_ok = putter.join().unwrap();
        assert!(
            !(deleted && put_ok),
            "round {round}: a put landed in a deleted bucket"
        );
        if put_ok {
            s.delete_object("race", &format!("k{round}"), None, DeleteOptions::default())
                .unwrap();
            s.delete_bucket("race").unwrap();
        }
        assert!(s.list_versions("race", &Default::default()).is_err());
    }
}

#[test]
fn versioning_cannot_return_to_unversioned() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Unversioned);
    s.set_versioning("b", VersioningState::Unversioned).unwrap();
    s.set_versioning("b", VersioningState::Enabled).unwrap();
    s.set_versioning("b", VersioningState::Suspended).unwrap();
    assert!(matches!(
        s.set_versioning("b", VersioningState::Unversioned),
        Err(MetaError::InvalidArgument(_))
    ));
    assert_eq!(
        s.get_bucket("b").unwrap().unwrap().versioning,
        VersioningState::Suspended
    );
    assert!(matches!(
        s.set_versioning("nope", VersioningState::Enabled),
        Err(MetaError::NoSuchBucket { .. })
    ));
}

#[test]
fn config_documents_are_stored_by_name_and_go_with_the_bucket() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Unversioned);
    make_bucket(&s, "b2", VersioningState::Unversioned);
    s.put_bucket_config("b", "replication", b"<xml/>".to_vec())
        .unwrap();
    s.put_bucket_config("b", "policy", b"{}".to_vec()).unwrap();
    s.put_bucket_config("b2", "policy", b"{\"b2\":1}".to_vec())
        .unwrap();
    assert_eq!(
        s.get_bucket_config("b", "replication").unwrap().as_deref(),
        Some(&b"<xml/>"[..])
    );
    s.put_bucket_config("b", "policy", b"{\"v\":2}".to_vec())
        .unwrap();
    assert_eq!(
        s.get_bucket_config("b", "policy").unwrap().as_deref(),
        Some(&b"{\"v\":2}"[..])
    );
    s.delete_bucket_config("b", "policy").unwrap();
    assert_eq!(s.get_bucket_config("b", "policy").unwrap(), None);
    assert!(matches!(
        s.get_bucket_config("nope", "policy"),
        Err(MetaError::NoSuchBucket { .. })
    ));
    assert!(matches!(
        s.put_bucket_config("nope", "policy", vec![]),
        Err(MetaError::NoSuchBucket { .. })
    ));
    s.delete_bucket("b").unwrap();
    make_bucket(&s, "b", VersioningState::Unversioned);
    assert_eq!(
        s.get_bucket_config("b", "replication").unwrap(),
        None,
        "a recreated bucket starts without config"
    );
    assert_eq!(
        s.get_bucket_config("b2", "policy").unwrap().as_deref(),
        Some(&b"{\"b2\":1}"[..])
    );
}

#[test]
fn a_bucket_state_is_read_whole_and_set_whole() {
    let s = TestStore::new();
    assert_eq!(s.bucket_state("b").unwrap(), None);
    make_bucket(&s, "b", VersioningState::Unversioned);
    make_bucket(&s, "b2", VersioningState::Unversioned);
    s.put_bucket_config("b", "policy", b"p1".to_vec()).unwrap();
    s.put_bucket_config("b", "cors", b"c1".to_vec()).unwrap();
    s.put_bucket_config("b2", "policy", b"other".to_vec())
        .unwrap();
    let (record, docs) = s.bucket_state("b").unwrap().unwrap();
    assert_eq!(record, bucket_record("b", VersioningState::Unversioned));
    assert_eq!(
        docs.iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect::<Vec<_>>(),
        [("cors", &b"c1"[..]), ("policy", &b"p1"[..])]
    );

    // Set whole: the record replaced, a document replaced, one gone, one new; the bucket
    // whose name extends this one's untouched.
    let mut changed = bucket_record("b", VersioningState::Enabled);
    changed.object_lock = true;
    let wanted: std::collections::BTreeMap<String, Vec<u8>> = [
        ("policy".to_owned(), b"p2".to_vec()),
        ("lifecycle".to_owned(), b"l".to_vec()),
    ]
    .into();
    s.set_bucket_state(&changed, &wanted).unwrap();
    assert_eq!(
        s.bucket_state("b").unwrap(),
        Some((changed, wanted.clone()))
    );
    assert_eq!(
        s.get_bucket_config("b2", "policy").unwrap().as_deref(),
        Some(&b"other"[..])
    );

    // A bucket not held yet is made.
    let fresh = bucket_record("new", VersioningState::Suspended);
    s.set_bucket_state(&fresh, &wanted).unwrap();
    assert_eq!(s.bucket_state("new").unwrap(), Some((fresh, wanted)));
    assert!(s
        .set_bucket_state(
            &bucket_record("", VersioningState::Enabled),
            &Default::default()
        )
        .is_err());
}

#[test]
fn health_check_passes_on_an_open_store() {
    let s = TestStore::new();
    s.check().unwrap();
}
