//! Geo-replication end to end: real regions on loopback, aws-sdk-s3 against each. Replicas
//! must be exact copies (bytes, version id, mtime, ETag, checksums, headers, metadata, tags),
//! rules decide what goes where when it is sent, and active-active converges without loops.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ReplicationRule,
    ReplicationRuleAndOperator, ReplicationRuleFilter, Tag, Tagging,
};
use aws_sdk_s3::Client;
use meridian_tests::pattern;
use meridian_tests::regions::{
    all_versions, assert_exact_replica, differences, get_bytes, observe, put_rules,
    replicated_both_ways, replication_status, rule_to, versioned_bucket, wait_completed, wait_for,
    wait_identical, Fidelity, Link, Regions, RegionsOptions,
};

const MIB: usize = 1 << 20;
const SETTLE: Duration = Duration::from_secs(60);

/// Two regions, east sending `bucket` to west.
async fn east_to_west(bucket: &str, markers: bool) -> Regions {
    let regions = Regions::start(RegionsOptions::one_way(2));
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, bucket).await;
    versioned_bucket(&west, bucket).await;
    put_rules(
        &east,
        bucket,
        vec![rule_to("west", bucket, "all", 1, markers)],
    )
    .await;
    regions
}

async fn put(client: &Client, bucket: &str, key: &str, body: Vec<u8>) -> String {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn replicas_are_exact_copies_at_every_size_boundary() {
    let regions = east_to_west("data", true).await;
    let (east, west) = (regions.client(0), regions.client(1));
    let inline = 128 * 1024;
    let sizes = [
        0,
        1,
        inline - 1,
        inline,
        inline + 1,
        MIB - 1,
        MIB,
        MIB + 1,
        3 * MIB + 7,
    ];
    let mut written = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let key = format!("sizes/{size}");
        let out = east
            .put_object()
            .bucket("data")
            .key(&key)
            .body(pattern(size, i as u64).into())
            .content_type("application/x-safetensors")
            .cache_control("max-age=60")
            .content_disposition("attachment; filename=\"w.bin\"")
            .metadata("model", "llama")
            .metadata("step", i.to_string())
            .tagging("team=ml&stage=train")
            .send()
            .await
            .unwrap();
        written.push((key, out.version_id().unwrap().to_owned()));
    }
    // SHA-256 checksums from the client are carried too.
    let sha = east
        .put_object()
        .bucket("data")
        .key("sha")
        .body(pattern(5000, 99).into())
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .send()
        .await
        .unwrap();
    written.push(("sha".into(), sha.version_id().unwrap().to_owned()));
    for (key, v) in &written {
        assert_exact_replica(&east, &west, "data", key, v).await;
    }
}

#[tokio::test]
async fn multipart_with_crc32c_keeps_etag_parts_and_composite_checksum() {
    let regions = east_to_west("mpu", true).await;
    let (east, west) = (regions.client(0), regions.client(1));
    let data = pattern(64 * MIB, 7);
    let id = east
        .create_multipart_upload()
        .bucket("mpu")
        .key("weights.bin")
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .content_type("application/octet-stream")
        .metadata("format", "safetensors")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let mut parts = Vec::new();
    for (i, chunk) in data.chunks(8 * MIB).enumerate() {
        let n = i as i32 + 1;
        let out = east
            .upload_part()
            .bucket("mpu")
            .key("weights.bin")
            .upload_id(&id)
            .part_number(n)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(chunk.to_vec().into())
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap())
                .checksum_crc32_c(out.checksum_crc32_c().unwrap())
                .build(),
        );
    }
    let done = east
        .complete_multipart_upload()
        .bucket("mpu")
        .key("weights.bin")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let v = done.version_id().unwrap().to_owned();
    assert!(done.e_tag().unwrap().ends_with("-8\""));
    assert_exact_replica(&east, &west, "mpu", "weights.bin", &v).await;
    let h = observe(&west, "mpu", "weights.bin", &v).await;
    assert_eq!(
        h.parts_count,
        Some(8),
        "the replica has the source's 8 parts"
    );
    assert!(
        h.checksums["CRC32C"].ends_with("-8"),
        "composite checksum kept"
    );
    assert_eq!(h.checksum_type.as_deref(), Some("COMPOSITE"));
}

#[tokio::test]
async fn a_large_single_part_object_is_split_on_the_way_and_keeps_its_etag() {
    let regions = Regions::start(RegionsOptions {
        replication: "part_size = \"16MiB\"".into(),
        ..RegionsOptions::one_way(2)
    });
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, "big").await;
    versioned_bucket(&west, "big").await;
    put_rules(&east, "big", vec![rule_to("west", "big", "all", 1, true)]).await;

    // 1 GiB from a file, streamed: neither the client nor the servers hold it whole.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one-gib.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..1024 {
            f.write_all(&pattern(MIB, 1000 + i)).unwrap();
        }
    }
    let out = east
        .put_object()
        .bucket("big")
        .key("model.bin")
        .body(ByteStream::from_path(&path).await.unwrap())
        .send()
        .await
        .unwrap();
    let v = out.version_id().unwrap().to_owned();
    let etag = out.e_tag().unwrap().to_owned();
    assert!(!etag.contains('-'), "a single PUT has a plain MD5 ETag");

    wait_for(
        Duration::from_secs(300),
        "the 1 GiB object to replicate",
        || async {
            (replication_status(&east, "big", "model.bin", &v)
                .await
                .as_deref()
                == Some("COMPLETED"))
            .then_some(())
        },
    )
    .await;
    let (s, t) = (
        observe(&east, "big", "model.bin", &v).await,
        observe(&west, "big", "model.bin", &v).await,
    );
    assert_eq!(
        differences(&s, &t, Fidelity::Exact),
        Vec::<String>::new(),
        "same ETag (carried over), size, mtime and full-object CRC"
    );
    assert_eq!(
        Some(format!("\"{}\"", t.etag.as_deref().unwrap())),
        Some(etag.clone())
    );
    assert_eq!(
        t.parts_count, None,
        "the replica is a single-part object, like its source"
    );
    // The SDK sends its default CRC32 with the upload; the parts' CRC32s combine to it.
    assert!(
        t.checksums.contains_key("CRC32") && t.checksum_type.as_deref() == Some("FULL_OBJECT"),
        "{t:?}"
    );
    // Stream both and compare digests rather than holding 2 GiB.
    assert_eq!(
        digest(&east, "big", "model.bin", &v).await,
        digest(&west, "big", "model.bin", &v).await
    );
}

async fn digest(client: &Client, bucket: &str, key: &str, version_id: &str) -> (u64, String) {
    use sha2::Digest;
    let mut body = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .version_id(version_id)
        .send()
        .await
        .unwrap()
        .body;
    let (mut n, mut h) = (0u64, sha2::Sha256::new());
    while let Some(chunk) = body.try_next().await.unwrap() {
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    (n, hex::encode(h.finalize()))
}

#[tokio::test]
async fn overwrites_and_tag_changes_arrive_in_the_same_order() {
    let regions = east_to_west("data", true).await;
    let (east, west) = (regions.client(0), regions.client(1));
    let mut versions = Vec::new();
    for i in 0..5 {
        versions.push(put(&east, "data", "ckpt/latest", pattern(1000 + i, i as u64)).await);
    }
    east.put_object_tagging()
        .bucket("data")
        .key("ckpt/latest")
        .version_id(&versions[1])
        .tagging(
            Tagging::builder()
                .tag_set(Tag::builder().key("keep").value("yes").build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let listed = wait_identical(&east, &west, "data", SETTLE).await;
    assert_eq!(listed.len(), 5);
    assert_eq!(
        listed[0].version_id, versions[4],
        "the newest is latest on both sides"
    );
    assert!(listed[0].is_latest);
    wait_for(SETTLE, "the tag change to arrive", || async {
        (observe(&west, "data", "ckpt/latest", &versions[1])
            .await
            .tags
            == Some(vec![("keep".to_string(), "yes".to_string())]))
        .then_some(())
    })
    .await;
    let latest = get_bytes(&west, "data", "ckpt/latest", &versions[4]).await;
    assert_eq!(latest, pattern(1004, 4));
}

#[tokio::test]
async fn delete_markers_replicate_only_where_the_rule_says_so() {
    let regions = Regions::start(RegionsOptions::one_way(2));
    let (east, west) = (regions.client(0), regions.client(1));
    for b in ["with-markers", "without-markers"] {
        versioned_bucket(&east, b).await;
        versioned_bucket(&west, b).await;
    }
    put_rules(
        &east,
        "with-markers",
        vec![rule_to("west", "with-markers", "r", 1, true)],
    )
    .await;
    put_rules(
        &east,
        "without-markers",
        vec![rule_to("west", "without-markers", "r", 1, false)],
    )
    .await;

    for b in ["with-markers", "without-markers"] {
        let v1 = put(&east, b, "k", b"one".to_vec()).await;
        let v2 = put(&east, b, "gone", b"two".to_vec()).await;
        wait_completed(&east, b, "k", &v1).await;
        wait_completed(&east, b, "gone", &v2).await;
        east.delete_object()
            .bucket(b)
            .key("k")
            .send()
            .await
            .unwrap();
        // Deleting one version by id is never replicated (as on S3).
        east.delete_object()
            .bucket(b)
            .key("gone")
            .version_id(&v2)
            .send()
            .await
            .unwrap();
    }
    let marker = all_versions(&east, "with-markers")
        .await
        .into_iter()
        .find(|v| v.delete_marker)
        .unwrap();
    let on_west = wait_for(SETTLE, "the delete marker to reach west", || async {
        all_versions(&west, "with-markers")
            .await
            .into_iter()
            .find(|v| v.delete_marker)
    })
    .await;
    assert_eq!(on_west.version_id, marker.version_id, "same marker id");
    assert!(on_west.is_latest);
    assert_eq!(
        west.get_object()
            .bucket("with-markers")
            .key("k")
            .send()
            .await
            .unwrap_err()
            .into_service_error()
            .meta()
            .code(),
        Some("NoSuchKey")
    );

    // Without marker replication the marker stays home; wait for the marker in the other
    // bucket to settle as a sign the worker moved past it, then check it never went.
    let west_plain = all_versions(&west, "without-markers").await;
    assert!(
        west_plain.iter().all(|v| !v.delete_marker),
        "{west_plain:?}"
    );
    let east_marker = all_versions(&east, "without-markers")
        .await
        .into_iter()
        .find(|v| v.delete_marker)
        .unwrap();
    assert_eq!(
        replication_status(&east, "without-markers", "k", &east_marker.version_id).await,
        None,
        "a marker no rule sends has no replication status"
    );
    for b in ["with-markers", "without-markers"] {
        let gone: Vec<_> = all_versions(&west, b)
            .await
            .into_iter()
            .filter(|v| v.key == "gone")
            .collect();
        assert_eq!(
            gone.len(),
            1,
            "{b}: the version deleted by id stays on the peer"
        );
    }
}

fn filtered_rule(
    id: &str,
    priority: i32,
    filter: ReplicationRuleFilter,
    markers: bool,
) -> ReplicationRule {
    let base = rule_to("west", "dest", id, priority, markers);
    ReplicationRule::builder()
        .id(id)
        .priority(priority)
        .status(base.status().clone())
        .filter(filter)
        .set_delete_marker_replication(base.delete_marker_replication().cloned())
        .set_destination(base.destination().cloned())
        .build()
        .unwrap()
}

#[tokio::test]
async fn prefix_and_tag_filters_choose_what_goes() {
    let regions = Regions::start(RegionsOptions::one_way(2));
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, "src").await;
    versioned_bucket(&west, "dest").await;
    let models = ReplicationRuleFilter::builder().prefix("models/").build();
    let tagged = ReplicationRuleFilter::builder()
        .and(
            ReplicationRuleAndOperator::builder()
                .prefix("logs/")
                .tags(
                    Tag::builder()
                        .key("replicate")
                        .value("yes")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .build();
    put_rules(
        &east,
        "src",
        vec![
            filtered_rule("models", 2, models, true),
            filtered_rule("tagged-logs", 1, tagged, false),
        ],
    )
    .await;

    let model = put(&east, "src", "models/a", b"weights".to_vec()).await;
    let plain_log = put(&east, "src", "logs/plain", b"x".to_vec()).await;
    let tagged_log = east
        .put_object()
        .bucket("src")
        .key("logs/tagged")
        .tagging("replicate=yes")
        .body(b"y".to_vec().into())
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    assert_eq!(
        replication_status(&east, "src", "logs/plain", &plain_log).await,
        None,
        "no rule matches: no status at all"
    );
    wait_completed(&east, "src", "models/a", &model).await;
    wait_completed(&east, "src", "logs/tagged", &tagged_log).await;
    let on_west: Vec<String> = all_versions(&west, "dest")
        .await
        .into_iter()
        .map(|v| v.key)
        .collect();
    assert_eq!(
        on_west,
        ["logs/tagged", "models/a"],
        "into the rule's destination bucket"
    );
}

#[tokio::test]
async fn fan_out_sends_every_version_to_both_peers() {
    let regions = Regions::start(RegionsOptions::one_way(3));
    let clients: Vec<Client> = (0..3).map(|i| regions.client(i)).collect();
    for c in &clients {
        versioned_bucket(c, "fan").await;
    }
    put_rules(
        &clients[0],
        "fan",
        vec![
            rule_to("west", "fan", "to-west", 1, true),
            rule_to("south", "fan", "to-south", 2, true),
        ],
    )
    .await;
    for i in 0..20 {
        put(&clients[0], "fan", &format!("k{}", i % 7), pattern(3000, i)).await;
    }
    clients[0]
        .delete_object()
        .bucket("fan")
        .key("k0")
        .send()
        .await
        .unwrap();
    let east = wait_identical(&clients[0], &clients[1], "fan", SETTLE).await;
    let south = wait_identical(&clients[0], &clients[2], "fan", SETTLE).await;
    assert_eq!(east.len(), 21);
    assert_eq!(east, south);
}

#[tokio::test]
async fn active_active_writes_to_the_same_keys_converge_without_loops() {
    let regions = Regions::start(RegionsOptions::active_active());
    let (east, west) = (regions.client(0), regions.client(1));
    replicated_both_ways(&east, &west, "shared").await;

    let write = |client: Client, seed: u64| async move {
        let mut ids = Vec::new();
        for i in 0..30u64 {
            let key = format!("k{}", i % 5);
            ids.push(put(&client, "shared", &key, pattern(100 + i as usize, seed + i)).await);
            if i % 11 == 10 {
                client
                    .delete_object()
                    .bucket("shared")
                    .key(&key)
                    .send()
                    .await
                    .unwrap();
            }
        }
        ids
    };
    let (a, b) = tokio::join!(write(east.clone(), 0), write(west.clone(), 1000));
    let listed = wait_identical(&east, &west, "shared", SETTLE).await;
    let markers = listed.iter().filter(|v| v.delete_marker).count();
    assert_eq!(
        listed.len(),
        a.len() + b.len() + markers,
        "every version once, nothing echoed"
    );
    assert_eq!(markers, 4);
    // Each side's own versions are COMPLETED and the other side's are REPLICA: nothing is
    // PENDING, so nothing is still going round.
    for (client, own) in [(&east, &a), (&west, &b)] {
        for v in listed.iter().filter(|v| !v.delete_marker) {
            let key = v.key.as_str();
            let expected = if own.contains(&v.version_id) {
                "COMPLETED"
            } else {
                "REPLICA"
            };
            let status = wait_for(SETTLE, "statuses to settle", || async {
                let s = replication_status(client, "shared", key, &v.version_id).await?;
                (s == expected).then_some(s)
            })
            .await;
            assert_eq!(status, expected);
        }
    }
    // The latest of every key is the same version on both sides.
    for key in ["k0", "k1", "k2", "k3", "k4"] {
        let latest = |c: &Client| {
            let c = c.clone();
            async move {
                c.head_object()
                    .bucket("shared")
                    .key(key)
                    .send()
                    .await
                    .ok()
                    .and_then(|h| h.version_id().map(str::to_owned))
            }
        };
        assert_eq!(latest(&east).await, latest(&west).await, "{key}");
    }
}

#[tokio::test]
async fn a_deleted_rule_sends_nothing_more() {
    let regions = east_to_west("data", true).await;
    let (east, west) = (regions.client(0), regions.client(1));
    let first = put(&east, "data", "before", b"1".to_vec()).await;
    wait_completed(&east, "data", "before", &first).await;

    // The peer is away while versions queue up under the rule; the rule is then removed.
    let mut regions = regions;
    regions.servers[1].stop();
    let queued = put(&east, "data", "queued", b"2".to_vec()).await;
    assert_eq!(
        replication_status(&east, "data", "queued", &queued)
            .await
            .as_deref(),
        Some("PENDING"),
        "PENDING is recorded with the commit"
    );
    east.delete_bucket_replication()
        .bucket("data")
        .send()
        .await
        .unwrap();
    regions.servers[1].restart();
    // The retry finds no rule: the version's status goes, and nothing reaches the peer.
    wait_for(
        SETTLE,
        "the queued change to be dropped from replication",
        || async {
            replication_status(&east, "data", "queued", &queued)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    let keys: Vec<String> = all_versions(&west, "data")
        .await
        .into_iter()
        .map(|v| v.key)
        .collect();
    assert_eq!(keys, ["before"]);
}

#[tokio::test]
async fn a_foreign_s3_target_gets_plain_calls_and_its_own_version_ids() {
    let regions = Regions::start(RegionsOptions {
        links: vec![Link {
            from: 0,
            to: 1,
            foreign: true,
        }],
        ..RegionsOptions::one_way(2)
    });
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, "data").await;
    versioned_bucket(&west, "data").await;
    put_rules(&east, "data", vec![rule_to("west", "data", "all", 1, true)]).await;

    let v = east
        .put_object()
        .bucket("data")
        .key("k")
        .body(pattern(300_000, 3).into())
        .metadata("m", "1")
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    wait_completed(&east, "data", "k", &v).await;
    let on_west = all_versions(&west, "data").await;
    assert_eq!(on_west.len(), 1);
    let target_id = on_west[0].version_id.clone();
    assert_ne!(target_id, v, "a foreign target mints its own version id");
    assert_eq!(
        replication_status(&west, "data", "k", &target_id).await,
        None,
        "a plain write, not a replica"
    );
    assert_eq!(
        get_bytes(&west, "data", "k", &target_id).await,
        pattern(300_000, 3)
    );

    // A tag change goes to the mapped version; a delete marker becomes the target's own.
    east.put_object_tagging()
        .bucket("data")
        .key("k")
        .version_id(&v)
        .tagging(
            Tagging::builder()
                .tag_set(Tag::builder().key("t").value("1").build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    wait_for(SETTLE, "tags on the mapped version", || async {
        (observe(&west, "data", "k", &target_id).await.tags
            == Some(vec![("t".to_string(), "1".to_string())]))
        .then_some(())
    })
    .await;
    east.delete_object()
        .bucket("data")
        .key("k")
        .send()
        .await
        .unwrap();
    let marker = wait_for(SETTLE, "a delete marker on the target", || async {
        all_versions(&west, "data")
            .await
            .into_iter()
            .find(|v| v.delete_marker)
    })
    .await;
    assert!(marker.is_latest);
}

#[tokio::test]
async fn conditional_writes_and_deletes_decide_per_region_and_converge() {
    // Active-active: each region checks a condition against what it has; the versions and
    // markers it lets through replicate like any other, and both regions end up the same.
    let regions = Regions::start(RegionsOptions::active_active());
    let (east, west) = (regions.client(0), regions.client(1));
    replicated_both_ways(&east, &west, "cond").await;
    let first = east
        .put_object()
        .bucket("cond")
        .key("manifest")
        .body(b"v1".to_vec().into())
        .if_none_match("*")
        .send()
        .await
        .unwrap();
    let etag = first.e_tag().unwrap().to_owned();
    wait_identical(&east, &west, "cond", SETTLE).await;
    // West saw v1 arrive: a create-only write there now fails, an If-Match on v1 succeeds.
    let refused = west
        .put_object()
        .bucket("cond")
        .key("manifest")
        .body(b"other".to_vec().into())
        .if_none_match("*")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        meridian_tests::error_code(&refused).as_deref(),
        Some("PreconditionFailed")
    );
    let v2 = west
        .put_object()
        .bucket("cond")
        .key("manifest")
        .body(b"v2".to_vec().into())
        .if_match(&etag)
        .send()
        .await
        .unwrap();
    wait_identical(&east, &west, "cond", SETTLE).await;
    // East now has v2 as current: an If-Match on v1 there fails, a conditional delete on v2
    // makes a delete marker that reaches west.
    let stale = east
        .delete_object()
        .bucket("cond")
        .key("manifest")
        .if_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        meridian_tests::error_code(&stale).as_deref(),
        Some("PreconditionFailed")
    );
    let marker = east
        .delete_object()
        .bucket("cond")
        .key("manifest")
        .if_match(v2.e_tag().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(marker.delete_marker(), Some(true));
    let listed = wait_identical(&east, &west, "cond", SETTLE).await;
    assert_eq!(
        listed.len(),
        3,
        "v1, v2 and the marker, once each: {listed:?}"
    );
    assert!(listed.iter().any(|v| v.delete_marker));
    let gone = west
        .delete_object()
        .bucket("cond")
        .key("manifest")
        .if_match("*")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        meridian_tests::error_code(&gone).as_deref(),
        Some("NoSuchKey"),
        "west sees the replicated marker as current"
    );
}

#[tokio::test]
async fn a_versions_acl_travels_with_it() {
    // Buckets with ACLs (ObjectWriter) on both sides: the replica keeps the source's owner
    // and grants, not an ACL made for the replication user.
    let regions = Regions::start(RegionsOptions::one_way(2));
    let (east, west) = (regions.client(0), regions.client(1));
    for client in [&east, &west] {
        client
            .create_bucket()
            .bucket("pub")
            .object_ownership(aws_sdk_s3::types::ObjectOwnership::ObjectWriter)
            .send()
            .await
            .unwrap();
        meridian_tests::enable_versioning(client, "pub").await;
    }
    put_rules(&east, "pub", vec![rule_to("west", "pub", "all", 1, true)]).await;
    let version = east
        .put_object()
        .bucket("pub")
        .key("open")
        .body(b"for all".to_vec().into())
        .acl(aws_sdk_s3::types::ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    wait_completed(&east, "pub", "open", &version).await;
    let acl_of = |c: Client| async move {
        let acl = c
            .get_object_acl()
            .bucket("pub")
            .key("open")
            .send()
            .await
            .unwrap();
        let grants: Vec<_> = acl
            .grants()
            .iter()
            .map(|g| {
                let who = g.grantee().unwrap();
                (
                    who.uri().or(who.id()).unwrap_or_default().to_owned(),
                    g.permission().unwrap().as_str().to_owned(),
                )
            })
            .collect();
        (acl.owner().and_then(|o| o.id()).map(str::to_owned), grants)
    };
    let (east_acl, west_acl) = (acl_of(east.clone()).await, acl_of(west.clone()).await);
    assert_eq!(east_acl, west_acl);
    assert!(east_acl
        .1
        .iter()
        .any(|(who, p)| who.ends_with("/AllUsers") && p == "READ"));
    let (status, body) =
        meridian_tests::anonymous_request(&regions.servers[1].endpoint, "GET", "/pub/open");
    assert_eq!(status, 200, "west serves it to anyone");
    assert!(body.ends_with("\r\n\r\nfor all"), "{body}");
}
