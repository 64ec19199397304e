//! Answers real clients and the s3-tests suite expect, one test per behaviour: bucket
//! deletion over incomplete uploads, repeated completions, resent parts, part checksums,
//! checksum mismatches, GetObjectAttributes, 304s, part numbers, version ids in unversioned
//! buckets, empty delimiters, presigned expiry, ACLs under BucketOwnerEnforced and conditional
//! completions.

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::types::{
    BucketCannedAcl, ChecksumAlgorithm, ChecksumMode, ChecksumType, ObjectAttributes,
    ObjectCannedAcl, ObjectOwnership, OwnershipControls, OwnershipControlsRule, Permission,
};
use aws_sdk_s3::Client;
use aws_sigv4::http_request::SignableBody;
use meridian_tests::raw::{self, RawResponse};
use meridian_tests::{
    checksummed_multipart, completed_parts, create_upload, error_code, error_status, pattern,
    read_object, upload_part, TestServer, ACCESS_KEY, SECRET_KEY,
};

const MIB: usize = 1 << 20;

async fn setup(bucket: &str) -> (TestServer, Client) {
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    (server, s3)
}

fn signed_get(server: &TestServer, path: &str, headers: &[(&str, String)]) -> RawResponse {
    raw::send_signed(
        &server.endpoint,
        "GET",
        path,
        headers,
        b"",
        SignableBody::Bytes(b""),
        ACCESS_KEY,
        SECRET_KEY,
    )
}

fn header<'a>(resp: &'a RawResponse, name: &str) -> Option<&'a str> {
    resp.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Files under the server's disks other than their `format.json`.
fn shard_files(server: &TestServer) -> usize {
    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            count(&p)
                        } else {
                            usize::from(!e.file_name().to_string_lossy().starts_with("format"))
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    (0..6).map(|slot| count(&server.disk_dir(slot))).sum()
}

#[tokio::test]
async fn deleting_a_bucket_aborts_its_incomplete_uploads_and_reclaims_their_parts() {
    let (server, s3) = setup("cleanup").await;
    let id = create_upload(&s3, "cleanup", "weights.bin").await;
    upload_part(&s3, "cleanup", "weights.bin", &id, 1, &pattern(5 * MIB, 1)).await;
    upload_part(&s3, "cleanup", "weights.bin", &id, 2, &pattern(MIB, 2)).await;
    assert!(shard_files(&server) > 0);

    s3.delete_bucket().bucket("cleanup").send().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while shard_files(&server) != 0 {
        assert!(
            Instant::now() < deadline,
            "the parts' shards were not reclaimed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A bucket of the same name starts with no uploads, and the old upload is gone.
    s3.create_bucket().bucket("cleanup").send().await.unwrap();
    let uploads = s3
        .list_multipart_uploads()
        .bucket("cleanup")
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty());
    let err = s3
        .list_parts()
        .bucket("cleanup")
        .key("weights.bin")
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchUpload"));
}

#[tokio::test]
async fn a_repeated_completion_gets_the_first_answer_and_other_parts_are_invalid() {
    let (_server, s3) = setup("retry").await;
    meridian_tests::enable_versioning(&s3, "retry").await;
    let id = create_upload(&s3, "retry", "model").await;
    let e1 = upload_part(&s3, "retry", "model", &id, 1, &pattern(5 * MIB, 1)).await;
    let e2 = upload_part(&s3, "retry", "model", &id, 2, &pattern(1000, 2)).await;
    let complete = || {
        s3.complete_multipart_upload()
            .bucket("retry")
            .key("model")
            .upload_id(&id)
    };
    let first = complete()
        .multipart_upload(completed_parts(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .unwrap();
    // The SDK retrying after a lost response.
    let again = complete()
        .multipart_upload(completed_parts(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .unwrap();
    assert_eq!(again.e_tag(), first.e_tag());
    assert!(first.version_id().is_some());
    assert_eq!(again.version_id(), first.version_id());
    let versions = s3
        .list_object_versions()
        .bucket("retry")
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 1, "no second version was made");

    let err = complete()
        .multipart_upload(completed_parts(&[(1, &e1)]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidPart"));
    assert_eq!(error_status(&err), Some(400));
    let err = s3
        .complete_multipart_upload()
        .bucket("retry")
        .key("model")
        .upload_id("never-existed")
        .multipart_upload(completed_parts(&[(1, &e1)]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchUpload"));
}

#[tokio::test]
async fn of_two_overlapping_uploads_of_a_part_the_last_to_finish_wins() {
    let (server, s3) = setup("resend").await;
    let id = create_upload(&s3, "resend", "k").await;
    let a = vec![b'A'; 64 * 1024];
    let b = vec![b'B'; 64 * 1024];
    // Upload A starts first and stalls half-way through its body...
    let path = format!("/resend/k?partNumber=1&uploadId={id}");
    let address = server.endpoint.trim_start_matches("http://");
    let mut slow = raw::open_signed(
        address,
        address,
        "PUT",
        &path,
        &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD".into())],
        a.len(),
        SignableBody::UnsignedPayload,
        (ACCESS_KEY, SECRET_KEY),
        SystemTime::now(),
    );
    slow.write(&a[..a.len() / 2]);
    // ...while upload B of the same part runs to completion...
    let etag_b = upload_part(&s3, "resend", "k", &id, 1, &b).await;
    // ...and then A finishes, last.
    slow.write(&a[a.len() / 2..]);
    let resp = slow.finish();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let etag_a = header(&resp, "etag").expect("an ETag").to_owned();
    assert_ne!(etag_a, etag_b);

    // The client recorded both answers for part 1, B's first: the last entry counts.
    s3.complete_multipart_upload()
        .bucket("resend")
        .key("k")
        .upload_id(&id)
        .multipart_upload(completed_parts(&[(1, &etag_b), (1, &etag_a)]))
        .send()
        .await
        .unwrap();
    assert_eq!(read_object(&s3, "resend", "k").await, a);
}

#[tokio::test]
async fn a_part_of_a_full_object_upload_reports_the_objects_checksum_type() {
    let (_server, s3) = setup("crc").await;
    let parts = checksummed_multipart(
        &s3,
        "crc",
        "k",
        ChecksumAlgorithm::Crc32,
        Some(ChecksumType::FullObject),
        &[pattern(5 * MIB, 1), pattern(4096, 2)],
    )
    .await;
    let part_crcs: Vec<String> = parts
        .iter()
        .map(|p| p.checksum_crc32().unwrap().to_owned())
        .collect();
    let whole = s3
        .head_object()
        .bucket("crc")
        .key("k")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(whole.checksum_type(), Some(&ChecksumType::FullObject));
    for n in [1, 2] {
        let part = s3
            .head_object()
            .bucket("crc")
            .key("k")
            .part_number(n)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(part.checksum_type(), Some(&ChecksumType::FullObject));
        assert_eq!(
            part.checksum_crc32(),
            Some(part_crcs[n as usize - 1].as_str())
        );
    }
}

#[tokio::test]
async fn checksums_that_do_not_match_the_body_are_bad_digest_and_store_nothing() {
    let (_server, s3) = setup("digest").await;
    use base64::Engine;
    let b64 = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw);
    use sha2::Digest;
    let wrong = b64(&sha2::Sha256::digest(b"other bytes"));
    // A well-formed digest of other bytes, and base64 of the wrong length for SHA-256.
    for value in [wrong.as_str(), "AAAA", "3q2+7w=="] {
        let err = s3
            .put_object()
            .bucket("digest")
            .key("k")
            .checksum_sha256(value)
            .body(b"the body".to_vec().into())
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err).as_deref(), Some("BadDigest"), "{value}");
        assert_eq!(error_status(&err), Some(400));
    }
    let err = s3
        .put_object()
        .bucket("digest")
        .key("k")
        .checksum_crc32("AAAAAA==")
        .body(b"the body".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("BadDigest"));
    let err = s3
        .head_object()
        .bucket("digest")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), Some(404));
}

#[tokio::test]
async fn object_attributes_named_together_are_all_returned() {
    let (_server, s3) = setup("attrs").await;
    checksummed_multipart(
        &s3,
        "attrs",
        "k",
        ChecksumAlgorithm::Sha256,
        None,
        &[pattern(5 * MIB, 1), pattern(10, 2)],
    )
    .await;
    // The SDK joins the list into one header, as boto3 does.
    let out = s3
        .get_object_attributes()
        .bucket("attrs")
        .key("k")
        .object_attributes(ObjectAttributes::ObjectParts)
        .object_attributes(ObjectAttributes::Checksum)
        .object_attributes(ObjectAttributes::Etag)
        .object_attributes(ObjectAttributes::ObjectSize)
        .send()
        .await
        .unwrap();
    assert_eq!(out.object_size(), Some((5 * MIB + 10) as i64));
    assert!(out.e_tag().is_some_and(|e| e.ends_with("-2")));
    assert!(out.checksum().and_then(|c| c.checksum_sha256()).is_some());
    let listed = out.object_parts().expect("the parts");
    assert_eq!(listed.total_parts_count(), Some(2));
    assert_eq!(listed.parts().len(), 2);
}

#[tokio::test]
async fn not_modified_still_names_the_etag_and_last_modified() {
    let (server, s3) = setup("cond").await;
    let put = s3
        .put_object()
        .bucket("cond")
        .key("k")
        .body(b"cached".to_vec().into())
        .send()
        .await
        .unwrap();
    let etag = put.e_tag().unwrap().to_owned();
    let resp = signed_get(&server, "/cond/k", &[("if-none-match", etag.clone())]);
    assert_eq!(resp.status, 304);
    assert_eq!(header(&resp, "etag"), Some(etag.as_str()));
    let modified = header(&resp, "last-modified").expect("Last-Modified on a 304");
    assert!(modified.ends_with(" GMT"), "{modified}");

    let head = s3
        .head_object()
        .bucket("cond")
        .key("k")
        .send()
        .await
        .unwrap();
    let since = aws_smithy_types::DateTime::from_secs(head.last_modified().unwrap().secs() + 60);
    let resp = signed_get(
        &server,
        "/cond/k",
        &[(
            "if-modified-since",
            since
                .fmt(aws_smithy_types::date_time::Format::HttpDate)
                .unwrap(),
        )],
    );
    assert_eq!(resp.status, 304);
    assert_eq!(header(&resp, "etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn a_part_number_beyond_the_objects_parts_is_invalid_part_number() {
    let (_server, s3) = setup("partnum").await;
    s3.put_object()
        .bucket("partnum")
        .key("single")
        .body(b"one part".to_vec().into())
        .send()
        .await
        .unwrap();
    let id = create_upload(&s3, "partnum", "multi").await;
    let e1 = upload_part(&s3, "partnum", "multi", &id, 1, &pattern(5 * MIB, 1)).await;
    let e2 = upload_part(&s3, "partnum", "multi", &id, 2, &pattern(10, 2)).await;
    s3.complete_multipart_upload()
        .bucket("partnum")
        .key("multi")
        .upload_id(&id)
        .multipart_upload(completed_parts(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .unwrap();
    for (key, beyond) in [("single", 2), ("multi", 3)] {
        let err = s3
            .get_object()
            .bucket("partnum")
            .key(key)
            .part_number(beyond)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err).as_deref(), Some("InvalidPartNumber"));
        assert_eq!(error_status(&err), Some(400));
        let err = s3
            .head_object()
            .bucket("partnum")
            .key(key)
            .part_number(beyond)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_status(&err), Some(400));
    }
}

#[tokio::test]
async fn writes_to_an_unversioned_bucket_report_no_version_id() {
    let (_server, s3) = setup("plain").await;
    let put = s3
        .put_object()
        .bucket("plain")
        .key("a")
        .body(b"a".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(put.version_id(), None);
    let conditional = s3
        .put_object()
        .bucket("plain")
        .key("b")
        .if_none_match("*")
        .body(b"b".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(conditional.version_id(), None);
    let copy = s3
        .copy_object()
        .bucket("plain")
        .key("c")
        .copy_source("plain/a")
        .send()
        .await
        .unwrap();
    assert_eq!(copy.version_id(), None);
    let id = create_upload(&s3, "plain", "m").await;
    let e1 = upload_part(&s3, "plain", "m", &id, 1, b"part").await;
    let done = s3
        .complete_multipart_upload()
        .bucket("plain")
        .key("m")
        .upload_id(&id)
        .multipart_upload(completed_parts(&[(1, &e1)]))
        .send()
        .await
        .unwrap();
    assert_eq!(done.version_id(), None);
    let head = s3
        .head_object()
        .bucket("plain")
        .key("m")
        .send()
        .await
        .unwrap();
    assert_eq!(head.version_id(), None);
}

#[tokio::test]
async fn an_empty_delimiter_is_no_delimiter_and_v1_echoes_its_prefix_unencoded() {
    let (server, s3) = setup("delim").await;
    for key in ["dir/a", "dir/b", "top", "\nodd"] {
        s3.put_object()
            .bucket("delim")
            .key(key)
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    for path in ["/delim?list-type=2&delimiter=", "/delim?delimiter="] {
        let resp = signed_get(&server, path, &[]);
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert!(!resp.body.contains("<Delimiter"), "{path}: {}", resp.body);
        assert!(!resp.body.contains("<CommonPrefixes>"), "{}", resp.body);
        assert_eq!(resp.body.matches("<Key>").count(), 4, "{}", resp.body);
    }
    // s3-tests' prefix_unreadable: the v1 prefix comes back as sent, v2 encodes it.
    let v1 = signed_get(&server, "/delim?prefix=%0A&encoding-type=url", &[]);
    assert!(v1.body.contains("<Prefix>\n</Prefix>"), "{}", v1.body);
    assert!(v1.body.contains("<Key>%0Aodd</Key>"), "{}", v1.body);
    let v2 = signed_get(
        &server,
        "/delim?list-type=2&prefix=%0A&encoding-type=url",
        &[],
    );
    assert!(v2.body.contains("<Prefix>%0A</Prefix>"), "{}", v2.body);
    let sdk = s3
        .list_objects()
        .bucket("delim")
        .prefix("\n")
        .send()
        .await
        .unwrap();
    assert_eq!(sdk.prefix(), Some("\n"));
    assert_eq!(sdk.contents().len(), 1);
}

#[tokio::test]
async fn presigned_urls_longer_than_a_week_or_negative_are_refused_and_skew_is_denied() {
    let (server, s3) = setup("presign").await;
    s3.put_object()
        .bucket("presign")
        .key("k")
        .body(b"secret".to_vec().into())
        .send()
        .await
        .unwrap();
    let now = SystemTime::now();
    let week = Duration::from_secs(7 * 24 * 3600);
    let path = raw::presign(&server.endpoint, "GET", "/presign/k", week, now);
    // A presigned URL carries its signature in the query: fetch it with no other credentials.
    let plain = |path: &str| meridian_tests::anonymous_request(&server.endpoint, "GET", path);
    let (status, body) = plain(&path);
    assert_eq!(status, 200, "a week is allowed: {body}");
    assert!(body.ends_with("secret"));

    let too_long = raw::presign(
        &server.endpoint,
        "GET",
        "/presign/k",
        week + Duration::from_secs(1),
        now,
    );
    let (status, body) = plain(&too_long);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AccessDenied") && !body.ends_with("secret"));
    let negative = path.replace("X-Amz-Expires=604800", "X-Amz-Expires=-1");
    assert_ne!(negative, path);
    let (status, body) = plain(&negative);
    assert_eq!(status, 403, "{body}");
    assert!(!body.ends_with("secret"));

    // A header-signed request from 20 minutes ago is outside the 15-minute window.
    let address = server.endpoint.trim_start_matches("http://");
    let stale = raw::open_signed(
        address,
        address,
        "GET",
        "/presign/k",
        &[],
        0,
        SignableBody::Bytes(b""),
        (ACCESS_KEY, SECRET_KEY),
        now - Duration::from_secs(20 * 60),
    )
    .finish();
    assert_eq!(stale.status, 403, "{}", stale.body);
    assert!(
        stale.body.contains("RequestTimeTooSkewed"),
        "{}",
        stale.body
    );
}

#[tokio::test]
async fn acls_are_disabled_as_under_bucket_owner_enforced() {
    let (_server, s3) = setup("acl").await;
    let acl = s3.get_bucket_acl().bucket("acl").send().await.unwrap();
    let owner = acl
        .owner()
        .and_then(|o| o.id())
        .expect("an owner")
        .to_owned();
    assert_eq!(acl.grants().len(), 1);
    assert_eq!(acl.grants()[0].permission(), Some(&Permission::FullControl));
    assert_eq!(
        acl.grants()[0].grantee().and_then(|g| g.id()),
        Some(owner.as_str())
    );

    s3.put_object()
        .bucket("acl")
        .key("k")
        .acl(ObjectCannedAcl::BucketOwnerFullControl)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    let err = s3
        .put_object()
        .bucket("acl")
        .key("public")
        .acl(ObjectCannedAcl::PublicRead)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&err).as_deref(),
        Some("AccessControlListNotSupported")
    );
    assert_eq!(error_status(&err), Some(400));
    let err = s3
        .head_object()
        .bucket("acl")
        .key("public")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_status(&err),
        Some(404),
        "a refused ACL stores nothing"
    );
    let err = s3
        .create_multipart_upload()
        .bucket("acl")
        .key("m")
        .grant_read("uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&err).as_deref(),
        Some("AccessControlListNotSupported")
    );

    let object_acl = s3
        .get_object_acl()
        .bucket("acl")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(
        object_acl.owner().and_then(|o| o.id()),
        Some(owner.as_str())
    );
    let err = s3
        .get_object_acl()
        .bucket("acl")
        .key("missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchKey"));
    s3.put_object_acl()
        .bucket("acl")
        .key("k")
        .acl(ObjectCannedAcl::BucketOwnerFullControl)
        .send()
        .await
        .unwrap();
    let err = s3
        .put_object_acl()
        .bucket("acl")
        .key("k")
        .acl(ObjectCannedAcl::PublicReadWrite)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&err).as_deref(),
        Some("AccessControlListNotSupported")
    );
    // As on AWS, every canned ACL is refused without ACLs, `private` too.
    let err = s3
        .put_bucket_acl()
        .bucket("acl")
        .acl(BucketCannedAcl::Private)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&err).as_deref(),
        Some("AccessControlListNotSupported")
    );
    let err = s3
        .put_bucket_acl()
        .bucket("acl")
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&err).as_deref(),
        Some("AccessControlListNotSupported")
    );

    s3.create_bucket()
        .bucket("acl-private")
        .acl(BucketCannedAcl::Private)
        .send()
        .await
        .unwrap();
    let err = s3
        .create_bucket()
        .bucket("acl-public")
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), Some(400));
    let err = s3
        .head_bucket()
        .bucket("acl-public")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_status(&err),
        Some(404),
        "the refused bucket was not made"
    );

    // Ownership controls: BucketOwnerEnforced from the start, deletable and settable again.
    let enforced = || {
        OwnershipControls::builder()
            .rules(
                OwnershipControlsRule::builder()
                    .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let got = s3
        .get_bucket_ownership_controls()
        .bucket("acl")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.ownership_controls().unwrap().rules()[0].object_ownership(),
        &ObjectOwnership::BucketOwnerEnforced
    );
    s3.delete_bucket_ownership_controls()
        .bucket("acl")
        .send()
        .await
        .unwrap();
    let err = s3
        .get_bucket_ownership_controls()
        .bucket("acl")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&err).as_deref(),
        Some("OwnershipControlsNotFoundError")
    );
    s3.put_bucket_ownership_controls()
        .bucket("acl")
        .ownership_controls(enforced())
        .send()
        .await
        .unwrap();
    s3.get_bucket_ownership_controls()
        .bucket("acl")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn completions_honour_if_none_match_and_if_match() {
    let (_server, s3) = setup("cas").await;
    s3.put_object()
        .bucket("cas")
        .key("taken")
        .body(b"first".to_vec().into())
        .send()
        .await
        .unwrap();
    let id = create_upload(&s3, "cas", "taken").await;
    let e1 = upload_part(&s3, "cas", "taken", &id, 1, b"second").await;
    let err = s3
        .complete_multipart_upload()
        .bucket("cas")
        .key("taken")
        .upload_id(&id)
        .if_none_match("*")
        .multipart_upload(completed_parts(&[(1, &e1)]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), Some(412));
    assert_eq!(read_object(&s3, "cas", "taken").await, b"first");

    let id = create_upload(&s3, "cas", "missing").await;
    let e1 = upload_part(&s3, "cas", "missing", &id, 1, b"data").await;
    let err = s3
        .complete_multipart_upload()
        .bucket("cas")
        .key("missing")
        .upload_id(&id)
        .if_match("\"0123456789abcdef0123456789abcdef\"")
        .multipart_upload(completed_parts(&[(1, &e1)]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchKey"));
    assert_eq!(error_status(&err), Some(404));
    s3.complete_multipart_upload()
        .bucket("cas")
        .key("missing")
        .upload_id(&id)
        .if_none_match("*")
        .multipart_upload(completed_parts(&[(1, &e1)]))
        .send()
        .await
        .unwrap();

    let current = s3
        .head_object()
        .bucket("cas")
        .key("taken")
        .send()
        .await
        .unwrap();
    let id = create_upload(&s3, "cas", "taken").await;
    let e1 = upload_part(&s3, "cas", "taken", &id, 1, b"third").await;
    s3.complete_multipart_upload()
        .bucket("cas")
        .key("taken")
        .upload_id(&id)
        .if_match(current.e_tag().unwrap())
        .multipart_upload(completed_parts(&[(1, &e1)]))
        .send()
        .await
        .unwrap();
    assert_eq!(read_object(&s3, "cas", "taken").await, b"third");
}
