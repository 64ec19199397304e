//! Lifecycle rules end to end, on servers whose lifecycle "day" is a second or two
//! (`[lifecycle] day`): the configuration API and its errors, each action and filter kind,
//! NewerNoncurrentVersions, upload abort, rules put after the data, disk space coming back,
//! kill -9 in the middle of expiring, and the replication interplay with two regions.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleAndOperator, LifecycleRuleFilter,
    NoncurrentVersionExpiration, Tag, Transition, TransitionStorageClass,
};
use aws_sdk_s3::Client;
use meridian_tests::regions::{self, wait_for, Regions, RegionsOptions};
use meridian_tests::{
    create_upload, error_code, pattern, shard_bytes, upload_part, ServerOptions, TestServer,
};

/// A lifecycle day of this length: "1 day" rules act within seconds.
const DAY: &str = "[lifecycle]\nday = \"1s\"\n";
/// Long enough for a few days to pass and the worker to act.
const LIMIT: Duration = Duration::from_secs(30);
/// Over the inline threshold, so the data is in shard files on the disks.
const BIG: usize = 300 * 1024;

fn server() -> TestServer {
    TestServer::start_with(ServerOptions {
        extra_config: DAY.into(),
        ..ServerOptions::default()
    })
}

async fn bucket(s3: &Client, name: &str, versioned: bool) {
    if versioned {
        regions::versioned_bucket(s3, name).await;
    } else {
        s3.create_bucket().bucket(name).send().await.unwrap();
    }
}

fn prefix_filter(prefix: &str) -> LifecycleRuleFilter {
    LifecycleRuleFilter::builder().prefix(prefix).build()
}

fn rule(
    id: &str,
    filter: LifecycleRuleFilter,
) -> aws_sdk_s3::types::builders::LifecycleRuleBuilder {
    LifecycleRule::builder()
        .id(id)
        .status(ExpirationStatus::Enabled)
        .filter(filter)
}

fn expire_after(days: i32) -> LifecycleExpiration {
    LifecycleExpiration::builder().days(days).build()
}

/// PutBucketLifecycleConfiguration; the S3 error code when refused.
async fn try_put_rules(
    s3: &Client,
    bucket: &str,
    rules: Vec<LifecycleRule>,
) -> Result<(), Option<String>> {
    s3.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| error_code(&e))
}

async fn put_rules(s3: &Client, bucket: &str, rules: Vec<LifecycleRule>) {
    try_put_rules(s3, bucket, rules).await.unwrap();
}

/// GetBucketLifecycleConfiguration's rules; the S3 error code when refused.
async fn stored_rules(s3: &Client, bucket: &str) -> Result<Vec<LifecycleRule>, Option<String>> {
    s3.get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
        .map(|out| out.rules().to_vec())
        .map_err(|e| error_code(&e))
}

async fn put(s3: &Client, bucket: &str, key: &str, body: Vec<u8>) -> Option<String> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap()
        .version_id()
        .map(str::to_owned)
}

/// `(key, version id, is delete marker, is latest)` of every version and marker.
async fn versions(s3: &Client, bucket: &str) -> Vec<(String, String, bool, bool)> {
    let mut all: Vec<_> = regions::all_versions(s3, bucket)
        .await
        .into_iter()
        .map(|v| (v.key, v.version_id, v.delete_marker, v.is_latest))
        .collect();
    all.sort();
    all
}

async fn exists(s3: &Client, bucket: &str, key: &str) -> bool {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => true,
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            assert_eq!(status, Some(404), "HEAD {key}: {e:?}");
            false
        }
    }
}

#[tokio::test]
async fn configurations_round_trip_and_bad_ones_change_nothing() {
    let server = server();
    let s3 = server.client();
    bucket(&s3, "cfg", false).await;

    let none = stored_rules(&s3, "cfg").await;
    assert_eq!(
        none.unwrap_err().as_deref(),
        Some("NoSuchLifecycleConfiguration")
    );

    let and = LifecycleRuleFilter::builder()
        .and(
            LifecycleRuleAndOperator::builder()
                .prefix("ckpt/")
                .tags(Tag::builder().key("keep").value("no").build().unwrap())
                .object_size_greater_than(1024)
                .build(),
        )
        .build();
    let rules = vec![
        rule("logs", prefix_filter("logs/"))
            .expiration(expire_after(30))
            .build()
            .unwrap(),
        rule("ckpt", and)
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(7)
                    .newer_noncurrent_versions(3)
                    .build(),
            )
            .build()
            .unwrap(),
        rule("uploads", LifecycleRuleFilter::builder().build())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(2)
                    .build(),
            )
            .build()
            .unwrap(),
    ];
    put_rules(&s3, "cfg", rules.clone()).await;
    let got = stored_rules(&s3, "cfg").await.unwrap();
    assert_eq!(got, rules);

    // Each bad configuration gets AWS's error and leaves the stored one as it was.
    let bad: Vec<(LifecycleRule, &str)> = vec![
        (
            rule("zero", prefix_filter("a/"))
                .expiration(expire_after(0))
                .build()
                .unwrap(),
            "InvalidArgument",
        ),
        (
            rule("none", prefix_filter("a/")).build().unwrap(),
            "InvalidRequest",
        ),
        (
            rule("marker-and-days", prefix_filter("a/"))
                .expiration(
                    LifecycleExpiration::builder()
                        .days(1)
                        .expired_object_delete_marker(true)
                        .build(),
                )
                .build()
                .unwrap(),
            "InvalidArgument",
        ),
        (
            rule("glacier", prefix_filter("a/"))
                .transitions(
                    Transition::builder()
                        .days(1)
                        .storage_class(TransitionStorageClass::Glacier)
                        .build(),
                )
                .build()
                .unwrap(),
            "NotImplemented",
        ),
        (
            rule(&"x".repeat(256), prefix_filter("a/"))
                .expiration(expire_after(1))
                .build()
                .unwrap(),
            "InvalidArgument",
        ),
    ];
    for (bad_rule, code) in bad {
        let refused = try_put_rules(&s3, "cfg", vec![bad_rule.clone()]).await;
        assert_eq!(refused.unwrap_err().as_deref(), Some(code), "{bad_rule:?}");
    }
    let twice = vec![
        rule("same", prefix_filter("a/"))
            .expiration(expire_after(1))
            .build()
            .unwrap(),
        rule("same", prefix_filter("b/"))
            .expiration(expire_after(1))
            .build()
            .unwrap(),
    ];
    let refused = try_put_rules(&s3, "cfg", twice).await;
    assert_eq!(refused.unwrap_err().as_deref(), Some("InvalidArgument"));
    let still = stored_rules(&s3, "cfg").await.unwrap();
    assert_eq!(still, rules);

    s3.delete_bucket_lifecycle()
        .bucket("cfg")
        .send()
        .await
        .unwrap();
    let none = stored_rules(&s3, "cfg").await;
    assert_eq!(
        none.unwrap_err().as_deref(),
        Some("NoSuchLifecycleConfiguration")
    );

    // The configuration goes with the bucket.
    put_rules(&s3, "cfg", rules).await;
    s3.delete_bucket().bucket("cfg").send().await.unwrap();
    bucket(&s3, "cfg", false).await;
    let none = stored_rules(&s3, "cfg").await;
    assert_eq!(
        none.unwrap_err().as_deref(),
        Some("NoSuchLifecycleConfiguration")
    );
}

#[tokio::test]
async fn expiration_deletes_unversioned_objects_and_frees_their_disk_space() {
    let server = server();
    let s3 = server.client();
    bucket(&s3, "tmp", false).await;
    put_rules(
        &s3,
        "tmp",
        vec![rule("scratch", prefix_filter("scratch/"))
            .expiration(expire_after(3))
            .build()
            .unwrap()],
    )
    .await;
    let before = shard_bytes(&server, 6);
    for i in 0..4 {
        put(&s3, "tmp", &format!("scratch/{i}"), pattern(BIG, i)).await;
    }
    put(&s3, "tmp", "keep/model", pattern(BIG, 9)).await;
    let full = shard_bytes(&server, 6);
    assert!(
        full > before + 4 * BIG as u64,
        "the objects are in shard files"
    );

    // PUT and HEAD say when the rule will expire the object, and which rule.
    let out = s3
        .put_object()
        .bucket("tmp")
        .key("scratch/said")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let said = out.expiration().expect("x-amz-expiration on PUT");
    assert!(said.contains("rule-id=\"scratch\""), "{said}");
    assert!(said.starts_with("expiry-date=\""), "{said}");
    let head = s3
        .head_object()
        .bucket("tmp")
        .key("scratch/said")
        .send()
        .await
        .unwrap();
    assert_eq!(head.expiration(), Some(said));
    let kept = s3
        .head_object()
        .bucket("tmp")
        .key("keep/model")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.expiration(), None);

    wait_for(LIMIT, "the scratch objects to expire", || async {
        let mut any = false;
        for i in 0..4 {
            any |= exists(&s3, "tmp", &format!("scratch/{i}")).await;
        }
        (!any && !exists(&s3, "tmp", "scratch/said").await).then_some(())
    })
    .await;
    assert!(exists(&s3, "tmp", "keep/model").await);
    // The space comes back: the reclaimer deletes the expired versions' shards.
    wait_for(
        LIMIT,
        "the expired objects' shards to be deleted",
        || async { (shard_bytes(&server, 6) < full - 3 * BIG as u64).then_some(()) },
    )
    .await;
    let metrics = meridian_tests::metrics(&server);
    assert!(
        metrics.contains("meridian_lifecycle_actions_total{action=\"expire_current\"} 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn versioned_buckets_get_markers_and_lose_old_versions_keeping_the_newest() {
    let server = server();
    let s3 = server.client();
    bucket(&s3, "ver", true).await;
    put_rules(
        &s3,
        "ver",
        vec![
            rule("current", prefix_filter("cur/"))
                .expiration(expire_after(2))
                .build()
                .unwrap(),
            rule("old", prefix_filter("nc/"))
                .noncurrent_version_expiration(
                    NoncurrentVersionExpiration::builder()
                        .noncurrent_days(1)
                        .newer_noncurrent_versions(2)
                        .build(),
                )
                .build()
                .unwrap(),
            rule("markers", prefix_filter("dm/"))
                .expiration(
                    LifecycleExpiration::builder()
                        .expired_object_delete_marker(true)
                        .build(),
                )
                .noncurrent_version_expiration(
                    NoncurrentVersionExpiration::builder()
                        .noncurrent_days(1)
                        .build(),
                )
                .build()
                .unwrap(),
        ],
    )
    .await;
    let cur = put(&s3, "ver", "cur/a", b"a".to_vec()).await.unwrap();
    let mut nc = Vec::new();
    for i in 0..5 {
        nc.push(
            put(&s3, "ver", "nc/ckpt", format!("v{i}").into_bytes())
                .await
                .unwrap(),
        );
    }
    put(&s3, "ver", "dm/gone", b"x".to_vec()).await;
    s3.delete_object()
        .bucket("ver")
        .key("dm/gone")
        .send()
        .await
        .unwrap();

    wait_for(
        LIMIT,
        "the lifecycle actions of all three rules",
        || async {
            let all = versions(&s3, "ver").await;
            let cur_done = all
                .iter()
                .any(|(k, _, marker, latest)| k == "cur/a" && *marker && *latest);
            let nc_left = all.iter().filter(|(k, ..)| k == "nc/ckpt").count();
            let dm_left = all.iter().filter(|(k, ..)| k == "dm/gone").count();
            (cur_done && nc_left == 3 && dm_left == 0).then_some(all)
        },
    )
    .await;
    let all = versions(&s3, "ver").await;
    // The expired current version is still there, behind its marker.
    assert!(all
        .iter()
        .any(|(k, v, marker, _)| k == "cur/a" && *v == cur && !marker));
    // The current version and the two newest noncurrent ones stay.
    let mut kept: Vec<String> = all
        .iter()
        .filter(|(k, ..)| k == "nc/ckpt")
        .map(|(_, v, ..)| v.clone())
        .collect();
    kept.sort();
    let mut newest: Vec<String> = nc[2..].to_vec();
    newest.sort();
    assert_eq!(kept, newest);
}

#[tokio::test]
async fn size_and_tag_filters_pick_the_objects_and_uploads_are_aborted() {
    let server = server();
    let s3 = server.client();
    bucket(&s3, "filters", false).await;
    let big_tagged = LifecycleRuleFilter::builder()
        .and(
            LifecycleRuleAndOperator::builder()
                .object_size_greater_than(1000)
                .tags(Tag::builder().key("tier").value("scratch").build().unwrap())
                .build(),
        )
        .build();
    let small = LifecycleRuleFilter::builder()
        .object_size_less_than(10)
        .build();
    put_rules(
        &s3,
        "filters",
        vec![
            rule("big-tagged", big_tagged)
                .expiration(expire_after(1))
                .build()
                .unwrap(),
            rule("tiny", small)
                .expiration(expire_after(1))
                .build()
                .unwrap(),
            rule("uploads", prefix_filter("up/"))
                .abort_incomplete_multipart_upload(
                    AbortIncompleteMultipartUpload::builder()
                        .days_after_initiation(1)
                        .build(),
                )
                .build()
                .unwrap(),
        ],
    )
    .await;
    let tagged = |key: &str, body: Vec<u8>| {
        s3.put_object()
            .bucket("filters")
            .key(key)
            .tagging("tier=scratch")
            .body(ByteStream::from(body))
            .send()
    };
    tagged("big-tagged", vec![1; 2000]).await.unwrap();
    tagged("small-tagged", vec![1; 500]).await.unwrap();
    put(&s3, "filters", "big-untagged", vec![1; 2000]).await;
    put(&s3, "filters", "tiny", vec![1; 5]).await;
    // A completed upload is an object like any other: the rule's date comes back with it.
    let done = create_upload(&s3, "filters", "tiny-mp").await;
    let etag = upload_part(&s3, "filters", "tiny-mp", &done, 1, b"abc").await;
    let completed = s3
        .complete_multipart_upload()
        .bucket("filters")
        .key("tiny-mp")
        .upload_id(&done)
        .multipart_upload(meridian_tests::completed_parts(&[(1, &etag)]))
        .send()
        .await
        .unwrap();
    let said = completed
        .expiration()
        .expect("x-amz-expiration on completion");
    assert!(said.contains("rule-id=\"tiny\""), "{said}");
    let upload = create_upload(&s3, "filters", "up/weights").await;
    upload_part(&s3, "filters", "up/weights", &upload, 1, &pattern(BIG, 1)).await;
    let other = create_upload(&s3, "filters", "other/weights").await;

    wait_for(LIMIT, "the matching objects and upload to go", || async {
        let gone =
            !exists(&s3, "filters", "big-tagged").await && !exists(&s3, "filters", "tiny").await;
        let uploads = s3
            .list_multipart_uploads()
            .bucket("filters")
            .send()
            .await
            .unwrap();
        let ids: Vec<&str> = uploads
            .uploads()
            .iter()
            .filter_map(|u| u.upload_id())
            .collect();
        (gone && ids == [other.as_str()]).then_some(())
    })
    .await;
    assert!(exists(&s3, "filters", "small-tagged").await);
    assert!(exists(&s3, "filters", "big-untagged").await);
}

#[tokio::test]
async fn a_rule_put_after_the_data_expires_what_was_already_there() {
    let server = server();
    let s3 = server.client();
    bucket(&s3, "later", true).await;
    for i in 0..30 {
        put(&s3, "later", &format!("old/{i}"), vec![i as u8; 10]).await;
        put(&s3, "later", &format!("old/{i}"), vec![i as u8; 11]).await;
    }
    put_rules(
        &s3,
        "later",
        vec![rule("old", prefix_filter("old/"))
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(1)
                    .build(),
            )
            .build()
            .unwrap()],
    )
    .await;
    wait_for(
        LIMIT,
        "the noncurrent versions stored before the rule to expire",
        || async { (versions(&s3, "later").await.len() == 30).then_some(()) },
    )
    .await;
    assert!(versions(&s3, "later")
        .await
        .iter()
        .all(|(_, _, marker, latest)| *latest && !marker));
}

#[tokio::test]
async fn kill_9_while_expiring_repeats_nothing_and_forgets_nothing() {
    let mut server = server();
    let s3 = server.client();
    bucket(&s3, "crash", true).await;
    let before = shard_bytes(&server, 6);
    for i in 0..40 {
        put(&s3, "crash", &format!("k/{i:03}"), pattern(BIG, i)).await;
    }
    // Each current version gets one marker, then goes as a noncurrent version.
    put_rules(
        &s3,
        "crash",
        vec![rule("all", prefix_filter("k/"))
            .expiration(expire_after(2))
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(1)
                    .build(),
            )
            .build()
            .unwrap()],
    )
    .await;
    // Kill as soon as the first objects are gone: the worker is in the middle of its work.
    wait_for(LIMIT, "the first expiry", || async {
        (!exists(&s3, "crash", "k/000").await).then_some(())
    })
    .await;
    server.kill9();
    server.restart();
    let s3 = server.client();
    let all = wait_for(
        LIMIT,
        "every version to expire after the restart",
        || async {
            let all = versions(&s3, "crash").await;
            all.iter().all(|(_, _, marker, _)| *marker).then_some(all)
        },
    )
    .await;
    // Exactly one marker per key: no expiry ran twice, none was forgotten.
    assert_eq!(all.len(), 40, "{all:?}");
    let mut keys: Vec<&str> = all.iter().map(|(k, ..)| k.as_str()).collect();
    keys.dedup();
    assert_eq!(keys.len(), 40);
    wait_for(LIMIT, "every expired shard to be reclaimed", || async {
        (shard_bytes(&server, 6) <= before).then_some(())
    })
    .await;
}

#[tokio::test]
async fn replication_keeps_pending_versions_and_lifecycle_markers_stay_home() {
    let mut options = RegionsOptions::one_way(2);
    options.extra = DAY.into();
    let mut regions = Regions::start(options);
    let (east, west) = (regions.client(0), regions.client(1));
    regions::replicated_bucket(&east, &west, regions::NAMES[1], "shared").await;
    // The peer is down: the new version stays PENDING, and lifecycle must not expire it.
    regions.servers[1].stop();
    put_rules(
        &east,
        "shared",
        vec![rule("short", prefix_filter(""))
            .expiration(expire_after(1))
            .build()
            .unwrap()],
    )
    .await;
    let version = put(&east, "shared", "model.bin", pattern(BIG, 3))
        .await
        .unwrap();
    // Several lifecycle days pass: the version is still the current one.
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < deadline {
        let latest = versions(&east, "shared").await;
        assert!(
            latest.iter().all(|(_, _, marker, _)| !marker),
            "a PENDING version was expired: {latest:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    regions.servers[1].restart();
    regions::wait_completed(&east, "shared", "model.bin", &version).await;
    wait_for(LIMIT, "the expiry once replication completed", || async {
        let all = versions(&east, "shared").await;
        all.iter()
            .any(|(_, _, marker, latest)| *marker && *latest)
            .then_some(())
    })
    .await;
    // The marker lifecycle added is not sent: the peer still serves the version.
    regions::checkpoint(&regions.servers[0].endpoint, regions::NAMES[1], LIMIT);
    let there = versions(&west, "shared").await;
    assert_eq!(
        there,
        vec![("model.bin".to_owned(), version.clone(), false, true)]
    );
}

#[tokio::test]
async fn status_and_preview_say_what_the_rules_will_do() {
    // Real days here: nothing acts during the test, so the preview is stable.
    let server = TestServer::start();
    let s3 = server.client();
    bucket(&s3, "plan", false).await;
    put_rules(
        &s3,
        "plan",
        vec![rule("week", prefix_filter("tmp/"))
            .expiration(expire_after(7))
            .build()
            .unwrap()],
    )
    .await;
    put(&s3, "plan", "tmp/a", vec![1; 1000]).await;
    put(&s3, "plan", "tmp/b", vec![2; 500]).await;
    put(&s3, "plan", "keep/c", vec![3; 100]).await;

    let (ok, now) = regions::admin_cli(
        &server.endpoint,
        &["lifecycle", "preview", "--bucket", "plan", "--json"],
        &[],
    );
    assert!(ok);
    let now: serde_json::Value = serde_json::from_str(&now).unwrap();
    assert_eq!(now["versions"], 0, "{now}");
    let (ok, later) = regions::admin_cli(
        &server.endpoint,
        &[
            "lifecycle",
            "preview",
            "--bucket",
            "plan",
            "--at",
            "9d",
            "--json",
        ],
        &[],
    );
    assert!(ok);
    let later: serde_json::Value = serde_json::from_str(&later).unwrap();
    assert_eq!(
        (later["versions"].as_u64(), later["bytes"].as_u64()),
        (Some(2), Some(1500)),
        "{later}"
    );
    let keys: Vec<&str> = later["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["tmp/a", "tmp/b"]);
    // Nothing was acted on.
    assert!(exists(&s3, "plan", "tmp/a").await);

    let (ok, status) = regions::admin_cli(&server.endpoint, &["lifecycle", "status"], &[]);
    assert!(ok);
    assert!(status.contains("plan: week"), "{status}");
    assert!(status.contains("due now: 0"), "{status}");
    let (ok, _) = regions::admin_cli(
        &server.endpoint,
        &["lifecycle", "preview", "--bucket", "missing", "--json"],
        &[],
    );
    assert!(!ok, "a preview of a bucket that does not exist fails");
}

#[tokio::test]
async fn a_replica_counts_its_days_from_the_creation_time_it_carries() {
    let mut options = RegionsOptions::one_way(2);
    options.extra = DAY.into();
    let mut regions = Regions::start(options);
    let (east, west) = (regions.client(0), regions.client(1));
    regions::replicated_bucket(&east, &west, regions::NAMES[1], "aged").await;
    let century = || {
        vec![rule("late", prefix_filter(""))
            .expiration(expire_after(100))
            .build()
            .unwrap()]
    };
    put_rules(&east, "aged", century()).await;
    put_rules(&west, "aged", century()).await;
    // The replica arrives seconds after the version was created.
    regions.servers[1].stop();
    let version = put(&east, "aged", "old.bin", b"old".to_vec())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    regions.servers[1].restart();
    regions::wait_completed(&east, "aged", "old.bin", &version).await;
    let due = |endpoint: String| {
        let (ok, out) = regions::admin_cli(
            &endpoint,
            &[
                "lifecycle",
                "preview",
                "--bucket",
                "aged",
                "--at",
                "1000d",
                "--json",
            ],
            &[],
        );
        assert!(ok);
        let preview: serde_json::Value = serde_json::from_str(&out).unwrap();
        preview["actions"][0]["due"].as_i64().expect("one action")
    };
    // Both regions date the expiry from the version's creation, not from its arrival.
    assert_eq!(
        due(regions.servers[0].endpoint.clone()),
        due(regions.servers[1].endpoint.clone())
    );
}
