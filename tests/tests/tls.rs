//! HTTPS end to end: the S3 listener over TLS with a private CA made in the test, the SDK's
//! default checksums (aws-chunked trailers) over it, certificate reload on SIGHUP without
//! dropping connections, the plain-HTTP health listener, and replication between regions
//! over HTTPS — refused, visibly, when the peer's certificate comes from another CA.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use meridian_tests::regions::{self, replicated_bucket, wait_identical, Regions, RegionsOptions};
use meridian_tests::tls::{rustls_client, TestCa};
use meridian_tests::{
    completed_parts, create_upload, free_port, pattern, read_object, upload_part, ServerOptions,
    TestServer,
};

fn https_server(ca: &TestCa, extra: &str) -> TestServer {
    TestServer::start_with(ServerOptions {
        extra_config: extra.into(),
        tls: Some((ca.issue(), ca.ca_pem().to_owned())),
        ..ServerOptions::default()
    })
}

/// A TLS connection to `endpoint` (`https://127.0.0.1:PORT`) offering `alpn`.
fn connect(
    endpoint: &str,
    ca: &TestCa,
    alpn: &[&[u8]],
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let addr = endpoint.trim_start_matches("https://");
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn = rustls::ClientConnection::new(
        Arc::new(rustls_client(ca.ca_pem(), alpn)),
        "localhost".try_into().unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// The certificate the server presented on this connection.
fn presented(tls: &rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> Vec<u8> {
    tls.conn.peer_certificates().unwrap()[0].to_vec()
}

/// One keep-alive HTTP/1.1 GET of the liveness probe on an open connection; the status.
fn probe(stream: &mut impl ReadWrite) -> u16 {
    stream
        .write_all(b"GET /_meridian/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    // The probe answers `ok\n` with a Content-Length: read until the head and body are in.
    while !(buf.ends_with(b"ok\n")
        || buf.ends_with(b"\r\n\r\n") && buf.starts_with(b"HTTP/1.1 404"))
    {
        let n = stream.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 4096 {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    head[9..12].parse().unwrap()
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[tokio::test]
async fn s3_over_https_with_the_sdk_default_checksums() {
    let ca = TestCa::new("a");
    let server = https_server(&ca, "");
    assert!(
        server.endpoint.starts_with("https://"),
        "{}",
        server.endpoint
    );
    let s3 = server.client();
    s3.create_bucket().bucket("secure").send().await.unwrap();

    // The SDK sends its default CRC32 as an aws-chunked trailer; an explicit algorithm too.
    let body = pattern(3 * 1024 * 1024 + 7, 1);
    s3.put_object()
        .bucket("secure")
        .key("default")
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    let put = s3
        .put_object()
        .bucket("secure")
        .key("crc32c")
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    assert!(put.checksum_crc32_c().is_some());
    assert_eq!(read_object(&s3, "secure", "default").await, body);
    assert_eq!(read_object(&s3, "secure", "crc32c").await, body);

    // Multipart.
    let id = create_upload(&s3, "secure", "big").await;
    let (p1, p2) = (pattern(5 << 20, 2), pattern(1000, 3));
    let e1 = upload_part(&s3, "secure", "big", &id, 1, &p1).await;
    let e2 = upload_part(&s3, "secure", "big", &id, 2, &p2).await;
    s3.complete_multipart_upload()
        .bucket("secure")
        .key("big")
        .upload_id(&id)
        .multipart_upload(completed_parts(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .unwrap();
    assert_eq!(read_object(&s3, "secure", "big").await, [p1, p2].concat());

    let listed = s3.list_objects_v2().bucket("secure").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(3));
    s3.delete_object()
        .bucket("secure")
        .key("big")
        .send()
        .await
        .unwrap();

    // Plain HTTP to the TLS port gets no S3 answer.
    let plain = meridian_tests::s3_client(
        &server.endpoint.replace("https://", "http://"),
        meridian_tests::ACCESS_KEY,
        meridian_tests::SECRET_KEY,
    );
    assert!(plain.list_buckets().send().await.is_err());
}

#[test]
fn alpn_offers_h2_and_http1_over_tls12_and_13() {
    let ca = TestCa::new("a");
    let server = https_server(&ca, "");
    let h2 = connect(&server.endpoint, &ca, &[b"h2", b"http/1.1"]);
    assert_eq!(h2.conn.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        h2.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let mut h1 = connect(&server.endpoint, &ca, &[b"http/1.1"]);
    assert_eq!(h1.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(probe(&mut h1), 200);

    // TLS 1.2 is served too.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca.ca_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(server.endpoint.trim_start_matches("https://")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut tls12 = rustls::StreamOwned::new(conn, tcp);
    assert_eq!(probe(&mut tls12), 200);
    assert_eq!(
        tls12.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

fn wait_for_log(server: &TestServer, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.log().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let ca = TestCa::new("a");
    let first = ca.issue();
    let server = TestServer::start_with(ServerOptions {
        tls: Some((first.clone(), ca.ca_pem().to_owned())),
        ..ServerOptions::default()
    });
    let mut before = connect(&server.endpoint, &ca, &[b"http/1.1"]);
    let old_cert = presented(&before);
    assert_eq!(probe(&mut before), 200);

    // Renewed in place, then SIGHUP.
    ca.issue_to(&first.cert, &first.key);
    server.signal(rustix::process::Signal::HUP);
    wait_for_log(&server, "TLS certificate reloaded", 1);
    let mut after = connect(&server.endpoint, &ca, &[b"http/1.1"]);
    let new_cert = presented(&after);
    assert_ne!(
        new_cert, old_cert,
        "new handshakes get the renewed certificate"
    );
    assert_eq!(probe(&mut after), 200);
    // The connection opened before the reload still serves requests.
    assert_eq!(probe(&mut before), 200);

    // A broken file is refused and the current certificate kept.
    std::fs::write(&first.key, "-----BEGIN PRIVATE KEY-----\nnot a key\n").unwrap();
    server.signal(rustix::process::Signal::HUP);
    wait_for_log(&server, "TLS certificate not reloaded", 1);
    let mut later = connect(&server.endpoint, &ca, &[b"http/1.1"]);
    assert_eq!(presented(&later), new_cert);
    assert_eq!(probe(&mut later), 200);
    assert_eq!(probe(&mut before), 200);
}

#[test]
fn the_health_listener_answers_probes_in_plain_http_and_nothing_else() {
    let ca = TestCa::new("a");
    let port = free_port();
    let server = https_server(&ca, &format!("health_address = \"127.0.0.1:{port}\"\n"));
    let get = |path: &str| {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            tcp,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).unwrap();
        out
    };
    assert!(get("/_meridian/health/live").starts_with("HTTP/1.1 200"));
    assert!(get("/_meridian/health/ready").starts_with("HTTP/1.1 200"));
    for path in [
        "/",
        "/bucket/key",
        "/_meridian/metrics",
        "/_meridian/replication/status",
    ] {
        let out = get(path);
        assert!(out.starts_with("HTTP/1.1 404"), "{path}: {out}");
    }
    drop(server);
}

#[tokio::test]
async fn regions_replicate_over_https_with_a_private_ca() {
    let ca = TestCa::new("a");
    let regions = Regions::start(RegionsOptions {
        tls: Some((ca.issue(), ca.ca_pem().to_owned())),
        peer_extra: format!("ca_file = \"{}\"", ca.ca_file().display()),
        ..RegionsOptions::one_way(2)
    });
    let (east, west) = (regions.client(0), regions.client(1));
    replicated_bucket(&east, &west, "west", "models").await;

    for i in 0..20u64 {
        east.put_object()
            .bucket("models")
            .key(format!("small/{i}"))
            .body(ByteStream::from(pattern(1000 + i as usize * 4000, i)))
            .send()
            .await
            .unwrap();
    }
    let id = create_upload(&east, "models", "weights").await;
    let e1 = upload_part(&east, "models", "weights", &id, 1, &pattern(5 << 20, 50)).await;
    let e2 = upload_part(&east, "models", "weights", &id, 2, &pattern(1 << 20, 51)).await;
    east.complete_multipart_upload()
        .bucket("models")
        .key("weights")
        .upload_id(&id)
        .multipart_upload(completed_parts(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .unwrap();

    let versions = wait_identical(&east, &west, "models", Duration::from_secs(120)).await;
    assert_eq!(versions.len(), 21);
    // The admin CLI speaks HTTPS too, trusting the CA it is given.
    let (ok, out) = regions::replication_cli_with(
        &regions.servers[0].endpoint,
        &["checkpoint", "--peer", "west", "--timeout", "60s"],
        &[("MERIDIAN_CA_FILE", ca.ca_file().to_str().unwrap())],
    );
    assert!(ok, "{out}");
}

#[tokio::test]
async fn a_peer_certificate_from_another_ca_is_refused_and_the_versions_stay_pending() {
    let ca = TestCa::new("a");
    let stranger = TestCa::new("b");
    let regions = Regions::start(RegionsOptions {
        tls: Some((ca.issue(), ca.ca_pem().to_owned())),
        // East trusts only the other CA, so west's certificate does not verify.
        peer_extra: format!("ca_file = \"{}\"", stranger.ca_file().display()),
        ..RegionsOptions::one_way(2)
    });
    let (east, west) = (regions.client(0), regions.client(1));
    replicated_bucket(&east, &west, "west", "models").await;
    let mut first_version = String::new();
    for i in 0..5u64 {
        let put = east
            .put_object()
            .bucket("models")
            .key(format!("k{i}"))
            .body(ByteStream::from(pattern(100, i)))
            .send()
            .await
            .unwrap();
        if i == 0 {
            first_version = put.version_id().unwrap().to_owned();
        }
    }

    let endpoint = &regions.servers[0].endpoint;
    let ca_file = ca.ca_file();
    let ca_env = [("MERIDIAN_CA_FILE", ca_file.to_str().unwrap())];
    let deadline = Instant::now() + Duration::from_secs(60);
    let peer = loop {
        let (ok, out) = regions::replication_cli_with(endpoint, &["status", "--json"], &ca_env);
        assert!(ok, "{out}");
        let status: serde_json::Value = serde_json::from_str(&out).unwrap();
        let peer = status["peers"][0].clone();
        if peer["last_error"].is_string() {
            break peer;
        }
        assert!(Instant::now() < deadline, "no error reported: {status:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(peer["versions"], 5, "{peer:#}");
    let reason = peer["last_error"].as_str().unwrap().to_lowercase();
    // e.g. "... tls handshake failed: invalid peer certificate: unknownissuer"
    assert!(
        reason.contains("invalid peer certificate") && reason.contains("unknownissuer"),
        "{reason}"
    );
    let status = regions::replication_status(&east, "models", "k0", &first_version).await;
    assert_eq!(status.as_deref(), Some("PENDING"));
    let listed = west
        .list_object_versions()
        .bucket("models")
        .send()
        .await
        .unwrap();
    assert!(listed.versions().is_empty());
}

#[tokio::test]
async fn a_peer_marked_tls_insecure_is_reached_unverified_and_warned_about() {
    let ca = TestCa::new("a");
    let regions = Regions::start(RegionsOptions {
        tls: Some((ca.issue(), ca.ca_pem().to_owned())),
        peer_extra: "tls_insecure = true".into(),
        ..RegionsOptions::one_way(2)
    });
    let (east, west) = (regions.client(0), regions.client(1));
    replicated_bucket(&east, &west, "west", "models").await;
    for i in 0..3u64 {
        east.put_object()
            .bucket("models")
            .key(format!("k{i}"))
            .body(ByteStream::from(pattern(200_000, i)))
            .send()
            .await
            .unwrap();
    }
    let id = create_upload(&east, "models", "big").await;
    let e1 = upload_part(&east, "models", "big", &id, 1, &pattern(5 << 20, 9)).await;
    east.complete_multipart_upload()
        .bucket("models")
        .key("big")
        .upload_id(&id)
        .multipart_upload(completed_parts(&[(1, &e1)]))
        .send()
        .await
        .unwrap();
    let versions = wait_identical(&east, &west, "models", Duration::from_secs(120)).await;
    assert_eq!(versions.len(), 4);
    let log = regions.servers[0].log();
    assert!(
        log.contains("tls_insecure") && log.contains("NOT verified"),
        "no warning in the log:\n{log}"
    );
}

#[tokio::test]
async fn sighup_without_tls_changes_nothing() {
    let server = TestServer::start();
    server.signal(rustix::process::Signal::HUP);
    wait_for_log(&server, "nothing to reload", 1);
    server.client().list_buckets().send().await.unwrap();
}
