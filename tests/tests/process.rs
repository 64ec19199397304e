//! The server's life: health probes, graceful shutdown on SIGTERM that lets in-flight
//! requests finish, and a restart that finds everything.

use std::time::Duration;

use meridian_tests::{pattern, ServerOptions, TestServer};

fn http_get(endpoint: &str, path: &str) -> (u16, String) {
    meridian_tests::anonymous_request(endpoint, "GET", path)
}

#[tokio::test]
async fn health_endpoints_report_live_and_ready() {
    let server = TestServer::start();
    assert_eq!(http_get(&server.endpoint, "/_meridian/health/live").0, 200);
    assert_eq!(http_get(&server.endpoint, "/_meridian/health/ready").0, 200);
    assert_eq!(http_get(&server.endpoint, "/_meridian/nothing").0, 404);

    // A 4+2 set needs five disks for writes: with two gone it is alive but not ready.
    std::fs::remove_dir_all(server.disk_dir(0)).unwrap();
    std::fs::remove_dir_all(server.disk_dir(1)).unwrap();
    assert_eq!(http_get(&server.endpoint, "/_meridian/health/live").0, 200);
    let (status, body) = http_get(&server.endpoint, "/_meridian/health/ready");
    assert_eq!(status, 503, "{body}");
}

#[tokio::test]
async fn the_admin_prefix_is_no_bucket() {
    let server = TestServer::start();
    let s3 = server.client();
    // Path style: the admin route answers for `/_meridian`, root or not.
    let created = s3.create_bucket().bucket("_meridian").send().await;
    assert!(created.is_err(), "{created:?}");
    let (status, _) = meridian_tests::anonymous_request(&server.endpoint, "PUT", "/_meridian");
    assert_eq!(status, 403);
    // Virtual-hosted style: refused as an invalid name.
    let port = server.endpoint.rsplit(':').next().unwrap();
    let out = meridian_tests::output_within(
        std::process::Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "-H",
            &format!("Host: _meridian.localhost:{port}"),
            &format!("{}/", server.endpoint),
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400");
    let buckets = s3.list_buckets().send().await.unwrap();
    assert!(buckets.buckets().is_empty(), "{buckets:?}");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_restart_finds_everything() {
    let mut server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("life").send().await.unwrap();
    let big = pattern(48 << 20, 5);
    s3.put_object()
        .bucket("life")
        .key("big")
        .body(big.clone().into())
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket("life")
        .key("small")
        .body(b"tiny".to_vec().into())
        .send()
        .await
        .unwrap();

    // Start a large download, read a little of it, then ask the server to stop.
    let mut out = s3
        .get_object()
        .bucket("life")
        .key("big")
        .send()
        .await
        .unwrap();
    let mut received = Vec::with_capacity(big.len());
    received.extend_from_slice(&out.body.next().await.unwrap().unwrap());
    server.signal(rustix::process::Signal::TERM);
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Some(chunk) = out.body.next().await {
        received.extend_from_slice(&chunk.unwrap());
    }
    assert!(
        received == big,
        "the in-flight download completed intact during shutdown"
    );
    let status = server.stop_wait();
    assert!(
        status.success(),
        "clean exit after SIGTERM: {status:?}\n{}",
        server.log()
    );
    assert!(server.log().contains("stopped"), "{}", server.log());

    server.restart();
    let s3 = server.client();
    let got = s3
        .get_object()
        .bucket("life")
        .key("small")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"tiny"
    );
    let got = s3
        .get_object()
        .bucket("life")
        .key("big")
        .send()
        .await
        .unwrap();
    assert!(got.body.collect().await.unwrap().into_bytes().as_ref() == big.as_slice());
}

#[tokio::test]
async fn single_disk_store_works() {
    let server = TestServer::start_with(ServerOptions {
        erasure: "1+0".into(),
        ..ServerOptions::default()
    });
    let s3 = server.client();
    s3.create_bucket().bucket("one").send().await.unwrap();
    let data = pattern(2 << 20, 8);
    s3.put_object()
        .bucket("one")
        .key("k")
        .body(data.clone().into())
        .send()
        .await
        .unwrap();
    let got = s3.get_object().bucket("one").key("k").send().await.unwrap();
    assert!(got.body.collect().await.unwrap().into_bytes().as_ref() == data.as_slice());
    assert!(server.disk_dir(0).exists() && !server.disk_dir(1).exists());
}

#[tokio::test]
async fn a_second_server_on_the_same_data_refuses_to_start() {
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("owned").send().await.unwrap();
    s3.put_object()
        .bucket("owned")
        .key("k")
        .body(pattern(3 << 20, 2).into())
        .send()
        .await
        .unwrap();

    let mut cmd = std::process::Command::new(meridian_tests::meridian_binary());
    cmd.args(["serve", "--address", "127.0.0.1:0", "--data"])
        .arg(&server.data_dir)
        .env("MERIDIAN_LOG", "warn");
    let out = meridian_tests::output_within(&mut cmd, Duration::from_secs(30));
    assert!(!out.status.success(), "the second server must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_ascii_lowercase().contains("lock"), "{stderr}");

    let got = s3
        .get_object()
        .bucket("owned")
        .key("k")
        .send()
        .await
        .unwrap();
    assert!(
        got.body.collect().await.unwrap().into_bytes().as_ref() == pattern(3 << 20, 2).as_slice()
    );
}

#[tokio::test]
async fn a_second_server_on_the_same_disks_with_other_metadata_refuses_to_start() {
    let server = TestServer::start();
    let other_meta = tempfile::tempdir().unwrap();
    let config = other_meta.path().join("meridian.toml");
    std::fs::write(
        &config,
        format!(
            "[metadata]\npath = \"{}\"\n",
            other_meta.path().join("meta").display()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(meridian_tests::meridian_binary());
    cmd.args(["serve", "--address", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(&server.data_dir)
        .env("MERIDIAN_LOG", "warn");
    let out = meridian_tests::output_within(&mut cmd, Duration::from_secs(30));
    assert!(!out.status.success(), "the second server must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("locked by another meridian process"),
        "{stderr}"
    );
    let s3 = server.client();
    s3.create_bucket()
        .bucket("still-mine")
        .send()
        .await
        .unwrap();
}
