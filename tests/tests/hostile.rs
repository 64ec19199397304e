//! Clients that attack rather than use: request heads that never end (slowloris), idle
//! sockets by the hundred, bodies trickled a byte at a time, more connections than allowed,
//! input that once panicked a handler. Each is cut within its limit, counted in the metrics,
//! stores nothing, and the server keeps answering others throughout (a health probe and a
//! real GET within 1 s).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use meridian_tests::{
    error_code, error_status, metrics, ServerOptions, TestServer, ACCESS_KEY, SECRET_KEY,
};

fn address(server: &TestServer) -> String {
    server.endpoint.trim_start_matches("http://").to_owned()
}

/// A server with short limits, so that tests see them act within seconds.
fn server_with(limits: &str) -> TestServer {
    TestServer::start_with(ServerOptions {
        extra_config: format!("[limits]\n{limits}\n"),
        ..ServerOptions::default()
    })
}

/// Whether the server closed `stream` within `limit` (EOF or reset on read).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // A response (408, 400) is fine; the close must follow.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// The server still serves others promptly: a health probe and a real GET, each within 1 s.
async fn responsive(server: &TestServer, _s3: &Client) {
    // A client of its own: a pooled connection left idle past a short header timeout is
    // closed by the server, and these clients do not retry.
    let s3 = server.client();
    let started = Instant::now();
    let (code, _) =
        meridian_tests::anonymous_request(&server.endpoint, "GET", "/_meridian/health/ready");
    assert_eq!(code, 200);
    let got = s3
        .get_object()
        .bucket("data")
        .key("present")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"here"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered in {:?}",
        started.elapsed()
    );
}

/// A health probe on a connection of its own; false when the server closed it unanswered.
fn health_on_a_new_connection(server: &TestServer) -> bool {
    let Ok(mut s) = TcpStream::connect(address(server)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_meridian/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}

async fn with_data(server: &TestServer) -> Client {
    let s3 = server.client();
    s3.create_bucket().bucket("data").send().await.unwrap();
    s3.put_object()
        .bucket("data")
        .key("present")
        .body(b"here".to_vec().into())
        .send()
        .await
        .unwrap();
    s3
}

/// The value of a metric line starting with `series`.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not in:\n{text}"))
}

#[tokio::test]
async fn request_heads_that_never_end_are_cut_and_others_are_served_meanwhile() {
    let server = server_with("header_timeout = \"2s\"");
    let s3 = with_data(&server).await;
    // 300 connections that send half a request head and stall.
    let mut stalled: Vec<TcpStream> = (0..300)
        .map(|i| {
            let mut s = TcpStream::connect(address(&server)).unwrap();
            s.write_all(
                format!("GET /data/present HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ").as_bytes(),
            )
            .unwrap();
            s
        })
        .collect();
    responsive(&server, &s3).await;
    // And one that is merely idle between requests (keep-alive).
    let mut idle = TcpStream::connect(address(&server)).unwrap();
    idle.write_all(b"GET /_meridian/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    for s in stalled.iter_mut().chain(std::iter::once(&mut idle)) {
        assert!(
            closed_within(s, Duration::from_secs(10)),
            "cut after the header timeout"
        );
    }
    responsive(&server, &s3).await;
    let m = metrics(&server);
    assert!(
        metric(&m, "meridian_connections_timed_out_total") >= 300.0,
        "{m}"
    );
}

#[tokio::test]
async fn a_body_trickled_a_byte_at_a_time_is_cut_and_stores_nothing() {
    let server = server_with(
        "body_idle_timeout = \"10s\"\nmin_body_rate = \"1KiB\"\nbody_rate_window = \"2s\"",
    );
    let s3 = with_data(&server).await;
    let mut request = meridian_tests::raw::open_signed(
        &address(&server),
        &address(&server),
        "PUT",
        "/data/trickled",
        &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD".into())],
        1 << 20,
        aws_sigv4::http_request::SignableBody::UnsignedPayload,
        (ACCESS_KEY, SECRET_KEY),
        std::time::SystemTime::now(),
    );
    // One byte every 100 ms (10 B/s, against 1 KiB/s) until the server gives up, bounded.
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(20) {
        if request.try_write(b"x").is_err() {
            break;
        }
        sent += 1;
        if sent % 10 == 0 {
            responsive(&server, &s3).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let response = request.finish_or_closed();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "cut after about one window, not left to run: {:?}",
        started.elapsed()
    );
    assert_ne!(response.status, 200, "{}", response.body);
    let err = s3
        .head_object()
        .bucket("data")
        .key("trickled")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), Some(404), "nothing stored");
    let m = metrics(&server);
    assert!(
        metric(&m, "meridian_request_bodies_cut_total{reason=\"too_slow\"}") >= 1.0,
        "{m}"
    );
    responsive(&server, &s3).await;
}

#[tokio::test]
async fn connections_beyond_the_per_client_limit_are_closed_at_once() {
    let server = server_with("max_connections_per_client = 50");
    let s3 = with_data(&server).await;
    // The SDK's pooled connections count too: hold 40 idle sockets, then open more.
    let held: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(address(&server)).unwrap())
        .collect();
    let mut extra: Vec<TcpStream> = (0..30)
        .map(|_| TcpStream::connect(address(&server)).unwrap())
        .collect();
    let mut refused = 0;
    for s in extra.iter_mut() {
        if closed_within(s, Duration::from_secs(1)) {
            refused += 1;
        }
    }
    assert!(
        refused >= 20,
        "at most 50 open: {refused} of 30 extra closed"
    );
    // Freed places are taken again: a new connection is served.
    drop(held);
    drop(extra);
    meridian_tests::regions::wait_for(Duration::from_secs(10), "a place to free up", || async {
        health_on_a_new_connection(&server).then_some(())
    })
    .await;
    let m = metrics(&server);
    assert!(
        metric(
            &m,
            "meridian_connections_refused_total{reason=\"per_client\"}"
        ) >= 20.0,
        "{m}"
    );
    responsive(&server, &s3).await;
}

#[tokio::test]
async fn a_policy_with_an_empty_principal_is_malformed_not_a_dropped_connection() {
    let server = TestServer::start();
    let s3 = with_data(&server).await;
    let err = s3
        .put_bucket_policy()
        .bucket("data")
        .policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{},"Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*"}]}"#,
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("MalformedPolicy"));
    assert!(
        s3.get_bucket_policy().bucket("data").send().await.is_err(),
        "nothing stored"
    );
    responsive(&server, &s3).await;
}

#[tokio::test]
async fn a_hung_disk_check_makes_the_node_unready_within_a_second_not_hung() {
    // The disk check of the readiness probe sleeps 5 s first: a disk that hangs.
    let server = TestServer::start_with(ServerOptions {
        env: vec![("MERIDIAN_FAULT_DISK_CHECK_DELAY_MS".into(), "5000".into())],
        ..ServerOptions::default()
    });
    let s3 = with_data(&server).await;
    for probe in 0..3 {
        let started = Instant::now();
        let (code, body) =
            meridian_tests::anonymous_request(&server.endpoint, "GET", "/_meridian/health/ready");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "probe {probe} took {:?}",
            started.elapsed()
        );
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("disk check"), "{body}");
        let (live, _) =
            meridian_tests::anonymous_request(&server.endpoint, "GET", "/_meridian/health/live");
        assert_eq!(live, 200);
    }
    // Requests are served all the while.
    let got = s3
        .get_object()
        .bucket("data")
        .key("present")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"here"
    );
}

#[tokio::test]
async fn uploads_over_the_admission_limit_get_slow_down_and_reads_go_on() {
    let server = server_with("max_uploads = 1");
    let s3 = with_data(&server).await;
    // One upload in flight, its body sent slowly but steadily, holds the only place.
    let body = vec![b'a'; 64 * 1024];
    let mut held = meridian_tests::raw::open_signed(
        &address(&server),
        &address(&server),
        "PUT",
        "/data/held",
        &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD".into())],
        body.len(),
        aws_sigv4::http_request::SignableBody::UnsignedPayload,
        (ACCESS_KEY, SECRET_KEY),
        std::time::SystemTime::now(),
    );
    held.write(&body[..1024]);
    // The server must have admitted it before the next upload comes.
    meridian_tests::regions::wait_for(
        Duration::from_secs(10),
        "the held upload to be admitted",
        || async { (metric(&metrics(&server), "meridian_uploads_in_flight") >= 1.0).then_some(()) },
    )
    .await;
    let err = meridian_tests::regions::wait_for(Duration::from_secs(10), "a SlowDown", || async {
        s3.put_object()
            .bucket("data")
            .key("second")
            .body(b"x".to_vec().into())
            .send()
            .await
            .err()
    })
    .await;
    assert_eq!(error_code(&err).as_deref(), Some("SlowDown"));
    assert_eq!(error_status(&err), Some(503));
    let retry_after = err
        .raw_response()
        .and_then(|r| r.headers().get("retry-after"))
        .map(str::to_owned);
    assert_eq!(retry_after.as_deref(), Some("1"));
    responsive(&server, &s3).await;
    let m = metrics(&server);
    assert!(
        metric(&m, "meridian_requests_refused_total{reason=\"uploads\"}") >= 1.0,
        "{m}"
    );

    held.write(&body[1024..]);
    assert_eq!(held.finish().status, 200);
    s3.put_object()
        .bucket("data")
        .key("second")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
}

/// A TCP connection to `server` from the loopback address `source` (another client address).
fn connect_from(server: &TestServer, source: [u8; 4]) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&std::net::SocketAddr::from((source, 0)).into())?;
    let target: std::net::SocketAddr = address(server).parse().expect("an address");
    socket.connect(&target.into())?;
    Ok(socket.into())
}

#[tokio::test]
async fn thousands_of_idle_connections_from_one_address_leave_everyone_else_served() {
    let server = server_with("header_timeout = \"3s\"");
    let s3 = with_data(&server).await;
    // 2,000 sockets from 127.0.0.2 that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        match connect_from(&server, [127, 0, 0, 2]) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect {}: {e}", idle.len()),
        }
    }
    // Clients at other addresses are served, promptly, while they are held, and the server
    // never holds more of them than max_connections_per_client (1024).
    responsive(&server, &s3).await;
    let m = metrics(&server);
    assert!(
        metric(&m, "meridian_connections_open") <= 1024.0 + 8.0,
        "{m}"
    );
    // The admitted ones are closed by the header timeout; nothing is left open.
    // Each was refused at accept or closed for sending nothing within the header timeout.
    meridian_tests::regions::wait_for(
        Duration::from_secs(30),
        "the idle ones to be closed",
        || async {
            let m = metrics(&server);
            let shed = metric(
                &m,
                "meridian_connections_refused_total{reason=\"per_client\"}",
            ) + metric(&m, "meridian_connections_timed_out_total");
            (metric(&m, "meridian_connections_open") <= 8.0 && shed >= 2_000.0).then_some(())
        },
    )
    .await;
    drop(idle);
    responsive(&server, &s3).await;
}

/// Sends raw bytes on a new connection; the status code answered (0 when the server closed
/// the connection without an answer).
fn raw_status(server: &TestServer, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(address(server)).unwrap();
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    std::str::from_utf8(&answer)
        .ok()
        .and_then(|a| a.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn oversize_heads_queries_and_xml_bodies_are_refused_and_change_nothing() {
    let server = TestServer::start();
    let s3 = with_data(&server).await;
    // A 1 MiB header value.
    let mut head = b"GET /data/present HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 1 << 20));
    head.extend_from_slice(b"\r\n\r\n");
    let status = raw_status(&server, &head);
    assert!(status == 0 || status == 431 || status == 400, "{status}");
    // A 1 MiB query string.
    let mut query = b"GET /data?".to_vec();
    query.extend(std::iter::repeat_n(b'q', 1 << 20));
    query.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let status = raw_status(&server, &query);
    assert!(status == 0 || (400..500).contains(&status), "{status}");
    // A 40 MiB XML body for an operation that reads its body whole.
    let body = {
        let mut b = b"<Delete>".to_vec();
        while b.len() < 40 << 20 {
            b.extend_from_slice(b"<Object><Key>present</Key></Object>");
        }
        b.extend_from_slice(b"</Delete>");
        b
    };
    let mut request = meridian_tests::raw::open_signed(
        &address(&server),
        &address(&server),
        "POST",
        "/data?delete",
        &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD".into())],
        body.len(),
        aws_sigv4::http_request::SignableBody::UnsignedPayload,
        (ACCESS_KEY, SECRET_KEY),
        std::time::SystemTime::now(),
    );
    // The server may refuse before reading it all: a write error is part of the answer.
    let _ = request.try_write(&body);
    let resp = request.finish_or_closed();
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(
        resp.body.contains("MaxMessageLengthExceeded"),
        "{}",
        resp.body
    );
    // Nothing was deleted (responsive reads "present").
    responsive(&server, &s3).await;
}

#[tokio::test]
async fn truncated_and_forged_uploads_store_nothing() {
    let server = TestServer::start();
    let s3 = with_data(&server).await;
    // Half the declared body, then the client goes away.
    let mut truncated = meridian_tests::raw::open_signed(
        &address(&server),
        &address(&server),
        "PUT",
        "/data/truncated",
        &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD".into())],
        1 << 20,
        aws_sigv4::http_request::SignableBody::UnsignedPayload,
        (ACCESS_KEY, SECRET_KEY),
        std::time::SystemTime::now(),
    );
    truncated.write(&vec![b't'; 512 * 1024]);
    let resp = truncated.finish_or_closed();
    assert_ne!(resp.status, 200);
    // A body whose signed SHA-256 is not its own.
    let forged = meridian_tests::raw::send_signed(
        &server.endpoint,
        "PUT",
        "/data/forged",
        &[(
            "x-amz-content-sha256",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        )],
        b"not the empty body that hash is of",
        aws_sigv4::http_request::SignableBody::Precomputed(
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        ),
        ACCESS_KEY,
        SECRET_KEY,
    );
    assert_eq!(forged.status, 400, "{}", forged.body);
    assert!(
        forged.body.contains("XAmzContentSHA256Mismatch"),
        "{}",
        forged.body
    );
    // An aws-chunked body whose chunks hold less than the declared decoded length: s3s ends
    // such a body as if complete, the server must not store it.
    // Its one chunk and trailer are well formed (the CRC32 is of "hello").
    let short = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n".to_vec();
    let trailer_upload = |key: &str, declared: &str| {
        meridian_tests::raw::send_signed(
            &server.endpoint,
            "PUT",
            &format!("/data/{key}"),
            &[
                (
                    "x-amz-content-sha256",
                    "STREAMING-UNSIGNED-PAYLOAD-TRAILER".into(),
                ),
                ("content-encoding", "aws-chunked".into()),
                ("x-amz-decoded-content-length", declared.into()),
                ("x-amz-trailer", "x-amz-checksum-crc32".into()),
            ],
            &short,
            aws_sigv4::http_request::SignableBody::Precomputed(
                "STREAMING-UNSIGNED-PAYLOAD-TRAILER".into(),
            ),
            ACCESS_KEY,
            SECRET_KEY,
        )
    };
    let chunked = trailer_upload("short-chunks", "1000");
    assert_eq!(chunked.status, 400, "{}", chunked.body);
    assert!(chunked.body.contains("IncompleteBody"), "{}", chunked.body);
    // And one whose chunks hold more than it declared.
    let long = trailer_upload("long-chunks", "2");
    assert_eq!(long.status, 400, "{}", long.body);
    for key in ["truncated", "forged", "short-chunks", "long-chunks"] {
        let err = s3
            .head_object()
            .bucket("data")
            .key(key)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_status(&err), Some(404), "{key}: nothing stored");
    }
    responsive(&server, &s3).await;
}

#[tokio::test]
async fn a_flood_of_small_requests_above_the_admission_limit_gets_answers_not_failures() {
    let audit = tempfile::tempdir().unwrap();
    let audit_path = audit.path().join("audit.log");
    let server = TestServer::start_with(ServerOptions {
        extra_config: format!(
            "[limits]\nmax_requests = 2\n[audit]\npath = \"{}\"\n",
            audit_path.display()
        ),
        ..ServerOptions::default()
    });
    let s3 = with_data(&server).await;
    let outcomes = futures::future::join_all((0..200).map(|_| {
        let s3 = s3.clone();
        async move {
            match s3.get_object().bucket("data").key("present").send().await {
                Ok(_) => "ok".to_owned(),
                Err(e) => error_code(&e).unwrap_or_else(|| format!("{e:?}")),
            }
        }
    }))
    .await;
    let slow = outcomes.iter().filter(|o| *o == "SlowDown").count();
    assert!(
        outcomes.iter().all(|o| o == "ok" || o == "SlowDown"),
        "every request is served or told to slow down: {outcomes:?}"
    );
    eprintln!("{slow} of 200 told to slow down");
    responsive(&server, &s3).await;
    // Each refusal is in the audit log like any other answer.
    if slow > 0 {
        meridian_tests::regions::wait_for(
            Duration::from_secs(10),
            "the refusals audited",
            || async {
                let text = std::fs::read_to_string(&audit_path).unwrap_or_default();
                let audited = text.lines().filter(|l| l.contains("\"SlowDown\"")).count();
                (audited == slow).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn ten_thousand_idle_connections_are_held_without_harm_and_then_shed() {
    // Limits above the flood: the server holds them all, then sheds them itself.
    let server = server_with(
        "header_timeout = \"15s\"\nmax_connections = 20000\nmax_connections_per_client = 20000",
    );
    let s3 = with_data(&server).await;
    let started = Instant::now();
    let idle: Vec<TcpStream> = (0..10_000)
        .map(|i| {
            TcpStream::connect(address(&server)).unwrap_or_else(|e| panic!("connect {i}: {e}"))
        })
        .collect();
    meridian_tests::regions::wait_for(
        Duration::from_secs(30),
        "10,000 connections held",
        || async {
            (metric(&metrics(&server), "meridian_connections_open") >= 10_000.0).then_some(())
        },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "all held before any was due to be shed: {:?}",
        started.elapsed()
    );
    responsive(&server, &s3).await;
    meridian_tests::regions::wait_for(
        Duration::from_secs(60),
        "the idle ones to be shed",
        || async {
            let m = metrics(&server);
            (metric(&m, "meridian_connections_open") <= 8.0
                && metric(&m, "meridian_connections_timed_out_total") >= 10_000.0)
                .then_some(())
        },
    )
    .await;
    drop(idle);
    responsive(&server, &s3).await;
}
