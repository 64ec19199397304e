//! Object Lock in the metadata store: every removal path refuses a locked version under the
//! key lock (and queues none of its storage for reclaim), retention changes follow AWS's
//! rules, lock changes are outbox entries, and the bucket flag keeps versioning on.

use meridian_metadata::{
    ChangeSource, DeleteOptions, LockChange, MetaError, NewVersion, ObjectLock, Origin, OutboxKind,
    Retention, RetentionMode, VersioningState,
};

use crate::support::*;

const B: &str = "vault";

fn in_a_day() -> i64 {
    meridian_metadata::now_nanos() + 86_400 * 1_000_000_000
}

fn locked(mode: Option<RetentionMode>, legal_hold: bool) -> NewVersion {
    NewVersion {
        lock: ObjectLock {
            retention: mode.map(|mode| Retention {
                mode,
                until: in_a_day(),
            }),
            legal_hold,
        },
        ..layout("shards")
    }
}

fn remove(s: &TestStore, key: &str, v: &str, bypass: bool) -> Result<(), MetaError> {
    s.delete_object(
        B,
        key,
        Some(v),
        DeleteOptions {
            bypass_governance: bypass,
            ..DeleteOptions::default()
        },
    )
    .map(|_| ())
}

fn lock_bucket(s: &TestStore) {
    let mut record = bucket_record(B, VersioningState::Enabled);
    record.object_lock = true;
    s.create_bucket(record).unwrap();
}

#[test]
fn locked_versions_are_not_removed_nor_their_storage_queued() {
    let s = TestStore::new();
    lock_bucket(&s);
    let cases = [
        ("compliance", Some(RetentionMode::Compliance), false, false),
        ("governance", Some(RetentionMode::Governance), false, true),
        ("hold", None, true, false),
        (
            "governance-held",
            Some(RetentionMode::Governance),
            true,
            false,
        ),
    ];
    for (key, mode, hold, bypass_removes) in cases {
        let v = s.put_version(B, key, locked(mode, hold)).unwrap().version;
        for bypass in [false, true] {
            let refused = remove(&s, key, &v.version_id, bypass);
            if bypass && bypass_removes {
                refused.unwrap();
                continue;
            }
            assert!(
                matches!(refused, Err(MetaError::ObjectLocked { .. })),
                "{key} bypass {bypass}: {refused:?}"
            );
        }
    }
    // Only the GOVERNANCE version removed with the bypass gave up its storage.
    assert_eq!(s.reclaim_pending(100).unwrap().len(), 1);
    // A delete without a version id adds a marker; removing the marker is always allowed.
    let out = s
        .delete_object(B, "compliance", None, DeleteOptions::default())
        .unwrap();
    assert!(out.delete_marker && out.removed.is_none());
    remove(&s, "compliance", out.version_id.as_deref().unwrap(), false).unwrap();
    // And the bucket cannot go.
    assert!(matches!(
        s.delete_bucket(B),
        Err(MetaError::BucketNotEmpty { .. })
    ));
}

#[test]
fn retention_changes_follow_the_rules_and_are_replicated_changes() {
    let s = TestStore::new();
    lock_bucket(&s);
    let v = s
        .put_version(B, "k", locked(Some(RetentionMode::Compliance), false))
        .unwrap()
        .version;
    let until = v.lock.retention.unwrap().until;
    let change = |lock, bypass| {
        s.set_object_lock(
            B,
            "k",
            Some(&v.version_id),
            lock,
            bypass,
            ChangeSource {
                origin: Origin::Local,
                peers: vec!["west".into()],
            },
        )
    };
    let shorter = Retention {
        mode: RetentionMode::Compliance,
        until: until - 1,
    };
    assert!(matches!(
        change(LockChange::Retention(Some(shorter)), true),
        Err(MetaError::ObjectLocked { .. })
    ));
    assert!(matches!(
        change(LockChange::Retention(None), true),
        Err(MetaError::ObjectLocked { .. })
    ));
    let longer = Retention {
        mode: RetentionMode::Compliance,
        until: until + 1,
    };
    let after = change(LockChange::Retention(Some(longer)), false).unwrap();
    assert_eq!(after.lock.retention, Some(longer));
    let held = change(LockChange::LegalHold(true), false).unwrap();
    assert!(held.lock.legal_hold);
    // Stored, and each accepted change is one outbox entry naming the peers.
    let stored = s.get_version(B, "k", Some(&v.version_id)).unwrap().unwrap();
    assert_eq!(stored.lock, held.lock);
    let locks: Vec<_> = s
        .outbox_read(0, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == OutboxKind::Lock)
        .collect();
    assert_eq!(locks.len(), 2);
    assert!(locks.iter().all(|e| e.peers == vec!["west".to_string()]));
    // Survives a reopen.
    let s = s.reopen();
    let again = s.get_version(B, "k", Some(&v.version_id)).unwrap().unwrap();
    assert_eq!(again.lock, held.lock);
}

#[test]
fn object_lock_needs_versioning_and_keeps_it_enabled() {
    let s = TestStore::new();
    make_bucket(&s, "plain", VersioningState::Unversioned);
    assert!(matches!(
        s.enable_object_lock("plain"),
        Err(MetaError::InvalidBucketState { .. })
    ));
    s.set_versioning("plain", VersioningState::Enabled).unwrap();
    s.enable_object_lock("plain").unwrap();
    assert!(s.get_bucket("plain").unwrap().unwrap().object_lock);
    assert!(matches!(
        s.set_versioning("plain", VersioningState::Suspended),
        Err(MetaError::InvalidBucketState { .. })
    ));
    s.set_versioning("plain", VersioningState::Enabled).unwrap();
}
