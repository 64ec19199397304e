//! The replication outbox: exactly one entry per committed change, in commit order, never
//! exposing a sequence number before every earlier one has settled; per-peer cursors.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use meridian_metadata::{ChangeSource, DeleteOptions, OutboxKind, VersioningState};

use crate::support::{inline, make_bucket, put, TestStore};

#[test]
fn every_committed_change_has_exactly_one_outbox_entry_in_commit_order() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    let mut expected = Vec::new();
    let v1 = put(&s, "b", "k1", "a");
    expected.push((OutboxKind::Put, "k1".to_string(), v1.version_id.clone()));
    let v2 = put(&s, "b", "k2", "b");
    expected.push((OutboxKind::Put, "k2".to_string(), v2.version_id.clone()));
    let m = s
        .delete_object("b", "k1", None, DeleteOptions::default())
        .unwrap()
        .version_id
        .unwrap();
    expected.push((OutboxKind::DeleteMarker, "k1".to_string(), m.clone()));
    s.set_tags(
        "b",
        "k2",
        None,
        vec![("t".into(), "1".into())],
        ChangeSource::default(),
    )
    .unwrap();
    expected.push((OutboxKind::Tags, "k2".to_string(), v2.version_id.clone()));
    s.delete_object("b", "k1", Some(&m), DeleteOptions::default())
        .unwrap();
    expected.push((OutboxKind::DeleteVersion, "k1".to_string(), m));
    // Changes that change nothing write nothing.
    s.delete_object("b", "k1", Some("0MISSING"), DeleteOptions::default())
        .unwrap();
    s.set_replication_status(
        "b",
        "k2",
        &v2.version_id,
        "west",
        Some(meridian_metadata::PeerStatus::Completed),
    )
    .unwrap();
    s.set_versioning("b", VersioningState::Suspended).unwrap();
    let v3 = put(&s, "b", "k3", "c");
    expected.push((OutboxKind::Put, "k3".to_string(), v3.version_id));

    let entries = s.outbox_read(0, 100).unwrap();
    let got: Vec<_> = entries
        .iter()
        .map(|e| (e.kind, e.key.clone(), e.version_id.clone()))
        .collect();
    assert_eq!(got, expected);
    assert!(entries.iter().all(|e| e.bucket == "b"));
    for w in entries.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "no gaps without failed commits");
        assert!(w[0].committed <= w[1].committed);
    }
    assert_eq!(
        s.outbox_read(entries[2].seq, 2).unwrap(),
        entries[2..4].to_vec()
    );
}

#[test]
fn concurrent_commits_appear_once_each_and_readers_never_skip() {
    let s = Arc::new(TestStore::new());
    make_bucket(&s, "b", VersioningState::Enabled);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, done) = (s.clone(), done.clone());
        std::thread::spawn(move || {
            // A replicator's loop: read from the last seq + 1; sequences must be contiguous.
            let mut seen = Vec::new();
            let mut from = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let batch = s.outbox_read(from, 64).unwrap();
                for e in &batch {
                    if let Some(&(last, _)) = seen.last() {
                        assert_eq!(e.seq, last + 1, "reader skipped a sequence number");
                    }
                    seen.push((e.seq, e.version_id.clone()));
                    from = e.seq + 1;
                }
                if batch.is_empty() {
                    if finished {
                        return seen;
                    }
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            }
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        s.put_version("b", &format!("t{t}/k{}", i % 5), inline("x"))
                            .unwrap()
                            .version
                            .version_id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let committed: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    done.store(true, Ordering::SeqCst);
    let seen = reader.join().unwrap();
    assert_eq!(seen.len(), committed.len());
    let seen_ids: HashSet<&String> = seen.iter().map(|(_, v)| v).collect();
    assert_eq!(seen_ids, committed.iter().collect::<HashSet<_>>());
}

#[test]
fn per_key_commit_order_is_outbox_order() {
    let s = Arc::new(TestStore::new());
    make_bucket(&s, "b", VersioningState::Enabled);
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    s.put_version("b", "hot", inline("x")).unwrap();
                }
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());
    let entries = s.outbox_read(0, 1000).unwrap();
    assert_eq!(entries.len(), 200);
    // Versions of one key are committed under its lock: outbox order is version order.
    for w in entries.windows(2) {
        assert!(w[0].version_id < w[1].version_id);
    }
    let latest = s.get_version("b", "hot", None).unwrap().unwrap();
    assert_eq!(latest.version_id, entries.last().unwrap().version_id);
}

#[test]
fn cursor_is_kept_per_peer_and_never_moves_back() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    for i in 0..5 {
        put(&s, "b", &format!("k{i}"), "x");
    }
    let entries = s.outbox_read(0, 10).unwrap();
    assert_eq!(s.outbox_cursor("west").unwrap(), 0);
    s.outbox_ack("west", entries[2].seq).unwrap();
    s.outbox_ack("west", entries[1].seq).unwrap();
    assert_eq!(s.outbox_cursor("west").unwrap(), entries[2].seq + 1);
    assert_eq!(s.outbox_cursor("east").unwrap(), 0);
    let resumed = s.outbox_read(s.outbox_cursor("west").unwrap(), 10).unwrap();
    assert_eq!(resumed, entries[3..].to_vec());
    let s = s.reopen();
    assert_eq!(s.outbox_cursor("west").unwrap(), entries[2].seq + 1);
}

#[test]
fn sequence_numbers_continue_after_reopen_even_when_trimmed_empty() {
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    for i in 0..3 {
        put(&s, "b", &format!("k{i}"), "x");
    }
    let last = s.outbox_read(0, 10).unwrap().last().unwrap().seq;
    let s = s.reopen();
    put(&s, "b", "k", "x");
    let after_reopen = s.outbox_read(last + 1, 10).unwrap();
    assert_eq!(after_reopen.len(), 1);
    assert_eq!(after_reopen[0].seq, last + 1);
    s.outbox_trim(last + 2).unwrap();
    assert!(s.outbox_read(0, 10).unwrap().is_empty());
    let s = s.reopen();
    put(&s, "b", "k", "y");
    let entries = s.outbox_read(0, 10).unwrap();
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0].seq > last + 1,
        "a sequence number was reused after trimming"
    );
}

#[test]
fn replica_changes_are_marked_with_their_origin() {
    use meridian_metadata::{NewVersion, Origin, ReplicationState};
    let s = TestStore::new();
    make_bucket(&s, "b", VersioningState::Enabled);
    let origin = Origin::Replica {
        region: "eu".into(),
    };
    let new = NewVersion {
        version_id: Some("0SRC".into()),
        mtime: Some(5),
        replication: ReplicationState {
            origin: origin.clone(),
            ..Default::default()
        },
        ..inline("r")
    };
    s.put_version("b", "k", new).unwrap();
    put(&s, "b", "k", "local");
    let entries = s.outbox_read(0, 10).unwrap();
    assert_eq!(entries[0].origin, origin);
    assert_eq!(entries[1].origin, Origin::Local);
}
