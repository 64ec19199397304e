//! Bucket policies end to end: the API and its errors, anonymous access where a policy
//! allows everyone (and nowhere else), explicit Deny beating every grant, conditions on
//! transport, source address, listing prefix and object tags, and copies reading through
//! the source bucket's policy.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier, Tag, Tagging};
use aws_sdk_s3::Client;
use meridian_tests::tls::TestCa;
use meridian_tests::{anonymous_request, error_code, error_status, ServerOptions, TestServer};

const USERS: &str = r#"
[[users]]
access_key = "writer"
secret_key = "writer-secret"
grants = [{ bucket = "data", access = "read-write" }]

[[users]]
access_key = "reader"
secret_key = "reader-secret"
grants = []
"#;

fn server() -> TestServer {
    TestServer::start_with(ServerOptions {
        extra_config: USERS.into(),
        ..ServerOptions::default()
    })
}

async fn put(s3: &Client, bucket: &str, key: &str, body: &'static [u8]) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from_static(body))
        .send()
        .await
        .unwrap();
}

async fn set_policy(s3: &Client, bucket: &str, policy: &str) {
    s3.put_bucket_policy()
        .bucket(bucket)
        .policy(policy)
        .send()
        .await
        .unwrap();
}

/// The error code GetBucketPolicy answers (`None` when it succeeds).
async fn policy_error(s3: &Client, bucket: &str) -> Option<String> {
    s3.get_bucket_policy()
        .bucket(bucket)
        .send()
        .await
        .err()
        .and_then(|e| error_code(&e))
}

fn public_prefix(bucket: &str) -> String {
    format!(
        r#"{{"Version": "2012-10-17", "Statement": [{{
            "Sid": "PublicDatasets", "Effect": "Allow", "Principal": "*",
            "Action": "s3:GetObject", "Resource": "arn:aws:s3:::{bucket}/public/*"}}]}}"#
    )
}

#[tokio::test]
async fn the_policy_api_stores_reads_and_deletes_and_refuses_malformed_policies() {
    let server = server();
    let s3 = server.client();
    s3.create_bucket().bucket("data").send().await.unwrap();

    let err = s3
        .get_bucket_policy()
        .bucket("data")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchBucketPolicy"));
    assert_eq!(error_status(&err), Some(404));
    // Without a policy (and with owner-only ACLs) a bucket is simply not public.
    let status = s3
        .get_bucket_policy_status()
        .bucket("data")
        .send()
        .await
        .unwrap();
    assert_eq!(status.policy_status().unwrap().is_public(), Some(false));

    for bad in [
        "{not json",
        r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::elsewhere/*"}]}"#,
        r#"{"Statement": [{"Effect": "Allow", "Principal": {"AWS": ["nobody"]}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*"}]}"#,
        r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*", "Condition": {"StringEquals": {"aws:UserAgent": "x"}}}]}"#,
    ] {
        let err = s3
            .put_bucket_policy()
            .bucket("data")
            .policy(bad)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            error_code(&err).as_deref(),
            Some("MalformedPolicy"),
            "{bad}"
        );
        assert_eq!(error_status(&err), Some(400));
    }
    assert_eq!(
        policy_error(&s3, "data").await.as_deref(),
        Some("NoSuchBucketPolicy"),
        "nothing stored"
    );

    let policy = public_prefix("data");
    set_policy(&s3, "data", &policy).await;
    let got = s3.get_bucket_policy().bucket("data").send().await.unwrap();
    assert_eq!(got.policy(), Some(policy.as_str()));
    let status = s3
        .get_bucket_policy_status()
        .bucket("data")
        .send()
        .await
        .unwrap();
    assert_eq!(status.policy_status().unwrap().is_public(), Some(true));

    let err = s3
        .put_bucket_policy()
        .bucket("missing")
        .policy(public_prefix("missing"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchBucket"));
    // A user without a grant on the bucket cannot read or change its policy.
    let reader = server.client_for("reader", "reader-secret");
    assert_eq!(
        policy_error(&reader, "data").await.as_deref(),
        Some("AccessDenied")
    );
    let err = reader
        .delete_bucket_policy()
        .bucket("data")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("AccessDenied"));

    s3.delete_bucket_policy()
        .bucket("data")
        .send()
        .await
        .unwrap();
    assert_eq!(
        policy_error(&s3, "data").await.as_deref(),
        Some("NoSuchBucketPolicy")
    );
    // Deleting twice is fine, as on S3.
    s3.delete_bucket_policy()
        .bucket("data")
        .send()
        .await
        .unwrap();

    // A deleted and recreated bucket starts without the old policy.
    set_policy(&s3, "data", &public_prefix("data")).await;
    s3.delete_bucket().bucket("data").send().await.unwrap();
    s3.create_bucket().bucket("data").send().await.unwrap();
    assert_eq!(
        policy_error(&s3, "data").await.as_deref(),
        Some("NoSuchBucketPolicy")
    );
}

#[tokio::test]
async fn anonymous_requests_reach_only_what_a_policy_opens_to_everyone() {
    let server = server();
    let s3 = server.client();
    s3.create_bucket().bucket("data").send().await.unwrap();
    put(&s3, "data", "public/train.csv", b"a,b\n1,2\n").await;
    put(&s3, "data", "private/keys.txt", b"secret").await;
    let get = |path: &str| anonymous_request(&server.endpoint, "GET", path);

    // No policy: nothing at all.
    assert_eq!(get("/data/public/train.csv").0, 403);

    set_policy(&s3, "data", &public_prefix("data")).await;
    let (status, body) = get("/data/public/train.csv");
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("a,b\n1,2\n"));
    assert_eq!(
        anonymous_request(&server.endpoint, "HEAD", "/data/public/train.csv").0,
        200
    );
    for (method, path) in [
        ("GET", "/data/private/keys.txt"),
        ("GET", "/data?list-type=2"),
        ("GET", "/"),
        ("PUT", "/data/public/new.csv"),
        ("DELETE", "/data/public/train.csv"),
        ("GET", "/data?policy"),
    ] {
        let (status, body) = anonymous_request(&server.endpoint, method, path);
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(body.contains("AccessDenied"), "{body}");
        assert!(!body.contains("secret"));
    }
    s3.head_object()
        .bucket("data")
        .key("public/train.csv")
        .send()
        .await
        .unwrap();

    // Public listing of one prefix only, and reads by tag.
    set_policy(
        &s3,
        "data",
        r#"{"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::data",
             "Condition": {"StringLike": {"s3:prefix": "public/*"}}},
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*",
             "Condition": {"StringEquals": {"s3:ExistingObjectTag/classification": "public"}}}
        ]}"#,
    )
    .await;
    let (status, body) = get("/data?list-type=2&prefix=public%2F");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("public/train.csv") && !body.contains("private/"));
    assert_eq!(get("/data?list-type=2&prefix=private%2F").0, 403);
    assert_eq!(get("/data?list-type=2").0, 403);
    assert_eq!(get("/data/private/keys.txt").0, 403);
    s3.put_object_tagging()
        .bucket("data")
        .key("private/keys.txt")
        .tagging(
            Tagging::builder()
                .tag_set(
                    Tag::builder()
                        .key("classification")
                        .value("public")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(get("/data/private/keys.txt").0, 200, "tagged public now");

    // Source address.
    set_policy(
        &s3,
        "data",
        r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::data/*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}"#,
    )
    .await;
    assert_eq!(
        get("/data/public/train.csv").0,
        403,
        "127.0.0.1 is not in 10/8"
    );
    set_policy(
        &s3,
        "data",
        r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::data/*", "Condition": {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "127.0.0.1/32"]}}}]}"#,
    )
    .await;
    assert_eq!(get("/data/public/train.csv").0, 200);
}

#[tokio::test]
async fn an_explicit_deny_beats_every_grant_and_root_can_still_remove_it() {
    let server = server();
    let root = server.client();
    let writer = server.client_for("writer", "writer-secret");
    root.create_bucket().bucket("data").send().await.unwrap();
    put(&writer, "data", "ckpt/step-1000.pt", b"weights").await;
    put(&writer, "data", "ckpt/step-2000.pt", b"weights").await;
    put(&writer, "data", "scratch/a", b"tmp").await;
    put(&writer, "data", "scratch/b", b"tmp").await;
    set_policy(
        &root,
        "data",
        r#"{"Version": "2012-10-17", "Statement": [{"Sid": "KeepCheckpoints", "Effect": "Deny",
            "Principal": "*", "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
            "Resource": "arn:aws:s3:::data/ckpt/*"}]}"#,
    )
    .await;

    for (s3, scratch) in [(&root, "scratch/a"), (&writer, "scratch/b")] {
        let err = s3
            .delete_object()
            .bucket("data")
            .key("ckpt/step-1000.pt")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err).as_deref(), Some("AccessDenied"));
        // A batch is decided key by key, as on S3: the denied key is reported, the other
        // one deleted.
        let ids = ["ckpt/step-2000.pt", scratch]
            .map(|k| ObjectIdentifier::builder().key(k).build().unwrap());
        let out = s3
            .delete_objects()
            .bucket("data")
            .delete(
                Delete::builder()
                    .set_objects(Some(ids.to_vec()))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let errors: Vec<_> = out
            .errors()
            .iter()
            .map(|e| (e.key().unwrap(), e.code().unwrap()))
            .collect();
        assert_eq!(errors, [("ckpt/step-2000.pt", "AccessDenied")]);
        let deleted: Vec<_> = out.deleted().iter().map(|d| d.key().unwrap()).collect();
        assert_eq!(deleted, [scratch]);
    }
    let listed = root.list_objects_v2().bucket("data").send().await.unwrap();
    let keys: Vec<_> = listed.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(
        keys,
        ["ckpt/step-1000.pt", "ckpt/step-2000.pt"],
        "checkpoints kept"
    );
    // Writing is not denied.
    put(&writer, "data", "ckpt/step-3000.pt", b"weights").await;

    // Root may always remove the policy; then deletes work again.
    root.delete_bucket_policy()
        .bucket("data")
        .send()
        .await
        .unwrap();
    writer
        .delete_object()
        .bucket("data")
        .key("ckpt/step-1000.pt")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_policy_grants_named_users_what_their_grants_do_not() {
    let server = server();
    let root = server.client();
    let reader = server.client_for("reader", "reader-secret");
    root.create_bucket().bucket("data").send().await.unwrap();
    root.create_bucket().bucket("scratch").send().await.unwrap();
    put(&root, "data", "shared/x", b"shared").await;
    assert_eq!(
        error_code(
            &reader
                .get_object()
                .bucket("data")
                .key("shared/x")
                .send()
                .await
                .unwrap_err()
        )
        .as_deref(),
        Some("AccessDenied")
    );
    set_policy(
        &root,
        "data",
        r#"{"Statement": [{"Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::000000000000:user/reader"]},
            "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": ["arn:aws:s3:::data", "arn:aws:s3:::data/shared/*"]}]}"#,
    )
    .await;
    let got = reader
        .get_object()
        .bucket("data")
        .key("shared/x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"shared"
    );
    reader
        .list_objects_v2()
        .bucket("data")
        .send()
        .await
        .unwrap();
    let err = reader
        .put_object()
        .bucket("data")
        .key("shared/y")
        .body(ByteStream::from_static(b"no"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("AccessDenied"));

    // A copy reads its source through the source bucket's policy: the writer (grant on
    // data only) copies nothing out of scratch until scratch's policy lets it read.
    let writer = server.client_for("writer", "writer-secret");
    put(&root, "scratch", "tmp", b"tmp").await;
    let copy = || {
        writer
            .copy_object()
            .bucket("data")
            .key("copied")
            .copy_source("scratch/tmp")
            .send()
    };
    assert_eq!(
        error_code(&copy().await.unwrap_err()).as_deref(),
        Some("AccessDenied")
    );
    set_policy(
        &root,
        "scratch",
        r#"{"Statement": [{"Effect": "Allow", "Principal": {"AWS": "writer"},
            "Action": "s3:GetObject", "Resource": "arn:aws:s3:::scratch/*"}]}"#,
    )
    .await;
    copy().await.unwrap();
    set_policy(
        &root,
        "data",
        r#"{"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::data/*"}]}"#,
    )
    .await;
    let err = root
        .copy_object()
        .bucket("scratch")
        .key("out")
        .copy_source("data/shared/x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&err).as_deref(),
        Some("AccessDenied"),
        "Deny on the source"
    );
}

#[tokio::test]
async fn secure_transport_conditions_tell_http_from_https() {
    let deny_plain = r#"{"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": ["arn:aws:s3:::data", "arn:aws:s3:::data/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}"#;
    let ca = TestCa::new("a");
    let https = TestServer::start_with(ServerOptions {
        tls: Some((ca.issue(), ca.ca_pem().to_owned())),
        ..ServerOptions::default()
    });
    let http = TestServer::start();
    for server in [&https, &http] {
        let s3 = server.client();
        s3.create_bucket().bucket("data").send().await.unwrap();
        set_policy(&s3, "data", deny_plain).await;
    }
    https
        .client()
        .put_object()
        .bucket("data")
        .key("k")
        .body(ByteStream::from_static(b"over tls"))
        .send()
        .await
        .unwrap();
    let err = http
        .client()
        .put_object()
        .bucket("data")
        .key("k")
        .body(ByteStream::from_static(b"in the clear"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("AccessDenied"));
    let err = http
        .client()
        .list_objects_v2()
        .bucket("data")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("AccessDenied"));
}

fn block(
    acls: bool,
    policy: bool,
    restrict: bool,
) -> aws_sdk_s3::types::PublicAccessBlockConfiguration {
    aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
        .block_public_acls(acls)
        .ignore_public_acls(false)
        .block_public_policy(policy)
        .restrict_public_buckets(restrict)
        .build()
}

async fn put_block(
    s3: &Client,
    bucket: &str,
    config: aws_sdk_s3::types::PublicAccessBlockConfiguration,
) {
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(config)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_public_access_block_refuses_public_acls_and_policies_and_shuts_out_anonymous_reads() {
    let server = server();
    let s3 = server.client();
    s3.create_bucket().bucket("data").send().await.unwrap();
    put(&s3, "data", "public/train.csv", b"a,b\n").await;
    let missing = s3
        .get_public_access_block()
        .bucket("data")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&missing).as_deref(),
        Some("NoSuchPublicAccessBlockConfiguration")
    );
    assert_eq!(error_status(&missing), Some(404));

    // BlockPublicAcls: a public canned ACL is AccessDenied (not just unsupported); private is fine.
    put_block(&s3, "data", block(true, false, false)).await;
    let got = s3
        .get_public_access_block()
        .bucket("data")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.public_access_block_configuration(),
        Some(&block(true, false, false))
    );
    let public = s3
        .put_object()
        .bucket("data")
        .key("x")
        .body(ByteStream::from_static(b"x"))
        .acl(aws_sdk_s3::types::ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&public), Some(403));
    assert!(
        s3.head_object()
            .bucket("data")
            .key("x")
            .send()
            .await
            .is_err(),
        "nothing stored"
    );
    s3.put_object()
        .bucket("data")
        .key("x")
        .body(ByteStream::from_static(b"x"))
        .acl(aws_sdk_s3::types::ObjectCannedAcl::BucketOwnerFullControl)
        .send()
        .await
        .unwrap();

    // BlockPublicPolicy: a public policy is refused, one naming a user is not.
    put_block(&s3, "data", block(false, true, false)).await;
    let refused = s3
        .put_bucket_policy()
        .bucket("data")
        .policy(public_prefix("data"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused).as_deref(), Some("AccessDenied"));
    assert_eq!(
        policy_error(&s3, "data").await.as_deref(),
        Some("NoSuchBucketPolicy")
    );

    // RestrictPublicBuckets: the public policy stays but lets no anonymous request in.
    s3.delete_public_access_block()
        .bucket("data")
        .send()
        .await
        .unwrap();
    set_policy(&s3, "data", &public_prefix("data")).await;
    let get = || anonymous_request(&server.endpoint, "GET", "/data/public/train.csv").0;
    assert_eq!(get(), 200);
    put_block(&s3, "data", block(false, false, true)).await;
    assert_eq!(get(), 403);
    assert_eq!(
        s3.get_object()
            .bucket("data")
            .key("public/train.csv")
            .send()
            .await
            .unwrap()
            .content_length(),
        Some(4),
        "the owner still reads"
    );
    s3.delete_public_access_block()
        .bucket("data")
        .send()
        .await
        .unwrap();
    assert_eq!(get(), 200);
}

#[tokio::test]
async fn the_regions_public_access_block_holds_on_every_bucket() {
    // The region blocks public policies and ignores public ACLs; buckets cannot undo it.
    let server = TestServer::start_with(ServerOptions {
        extra_config: format!(
            "object_ownership = \"ObjectWriter\"\n\n[public_access_block]\nblock_public_policy = true\nignore_public_acls = true\n{USERS}"
        ),
        ..ServerOptions::default()
    });
    let s3 = server.client();
    s3.create_bucket().bucket("data").send().await.unwrap();
    let refused = s3
        .put_bucket_policy()
        .bucket("data")
        .policy(public_prefix("data"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused).as_deref(), Some("AccessDenied"));
    // A public ACL may be set (BlockPublicAcls is off) but counts for nothing.
    s3.put_object()
        .bucket("data")
        .key("public/a")
        .body(ByteStream::from_static(b"a"))
        .acl(aws_sdk_s3::types::ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous_request(&server.endpoint, "GET", "/data/public/a").0,
        403
    );
    // A bucket's own block that turns everything off leaves the region's in force.
    put_block(&s3, "data", block(false, false, false)).await;
    assert_eq!(
        anonymous_request(&server.endpoint, "GET", "/data/public/a").0,
        403
    );
    // GetPublicAccessBlock answers the bucket's own settings, as on AWS.
    let own = s3
        .get_public_access_block()
        .bucket("data")
        .send()
        .await
        .unwrap();
    assert_eq!(
        own.public_access_block_configuration(),
        Some(&block(false, false, false))
    );
}
