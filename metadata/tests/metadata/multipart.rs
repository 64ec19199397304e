//! Multipart state: uploads, parts, completion, abort, listing and stale-upload discovery.

use meridian_metadata::{
    ListUploadsQuery, MetaError, NewVersion, OutboxKind, PartRecord, Storage, UploadRecord,
    VersioningState,
};

use crate::support::{make_bucket, TestStore};

fn upload(key: &str, id: &str, initiated: i64) -> UploadRecord {
    UploadRecord {
        upload_id: id.into(),
        bucket: "b".into(),
        key: key.into(),
        initiated,
        owner: "o".into(),
        ..Default::default()
    }
}

fn part(number: u32, blob: &str) -> PartRecord {
    PartRecord {
        number,
        size: 5 << 20,
        etag: format!("etag{number}"),
        storage: blob.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn reclaimed(s: &TestStore) -> Vec<String> {
    let mut blobs: Vec<String> = s
        .reclaim_pending(1000)
        .unwrap()
        .into_iter()
        .map(|e| match e.storage {
            Storage::Layout(b) => String::from_utf8(b).unwrap(),
            Storage::Inline(_) => panic!("inline data is never queued for reclaim"),
        })
        .collect();
    blobs.sort();
    blobs
}

#[test]
fn parts_are_listed_in_order_with_pagination() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    s.create_upload(upload("k", "u1", 1)).unwrap();
    for n in [3, 1, 10, 2, 256] {
        s.put_part("b", "k", "u1", part(n, &format!("p{n}")))
            .unwrap();
    }
    let page = s.list_parts("b", "k", "u1", 0, 3).unwrap();
    assert_eq!(
        page.parts.iter().map(|p| p.number).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        (page.is_truncated, page.next_part_number_marker),
        (true, Some(3))
    );
    let page = s.list_parts("b", "k", "u1", 3, 3).unwrap();
    assert_eq!(
        page.parts.iter().map(|p| p.number).collect::<Vec<_>>(),
        [10, 256]
    );
    assert!(!page.is_truncated);
    assert!(matches!(
        s.put_part("b", "k", "u1", part(0, "x")),
        Err(MetaError::InvalidArgument(_))
    ));
    assert!(matches!(
        s.put_part("b", "k", "nope", part(1, "x")),
        Err(MetaError::NoSuchUpload { .. })
    ));
    assert!(matches!(
        s.list_parts("b", "k", "nope", 0, 10),
        Err(MetaError::NoSuchUpload { .. })
    ));
}

#[test]
fn replacing_a_part_queues_the_old_part_for_reclaim() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    s.create_upload(upload("k", "u1", 1)).unwrap();
    s.put_part("b", "k", "u1", part(1, "first")).unwrap();
    s.put_part("b", "k", "u1", part(1, "second")).unwrap();
    assert_eq!(reclaimed(&s), ["first"]);
    assert_eq!(
        s.list_parts("b", "k", "u1", 0, 10).unwrap().parts[0].storage,
        b"second"
    );
}

#[test]
fn complete_commits_the_version_and_removes_the_upload_in_one_step() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    s.create_upload(upload("k", "u1", 1)).unwrap();
    for n in 1..=3 {
        s.put_part("b", "k", "u1", part(n, &format!("p{n}")))
            .unwrap();
    }
    let new = NewVersion {
        size: 10 << 20,
        etag: "abc-2".into(),
        storage: Storage::Layout(b"object".to_vec()),
        ..Default::default()
    };
    assert!(matches!(
        s.complete_upload("b", "k", "u1", &[1, 4], new.clone()),
        Err(MetaError::InvalidPart { part_number: 4, .. })
    ));
    let v = s
        .complete_upload("b", "k", "u1", &[1, 3], new.clone())
        .unwrap()
        .version;
    assert_eq!(s.get_version("b", "k", None).unwrap().unwrap(), v);
    assert_eq!(s.get_upload("b", "k", "u1").unwrap(), None);
    assert_eq!(reclaimed(&s), ["p2"], "only the unused part is reclaimed");
    let outbox = s.outbox_read(0, 10).unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(
        (outbox[0].kind, outbox[0].version_id.as_str()),
        (OutboxKind::Put, v.version_id.as_str())
    );
    assert!(matches!(
        s.complete_upload("b", "k", "u1", &[1], new),
        Err(MetaError::NoSuchUpload { .. })
    ));
    // What a repeated completion is answered from.
    let done = s.completed_upload("b", "k", "u1").unwrap().unwrap();
    assert_eq!(
        (done.version_id.as_str(), done.etag.as_str()),
        (v.version_id.as_str(), "abc-2")
    );
    let part_etags: Vec<u32> = done.parts.iter().map(|(n, _)| *n).collect();
    assert_eq!(part_etags, [1, 3]);
    assert_eq!(s.expire_completed_uploads(done.completed).unwrap(), 0);
    assert_eq!(s.expire_completed_uploads(done.completed + 1).unwrap(), 1);
    assert_eq!(s.completed_upload("b", "k", "u1").unwrap(), None);
    s.delete_object("b", "k", Some(&v.version_id), Default::default())
        .unwrap();
    s.delete_bucket("b").unwrap();
}

#[test]
fn complete_in_unversioned_bucket_replaces_and_reclaims_the_null_version() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Unversioned);
    s.put_version("b", "k", crate::support::layout("old-object"))
        .unwrap();
    s.create_upload(upload("k", "u1", 1)).unwrap();
    s.put_part("b", "k", "u1", part(1, "p1")).unwrap();
    let new = NewVersion {
        storage: Storage::Layout(b"new-object".to_vec()),
        ..Default::default()
    };
    let v = s
        .complete_upload("b", "k", "u1", &[1], new)
        .unwrap()
        .version;
    assert_eq!(v.version_id, "null");
    assert_eq!(reclaimed(&s), ["old-object"]);
}

#[test]
fn abort_removes_the_upload_and_reclaims_every_part() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    s.create_upload(upload("k", "u1", 1)).unwrap();
    s.put_part("b", "k", "u1", part(1, "p1")).unwrap();
    s.put_part("b", "k", "u1", part(2, "p2")).unwrap();
    s.abort_upload("b", "k", "u1").unwrap();
    assert_eq!(s.get_upload("b", "k", "u1").unwrap(), None);
    assert_eq!(reclaimed(&s), ["p1", "p2"]);
    assert!(matches!(
        s.abort_upload("b", "k", "u1"),
        Err(MetaError::NoSuchUpload { .. })
    ));
    assert!(s.stale_uploads(i64::MAX, 10).unwrap().is_empty());
    s.delete_bucket("b").unwrap();
}

#[test]
fn upload_ids_are_unique_per_key() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    s.create_upload(upload("k", "u1", 1)).unwrap();
    assert!(matches!(
        s.create_upload(upload("k", "u1", 2)),
        Err(MetaError::InvalidArgument(_))
    ));
    assert!(matches!(
        s.create_upload(UploadRecord {
            bucket: "nope".into(),
            ..upload("k", "u2", 1)
        }),
        Err(MetaError::NoSuchBucket { .. })
    ));
}

#[test]
fn uploads_are_listed_by_key_then_upload_id_with_prefixes_and_markers() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    for (key, id) in [
        ("a", "u2"),
        ("a", "u1"),
        ("dir/x", "u3"),
        ("dir/y", "u4"),
        ("z", "u5"),
    ] {
        s.create_upload(upload(key, id, 1)).unwrap();
    }
    let ids = |page: &meridian_metadata::ListUploadsPage| {
        page.uploads
            .iter()
            .map(|u| u.upload_id.clone())
            .collect::<Vec<_>>()
    };
    let page = s.list_uploads("b", &ListUploadsQuery::default()).unwrap();
    assert_eq!(ids(&page), ["u1", "u2", "u3", "u4", "u5"]);
    let q = ListUploadsQuery {
        delimiter: Some("/".into()),
        max_uploads: 2,
        ..Default::default()
    };
    let page = s.list_uploads("b", &q).unwrap();
    assert_eq!(ids(&page), ["u1", "u2"]);
    assert!(page.is_truncated);
    assert_eq!(
        (
            page.next_key_marker.as_deref(),
            page.next_upload_id_marker.as_deref()
        ),
        (Some("a"), Some("u2"))
    );
    let q2 = ListUploadsQuery {
        key_marker: page.next_key_marker,
        upload_id_marker: page.next_upload_id_marker,
        ..q.clone()
    };
    let page = s.list_uploads("b", &q2).unwrap();
    assert_eq!(ids(&page), ["u5"]);
    assert_eq!(page.common_prefixes, ["dir/"]);
    assert!(!page.is_truncated);
    let q3 = ListUploadsQuery {
        key_marker: Some("a".into()),
        upload_id_marker: Some("u1".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(&s.list_uploads("b", &q3).unwrap()),
        ["u2", "u3", "u4", "u5"]
    );
    let q4 = ListUploadsQuery {
        prefix: "dir/".into(),
        ..Default::default()
    };
    assert_eq!(ids(&s.list_uploads("b", &q4).unwrap()), ["u3", "u4"]);
}

#[test]
fn stale_uploads_are_found_oldest_first() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    s.create_upload(upload("k1", "u1", 300)).unwrap();
    s.create_upload(upload("k2", "u2", 100)).unwrap();
    s.create_upload(upload("k3", "u3", 500)).unwrap();
    s.create_upload(upload("k4", "u4", -5)).unwrap();
    let stale: Vec<String> = s
        .stale_uploads(400, 10)
        .unwrap()
        .into_iter()
        .map(|u| u.upload_id)
        .collect();
    assert_eq!(stale, ["u4", "u2", "u1"]);
    assert_eq!(s.stale_uploads(400, 1).unwrap().len(), 1);
}
