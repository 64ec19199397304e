//! A replica is its source's version header for header, whatever path brought it (single PUT,
//! multipart, a large single-part object split on the way, backfill, resync, sync mode), an
//! object written with no Content-Type included; a copy that differs is caught by the
//! replicator's own check and by `meridian drill verify`. Replication state an operator set
//! survives restarts, proxy reads come only from a peer that replicates to us, and
//! `meridian bench replication` counts only what the target holds itself.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_smithy_types::DateTime;
use meridian_tests::regions::{
    assert_exact_replica, drill_verify, get_bytes, observe, put_rules, replicated_both_ways,
    replication_cli, replication_status, rule_to, status_json, versioned_bucket, wait_for,
    with_existing_objects, without_content_type, Regions, RegionsOptions, ABSENT_CONTENT_TYPE,
};
use meridian_tests::{
    error_code, error_status, meridian_binary, output_within, pattern, ACCESS_KEY, SECRET_KEY,
};

const MIB: usize = 1 << 20;
const SETTLE: Duration = Duration::from_secs(60);

/// How a test object is written: with every system header, user metadata and tags, or with
/// nothing at all — not even a Content-Type (as boto3 and the aws CLI write a file whose type
/// they cannot guess).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Headers {
    Full,
    Bare,
}

/// Sets every header of [`Headers::Full`] on a PutObject or CreateMultipartUpload builder.
macro_rules! full_headers {
    ($builder:expr) => {
        $builder
            .content_type("application/x-safetensors")
            .content_encoding("gzip")
            .content_disposition("attachment; filename=\"w.bin\"")
            .content_language("de-CH")
            .cache_control("max-age=60")
            .expires(DateTime::from_secs(4_000_000_000))
            .website_redirect_location("/models/latest")
            .metadata("model", "llama")
            .metadata("step", "42")
            .tagging("team=ml&stage=train")
    };
}

async fn put_with(client: &Client, bucket: &str, key: &str, body: Vec<u8>, h: Headers) -> String {
    let request = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into());
    let request = match h {
        Headers::Full => full_headers!(request),
        Headers::Bare => request,
    };
    let bare = h == Headers::Bare;
    request
        .customize()
        .mutate_request(move |req| {
            if bare {
                without_content_type(req)
            }
        })
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned()
}

/// A multipart object of `size` bytes in 5 MiB parts.
async fn multipart_with(
    client: &Client,
    bucket: &str,
    key: &str,
    size: usize,
    h: Headers,
) -> String {
    let request = client.create_multipart_upload().bucket(bucket).key(key);
    let request = match h {
        Headers::Full => full_headers!(request),
        Headers::Bare => request,
    };
    let upload_id = request
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let data = pattern(size, size as u64);
    let parts: Vec<&[u8]> = data.chunks(5 * MIB).collect();
    meridian_tests::upload_parts_and_complete(client, bucket, key, &upload_id, &parts).await
}

#[tokio::test]
async fn every_header_and_its_absence_survive_put_multipart_split_backfill_and_resync() {
    // Parts of 5 MiB: a single PUT above that is split on the way to the peer.
    let mut regions = Regions::start(RegionsOptions {
        replication: "part_size = \"5MiB\"".into(),
        ..RegionsOptions::one_way(2)
    });
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, "fidelity").await;
    versioned_bucket(&west, "fidelity").await;

    let mut written: Vec<(String, String)> = Vec::new();
    // Before the rule exists: these arrive by backfill.
    for h in [Headers::Full, Headers::Bare] {
        let key = format!("backfill/{h:?}");
        let v = put_with(&east, "fidelity", &key, pattern(200_000, 1), h).await;
        written.push((key, v));
    }
    put_rules(
        &east,
        "fidelity",
        vec![with_existing_objects(rule_to(
            "west", "fidelity", "all", 1, true,
        ))],
    )
    .await;
    for h in [Headers::Full, Headers::Bare] {
        for (path, size) in [("inline", 1000), ("single", 300_000), ("split", 12 * MIB)] {
            let key = format!("{path}/{h:?}");
            let v = put_with(&east, "fidelity", &key, pattern(size, size as u64), h).await;
            written.push((key, v));
        }
        let key = format!("multipart/{h:?}");
        let v = multipart_with(&east, "fidelity", &key, 11 * MIB, h).await;
        written.push((key, v));
    }

    // The source itself reports a bare object as S3 does: no type stored, the default shown.
    let version_of = |key: &str| {
        written
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let bare = observe(&east, "fidelity", "single/Bare", &version_of("single/Bare")).await;
    assert_eq!(bare.content_type.as_deref(), Some(ABSENT_CONTENT_TYPE));
    let full = observe(&east, "fidelity", "single/Full", &version_of("single/Full")).await;
    assert_eq!(full.website_redirect.as_deref(), Some("/models/latest"));
    assert_eq!(full.content_language.as_deref(), Some("de-CH"));
    assert_eq!(full.expires, Some(4_000_000_000));

    for (key, v) in &written {
        assert_exact_replica(&east, &west, "fidelity", key, v).await;
    }

    // West loses everything; a resync brings back the same versions, field for field.
    regions.servers[1].stop();
    regions.servers[1].wipe_data();
    regions.servers[1].restart();
    let west = regions.client(1);
    versioned_bucket(&west, "fidelity").await;
    let (ok, out) = replication_cli(
        &regions.servers[0].endpoint,
        &["resync", "--peer", "west", "--bucket", "fidelity"],
    );
    assert!(ok && out.contains("resync done"), "{out}");
    for (key, v) in &written {
        assert_exact_replica(&east, &west, "fidelity", key, v).await;
    }
}

#[tokio::test]
async fn sync_mode_replicas_keep_every_header_by_the_time_the_put_returns() {
    let regions = Regions::start(RegionsOptions {
        peer_extra: "mode = \"sync\"\nsync_timeout = \"20s\"".into(),
        ..RegionsOptions::one_way(2)
    });
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, "sync").await;
    versioned_bucket(&west, "sync").await;
    put_rules(&east, "sync", vec![rule_to("west", "sync", "all", 1, true)]).await;
    for h in [Headers::Full, Headers::Bare] {
        let key = format!("single/{h:?}");
        let v = put_with(&east, "sync", &key, pattern(100_000, 3), h).await;
        assert_eq!(
            replication_status(&west, "sync", &key, &v).await.as_deref(),
            Some("REPLICA"),
            "{key}: on the peer when the PUT returns"
        );
        assert_exact_replica(&east, &west, "sync", &key, &v).await;
        let key = format!("multipart/{h:?}");
        let v = multipart_with(&east, "sync", &key, 6 * MIB, h).await;
        assert_exact_replica(&east, &west, "sync", &key, &v).await;
    }
}

/// `meridian drill verify` between two regions of the harness; returns its stdout.
#[tokio::test]
async fn a_tampered_replica_is_refused_by_the_replicator_and_named_by_drill_verify() {
    let regions = Regions::start(RegionsOptions::one_way(2));
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, "data").await;
    versioned_bucket(&west, "data").await;
    put_rules(&east, "data", vec![rule_to("west", "data", "all", 1, true)]).await;
    let east_endpoint = regions.servers[0].endpoint.clone();
    let (ok, out) = replication_cli(&east_endpoint, &["pause", "--peer", "west"]);
    assert!(ok, "{out}");

    let body = pattern(50_000, 9);
    let v = put_with(&east, "data", "k", body.clone(), Headers::Bare).await;
    let source = observe(&east, "data", "k", &v).await;
    // Someone with the replicate grant writes "the replica" first, with another type.
    let mtime = source.last_modified.unwrap() * 1_000_000_000;
    let etag = source.etag.clone().unwrap();
    west.put_object()
        .bucket("data")
        .key("k")
        .body(body.into())
        .content_type("text/plain")
        .customize()
        .mutate_request(move |req| {
            let h = req.headers_mut();
            h.insert("x-meridian-replica-region", "east");
            h.insert("x-meridian-replica-version-id", v.clone());
            h.insert("x-meridian-replica-mtime", mtime.to_string());
            h.insert("x-meridian-replica-etag", etag.clone());
        })
        .send()
        .await
        .unwrap();
    let source_version = source.version_id.clone().unwrap();

    let stdout = drill_verify(&regions);
    assert!(stdout.contains("1 different"), "{stdout}");
    assert!(
        stdout.contains(
            "Content-Type: source Some(\"binary/octet-stream\"), replica Some(\"text/plain\")"
        ),
        "drill verify names the field: {stdout}"
    );

    // Sending again: the replicator's check after the transfer finds the same difference
    // and does not count the version as replicated.
    let (ok, out) = replication_cli(&east_endpoint, &["resume", "--peer", "west"]);
    assert!(ok, "{out}");
    let status = wait_for(SETTLE, "the version to fail verification", || async {
        let s = status_json(&east_endpoint);
        (s["peers"][0]["failed"] == 1).then_some(s)
    })
    .await;
    let error = status["peers"][0]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("Content-Type"), "{status}");
    assert_eq!(
        replication_status(&east, "data", "k", &source_version)
            .await
            .as_deref(),
        Some("FAILED"),
        "not COMPLETED while the peer's copy differs"
    );
}

#[tokio::test]
async fn a_paused_peer_stays_paused_across_kill_9_and_a_clean_restart() {
    let mut regions = Regions::start(RegionsOptions::one_way(2));
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, "data").await;
    versioned_bucket(&west, "data").await;
    put_rules(&east, "data", vec![rule_to("west", "data", "all", 1, true)]).await;
    let endpoint = regions.servers[0].endpoint.clone();
    let (ok, out) = replication_cli(&endpoint, &["pause", "--peer", "west"]);
    assert!(ok, "{out}");
    let v = put_with(&east, "data", "k", pattern(10_000, 4), Headers::Full).await;
    let paused = status_json(&endpoint)["peers"][0].clone();
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["paused_by"]["principal"], ACCESS_KEY);
    assert_eq!(paused["pending_versions"], 1, "{paused}");

    for clean in [false, true] {
        if clean {
            regions.servers[0].stop();
        } else {
            regions.servers[0].kill9();
        }
        regions.servers[0].restart();
        let peer = status_json(&endpoint)["peers"][0].clone();
        assert_eq!(peer["paused"], true, "clean={clean}: {peer}");
        assert_eq!(
            peer["paused_by"], paused["paused_by"],
            "who and when survive"
        );
        // Nothing goes out: a checkpoint cannot be reached while paused.
        let (ok, out) = replication_cli(
            &endpoint,
            &["checkpoint", "--peer", "west", "--timeout", "2s"],
        );
        assert!(!ok && out.contains("still lacks 1 versions"), "{out}");
        assert_eq!(replication_status(&west, "data", "k", &v).await, None);
        let (ok, table) = replication_cli(&endpoint, &["status"]);
        assert!(
            ok && table.contains(&format!("paused by {ACCESS_KEY} since")),
            "{table}"
        );
    }
    let metrics = meridian_tests::raw::send_signed(
        &endpoint,
        "GET",
        "/_meridian/metrics",
        &[],
        b"",
        aws_sigv4::http_request::SignableBody::Bytes(b""),
        ACCESS_KEY,
        SECRET_KEY,
    )
    .body;
    assert!(
        metrics.contains("meridian_replication_paused{peer=\"west\"} 1"),
        "{metrics}"
    );
    let since = paused["paused_by"]["since"].as_i64().unwrap();
    assert!(
        metrics.contains(&format!(
            "meridian_replication_paused_since_seconds{{peer=\"west\"}} {since}"
        )),
        "{metrics}"
    );

    let (ok, out) = replication_cli(&endpoint, &["resume", "--peer", "west"]);
    assert!(ok, "{out}");
    wait_for(SETTLE, "the version to arrive after the resume", || async {
        (replication_status(&west, "data", "k", &v).await.as_deref() == Some("REPLICA"))
            .then_some(())
    })
    .await;
    assert_eq!(
        status_json(&endpoint)["peers"][0]["paused_by"],
        serde_json::Value::Null
    );
    regions.servers[0].stop();
    regions.servers[0].restart();
    assert_eq!(
        status_json(&endpoint)["peers"][0]["paused"],
        false,
        "resumed stays resumed"
    );
}

#[tokio::test]
async fn a_one_way_rule_never_serves_the_peers_copy_as_ours() {
    let regions = Regions::start(RegionsOptions::one_way(2));
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, "data").await;
    versioned_bucket(&west, "data").await;
    put_rules(&east, "data", vec![rule_to("west", "data", "all", 1, true)]).await;
    // West has a key east never had (written there directly): west's bucket does not
    // replicate to east, so east must not present it as its own.
    let theirs = put_with(
        &west,
        "data",
        "west-only",
        b"not east's".to_vec(),
        Headers::Full,
    )
    .await;
    let err = east
        .get_object()
        .bucket("data")
        .key("west-only")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchKey"));
    let err = east
        .head_object()
        .bucket("data")
        .key("west-only")
        .version_id(&theirs)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), Some(404), "{err:?}");
    assert_eq!(
        get_bytes(&west, "data", "west-only", &theirs).await,
        b"not east's"
    );
}

/// `meridian bench replication` from east to west with a short lag run only.
fn bench_replication(regions: &Regions, bucket: &str) -> String {
    let out = output_within(
        std::process::Command::new(meridian_binary())
            .args([
                "bench",
                "replication",
                "--source",
                &regions.servers[0].endpoint,
            ])
            .args(["--target", &regions.servers[1].endpoint])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .args(["--bucket", bucket, "--rate", "5", "--duration", "1s"])
            .args(["--saturate", "0", "--large-size", "0", "--timeout", "3s"]),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn bench_replication_counts_nothing_while_sending_is_paused() {
    // Both ways: a HEAD on west for a version it lacks would be proxied to east.
    let regions = Regions::start(RegionsOptions::active_active());
    let (east, west) = (regions.client(0), regions.client(1));
    replicated_both_ways(&east, &west, "bench").await;
    let (ok, out) = replication_cli(&regions.servers[0].endpoint, &["pause", "--peer", "west"]);
    assert!(ok, "{out}");

    let paused = bench_replication(&regions, "bench");
    assert!(
        paused.contains("x-meridian-no-proxy"),
        "says how it polled: {paused}"
    );
    assert!(
        paused.contains("5 PUTs at 5/s") && paused.contains("; 5 failed or missing"),
        "nothing is replicated while paused: {paused}"
    );

    let (ok, out) = replication_cli(&regions.servers[0].endpoint, &["resume", "--peer", "west"]);
    assert!(ok, "{out}");
    let running = bench_replication(&regions, "bench");
    assert!(running.contains("; 0 failed or missing"), "{running}");
}
