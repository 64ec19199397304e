//! The reclaim queue: storage orphaned by a commit is queued in the same batch, inline data
//! never is, and entries stay until acknowledged.

use meridian_metadata::{DeleteOptions, Storage, VersioningState};

use crate::support::{layout, make_bucket, put, TestStore};

fn blobs(s: &TestStore) -> Vec<(u64, String)> {
    s.reclaim_pending(100)
        .unwrap()
        .into_iter()
        .map(|e| match e.storage {
            Storage::Layout(b) => (e.seq, String::from_utf8(b).unwrap()),
            Storage::Inline(_) => panic!("inline data queued"),
        })
        .collect()
}

#[test]
fn overwriting_the_null_version_queues_its_storage() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Unversioned);
    s.put_version("b", "k", layout("one")).unwrap();
    s.put_version("b", "k", layout("two")).unwrap();
    put(&s, "b", "k", "inline");
    let queued: Vec<String> = blobs(&s).into_iter().map(|(_, b)| b).collect();
    assert_eq!(queued, ["one", "two"]);
}

#[test]
fn removing_a_version_queues_its_storage_but_a_marker_does_not() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    let v = s.put_version("b", "k", layout("data")).unwrap().version;
    let marker = s
        .delete_object("b", "k", None, DeleteOptions::default())
        .unwrap();
    assert!(marker.removed.is_none());
    assert!(blobs(&s).is_empty(), "a delete marker keeps the data");
    let out = s
        .delete_object("b", "k", Some(&v.version_id), DeleteOptions::default())
        .unwrap();
    assert_eq!(
        out.removed.unwrap().storage,
        Storage::Layout(b"data".to_vec())
    );
    assert_eq!(
        blobs(&s).into_iter().map(|(_, b)| b).collect::<Vec<_>>(),
        ["data"]
    );
}

#[test]
fn entries_stay_until_done_and_survive_reopen() {
    let s = TestStore::new();
    s.reclaim_add(b"a".to_vec()).unwrap();
    s.reclaim_add(b"b".to_vec()).unwrap();
    let s = s.reopen();
    let pending = blobs(&s);
    assert_eq!(
        pending.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    s.reclaim_done(pending[0].0).unwrap();
    s.reclaim_add(b"c".to_vec()).unwrap();
    assert_eq!(
        blobs(&s).into_iter().map(|(_, b)| b).collect::<Vec<_>>(),
        ["b", "c"]
    );
    assert_eq!(s.reclaim_pending(1).unwrap().len(), 1);
}

#[test]
fn a_duplicate_replica_queues_the_storage_it_brought() {
    use meridian_metadata::{NewVersion, Origin, ReplicationState};
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    let replica = |blob: &str| NewVersion {
        version_id: Some("0SRC".into()),
        mtime: Some(1),
        replication: ReplicationState {
            origin: Origin::Replica {
                region: "eu".into(),
            },
            ..Default::default()
        },
        ..layout(blob)
    };
    s.put_version("b", "k", replica("first")).unwrap();
    let again = s.put_version("b", "k", replica("second")).unwrap().version;
    assert_eq!(again.storage, Storage::Layout(b"first".to_vec()));
    assert_eq!(
        blobs(&s).into_iter().map(|(_, b)| b).collect::<Vec<_>>(),
        ["second"]
    );
}
