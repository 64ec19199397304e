//! Object reads and writes end to end: sizes across the inline threshold and stripe
//! boundaries, standard headers and user metadata, Content-MD5, conditional writes and reads,
//! ranges, response overrides and the errors S3 gives for each.

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use base64::Engine;
use md5::Digest;
use meridian_tests::{error_code, error_status, pattern, TestServer};

async fn setup(bucket: &str) -> (TestServer, aws_sdk_s3::Client) {
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    (server, s3)
}

async fn get_bytes(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

#[tokio::test]
async fn put_then_get_returns_same_bytes_for_every_size() {
    let (_server, s3) = setup("sizes").await;
    // Around the inline threshold (128 KiB) and the 1 MiB stripe, plus a few MiB with odd bytes.
    let sizes = [
        0usize,
        1,
        128 * 1024 - 1,
        128 * 1024,
        1 << 20,
        (1 << 20) + 1,
        5 * (1 << 20) + 333,
    ];
    for (i, size) in sizes.into_iter().enumerate() {
        let data = pattern(size, i as u64);
        let key = format!("obj-{size}");
        let put = s3
            .put_object()
            .bucket("sizes")
            .key(&key)
            .body(data.clone().into())
            .send()
            .await
            .unwrap();
        let expected_etag = format!("\"{}\"", hex::encode(md5::Md5::digest(&data)));
        assert_eq!(
            put.e_tag(),
            Some(expected_etag.as_str()),
            "ETag is the quoted MD5 for size {size}"
        );
        assert_eq!(get_bytes(&s3, "sizes", &key).await, data, "size {size}");
        let head = s3
            .head_object()
            .bucket("sizes")
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(size as i64));
        assert_eq!(head.e_tag(), Some(expected_etag.as_str()));
    }
}

#[tokio::test]
async fn standard_headers_and_user_metadata_round_trip() {
    let (server, s3) = setup("hdrs").await;
    s3.put_object()
        .bucket("hdrs")
        .key("doc.json")
        .body(b"{}".to_vec().into())
        .content_type("application/json")
        .content_encoding("identity")
        .content_disposition("attachment; filename=\"doc.json\"")
        .content_language("en")
        .cache_control("max-age=60")
        .expires(DateTime::from_secs(2_000_000_000))
        .metadata("model", "llama")
        .metadata("epoch", "7")
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("hdrs")
        .key("doc.json")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/json"));
    assert_eq!(head.content_encoding(), Some("identity"));
    assert_eq!(
        head.content_disposition(),
        Some("attachment; filename=\"doc.json\"")
    );
    assert_eq!(head.content_language(), Some("en"));
    assert_eq!(head.cache_control(), Some("max-age=60"));
    assert_eq!(head.expires_string(), Some("Wed, 18 May 2033 03:33:20 GMT"));
    let meta = head.metadata().unwrap();
    assert_eq!(meta.get("model").map(String::as_str), Some("llama"));
    assert_eq!(meta.get("epoch").map(String::as_str), Some("7"));
    assert!(head.last_modified().is_some());

    // Without a Content-Type (the SDK always sends one, so by hand) S3's default applies.
    let sent = meridian_tests::raw::send_signed(
        &server.endpoint,
        "PUT",
        "/hdrs/plain",
        &[],
        b"x",
        aws_sigv4::http_request::SignableBody::UnsignedPayload,
        meridian_tests::ACCESS_KEY,
        meridian_tests::SECRET_KEY,
    );
    assert_eq!(sent.status, 200, "{}", sent.body);
    let head = s3
        .head_object()
        .bucket("hdrs")
        .key("plain")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.content_type(),
        Some("binary/octet-stream"),
        "S3's default content type"
    );
}

#[tokio::test]
async fn the_website_redirect_is_kept_checked_and_not_copied() {
    let (_server, s3) = setup("site").await;
    s3.put_object()
        .bucket("site")
        .key("old.html")
        .body(b"moved".to_vec().into())
        .website_redirect_location("/new.html")
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("site")
        .key("old.html")
        .send()
        .await
        .unwrap();
    assert_eq!(head.website_redirect_location(), Some("/new.html"));
    let got = s3
        .get_object()
        .bucket("site")
        .key("old.html")
        .send()
        .await
        .unwrap();
    assert_eq!(got.website_redirect_location(), Some("/new.html"));

    // Neither a relative path nor another scheme: refused, nothing stored.
    let err = s3
        .put_object()
        .bucket("site")
        .key("bad.html")
        .body(b"x".to_vec().into())
        .website_redirect_location("new.html")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidArgument"));
    assert!(s3
        .head_object()
        .bucket("site")
        .key("bad.html")
        .send()
        .await
        .is_err());

    // A copy has the redirect its request names, never the source's (as on S3).
    for (key, redirect) in [
        ("copy-plain", None),
        ("copy-named", Some("https://example.com/")),
    ] {
        s3.copy_object()
            .bucket("site")
            .key(key)
            .copy_source("site/old.html")
            .set_website_redirect_location(redirect.map(str::to_owned))
            .send()
            .await
            .unwrap();
        let head = s3
            .head_object()
            .bucket("site")
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.website_redirect_location(), redirect, "{key}");
    }
    // Changing only the redirect is a change: copying onto itself is allowed.
    s3.copy_object()
        .bucket("site")
        .key("old.html")
        .copy_source("site/old.html")
        .website_redirect_location("/newer.html")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn content_md5_is_verified() {
    let (_server, s3) = setup("md5").await;
    let data = b"important bytes".to_vec();
    let good = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&data));
    s3.put_object()
        .bucket("md5")
        .key("ok")
        .body(data.clone().into())
        .content_md5(&good)
        .send()
        .await
        .unwrap();

    let wrong = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(b"other"));
    let err = s3
        .put_object()
        .bucket("md5")
        .key("bad")
        .body(data.clone().into())
        .content_md5(wrong)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("BadDigest"));
    let err = s3
        .put_object()
        .bucket("md5")
        .key("bad")
        .body(data.into())
        .content_md5("not-base64!")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidDigest"));
    let err = s3
        .head_object()
        .bucket("md5")
        .key("bad")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_status(&err),
        Some(404),
        "a rejected PUT stores nothing"
    );
}

#[tokio::test]
async fn conditional_create_with_if_none_match_star() {
    let (_server, s3) = setup("cond").await;
    s3.put_object()
        .bucket("cond")
        .key("once")
        .body(b"first".to_vec().into())
        .if_none_match("*")
        .send()
        .await
        .unwrap();
    let err = s3
        .put_object()
        .bucket("cond")
        .key("once")
        .body(b"second".to_vec().into())
        .if_none_match("*")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("PreconditionFailed"));
    assert_eq!(error_status(&err), Some(412));
    assert_eq!(get_bytes(&s3, "cond", "once").await, b"first");
}

/// `If-None-Match` with an ETag (as RGW and MinIO take it): the write goes ahead unless the
/// current object has that ETag; a multipart completion is held to the same condition.
#[tokio::test]
async fn if_none_match_with_an_etag_refuses_only_that_current_object() {
    let (_server, s3) = setup("cond").await;
    let put = |body: &'static [u8], none_match: &str| {
        s3.put_object()
            .bucket("cond")
            .key("k")
            .body(body.to_vec().into())
            .if_none_match(none_match)
            .send()
    };
    // Nothing there yet: any ETag is "not matched".
    let first = put(b"v1", "\"0000\"").await.unwrap();
    let etag = first.e_tag().unwrap().to_owned();
    let err = put(b"v2", &etag).await.unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("PreconditionFailed"));
    assert_eq!(error_status(&err), Some(412));
    assert_eq!(get_bytes(&s3, "cond", "k").await, b"v1", "nothing changed");
    put(b"v2", "\"0000\"").await.unwrap();
    assert_eq!(get_bytes(&s3, "cond", "k").await, b"v2");
    // The completion of an upload checks it under the key lock too.
    let current = s3
        .head_object()
        .bucket("cond")
        .key("k")
        .send()
        .await
        .unwrap();
    let upload = meridian_tests::create_upload(&s3, "cond", "k").await;
    let part = meridian_tests::upload_part(&s3, "cond", "k", &upload, 1, b"v3").await;
    let complete = |none_match: String| {
        s3.complete_multipart_upload()
            .bucket("cond")
            .key("k")
            .upload_id(&upload)
            .multipart_upload(meridian_tests::completed_parts(&[(1, &part)]))
            .if_none_match(none_match)
            .send()
    };
    let err = complete(current.e_tag().unwrap().to_owned())
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("PreconditionFailed"));
    complete("\"0000\"".to_owned()).await.unwrap();
    assert_eq!(get_bytes(&s3, "cond", "k").await, b"v3");
}

#[tokio::test]
async fn conditional_overwrite_with_if_match() {
    let (_server, s3) = setup("cond").await;
    let put = s3
        .put_object()
        .bucket("cond")
        .key("k")
        .body(b"v1".to_vec().into())
        .send()
        .await
        .unwrap();
    let etag = put.e_tag().unwrap().to_owned();
    let err = s3
        .put_object()
        .bucket("cond")
        .key("k")
        .body(b"v2".to_vec().into())
        .if_match("\"0000\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("PreconditionFailed"));
    s3.put_object()
        .bucket("cond")
        .key("k")
        .body(b"v2".to_vec().into())
        .if_match(&etag)
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(&s3, "cond", "k").await, b"v2");
    let err = s3
        .put_object()
        .bucket("cond")
        .key("absent")
        .body(b"v".to_vec().into())
        .if_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchKey"));
}

#[tokio::test]
async fn racing_if_match_writers_have_exactly_one_winner() {
    let (_server, s3) = setup("race-match").await;
    for round in 0..5 {
        let key = format!("manifest-{round}");
        let first = s3
            .put_object()
            .bucket("race-match")
            .key(&key)
            .body(b"v0".to_vec().into())
            .send()
            .await
            .unwrap();
        let seen = first.e_tag().unwrap().to_owned();
        // Eight writers read the same ETag and each tries to replace that version.
        let attempts: Vec<_> = (0..8u64)
            .map(|i| {
                let (s3, key, seen) = (s3.clone(), key.clone(), seen.clone());
                tokio::spawn(async move {
                    let body = pattern(200_000, 100 + i);
                    s3.put_object()
                        .bucket("race-match")
                        .key(&key)
                        .body(body.clone().into())
                        .if_match(&seen)
                        .send()
                        .await
                        .map(|_| body)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for a in attempts {
            match a.await.unwrap() {
                Ok(body) => winners.push(body),
                Err(e) => assert_eq!(error_code(&e).as_deref(), Some("PreconditionFailed")),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        assert_eq!(get_bytes(&s3, "race-match", &key).await, winners[0]);
    }
}

#[tokio::test]
async fn copy_destination_conditions_guard_the_target() {
    let (_server, s3) = setup("copy-cond").await;
    let put = |key: &'static str, body: &'static [u8]| {
        s3.put_object()
            .bucket("copy-cond")
            .key(key)
            .body(ByteStream::from_static(body))
            .send()
    };
    put("src", b"source").await.unwrap();
    let target = put("dst", b"old")
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    let copy = || {
        s3.copy_object()
            .bucket("copy-cond")
            .key("dst")
            .copy_source("copy-cond/src")
    };
    // If-None-Match: * refuses to replace an existing target.
    let err = copy().if_none_match("*").send().await.unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("PreconditionFailed"));
    // If-Match with another ETag refuses; the target is unchanged.
    let err = copy().if_match("\"0000\"").send().await.unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("PreconditionFailed"));
    assert_eq!(get_bytes(&s3, "copy-cond", "dst").await, b"old");
    // The target's own ETag lets the copy replace it.
    copy().if_match(&target).send().await.unwrap();
    assert_eq!(get_bytes(&s3, "copy-cond", "dst").await, b"source");
    // If-Match on a target that does not exist is NoSuchKey; If-None-Match: * creates it.
    let to_new = || {
        s3.copy_object()
            .bucket("copy-cond")
            .key("new")
            .copy_source("copy-cond/src")
    };
    let err = to_new().if_match(&target).send().await.unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchKey"));
    to_new().if_none_match("*").send().await.unwrap();
    assert_eq!(get_bytes(&s3, "copy-cond", "new").await, b"source");
}

#[tokio::test]
async fn conditional_deletes_follow_aws() {
    use aws_sdk_s3::types::{
        BucketVersioningStatus, Delete, ObjectIdentifier, VersioningConfiguration,
    };
    let (_server, s3) = setup("cond-del").await;
    let put = |key: &'static str| {
        s3.put_object()
            .bucket("cond-del")
            .key(key)
            .body(ByteStream::from_static(b"data"))
            .send()
    };
    let exists = |key: &'static str| {
        let s3 = s3.clone();
        async move {
            s3.head_object()
                .bucket("cond-del")
                .key(key)
                .send()
                .await
                .is_ok()
        }
    };
    let etag = put("k").await.unwrap().e_tag().unwrap().to_owned();
    let delete = || s3.delete_object().bucket("cond-del").key("k");

    // A mismatch of any condition is 412 and deletes nothing.
    for err in [
        delete().if_match("\"0000\"").send().await.unwrap_err(),
        delete().if_match_size(9999).send().await.unwrap_err(),
        delete()
            .if_match_last_modified_time(DateTime::from_secs(1_420_070_400))
            .send()
            .await
            .unwrap_err(),
    ] {
        assert_eq!(error_code(&err).as_deref(), Some("PreconditionFailed"));
    }
    assert!(exists("k").await);
    // Conditions that all hold delete it.
    let head = s3
        .head_object()
        .bucket("cond-del")
        .key("k")
        .send()
        .await
        .unwrap();
    delete()
        .if_match(&etag)
        .if_match_size(4)
        .if_match_last_modified_time(*head.last_modified().unwrap())
        .send()
        .await
        .unwrap();
    assert!(!exists("k").await);
    // As on AWS, a conditional delete of nothing is 404 NoSuchKey (a plain one succeeds).
    let err = delete().if_match("*").send().await.unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchKey"));
    delete().send().await.unwrap();

    // Versioned: If-Match: * on the current version makes a delete marker; then the current
    // version is the marker and a conditional delete answers 404.
    s3.put_bucket_versioning()
        .bucket("cond-del")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let v1 = put("k").await.unwrap();
    let out = delete().if_match("*").send().await.unwrap();
    assert_eq!(out.delete_marker(), Some(true));
    let err = delete().if_match("*").send().await.unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchKey"));
    // With a version id the named version is checked and removed.
    let by_version = || delete().version_id(v1.version_id().unwrap());
    let err = by_version().if_match("\"0000\"").send().await.unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("PreconditionFailed"));
    by_version()
        .if_match(v1.e_tag().unwrap())
        .send()
        .await
        .unwrap();
    let versions = s3
        .list_object_versions()
        .bucket("cond-del")
        .send()
        .await
        .unwrap();
    assert!(versions.versions().is_empty(), "{versions:?}");

    // DeleteObjects: each entry's ETag and Size are conditions of its own.
    let a = put("a").await.unwrap().e_tag().unwrap().to_owned();
    put("b").await.unwrap();
    let entry = |key: &str| ObjectIdentifier::builder().key(key);
    let out = s3
        .delete_objects()
        .bucket("cond-del")
        .delete(
            Delete::builder()
                .objects(entry("a").e_tag(a).build().unwrap())
                .objects(entry("b").e_tag("badetag").build().unwrap())
                .objects(entry("c").size(4).build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let deleted: Vec<_> = out.deleted().iter().filter_map(|d| d.key()).collect();
    assert_eq!(deleted, ["a"]);
    let errors: Vec<_> = out
        .errors()
        .iter()
        .map(|e| (e.key().unwrap(), e.code().unwrap()))
        .collect();
    assert_eq!(errors, [("b", "PreconditionFailed"), ("c", "NoSuchKey")]);
    assert!(exists("b").await);
}

#[tokio::test]
async fn ranges_including_suffix_and_open_ended() {
    let (server, s3) = setup("ranges").await;
    let data = pattern(3 * (1 << 20) + 12345, 9);
    s3.put_object()
        .bucket("ranges")
        .key("r")
        .body(data.clone().into())
        .send()
        .await
        .unwrap();
    let len = data.len();
    let cases: Vec<(String, std::ops::Range<usize>)> = vec![
        ("bytes=0-9".into(), 0..10),
        ("bytes=1048575-1048576".into(), 1_048_575..1_048_577),
        (format!("bytes={}-", len - 100), len - 100..len),
        ("bytes=-4096".into(), len - 4096..len),
        (format!("bytes=10-{}", len + 1000), 10..len),
        ("bytes=262144-524287".into(), 262_144..524_288),
    ];
    for (header, expected) in cases {
        let out = s3
            .get_object()
            .bucket("ranges")
            .key("r")
            .range(&header)
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.content_range(),
            Some(format!("bytes {}-{}/{}", expected.start, expected.end - 1, len).as_str()),
            "{header}"
        );
        assert_eq!(out.content_length(), Some(expected.len() as i64));
        let body = out.body.collect().await.unwrap().into_bytes();
        assert_eq!(&body[..], &data[expected.clone()], "{header}");
    }
    let err = s3
        .get_object()
        .bucket("ranges")
        .key("r")
        .range(format!("bytes={}-", len + 5))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidRange"));
    assert_eq!(error_status(&err), Some(416));

    // A HEAD for a range is answered like the GET: 206 and the range, without the bytes.
    let head = meridian_tests::raw::send_signed(
        &server.endpoint,
        "HEAD",
        "/ranges/r",
        &[("range", "bytes=0-9".to_owned())],
        b"",
        aws_sigv4::http_request::SignableBody::UnsignedPayload,
        meridian_tests::ACCESS_KEY,
        meridian_tests::SECRET_KEY,
    );
    assert_eq!(head.status, 206);
    let header = |name: &str| {
        head.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("content-range"), Some(format!("bytes 0-9/{len}")));
    assert_eq!(header("content-length").as_deref(), Some("10"));
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn read_preconditions_follow_s3_rules() {
    let (_server, s3) = setup("pre").await;
    let put = s3
        .put_object()
        .bucket("pre")
        .key("k")
        .body(b"data".to_vec().into())
        .send()
        .await
        .unwrap();
    let etag = put.e_tag().unwrap().to_owned();
    let head = s3
        .head_object()
        .bucket("pre")
        .key("k")
        .send()
        .await
        .unwrap();
    let mtime = *head.last_modified().unwrap();
    let before = DateTime::from_secs(mtime.secs() - 3600);
    let after = DateTime::from_secs(mtime.secs() + 3600);

    let get = || s3.get_object().bucket("pre").key("k");
    assert!(get().if_match(&etag).send().await.is_ok());
    assert_eq!(
        error_status(&get().if_match("\"nope\"").send().await.unwrap_err()),
        Some(412)
    );
    assert_eq!(
        error_status(&get().if_none_match(&etag).send().await.unwrap_err()),
        Some(304)
    );
    assert!(get().if_none_match("\"nope\"").send().await.is_ok());
    assert_eq!(
        error_status(&get().if_modified_since(after).send().await.unwrap_err()),
        Some(304)
    );
    assert!(get().if_modified_since(before).send().await.is_ok());
    assert_eq!(
        error_status(&get().if_unmodified_since(before).send().await.unwrap_err()),
        Some(412)
    );
    assert!(get().if_unmodified_since(after).send().await.is_ok());
    // A true If-Match wins over a false If-Unmodified-Since; a false If-None-Match over a true If-Modified-Since.
    assert!(get()
        .if_match(&etag)
        .if_unmodified_since(before)
        .send()
        .await
        .is_ok());
    assert_eq!(
        error_status(
            &get()
                .if_none_match(&etag)
                .if_modified_since(before)
                .send()
                .await
                .unwrap_err()
        ),
        Some(304)
    );
    let head_err = s3
        .head_object()
        .bucket("pre")
        .key("k")
        .if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&head_err), Some(412));
}

#[tokio::test]
async fn response_header_overrides() {
    let (_server, s3) = setup("over").await;
    s3.put_object()
        .bucket("over")
        .key("k")
        .body(b"x".to_vec().into())
        .content_type("a/b")
        .send()
        .await
        .unwrap();
    let out = s3
        .get_object()
        .bucket("over")
        .key("k")
        .response_content_type("text/plain")
        .response_content_disposition("inline")
        .response_cache_control("no-cache")
        .response_content_language("fr")
        .response_content_encoding("gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(out.content_type(), Some("text/plain"));
    assert_eq!(out.content_disposition(), Some("inline"));
    assert_eq!(out.cache_control(), Some("no-cache"));
    assert_eq!(out.content_language(), Some("fr"));
    assert_eq!(out.content_encoding(), Some("gzip"));
}

#[tokio::test]
async fn missing_objects_and_buckets_are_reported() {
    let (_server, s3) = setup("miss").await;
    let err = s3
        .get_object()
        .bucket("miss")
        .key("nothing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchKey"));
    assert_eq!(error_status(&err), Some(404));
    let err = s3
        .get_object()
        .bucket("nobucket")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchBucket"));
    let err = s3
        .put_object()
        .bucket("nobucket")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchBucket"));
    let err = s3
        .head_object()
        .bucket("miss")
        .key("nothing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), Some(404));
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let (server, _s3) = setup("rid").await;
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-D",
            "-",
            &format!("{}/rid/x", server.endpoint),
        ])
        .output();
    // curl is optional on a fresh machine; the SDK check below always runs.
    if let Ok(out) = out {
        if out.status.success() {
            let headers = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
            assert!(headers.contains("x-amz-request-id:"), "{headers}");
        }
    }
    let s3 = server.client();
    let put = s3
        .put_object()
        .bucket("rid")
        .key("x")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    use aws_sdk_s3::operation::RequestId;
    assert!(put.request_id().is_some_and(|id| !id.is_empty()));
}

#[tokio::test]
async fn racing_conditional_creates_have_exactly_one_winner() {
    let (_server, s3) = setup("race").await;
    for round in 0..5 {
        let key = format!("lock-{round}");
        let attempts = (0..8).map(|i| {
            let s3 = s3.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let body = pattern(200_000, i); // above the inline threshold: real shards race
                s3.put_object()
                    .bucket("race")
                    .key(&key)
                    .body(body.into())
                    .if_none_match("*")
                    .send()
                    .await
            })
        });
        let mut winners = 0;
        for a in attempts.collect::<Vec<_>>() {
            match a.await.unwrap() {
                Ok(_) => winners += 1,
                Err(e) => assert_eq!(error_status(&e), Some(412)),
            }
        }
        assert_eq!(winners, 1, "round {round}");
    }
}

#[tokio::test]
async fn signed_chunked_uploads_are_verified_chunk_by_chunk() {
    let (server, s3) = setup("chunks").await;
    let data = pattern(3 * 65_536 + 100, 77);
    let ok = meridian_tests::raw::put_signed_chunks(
        &server.endpoint,
        "/chunks/signed",
        &data,
        65_536,
        false,
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(get_bytes(&s3, "chunks", "signed").await, data);

    let bad = meridian_tests::raw::put_signed_chunks(
        &server.endpoint,
        "/chunks/tampered",
        &data,
        65_536,
        true,
    );
    assert_eq!(bad.status, 403, "{}", bad.body);
    assert!(bad.body.contains("SignatureDoesNotMatch"), "{}", bad.body);
    let err = s3
        .head_object()
        .bucket("chunks")
        .key("tampered")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_status(&err),
        Some(404),
        "a tampered body stores nothing"
    );
}
