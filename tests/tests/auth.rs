//! Authentication and access control end to end: unsigned and badly signed requests get
//! nothing, users see and touch only the buckets they are granted.

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use meridian_tests::{error_code, error_status, ServerOptions, TestServer};
use std::time::Duration;

fn server_with_users() -> TestServer {
    TestServer::start_with(ServerOptions {
        extra_config: r#"
[[users]]
access_key = "reader"
secret_key = "reader-secret-key"
grants = [{ bucket = "shared", access = "read" }]

[[users]]
access_key = "writer"
secret_key = "writer-secret-key"
grants = [{ bucket = "shared", access = "read-write" }, { bucket = "team-*", access = "read-write" }]
"#
        .into(),
        ..ServerOptions::default()
    })
}

#[tokio::test]
async fn unsigned_requests_are_denied() {
    let server = server_with_users();
    let root = server.client();
    root.create_bucket().bucket("shared").send().await.unwrap();
    root.put_object()
        .bucket("shared")
        .key("secret")
        .body(ByteStream::from_static(b"classified"))
        .send()
        .await
        .unwrap();

    for (method, path) in [
        ("GET", "/shared/secret"),
        ("GET", "/"),
        ("GET", "/shared"),
        ("PUT", "/shared/new"),
        ("DELETE", "/shared/secret"),
    ] {
        let req = meridian_tests::anonymous_request(&server.endpoint, method, path);
        assert_eq!(req.0, 403, "{method} {path} unsigned must be denied");
        assert!(!req.1.contains("classified"));
        assert!(req.1.contains("AccessDenied"), "{}", req.1);
    }
    let still_there = root
        .get_object()
        .bucket("shared")
        .key("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(
        still_there
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes()
            .as_ref(),
        b"classified"
    );
}

/// A minimal HTTP/1.1 client so the request is exactly what we say (no signing).
#[tokio::test]
async fn wrong_secret_and_unknown_key_are_rejected() {
    let server = server_with_users();
    let bad_secret = server.client_for(meridian_tests::ACCESS_KEY, "not-the-secret");
    let err = bad_secret.list_buckets().send().await.unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("SignatureDoesNotMatch"));
    let stranger = server.client_for("stranger", "whatever-secret");
    let err = stranger.list_buckets().send().await.unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidAccessKeyId"));
    assert_eq!(error_status(&err), Some(403));
}

#[tokio::test]
async fn grants_limit_users_to_their_buckets() {
    let server = server_with_users();
    let root = server.client();
    for b in ["shared", "private", "team-a"] {
        root.create_bucket().bucket(b).send().await.unwrap();
    }
    root.put_object()
        .bucket("private")
        .key("k")
        .body(ByteStream::from_static(b"p"))
        .send()
        .await
        .unwrap();

    let reader = server.client_for("reader", "reader-secret-key");
    let writer = server.client_for("writer", "writer-secret-key");

    let visible: Vec<_> = reader
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    assert_eq!(visible, ["shared"]);

    writer
        .put_object()
        .bucket("shared")
        .key("w")
        .body(ByteStream::from_static(b"w"))
        .send()
        .await
        .unwrap();
    let got = reader
        .get_object()
        .bucket("shared")
        .key("w")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"w"
    );

    let err = reader
        .put_object()
        .bucket("shared")
        .key("r")
        .body(ByteStream::from_static(b"r"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("AccessDenied"));
    let err = reader
        .delete_object()
        .bucket("shared")
        .key("w")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("AccessDenied"));
    let err = reader
        .get_object()
        .bucket("private")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("AccessDenied"));
    let err = writer
        .list_objects_v2()
        .bucket("private")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("AccessDenied"));

    writer
        .create_bucket()
        .bucket("team-b")
        .send()
        .await
        .unwrap();
    let err = writer
        .create_bucket()
        .bucket("elsewhere")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("AccessDenied"));
    let err = writer
        .copy_object()
        .bucket("team-a")
        .key("stolen")
        .copy_source("private/k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&err).as_deref(),
        Some("AccessDenied"),
        "copying needs read access to the source"
    );
}

#[tokio::test]
async fn presigned_get_works_until_it_expires() {
    let server = server_with_users();
    let root = server.client();
    root.create_bucket().bucket("shared").send().await.unwrap();
    root.put_object()
        .bucket("shared")
        .key("p")
        .body(ByteStream::from_static(b"presigned"))
        .send()
        .await
        .unwrap();
    let presigned = root
        .get_object()
        .bucket("shared")
        .key("p")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(1)).unwrap())
        .await
        .unwrap();
    let uri = presigned.uri().to_owned();
    let path = uri.trim_start_matches(&server.endpoint).to_owned();
    let (status, body) = meridian_tests::anonymous_request(&server.endpoint, "GET", &path);
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("presigned"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = meridian_tests::anonymous_request(&server.endpoint, "GET", &path);
    assert_eq!(status, 403);
    assert!(body.contains("AccessDenied") && !body.ends_with("presigned"));
}
