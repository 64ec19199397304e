//! S3 versioning semantics, table-driven: each case is a sequence of operations on one key
//! and the versions (newest first) and latest version it must leave behind.

use std::collections::HashMap;

use meridian_metadata::{
    ChangeSource, DeleteOptions, ListObjectsQuery, ListVersionsQuery, MetaError, NewVersion,
    Origin, PeerStatus, ReplicationState, Storage, VersioningState, NULL_VERSION_ID,
};

use crate::support::{content, inline, make_bucket, put, TestStore};

use VersioningState::{Enabled, Suspended};

const B: &str = "bucket";
const K: &str = "dir/key";

#[derive(Clone, Copy)]
enum Op {
    Versioning(VersioningState),
    /// A local PUT with this content (the label of the version).
    Put(&'static str),
    /// A replica PUT: label, version id kept verbatim, mtime relative to now (seconds).
    Replica(&'static str, &'static str, i64),
    /// DELETE without version id; the label names the marker it may create.
    Delete(&'static str),
    /// DELETE of the version labelled so.
    DeleteVersion(&'static str),
    /// DELETE of a version id that never existed.
    DeleteMissing,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Id {
    Null,
    Generated,
    Exact(&'static str),
}

struct Case {
    name: &'static str,
    ops: &'static [Op],
    /// (label, marker?, id kind), newest first.
    versions: &'static [(&'static str, bool, Id)],
}

use Op::*;

const CASES: &[Case] = &[
    Case {
        name: "unversioned put replaces the null version",
        ops: &[Put("a"), Put("b")],
        versions: &[("b", false, Id::Null)],
    },
    Case {
        name: "enabled bucket keeps every version",
        ops: &[Versioning(Enabled), Put("a"), Put("b")],
        versions: &[("b", false, Id::Generated), ("a", false, Id::Generated)],
    },
    Case {
        name: "suspended put overwrites only the null version",
        ops: &[
            Put("a"),
            Versioning(Enabled),
            Put("b"),
            Versioning(Suspended),
            Put("c"),
            Put("d"),
        ],
        versions: &[("d", false, Id::Null), ("b", false, Id::Generated)],
    },
    Case {
        name: "enabled delete adds a marker",
        ops: &[Versioning(Enabled), Put("a"), Delete("m1")],
        versions: &[("m1", true, Id::Generated), ("a", false, Id::Generated)],
    },
    Case {
        name: "enabled delete twice adds two markers",
        ops: &[Versioning(Enabled), Put("a"), Delete("m1"), Delete("m2")],
        versions: &[
            ("m2", true, Id::Generated),
            ("m1", true, Id::Generated),
            ("a", false, Id::Generated),
        ],
    },
    Case {
        name: "enabled delete of a missing key still adds a marker",
        ops: &[Versioning(Enabled), Delete("m1")],
        versions: &[("m1", true, Id::Generated)],
    },
    Case {
        name: "suspended delete replaces the null version with a null marker",
        ops: &[
            Put("a"),
            Versioning(Enabled),
            Put("b"),
            Versioning(Suspended),
            Delete("m1"),
        ],
        versions: &[("m1", true, Id::Null), ("b", false, Id::Generated)],
    },
    Case {
        name: "unversioned delete removes the object",
        ops: &[Put("a"), Delete("-")],
        versions: &[],
    },
    Case {
        name: "unversioned delete of a missing key changes nothing",
        ops: &[Delete("-")],
        versions: &[],
    },
    Case {
        name: "unversioned delete of the null version by id",
        ops: &[Put("a"), DeleteVersion("a")],
        versions: &[],
    },
    Case {
        name: "deleting the latest version falls back to the previous",
        ops: &[Versioning(Enabled), Put("a"), Put("b"), DeleteVersion("b")],
        versions: &[("a", false, Id::Generated)],
    },
    Case {
        name: "deleting an older version keeps the latest",
        ops: &[
            Versioning(Enabled),
            Put("a"),
            Put("b"),
            Put("c"),
            DeleteVersion("b"),
        ],
        versions: &[("c", false, Id::Generated), ("a", false, Id::Generated)],
    },
    Case {
        name: "deleting the marker restores the object",
        ops: &[
            Versioning(Enabled),
            Put("a"),
            Delete("m1"),
            DeleteVersion("m1"),
        ],
        versions: &[("a", false, Id::Generated)],
    },
    Case {
        name: "deleting the null marker in a suspended bucket falls back",
        ops: &[
            Versioning(Enabled),
            Put("a"),
            Versioning(Suspended),
            Delete("m1"),
            DeleteVersion("m1"),
        ],
        versions: &[("a", false, Id::Generated)],
    },
    Case {
        name: "null version written while suspended survives re-enabling",
        ops: &[
            Versioning(Enabled),
            Versioning(Suspended),
            Put("a"),
            Versioning(Enabled),
            Put("b"),
        ],
        versions: &[("b", false, Id::Generated), ("a", false, Id::Null)],
    },
    Case {
        name: "deleting a missing version changes nothing",
        ops: &[Versioning(Enabled), Put("a"), DeleteMissing],
        versions: &[("a", false, Id::Generated)],
    },
    Case {
        name: "replica with an older mtime does not become latest",
        ops: &[
            Versioning(Enabled),
            Put("a"),
            Replica("r", "0REPLICA-OLD", -3600),
        ],
        versions: &[
            ("a", false, Id::Generated),
            ("r", false, Id::Exact("0REPLICA-OLD")),
        ],
    },
    Case {
        name: "replica with a newer mtime becomes latest",
        ops: &[
            Versioning(Enabled),
            Put("a"),
            Replica("r", "0REPLICA-NEW", 3600),
        ],
        versions: &[
            ("r", false, Id::Exact("0REPLICA-NEW")),
            ("a", false, Id::Generated),
        ],
    },
    Case {
        name: "local put after a newer replica still becomes latest",
        ops: &[
            Versioning(Enabled),
            Replica("r", "0REPLICA-NEW", 3600),
            Put("a"),
        ],
        versions: &[
            ("a", false, Id::Generated),
            ("r", false, Id::Exact("0REPLICA-NEW")),
        ],
    },
    Case {
        name: "replica applied twice is a no-op",
        ops: &[
            Versioning(Enabled),
            Replica("r", "0REPLICA", 0),
            Replica("r2", "0REPLICA", 0),
        ],
        versions: &[("r", false, Id::Exact("0REPLICA"))],
    },
];

fn run(case: &Case) {
    let s = TestStore::new();
    make_bucket(&s, B, VersioningState::Unversioned);
    let mut ids: HashMap<&str, String> = HashMap::new();
    let mut marker_labels: HashMap<String, &str> = HashMap::new();
    let now = meridian_metadata::now_nanos();
    for op in case.ops {
        match *op {
            Versioning(state) => s.set_versioning(B, state).unwrap(),
            Put(label) => {
                ids.insert(label, put(&s, B, K, label).version_id);
            }
            Replica(label, vid, offset) => {
                let new = NewVersion {
                    version_id: Some(vid.into()),
                    mtime: Some(now + offset * 1_000_000_000),
                    replication: ReplicationState {
                        origin: Origin::Replica {
                            region: "west".into(),
                        },
                        ..Default::default()
                    },
                    ..inline(label)
                };
                let v = s.put_version(B, K, new).unwrap().version;
                ids.entry(label).or_insert(v.version_id);
            }
            Delete(label) => {
                let out = s
                    .delete_object(B, K, None, DeleteOptions::default())
                    .unwrap();
                if out.delete_marker {
                    let vid = out.version_id.unwrap();
                    marker_labels.insert(vid.clone(), label);
                    ids.insert(label, vid);
                } else {
                    assert_eq!(
                        out.version_id, None,
                        "{}: removal in unversioned bucket reports no version",
                        case.name
                    );
                }
            }
            DeleteVersion(label) => {
                let vid = ids[label].clone();
                let out = s
                    .delete_object(B, K, Some(&vid), DeleteOptions::default())
                    .unwrap();
                assert_eq!(out.version_id.as_deref(), Some(vid.as_str()));
                let removed = out.removed.expect("the version existed");
                assert_eq!(removed.version_id, vid);
                assert_eq!(out.delete_marker, removed.is_delete_marker);
            }
            DeleteMissing => {
                let out = s
                    .delete_object(B, K, Some("0NOSUCHVERSION"), DeleteOptions::default())
                    .unwrap();
                assert!(out.removed.is_none() && !out.delete_marker, "{}", case.name);
            }
        }
    }
    check(&s, case, &ids, &marker_labels);
}

fn check(
    s: &TestStore,
    case: &Case,
    ids: &HashMap<&str, String>,
    marker_labels: &HashMap<String, &str>,
) {
    let name = case.name;
    let page = s.list_versions(B, &ListVersionsQuery::default()).unwrap();
    let label_of = |v: &meridian_metadata::ObjectSummary| -> String {
        if v.is_delete_marker {
            marker_labels[&v.version_id].to_string()
        } else {
            content(&s.get_version(B, K, Some(&v.version_id)).unwrap().unwrap())
        }
    };
    let got: Vec<(String, bool)> = page
        .versions
        .iter()
        .map(|v| (label_of(v), v.is_delete_marker))
        .collect();
    let want: Vec<(String, bool)> = case
        .versions
        .iter()
        .map(|&(l, m, _)| (l.to_string(), m))
        .collect();
    assert_eq!(got, want, "{name}: versions newest first");
    for (v, &(label, _, id)) in page.versions.iter().zip(case.versions) {
        match id {
            Id::Null => assert_eq!(v.version_id, NULL_VERSION_ID, "{name}: {label}"),
            Id::Generated => {
                assert_ne!(v.version_id, NULL_VERSION_ID, "{name}: {label}");
                assert_eq!(&v.version_id, &ids[label], "{name}: {label}");
            }
            Id::Exact(vid) => assert_eq!(v.version_id, vid, "{name}: {label}"),
        }
    }
    for (i, v) in page.versions.iter().enumerate() {
        assert_eq!(
            v.is_latest,
            i == 0,
            "{name}: only the first version is latest"
        );
    }
    let latest = s.get_version(B, K, None).unwrap();
    match case.versions.first() {
        None => assert!(latest.is_none(), "{name}: no latest version"),
        Some(&(label, marker, _)) => {
            let latest = latest.expect("a latest version");
            assert_eq!(latest.is_delete_marker, marker, "{name}");
            assert_eq!(latest.version_id, page.versions[0].version_id, "{name}");
            if !marker {
                assert_eq!(content(&latest), label, "{name}");
            }
        }
    }
    let visible = s.list_objects(B, &ListObjectsQuery::default()).unwrap();
    let expect_visible = case.versions.first().is_some_and(|&(_, marker, _)| !marker);
    assert_eq!(
        visible.objects.len(),
        usize::from(expect_visible),
        "{name}: ListObjects shows only a live latest"
    );
    if expect_visible {
        assert_eq!(
            visible.objects[0].version_id, page.versions[0].version_id,
            "{name}"
        );
    }
}

#[test]
fn versioning_semantics_match_s3() {
    for case in CASES {
        run(case);
    }
}

#[test]
fn get_of_a_delete_marker_returns_the_marker_with_its_version_id() {
    let s = TestStore::new();
    make_bucket(&s, B, Enabled);
    put(&s, B, K, "a");
    let out = s
        .delete_object(B, K, None, DeleteOptions::default())
        .unwrap();
    let latest = s.get_version(B, K, None).unwrap().unwrap();
    assert!(latest.is_delete_marker);
    assert_eq!(Some(latest.version_id), out.version_id);
}

#[test]
fn version_ids_increase_with_time_and_are_unique() {
    let s = TestStore::new();
    make_bucket(&s, B, Enabled);
    let ids: Vec<String> = (0..50)
        .map(|i| put(&s, B, &format!("k{}", i % 3), "x").version_id)
        .collect();
    for w in ids.windows(2) {
        assert!(w[0] < w[1]);
    }
}

#[test]
fn replica_keeps_source_version_id_and_mtime() {
    let s = TestStore::new();
    make_bucket(&s, B, Enabled);
    let new = NewVersion {
        version_id: Some("01SOURCEVERSION".into()),
        mtime: Some(123_456_789),
        replication: ReplicationState {
            origin: Origin::Replica {
                region: "eu".into(),
            },
            ..Default::default()
        },
        ..inline("r")
    };
    s.put_version(B, K, new).unwrap();
    let v = s
        .get_version(B, K, Some("01SOURCEVERSION"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (v.mtime, v.replication.origin),
        (
            123_456_789,
            Origin::Replica {
                region: "eu".into()
            }
        )
    );
}

#[test]
fn replicated_delete_marker_keeps_its_version_id() {
    let s = TestStore::new();
    make_bucket(&s, B, Enabled);
    put(&s, B, K, "a");
    let opts = DeleteOptions {
        version_id: Some("ZZMARKER".into()),
        mtime: Some(meridian_metadata::now_nanos() + 1_000_000_000),
        replication: ReplicationState {
            origin: Origin::Replica {
                region: "eu".into(),
            },
            ..Default::default()
        },
        ..DeleteOptions::default()
    };
    let out = s.delete_object(B, K, None, opts).unwrap();
    assert_eq!(
        (out.version_id.as_deref(), out.delete_marker),
        (Some("ZZMARKER"), true)
    );
    assert!(s.get_version(B, K, None).unwrap().unwrap().is_delete_marker);
}

#[test]
fn invalid_version_ids_from_callers_are_rejected() {
    let s = TestStore::new();
    make_bucket(&s, B, Enabled);
    let new = NewVersion {
        version_id: Some("bad id\n".into()),
        ..inline("x")
    };
    assert!(matches!(
        s.put_version(B, K, new),
        Err(MetaError::InvalidArgument(_))
    ));
    assert!(matches!(
        s.put_version(B, "", inline("x")),
        Err(MetaError::InvalidArgument(_))
    ));
}

#[test]
fn set_tags_replaces_tags_of_latest_or_named_version() {
    let s = TestStore::new();
    make_bucket(&s, B, Enabled);
    let v1 = put(&s, B, K, "a");
    put(&s, B, K, "b");
    let tagged = s
        .set_tags(
            B,
            K,
            None,
            vec![("k".into(), "v".into())],
            ChangeSource::default(),
        )
        .unwrap();
    assert_eq!(content(&tagged), "b");
    s.set_tags(
        B,
        K,
        Some(&v1.version_id),
        vec![("old".into(), "1".into())],
        ChangeSource::default(),
    )
    .unwrap();
    assert_eq!(
        s.get_version(B, K, None).unwrap().unwrap().tags,
        vec![("k".to_string(), "v".to_string())]
    );
    assert_eq!(
        s.get_version(B, K, Some(&v1.version_id))
            .unwrap()
            .unwrap()
            .tags,
        vec![("old".to_string(), "1".to_string())]
    );
    let marker = s
        .delete_object(B, K, None, DeleteOptions::default())
        .unwrap()
        .version_id
        .unwrap();
    assert!(matches!(
        s.set_tags(B, K, None, vec![], ChangeSource::default()),
        Err(MetaError::NoSuchKey { .. })
    ));
    assert!(matches!(
        s.set_tags(B, K, Some(&marker), vec![], ChangeSource::default()),
        Err(MetaError::IsDeleteMarker { .. })
    ));
    assert!(matches!(
        s.set_tags(B, K, Some("0NOPE"), vec![], ChangeSource::default()),
        Err(MetaError::NoSuchVersion { .. })
    ));
}

#[test]
fn replication_status_is_recorded_per_peer() {
    let s = TestStore::new();
    make_bucket(&s, B, Enabled);
    let v = put(&s, B, K, "a");
    s.set_replication_status(B, K, &v.version_id, "west", Some(PeerStatus::Completed))
        .unwrap();
    let failed = PeerStatus::Failed {
        error: "timeout".into(),
        attempts: 3,
    };
    s.set_replication_status(B, K, &v.version_id, "east", Some(failed.clone()))
        .unwrap();
    let peers = s
        .get_version(B, K, Some(&v.version_id))
        .unwrap()
        .unwrap()
        .replication
        .peers;
    assert_eq!(peers.get("west"), Some(&PeerStatus::Completed));
    assert_eq!(peers.get("east"), Some(&failed));
    assert!(matches!(
        s.set_replication_status(B, K, "0NOPE", "west", Some(PeerStatus::Pending)),
        Err(MetaError::NoSuchVersion { .. })
    ));
}

#[test]
fn operations_on_a_missing_bucket_fail_with_no_such_bucket() {
    let s = TestStore::new();
    assert!(matches!(
        s.put_version("nope", K, inline("a")),
        Err(MetaError::NoSuchBucket { .. })
    ));
    assert!(matches!(
        s.get_version("nope", K, None),
        Err(MetaError::NoSuchBucket { .. })
    ));
    assert!(matches!(
        s.delete_object("nope", K, None, DeleteOptions::default()),
        Err(MetaError::NoSuchBucket { .. })
    ));
    assert!(matches!(
        s.list_objects("nope", &ListObjectsQuery::default()),
        Err(MetaError::NoSuchBucket { .. })
    ));
    make_bucket(&s, B, Enabled);
    assert_eq!(s.get_version(B, K, None).unwrap(), None);
    assert_eq!(s.get_version(B, K, Some("0NOPE")).unwrap(), None);
}

#[test]
fn full_records_round_trip_through_the_store() {
    let s = TestStore::new();
    make_bucket(&s, B, Enabled);
    let new = NewVersion {
        size: 10,
        etag: "abc-2".into(),
        checksum: Some(meridian_metadata::Checksum {
            algorithm: meridian_metadata::ChecksumAlgorithm::Crc64Nvme,
            value: "AAAAAAAAAAA=".into(),
            kind: meridian_metadata::ChecksumType::FullObject,
        }),
        content_sha256: Some(vec![7; 32]),
        headers: meridian_metadata::ObjectHeaders {
            content_type: Some("text/plain".into()),
            ..Default::default()
        },
        user_metadata: vec![("a".into(), "b".into())],
        tags: vec![("t".into(), "u".into())],
        storage: Storage::Layout(vec![1, 2, 3]),
        parts: vec![meridian_metadata::ObjectPart {
            number: 1,
            size: 5,
            etag: "p1".into(),
            checksum: None,
        }],
        ..NewVersion::default()
    };
    let committed = s.put_version(B, K, new.clone()).unwrap().version;
    let read = s.get_version(B, K, None).unwrap().unwrap();
    assert_eq!(read, committed);
    assert_eq!(read.format_version, meridian_metadata::FORMAT_VERSION);
    assert_eq!(
        (read.etag.as_str(), read.parts.len(), read.storage),
        ("abc-2", 1, new.storage)
    );
}
