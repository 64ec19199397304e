//! What the replicator keeps per peer: outbox entries that name the peers owing them, the
//! retry queue in due order, settlements that change status and queue together, peer
//! uploads, and backlog figures computed from all of it (exact after a reopen).

use meridian_metadata::{
    BacklogFilter, ChangeSource, DeleteOptions, JobKind, NewVersion, OutboxKind, PeerStatus,
    PeerUpload, ReplicationJob, ReplicationState, Requeued, RetryRecord, Settlement, StatusUpdate,
    VersioningState,
};

use crate::support::{inline, make_bucket, TestStore};

fn pending_put(s: &TestStore, key: &str, content: &str, peers: &[&str]) -> String {
    let new = NewVersion {
        replication: ReplicationState::pending_for(peers.iter().map(|p| p.to_string())),
        ..inline(content)
    };
    s.put_version("b", key, new).unwrap().version.version_id
}

fn settle(status: StatusUpdate) -> Settlement {
    Settlement {
        status,
        target_version_id: None,
        retried: None,
        retry: None,
        forget_upload: false,
    }
}

#[test]
fn outbox_entries_name_the_peers_of_the_commit_and_its_size() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    pending_put(&s, "k", "four", &["west", "south"]);
    pending_put(&s, "local-only", "x", &[]);
    let marker = s
        .delete_object(
            "b",
            "k",
            None,
            DeleteOptions {
                replication: ReplicationState::pending_for(["west".to_string()]),
                ..DeleteOptions::default()
            },
        )
        .unwrap();
    s.delete_object(
        "b",
        "k",
        marker.version_id.as_deref(),
        DeleteOptions::default(),
    )
    .unwrap();

    let e = s.outbox_read(0, 10).unwrap();
    assert_eq!(e.len(), 4);
    assert_eq!(e[0].peers, ["south", "west"]);
    assert_eq!(e[0].size, 4);
    assert!(e[0].is_for("west") && !e[0].is_for("east"));
    assert!(e[1].peers.is_empty());
    assert_eq!(
        (e[2].kind, e[2].peers.clone()),
        (OutboxKind::DeleteMarker, vec!["west".to_string()])
    );
    assert_eq!(e[3].kind, OutboxKind::DeleteVersion);
    assert!(
        e[3].peers.is_empty(),
        "removing a version is never replicated"
    );
}

#[test]
fn tag_changes_carry_their_origin_and_peers() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    let v = pending_put(&s, "k", "a", &["west"]);
    let change = ChangeSource {
        origin: meridian_metadata::Origin::Replica {
            region: "eu".into(),
        },
        peers: vec![],
    };
    s.set_tags("b", "k", Some(&v), vec![("t".into(), "1".into())], change)
        .unwrap();
    let e = s.outbox_read(0, 10).unwrap();
    assert_eq!(e[1].kind, OutboxKind::Tags);
    assert!(matches!(
        e[1].origin,
        meridian_metadata::Origin::Replica { .. }
    ));
    assert!(e[1].peers.is_empty());
}

#[test]
fn settling_sets_status_target_id_and_queues_in_one_step() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    let v = pending_put(&s, "k", "a", &["west", "east"]);
    let entry = s.outbox_read(0, 1).unwrap().remove(0);

    let retry = RetryRecord {
        entry: entry.clone(),
        attempts: 1,
        next_attempt: 1_000,
        last_error: "connection refused".into(),
        permanent: false,
    };
    s.settle_replication(
        "west",
        &entry,
        Settlement {
            retry: Some(retry.clone()),
            ..settle(StatusUpdate::Keep)
        },
    )
    .unwrap();
    assert_eq!(s.replication_retries_due("west", 999, 10).unwrap(), vec![]);
    assert_eq!(
        s.replication_retries_due("west", 1_000, 10).unwrap(),
        vec![retry.clone()]
    );
    assert_eq!(s.replication_next_retry("west").unwrap(), Some(1_000));
    assert_eq!(s.replication_next_retry("east").unwrap(), None);

    // The retry succeeds: status COMPLETED with the peer's id, retry record gone.
    s.settle_replication(
        "west",
        &entry,
        Settlement {
            target_version_id: Some("target-id".into()),
            retried: Some(retry),
            ..settle(StatusUpdate::Set(PeerStatus::Completed))
        },
    )
    .unwrap();
    assert_eq!(s.replication_next_retry("west").unwrap(), None);
    let record = s.get_version("b", "k", Some(&v)).unwrap().unwrap();
    assert_eq!(record.replication.peers["west"], PeerStatus::Completed);
    assert_eq!(record.replication.peers["east"], PeerStatus::Pending);
    assert_eq!(record.replication.target_versions["west"], "target-id");

    s.settle_replication("east", &entry, settle(StatusUpdate::Remove))
        .unwrap();
    let record = s.get_version("b", "k", Some(&v)).unwrap().unwrap();
    assert!(!record.replication.peers.contains_key("east"));
}

#[test]
fn settling_a_version_that_is_gone_only_clears_the_queues() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    let v = pending_put(&s, "k", "a", &["west"]);
    let entry = s.outbox_read(0, 1).unwrap().remove(0);
    let retry = RetryRecord {
        entry: entry.clone(),
        attempts: 3,
        next_attempt: 5,
        last_error: "AccessDenied".into(),
        permanent: true,
    };
    s.settle_replication(
        "west",
        &entry,
        Settlement {
            retry: Some(retry.clone()),
            ..settle(StatusUpdate::Keep)
        },
    )
    .unwrap();
    s.delete_object("b", "k", Some(&v), DeleteOptions::default())
        .unwrap();
    s.settle_replication(
        "west",
        &entry,
        Settlement {
            retried: Some(retry),
            ..settle(StatusUpdate::Remove)
        },
    )
    .unwrap();
    assert_eq!(s.replication_next_retry("west").unwrap(), None);
    assert!(s.get_version("b", "k", Some(&v)).unwrap().is_none());
}

#[test]
fn retries_come_back_in_due_order_and_can_all_be_made_due_now() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    for (i, due) in [30i64, 10, 20].into_iter().enumerate() {
        pending_put(&s, &format!("k{i}"), "a", &["west"]);
        let entry = s.outbox_read(0, 10).unwrap().remove(i);
        let retry = RetryRecord {
            entry: entry.clone(),
            attempts: 1,
            next_attempt: due,
            last_error: "x".into(),
            permanent: false,
        };
        s.settle_replication(
            "west",
            &entry,
            Settlement {
                retry: Some(retry),
                ..settle(StatusUpdate::Keep)
            },
        )
        .unwrap();
    }
    let due: Vec<i64> = s
        .replication_retries_due("west", 100, 10)
        .unwrap()
        .iter()
        .map(|r| r.next_attempt)
        .collect();
    assert_eq!(due, [10, 20, 30]);
    assert_eq!(s.replication_retries_due("west", 100, 2).unwrap().len(), 2);
    assert_eq!(s.replication_retry_now("west", 15).unwrap(), 2);
    let due: Vec<i64> = s
        .replication_retries_due("west", 15, 10)
        .unwrap()
        .iter()
        .map(|r| r.next_attempt)
        .collect();
    assert_eq!(due, [10, 15, 15]);
}

#[test]
fn backlog_counts_what_the_peer_owes_and_survives_a_reopen() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    pending_put(&s, "a", "1234", &["west"]);
    pending_put(&s, "b", "12", &["west", "east"]);
    pending_put(&s, "c", "1", &["east"]);
    let entries = s.outbox_read(0, 10).unwrap();

    let (west, _) = s.peer_backlog("west", &BacklogFilter::default()).unwrap();
    assert_eq!((west.changes, west.bytes), (2, 6));
    assert_eq!(west.oldest_committed, Some(entries[0].committed));
    assert_eq!(
        s.peer_oldest_owed("west").unwrap(),
        Some(entries[0].committed)
    );

    // The first change failed permanently and went to the retry queue; the cursor moved on.
    let retry = RetryRecord {
        entry: entries[0].clone(),
        attempts: 1,
        next_attempt: 0,
        last_error: "AccessDenied".into(),
        permanent: true,
    };
    s.settle_replication(
        "west",
        &entries[0],
        Settlement {
            retry: Some(retry),
            ..settle(StatusUpdate::Set(PeerStatus::Failed {
                error: "AccessDenied".into(),
                attempts: 1,
            }))
        },
    )
    .unwrap();
    s.outbox_ack("west", entries[1].seq).unwrap();
    let s = s.reopen();
    let (west, by_bucket) = s.peer_backlog("west", &BacklogFilter::default()).unwrap();
    assert_eq!(
        (west.changes, west.bytes, west.retrying, west.failed),
        (1, 4, 1, 1)
    );
    assert_eq!(west.oldest_committed, Some(entries[0].committed));
    // Owed from the retry queue, the outbox past the cursor holding nothing for it.
    assert_eq!(
        s.peer_oldest_owed("west").unwrap(),
        Some(entries[0].committed)
    );
    assert_eq!(west.last_error.as_deref(), Some("AccessDenied"));
    assert_eq!(by_bucket["b"], west);
    let (east, _) = s.peer_backlog("east", &BacklogFilter::default()).unwrap();
    assert_eq!((east.changes, east.bytes), (2, 3));
    assert_eq!(
        s.peer_oldest_owed("east").unwrap(),
        Some(entries[1].committed)
    );
    // A checkpoint taken after the first two commits waits only for those.
    let before_third = BacklogFilter {
        below_seq: Some(entries[2].seq),
        ..BacklogFilter::default()
    };
    assert_eq!(s.peer_backlog("east", &before_third).unwrap().0.changes, 1);
    let other_bucket = BacklogFilter {
        bucket: Some("other".into()),
        ..BacklogFilter::default()
    };
    assert_eq!(s.peer_backlog("east", &other_bucket).unwrap().0.changes, 0);
    // Everything taken: nothing owed.
    s.outbox_ack("east", entries[2].seq).unwrap();
    assert_eq!(s.peer_oldest_owed("east").unwrap(), None);
}

#[test]
fn peer_uploads_are_remembered_until_settled() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    let v = pending_put(&s, "k", "a", &["west"]);
    let entry = s.outbox_read(0, 1).unwrap().remove(0);
    let upload = PeerUpload {
        upload_id: "u1".into(),
        part_size: 16 << 20,
        started: 7,
    };
    s.put_peer_upload("west", "b", "k", &v, &upload).unwrap();
    let s = s.reopen();
    assert_eq!(s.peer_upload("west", "b", "k", &v).unwrap(), Some(upload));
    assert_eq!(s.peer_upload("east", "b", "k", &v).unwrap(), None);
    s.settle_replication(
        "west",
        &entry,
        Settlement {
            forget_upload: true,
            ..settle(StatusUpdate::Set(PeerStatus::Completed))
        },
    )
    .unwrap();
    assert_eq!(s.peer_upload("west", "b", "k", &v).unwrap(), None);
}

/// A database written by schema version 1 (twelve column families, outbox entries without
/// `peers` and `size`) opens, is upgraded to version 2, and its entries read back as naming
/// no peers.
#[test]
fn a_schema_1_database_is_upgraded_in_place() {
    #[derive(serde::Serialize)]
    struct OutboxEntryV1 {
        seq: u64,
        bucket: String,
        key: String,
        version_id: String,
        kind: OutboxKind,
        committed: i64,
        origin: meridian_metadata::Origin,
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let v1_families = [
            "meta",
            "buckets",
            "bucket_configs",
            "versions",
            "history",
            "listing",
            "uploads",
            "uploads_by_time",
            "parts",
            "outbox",
            "outbox_cursors",
            "reclaim",
        ];
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = rocksdb::DB::open_cf(&opts, dir.path(), v1_families).unwrap();
        let meta = db.cf_handle("meta").unwrap();
        db.put_cf(meta, b"schema", 1u32.to_be_bytes()).unwrap();
        let entry = OutboxEntryV1 {
            seq: 1,
            bucket: "b".into(),
            key: "k".into(),
            version_id: "v".into(),
            kind: OutboxKind::Put,
            committed: 42,
            origin: meridian_metadata::Origin::Local,
        };
        let mut value = vec![1u8];
        rmp_serde::encode::write_named(&mut value, &entry).unwrap();
        db.put_cf(db.cf_handle("outbox").unwrap(), 1u64.to_be_bytes(), value)
            .unwrap();
    }
    let store = meridian_metadata::MetaStore::open(
        dir.path(),
        meridian_metadata::MetaOptions { sync_writes: false },
    )
    .unwrap();
    let entries = store.outbox_read(0, 10).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].seq, entries[0].committed), (1, 42));
    assert!(entries[0].peers.is_empty() && entries[0].size == 0);
    assert_eq!(
        store
            .peer_backlog("west", &BacklogFilter::default())
            .unwrap()
            .0
            .changes,
        0
    );
    drop(store);
    let db = rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        dir.path(),
        rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap(),
    )
    .unwrap();
    let stored = db
        .get_cf(db.cf_handle("meta").unwrap(), b"schema")
        .unwrap()
        .unwrap();
    assert_eq!(stored, meridian_metadata::SCHEMA_VERSION.to_be_bytes());
    assert_eq!(meridian_metadata::SCHEMA_VERSION, 5);
}

#[test]
fn requeued_versions_are_pending_and_in_the_outbox_again_replicas_never() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    let v = pending_put(&s, "k", "abc", &[]);
    let marker = s
        .delete_object("b", "k", None, DeleteOptions::default())
        .unwrap()
        .version_id
        .unwrap();
    let replica = NewVersion {
        version_id: Some("0REPLICA".into()),
        mtime: Some(1),
        replication: ReplicationState::replica_from("west"),
        ..inline("r")
    };
    s.put_version("b", "r", replica).unwrap();
    let before = s.outbox_watermark();

    assert_eq!(
        s.requeue_version("south", "b", "k", &v).unwrap(),
        Requeued::Queued(3)
    );
    assert_eq!(
        s.requeue_version("south", "b", "k", &marker).unwrap(),
        Requeued::Queued(0)
    );
    assert_eq!(
        s.requeue_version("south", "b", "r", "0REPLICA").unwrap(),
        Requeued::Replica
    );
    assert_eq!(
        s.requeue_version("south", "b", "k", "0GONE").unwrap(),
        Requeued::Gone
    );
    let e = s.outbox_read(before, 10).unwrap();
    let kinds: Vec<_> = e.iter().map(|e| (e.kind, e.peers.clone())).collect();
    assert_eq!(
        kinds,
        [
            (OutboxKind::Put, vec!["south".to_string()]),
            (OutboxKind::DeleteMarker, vec!["south".to_string()])
        ]
    );
    let record = s.get_version("b", "k", Some(&v)).unwrap().unwrap();
    assert_eq!(record.replication.peers["south"], PeerStatus::Pending);
    assert!(s.outbox_watermark() > before);
}

#[test]
fn jobs_are_stored_per_peer_and_bucket() {
    let s = TestStore::new();
    let job = ReplicationJob {
        peer: "west".into(),
        bucket: "b".into(),
        kind: JobKind::Resync,
        key_marker: Some("k".into()),
        scanned: 10,
        ..ReplicationJob::default()
    };
    s.put_replication_job(&job).unwrap();
    let s = s.reopen();
    assert_eq!(s.replication_job("west", "b").unwrap(), Some(job.clone()));
    assert_eq!(s.replication_job("west", "c").unwrap(), None);
    assert!(job.is_running());
    assert_eq!(s.replication_jobs().unwrap(), vec![job]);
}

#[test]
fn settings_survive_a_reopen_and_can_be_removed() {
    let s = TestStore::new();
    assert_eq!(s.setting("fence").unwrap(), None);
    s.put_setting("fence", Some(b"drill 42")).unwrap();
    let s = s.reopen();
    assert_eq!(
        s.setting("fence").unwrap().as_deref(),
        Some(&b"drill 42"[..])
    );
    s.put_setting("fence", None).unwrap();
    assert_eq!(s.setting("fence").unwrap(), None);
}
