//! Operating replication, end to end: sync-mode writes, backfill of existing versions,
//! resync into a wiped peer, proxy reads while a link is paused, checkpoints, the status
//! CLI and admin API, and who may read metrics.

use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use meridian_tests::pattern;
use meridian_tests::regions::{
    all_versions, checkpoint, get_bytes, put_rules, replicated_both_ways, replication_cli,
    replication_status, rule_to, status_json, versioned_bucket, wait_completed, wait_identical,
    with_existing_objects, Regions, RegionsOptions,
};

const SETTLE: Duration = Duration::from_secs(60);

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
async fn sync_mode_puts_return_once_the_peer_has_the_version() {
    let mut regions = Regions::start(RegionsOptions {
        peer_extra: "mode = \"sync\"\nsync_timeout = \"2s\"".into(),
        ..RegionsOptions::one_way(2)
    });
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, "data").await;
    versioned_bucket(&west, "data").await;
    put_rules(&east, "data", vec![rule_to("west", "data", "all", 1, true)]).await;

    for i in 0..5 {
        let v = put(&east, "data", &format!("k{i}"), pattern(10_000, i)).await;
        // No waiting: the PUT returned, so the peer has it.
        assert_eq!(
            replication_status(&west, "data", &format!("k{i}"), &v)
                .await
                .as_deref(),
            Some("REPLICA"),
            "k{i} is on the peer when the PUT returns"
        );
        assert_eq!(
            replication_status(&east, "data", &format!("k{i}"), &v)
                .await
                .as_deref(),
            Some("COMPLETED")
        );
    }
    // A delete marker waits too.
    let marker = east
        .delete_object()
        .bucket("data")
        .key("k0")
        .send()
        .await
        .unwrap();
    let marker_id = marker.version_id().unwrap().to_owned();
    let on_west = all_versions(&west, "data").await;
    assert!(on_west
        .iter()
        .any(|v| v.delete_marker && v.version_id == marker_id));

    // With the peer down the write still succeeds, after the timeout, and converges later.
    regions.servers[1].stop();
    let started = Instant::now();
    let v = put(&east, "data", "while-down", b"x".to_vec()).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "the PUT waited for sync_timeout ({took:?})"
    );
    assert_eq!(
        replication_status(&east, "data", "while-down", &v)
            .await
            .as_deref(),
        Some("PENDING")
    );
    regions.servers[1].restart();
    wait_completed(&east, "data", "while-down", &v).await;
}

#[tokio::test]
async fn a_rule_with_existing_object_replication_backfills_every_version() {
    let regions = Regions::start(RegionsOptions::one_way(2));
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, "old").await;
    versioned_bucket(&west, "old").await;
    // 500 versions and markers before any rule exists.
    let mut written = 0;
    for i in 0..460u64 {
        put(
            &east,
            "old",
            &format!("k{:03}", i % 200),
            pattern(100 + (i % 50) as usize, i),
        )
        .await;
        written += 1;
    }
    for i in 0..40 {
        east.delete_object()
            .bucket("old")
            .key(format!("k{:03}", i * 5))
            .send()
            .await
            .unwrap();
        written += 1;
    }
    assert_eq!(written, 500);
    put_rules(
        &east,
        "old",
        vec![with_existing_objects(rule_to(
            "west", "old", "all", 1, true,
        ))],
    )
    .await;
    let listed = wait_identical(&east, &west, "old", Duration::from_secs(120)).await;
    assert_eq!(listed.len(), 500);
    assert_eq!(listed.iter().filter(|v| v.delete_marker).count(), 40);
    checkpoint(&regions.servers[0].endpoint, "west", SETTLE);
    let status = status_json(&regions.servers[0].endpoint);
    let job = &status["peers"][0]["jobs"][0];
    assert_eq!(job["kind"], "backfill");
    assert_eq!(job["running"], false);
    assert_eq!(job["queued"], 500);
}

#[tokio::test]
async fn resync_refills_a_wiped_peer_and_a_second_resync_sends_nothing() {
    let mut regions = Regions::start(RegionsOptions::one_way(2));
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, "data").await;
    versioned_bucket(&west, "data").await;
    put_rules(&east, "data", vec![rule_to("west", "data", "all", 1, true)]).await;
    for i in 0..60u64 {
        put(
            &east,
            "data",
            &format!("k{}", i % 25),
            pattern(50_000 + i as usize, i),
        )
        .await;
    }
    east.delete_object()
        .bucket("data")
        .key("k3")
        .send()
        .await
        .unwrap();
    let before = wait_identical(&east, &west, "data", SETTLE).await;

    // West loses everything and comes back empty.
    regions.servers[1].stop();
    regions.servers[1].wipe_data();
    regions.servers[1].restart();
    let west = regions.client(1);
    versioned_bucket(&west, "data").await;
    assert!(all_versions(&west, "data").await.is_empty());

    let east_endpoint = regions.servers[0].endpoint.clone();
    let (ok, out) = replication_cli(
        &east_endpoint,
        &["resync", "--peer", "west", "--bucket", "data"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("resync done"), "{out}");
    let after = wait_identical(&east, &west, "data", SETTLE).await;
    assert_eq!(after, before, "every version back, same ids");
    for v in after.iter().filter(|v| !v.delete_marker).take(5) {
        assert_eq!(
            get_bytes(&east, "data", &v.key, &v.version_id).await,
            get_bytes(&west, "data", &v.key, &v.version_id).await
        );
    }
    let status = status_json(&east_endpoint);
    let first = status["peers"][0]["jobs"][0].clone();
    assert_eq!(first["queued"], 61);

    let (ok, out) = replication_cli(
        &east_endpoint,
        &["resync", "--peer", "west", "--from-scratch"],
    );
    assert!(ok, "{out}");
    let status = status_json(&east_endpoint);
    let second = &status["peers"][0]["jobs"][0];
    assert_eq!(second["queued"], 0, "nothing is sent twice: {second}");
    assert_eq!(second["skipped"], 61);
}

#[tokio::test]
async fn a_paused_link_queues_and_reads_are_proxied_meanwhile() {
    let regions = Regions::start(RegionsOptions::active_active());
    let (east, west) = (regions.client(0), regions.client(1));
    replicated_both_ways(&east, &west, "shared").await;
    let east_endpoint = regions.servers[0].endpoint.clone();

    let (ok, _) = replication_cli(&east_endpoint, &["pause", "--peer", "west"]);
    assert!(ok);
    let v = put(&east, "shared", "fresh", pattern(300_000, 5)).await;
    let status = status_json(&east_endpoint);
    assert_eq!(status["peers"][0]["paused"], true);
    assert_eq!(
        status["peers"][0]["pending_versions"], 1,
        "the change waits: {status}"
    );

    // West does not have it, but answers from east, and says so.
    let got = west
        .get_object()
        .bucket("shared")
        .key("fresh")
        .send()
        .await
        .unwrap();
    assert_eq!(got.version_id(), Some(v.as_str()));
    let body = got.body.collect().await.unwrap().into_bytes();
    assert!(body.as_ref() == pattern(300_000, 5).as_slice());
    let raw = reqwest_like_head(&regions.servers[1].endpoint, "shared", "fresh");
    assert_eq!(
        raw.as_deref(),
        Some("east"),
        "x-meridian-proxied-from names the peer"
    );
    let head = west
        .head_object()
        .bucket("shared")
        .key("fresh")
        .version_id(&v)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(300_000));
    // A key deleted here is not fetched from the peer: delete markers are answers.
    put(&west, "shared", "gone", b"1".to_vec()).await;
    west.delete_object()
        .bucket("shared")
        .key("gone")
        .send()
        .await
        .unwrap();
    assert!(west
        .get_object()
        .bucket("shared")
        .key("gone")
        .send()
        .await
        .is_err());
    // Nothing anywhere is still nothing.
    let missing = west
        .get_object()
        .bucket("shared")
        .key("nowhere")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        missing.into_service_error().meta().code(),
        Some("NoSuchKey")
    );

    let (ok, _) = replication_cli(&east_endpoint, &["resume", "--peer", "west"]);
    assert!(ok);
    checkpoint(&east_endpoint, "west", SETTLE);
    assert_eq!(
        replication_status(&west, "shared", "fresh", &v)
            .await
            .as_deref(),
        Some("REPLICA")
    );
    let status = status_json(&east_endpoint);
    assert_eq!(status["peers"][0]["paused"], false);
    assert_eq!(status["peers"][0]["pending_versions"], 0);
}

/// A HEAD as root without the SDK, returning the x-meridian-proxied-from header.
fn reqwest_like_head(endpoint: &str, bucket: &str, key: &str) -> Option<String> {
    let resp = meridian_tests::raw::send_signed(
        endpoint,
        "HEAD",
        &format!("/{bucket}/{key}"),
        &[],
        b"",
        aws_sigv4::http_request::SignableBody::Bytes(b""),
        meridian_tests::ACCESS_KEY,
        meridian_tests::SECRET_KEY,
    );
    assert_eq!(resp.status, 200);
    resp.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-meridian-proxied-from"))
        .map(|(_, v)| v.clone())
}

#[tokio::test]
async fn status_shows_the_backlog_of_a_stopped_peer_and_the_cli_table_names_it() {
    let mut regions = Regions::start(RegionsOptions::one_way(2));
    let east = regions.client(0);
    let west = regions.client(1);
    versioned_bucket(&east, "data").await;
    versioned_bucket(&west, "data").await;
    put_rules(&east, "data", vec![rule_to("west", "data", "all", 1, true)]).await;
    regions.servers[1].stop();
    for i in 0..10 {
        put(&east, "data", &format!("k{i}"), vec![0u8; 1000]).await;
    }
    let endpoint = regions.servers[0].endpoint.clone();
    let status = status_json(&endpoint);
    let peer = &status["peers"][0];
    assert_eq!(peer["peer"], "west");
    assert_eq!(peer["pending_versions"], 10);
    assert_eq!(peer["pending_bytes"], 10_000);
    assert_eq!(peer["buckets"][0]["bucket"], "data");
    let (ok, table) = replication_cli(&endpoint, &["status"]);
    assert!(ok);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("west") && l.contains("10")),
        "{table}"
    );

    // A checkpoint with the peer away times out and says what is missing.
    let (reached, out) = replication_cli(
        &endpoint,
        &["checkpoint", "--peer", "west", "--timeout", "1s"],
    );
    assert!(!reached);
    assert!(out.contains("still lacks 10 versions"), "{out}");

    regions.servers[1].restart();
    checkpoint(&endpoint, "west", SETTLE);
    assert_eq!(status_json(&endpoint)["peers"][0]["pending_versions"], 0);
}

#[tokio::test]
async fn admin_endpoints_need_the_right_principal() {
    let regions = Regions::start(RegionsOptions::one_way(2));
    let endpoint = &regions.servers[0].endpoint;
    versioned_bucket(&regions.client(0), "metrics-test").await;
    let get = |path: &str, key: &str, secret: &str| {
        meridian_tests::raw::send_signed(
            endpoint,
            "GET",
            path,
            &[],
            b"",
            aws_sigv4::http_request::SignableBody::Bytes(b""),
            key,
            secret,
        )
    };
    let root = get(
        "/_meridian/metrics",
        meridian_tests::ACCESS_KEY,
        meridian_tests::SECRET_KEY,
    );
    assert_eq!(root.status, 200);
    assert!(
        root.body
            .contains(r#"meridian_s3_requests_total{operation="CreateBucket",status="2xx"} 1"#),
        "{}",
        root.body
    );
    assert!(root
        .body
        .contains("meridian_replication_pending_versions{peer=\"west\"}"));
    let writer = get(
        "/_meridian/metrics",
        meridian_tests::regions::WRITER_KEY,
        meridian_tests::regions::WRITER_SECRET,
    );
    assert_eq!(writer.status, 403);
    let status = get(
        "/_meridian/replication/status",
        meridian_tests::regions::WRITER_KEY,
        meridian_tests::regions::WRITER_SECRET,
    );
    assert_eq!(status.status, 403, "replication administration is root's");
    let forged = get(
        "/_meridian/replication/status",
        meridian_tests::ACCESS_KEY,
        "wrong-secret",
    );
    assert_eq!(forged.status, 403);
    let (code, _) = http_get(endpoint, "/_meridian/metrics");
    assert_eq!(code, 403, "anonymous scrapes need metrics_public");
}

fn http_get(endpoint: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

/// Text that zstd shrinks a lot.
fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(
            format!("{i}\tthe quick brown fox jumps over the lazy dog\n").as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

async fn same_on_both(east: &Client, west: &Client, key: &str, v: &str) {
    use aws_sdk_s3::types::ChecksumMode;
    wait_completed(east, "zstd-data", key, v).await;
    let head = |c: &Client| {
        let c = c.clone();
        let (k, v) = (key.to_owned(), v.to_owned());
        async move {
            let h = c
                .head_object()
                .bucket("zstd-data")
                .key(k)
                .version_id(v)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .unwrap();
            (
                h.e_tag().map(str::to_owned),
                h.content_length(),
                h.checksum_crc64_nvme().map(str::to_owned),
                h.checksum_crc32_c().map(str::to_owned),
                h.checksum_type().map(|t| t.as_str().to_owned()),
            )
        }
    };
    assert_eq!(head(east).await, head(west).await, "{key}");
    assert!(
        get_bytes(east, "zstd-data", key, v).await == get_bytes(west, "zstd-data", key, v).await,
        "{key}"
    );
}

#[tokio::test]
async fn a_compressed_link_sends_text_in_fewer_bytes_and_stays_exact() {
    let regions = Regions::start(RegionsOptions {
        peer_extra: "compression = \"zstd\"".into(),
        replication: "part_size = \"5MiB\"".into(),
        ..RegionsOptions::one_way(2)
    });
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, "zstd-data").await;
    versioned_bucket(&west, "zstd-data").await;
    put_rules(
        &east,
        "zstd-data",
        vec![rule_to("west", "zstd-data", "all", 1, true)],
    )
    .await;

    let small_text = put(&east, "zstd-data", "small.txt", text(2 << 20, 1)).await;
    let random = put(&east, "zstd-data", "random.bin", pattern(3 << 20, 2)).await;
    // 12 MiB single-part text: split into 5 MiB parts on the way, each compressed.
    let big_text = put(&east, "zstd-data", "big.txt", text(12 << 20, 3)).await;
    // A multipart text object with CRC32C parts.
    let id = east
        .create_multipart_upload()
        .bucket("zstd-data")
        .key("parts.txt")
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32C)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let mut parts = Vec::new();
    for n in 1..=2 {
        let out = east
            .upload_part()
            .bucket("zstd-data")
            .key("parts.txt")
            .upload_id(&id)
            .part_number(n)
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32C)
            .body(text(5 << 20, n as u64 * 100).into())
            .send()
            .await
            .unwrap();
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap())
                .checksum_crc32_c(out.checksum_crc32_c().unwrap())
                .build(),
        );
    }
    let multipart = east
        .complete_multipart_upload()
        .bucket("zstd-data")
        .key("parts.txt")
        .upload_id(&id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();

    for (key, v) in [
        ("small.txt", &small_text),
        ("random.bin", &random),
        ("big.txt", &big_text),
        ("parts.txt", &multipart),
    ] {
        same_on_both(&east, &west, key, v).await;
    }
    let metrics = meridian_tests::metrics(&regions.servers[0]);
    let sent: f64 = metrics
        .lines()
        .find(|l| l.starts_with("meridian_replication_sent_bytes_total{peer=\"west\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .expect("sent bytes metric");
    let text_bytes = (2 + 12 + 10) << 20;
    let random_bytes = 3 << 20;
    assert!(
        sent < (random_bytes as f64) * 1.01 + (text_bytes as f64) / 4.0,
        "text went compressed, random bytes as they are: {sent} bytes on the wire"
    );
    assert!(
        sent >= random_bytes as f64,
        "random bytes do not shrink: {sent}"
    );
}

#[tokio::test]
async fn a_fenced_region_refuses_client_writes_takes_replicas_and_stays_fenced_across_a_restart() {
    let mut regions = Regions::start(RegionsOptions::active_active());
    let (east, west) = (regions.client(0), regions.client(1));
    replicated_both_ways(&east, &west, "shared").await;
    let before = put(&east, "shared", "before", b"1".to_vec()).await;

    let fence = |endpoint: &str, action: &str| {
        meridian_tests::raw::send_signed(
            endpoint,
            "POST",
            &format!("/_meridian/{action}"),
            &[],
            b"",
            aws_sigv4::http_request::SignableBody::Bytes(b""),
            meridian_tests::ACCESS_KEY,
            meridian_tests::SECRET_KEY,
        )
    };
    let east_endpoint = regions.servers[0].endpoint.clone();
    assert_eq!(fence(&east_endpoint, "fence").status, 200);
    let refused = east
        .put_object()
        .bucket("shared")
        .key("during")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        meridian_tests::error_code(&refused).as_deref(),
        Some("SlowDown")
    );
    assert_eq!(meridian_tests::error_status(&refused), Some(503));
    assert!(
        east.delete_object()
            .bucket("shared")
            .key("before")
            .send()
            .await
            .is_err(),
        "deletes are writes too"
    );
    // Reads go on, and the peer's writes still arrive.
    assert_eq!(get_bytes(&east, "shared", "before", &before).await, b"1");
    let from_west = put(&west, "shared", "from-west", b"2".to_vec()).await;
    checkpoint(&regions.servers[1].endpoint, "east", SETTLE);
    assert_eq!(
        replication_status(&east, "shared", "from-west", &from_west)
            .await
            .as_deref(),
        Some("REPLICA")
    );

    regions.servers[0].stop();
    regions.servers[0].restart();
    let east = regions.client(0);
    let still = east
        .put_object()
        .bucket("shared")
        .key("after-restart")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        meridian_tests::error_code(&still).as_deref(),
        Some("SlowDown"),
        "the fence survives a restart"
    );

    assert_eq!(fence(&east_endpoint, "unfence").status, 200);
    put(&east, "shared", "after", b"3".to_vec()).await;
}
