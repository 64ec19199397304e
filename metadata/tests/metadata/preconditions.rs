//! Conditional writes: the precondition of a new version is checked under the key lock, in
//! the commit itself, so racing create-only writers have exactly one winner.

use meridian_metadata::{
    DeleteCondition, DeleteOptions, ListVersionsQuery, MetaError, NewVersion, Precondition,
    VersioningState,
};

use crate::support::{inline, make_bucket, TestStore};

const B: &str = "bucket";
const K: &str = "dir/key";

#[test]
fn preconditions_are_checked_inside_the_commit() {
    let t = TestStore::new();
    make_bucket(&t.store, B, VersioningState::Enabled);
    let create = |label: &str| NewVersion {
        precondition: Some(Precondition::NoneMatch),
        ..inline(label)
    };

    let first = t.store.put_version(B, K, create("first")).unwrap().version;
    let err = t.store.put_version(B, K, create("second")).unwrap_err();
    assert!(
        matches!(
            err,
            MetaError::PreconditionFailed {
                current_exists: true,
                ..
            }
        ),
        "{err:?}"
    );

    let wrong = NewVersion {
        precondition: Some(Precondition::IfMatch("nope".into())),
        ..inline("x")
    };
    assert!(matches!(
        t.store.put_version(B, K, wrong),
        Err(MetaError::PreconditionFailed { .. })
    ));
    let right = NewVersion {
        precondition: Some(Precondition::IfMatch(first.etag.clone())),
        ..inline("y")
    };
    t.store.put_version(B, K, right).unwrap();

    // A delete marker means "no current object": create-only succeeds again, If-Match does not.
    t.store
        .delete_object(B, K, None, DeleteOptions::default())
        .unwrap();
    let on_marker = NewVersion {
        precondition: Some(Precondition::IfMatch(first.etag.clone())),
        ..inline("z")
    };
    assert!(matches!(
        t.store.put_version(B, K, on_marker),
        Err(MetaError::PreconditionFailed {
            current_exists: false,
            ..
        })
    ));
    t.store.put_version(B, K, create("again")).unwrap();
    let versions = t
        .store
        .list_versions(
            B,
            &ListVersionsQuery {
                max_keys: 100,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        versions.versions.len(),
        4,
        "failed preconditions wrote nothing"
    );
}

#[test]
fn racing_create_only_writes_have_exactly_one_winner() {
    let t = TestStore::new();
    make_bucket(&t.store, B, VersioningState::Enabled);
    for round in 0..20 {
        let key = format!("race-{round}");
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let store = &t.store;
                    let key = &key;
                    s.spawn(move || {
                        let new = NewVersion {
                            precondition: Some(Precondition::NoneMatch),
                            ..inline(&format!("w{i}"))
                        };
                        store.put_version(B, key, new).is_ok() as usize
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(winners, 1, "round {round}");
    }
}

#[test]
fn none_match_with_an_etag_refuses_only_a_current_version_with_it() {
    let t = TestStore::new();
    make_bucket(&t.store, B, VersioningState::Enabled);
    let unless = |etag: &str, label: &str| NewVersion {
        precondition: Some(Precondition::NoneMatchEtag(etag.into())),
        ..inline(label)
    };
    // No current version: holds.
    let first = t
        .store
        .put_version(B, K, unless("etag-zzz", "a"))
        .unwrap()
        .version;
    assert!(matches!(
        t.store.put_version(B, K, unless(&first.etag, "b")),
        Err(MetaError::PreconditionFailed {
            current_exists: true,
            ..
        })
    ));
    t.store.put_version(B, K, unless("etag-zzz", "c")).unwrap();
    // Only the current version counts: the first one is noncurrent now.
    t.store.put_version(B, K, unless(&first.etag, "d")).unwrap();
}

#[test]
fn racing_conditional_deletes_of_one_version_have_exactly_one_winner() {
    let t = TestStore::new();
    make_bucket(&t.store, B, VersioningState::Enabled);
    for round in 0..20 {
        let key = format!("del-{round}");
        let v = t.store.put_version(B, &key, inline("x")).unwrap().version;
        // Eight deleters saw the same ETag: one makes the delete marker, the others find the
        // marker current and fail (S3's 404).
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (store, key, etag) = (&t.store, &key, &v.etag);
                    s.spawn(move || {
                        let opts = DeleteOptions {
                            condition: Some(DeleteCondition {
                                etag: Some(Some(etag.clone())),
                                ..DeleteCondition::default()
                            }),
                            ..DeleteOptions::default()
                        };
                        match store.delete_object(B, key, None, opts) {
                            Ok(o) => o.delete_marker as usize,
                            Err(MetaError::PreconditionFailed {
                                current_exists: false,
                                ..
                            }) => 0,
                            Err(e) => panic!("{e}"),
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(winners, 1, "round {round}");
    }
}
