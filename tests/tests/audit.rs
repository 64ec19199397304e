//! The audit log end to end: a scripted session against a real server, then every line
//! parsed and every field checked; rotation by size; replicas name their origin region.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::primitives::ByteStream;
use meridian_tests::regions::{
    replicated_bucket, replication_cli, versioned_bucket, wait_identical, Regions, RegionsOptions,
};
use meridian_tests::{error_code, pattern, ServerOptions, TestServer};
use serde_json::Value;

fn lines_of(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until `read` yields a line `matching`; returns it.
fn wait_line(
    read: impl Fn() -> Vec<Value>,
    what: &str,
    matching: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(line) = read().into_iter().find(&matching) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no audit line for {what}: {:#?}",
            read()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_file(path: &Path) -> Vec<Value> {
    lines_of(&std::fs::read_to_string(path).unwrap_or_default())
}

#[tokio::test]
async fn a_scripted_session_is_audited_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit/audit.log");
    let server = TestServer::start_with(ServerOptions {
        extra_config: format!(
            "[[users]]\naccess_key = \"reader\"\nsecret_key = \"reader-secret\"\n\
             grants = [{{ bucket = \"data\", access = \"read\" }}]\n\
             [audit]\npath = \"{}\"\n",
            path.display()
        ),
        ..ServerOptions::default()
    });
    let port = server.endpoint.rsplit(':').next().unwrap().to_owned();
    let root = server.client();
    let reader = server.client_for("reader", "reader-secret");
    let read = || read_file(&path);
    let started = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);

    versioned_bucket(&root, "data").await;
    let body = pattern(300 * 1024, 1);
    let put = root
        .put_object()
        .bucket("data")
        .key("dir/weights.bin")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let version = put.version_id().unwrap().to_owned();
    let got = root
        .get_object()
        .bucket("data")
        .key("dir/weights.bin")
        .send()
        .await
        .unwrap();
    let get_id = got.request_id().unwrap().to_owned();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().len(),
        body.len()
    );
    let missing = root
        .get_object()
        .bucket("data")
        .key("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&missing).as_deref(), Some("NoSuchKey"));
    let denied = reader
        .put_object()
        .bucket("data")
        .key("x")
        .body(ByteStream::from_static(b"no"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&denied).as_deref(), Some("AccessDenied"));
    let anonymous = meridian_tests::output_within(
        std::process::Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            &format!("{}/data/dir/weights.bin", server.endpoint),
        ]),
        Duration::from_secs(30),
    );
    assert!(anonymous.status.success());
    let (ok, out) = replication_cli(&server.endpoint, &["status", "--json"]);
    assert!(ok, "{out}");
    // An admin call by a user whose signature is good but who is not root: refused, and the
    // line names the principal s3s verified.
    let refused = meridian_tests::raw::send_signed(
        &server.endpoint,
        "GET",
        "/_meridian/replication/status",
        &[],
        b"",
        aws_sigv4::http_request::SignableBody::Bytes(b""),
        "reader",
        "reader-secret",
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("AccessDenied"), "{}", refused.body);
    // Not audited: probes and scrapes.
    let _ = meridian_tests::output_within(
        std::process::Command::new("curl")
            .args(["-s", &format!("{}/_meridian/health/live", server.endpoint)]),
        Duration::from_secs(30),
    );

    let put_line = wait_line(read, "PutObject", |l| {
        l["operation"] == "PutObject" && l["status"] == 200
    });
    assert_eq!(put_line["principal"], meridian_tests::ACCESS_KEY);
    assert_eq!(put_line["bucket"], "data");
    assert_eq!(put_line["key"], "dir/weights.bin");
    assert_eq!(put_line["version_id"], version.as_str());
    assert_eq!(put_line["bytes_in"], body.len() as u64);
    assert_eq!(put_line["error_code"], Value::Null);
    assert_eq!(put_line["secure"], false);
    assert_eq!(put_line["replica_origin"], Value::Null);
    assert!(put_line["source"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_ne!(
        put_line["source"].as_str().unwrap(),
        format!("127.0.0.1:{port}")
    );
    assert!(put_line["duration_ms"].as_f64().unwrap() > 0.0);
    let time = time::OffsetDateTime::parse(
        put_line["time"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        time >= started && time <= time::OffsetDateTime::now_utc(),
        "{time}"
    );
    assert_eq!(put_line["request_id"].as_str().unwrap().len(), 16);

    let get_line = wait_line(read, "GetObject", |l| l["request_id"] == get_id.as_str());
    assert_eq!(get_line["operation"], "GetObject");
    assert_eq!(get_line["status"], 200);
    assert_eq!(get_line["bytes_out"], body.len() as u64);
    assert_eq!(get_line["bytes_in"], 0);
    assert_eq!(get_line["version_id"], version.as_str());

    let missing_line = wait_line(read, "NoSuchKey", |l| l["key"] == "nope");
    assert_eq!(missing_line["status"], 404);
    assert_eq!(missing_line["error_code"], "NoSuchKey");
    assert!(
        missing_line["bytes_out"].as_u64().unwrap() > 0,
        "the error document was sent"
    );

    let denied_line = wait_line(read, "AccessDenied", |l| l["principal"] == "reader");
    assert_eq!(denied_line["operation"], "PutObject");
    assert_eq!(denied_line["status"], 403);
    assert_eq!(denied_line["error_code"], "AccessDenied");

    let anonymous_line = wait_line(read, "anonymous", |l| {
        l["principal"].is_null() && l["status"] == 403 && l["operation"] == "GetObject"
    });
    assert_eq!(anonymous_line["error_code"], "AccessDenied");

    let admin_line = wait_line(read, "admin", |l| {
        l["operation"] == "admin GET /_meridian/replication/status"
    });
    assert_eq!(admin_line["principal"], meridian_tests::ACCESS_KEY);
    assert_eq!(admin_line["status"], 200);
    let refused_line = wait_line(read, "refused admin", |l| {
        l["operation"] == "admin GET /_meridian/replication/status" && l["status"] == 403
    });
    assert_eq!(refused_line["principal"], "reader");
    assert_eq!(refused_line["error_code"], "AccessDenied");

    let all = read();
    assert!(all.iter().all(|l| {
        let op = l["operation"].as_str().unwrap();
        !op.contains("/_meridian/health") && !op.contains("/_meridian/metrics")
    }));
    for line in &all {
        for field in [
            "time",
            "request_id",
            "principal",
            "source",
            "operation",
            "bucket",
            "key",
            "version_id",
            "status",
            "error_code",
            "bytes_in",
            "bytes_out",
            "duration_ms",
            "replica_origin",
            "secure",
        ] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
    }
}

#[tokio::test]
async fn the_file_rotates_by_size_and_keeps_the_configured_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let server = TestServer::start_with(ServerOptions {
        extra_config: format!(
            "[audit]\npath = \"{}\"\nmax_size = \"2KiB\"\nkeep = 3\n",
            path.display()
        ),
        ..ServerOptions::default()
    });
    let s3 = server.client();
    s3.create_bucket().bucket("rot").send().await.unwrap();
    for i in 0..60 {
        s3.put_object()
            .bucket("rot")
            .key(format!("k{i}"))
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
    }
    // Rotation renames .3 to .4 before it removes the oldest: wait for a moment between.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.path().join("audit.log.3").exists() || dir.path().join("audit.log.4").exists() {
        assert!(
            Instant::now() < deadline,
            "not rotated three times, or more than three kept"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for name in ["audit.log.1", "audit.log.2", "audit.log.3"] {
        let file = dir.path().join(name);
        let size = std::fs::metadata(&file).unwrap().len();
        assert!(size <= 2 * 2048, "{name}: {size} bytes");
        assert!(read_file(&file).iter().all(|l| l["bucket"] == "rot"));
    }
}

#[tokio::test]
async fn lines_of_the_last_requests_are_written_before_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut server = TestServer::start_with(ServerOptions {
        extra_config: format!("[audit]\npath = \"{}\"\n", path.display()),
        ..ServerOptions::default()
    });
    let s3 = server.client();
    s3.create_bucket().bucket("last").send().await.unwrap();
    for i in 0..20 {
        s3.put_object()
            .bucket("last")
            .key(format!("k{i}"))
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
    }
    // SIGTERM at once: the writer is mid-gather, and must still write everything.
    assert!(server.stop().success());
    let lines = read_file(&path);
    let puts = lines
        .iter()
        .filter(|l| l["operation"] == "PutObject")
        .count();
    assert_eq!(puts, 20, "{lines:#?}");
}

#[tokio::test]
async fn replicas_name_the_region_they_came_from() {
    let regions = Regions::start(RegionsOptions {
        extra: "[audit]\npath = \"-\"\n".into(),
        ..RegionsOptions::one_way(2)
    });
    let (east, west) = (regions.client(0), regions.client(1));
    replicated_bucket(&east, &west, "west", "models").await;
    east.put_object()
        .bucket("models")
        .key("w")
        .body(ByteStream::from_static(b"weights"))
        .send()
        .await
        .unwrap();
    wait_identical(&east, &west, "models", Duration::from_secs(60)).await;
    let line = wait_line(
        || lines_of(&regions.servers[1].log()),
        "the replica",
        |l| l["operation"] == "PutObject" && l["key"] == "w",
    );
    assert_eq!(line["replica_origin"], "us-east-1");
    assert_eq!(line["principal"], meridian_tests::regions::REPLICATOR_KEY);
}
