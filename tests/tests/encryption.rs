//! Server-side encryption end to end: SSE-S3, SSE-KMS (keyring keys added with
//! `meridian kms add-key`, rotated while the server runs) and SSE-C through every write path
//! (PUT, multipart, copy, part copy) and read path (GET, ranged GET at package boundaries,
//! partNumber, HEAD), bucket default encryption, S3's error codes, what is on disk (no
//! plaintext in shards or RocksDB, a flipped shard healed under authenticated packages), and
//! no key in the log or the audit log.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use aws_sdk_s3::Client;
use base64::Engine as _;
use md5::Digest as _;
use meridian_tests::{
    customer_key, error_code, error_status, files_under, meridian_binary, pattern, ServerOptions,
    TestServer,
};

const PACKAGE: usize = 64 * 1024;
const MARKER: &[u8] = b"MERIDIAN-PLAINTEXT-MARKER-0451";
const LIMIT: Duration = Duration::from_secs(60);

fn server(extra: &str) -> TestServer {
    TestServer::start_with(ServerOptions {
        extra_config: format!("[encryption]\nsse_c_over_http = true\n{extra}"),
        ..ServerOptions::default()
    })
}

fn kms(server: &TestServer, command: &str, name: &str) {
    let out = std::process::Command::new(meridian_binary())
        .args(["kms", command, name, "--keyring"])
        .arg(server.data_dir.join("keyring.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Plain,
    S3,
    Kms(&'static str),
    Customer(u8),
}

macro_rules! with_mode {
    ($req:expr, $mode:expr) => {{
        let req = $req;
        match $mode {
            Mode::Plain => req,
            Mode::S3 => req.server_side_encryption(ServerSideEncryption::Aes256),
            Mode::Kms(k) => req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(k),
            Mode::Customer(seed) => {
                let (key, md5) = customer_key(seed);
                req.sse_customer_algorithm("AES256")
                    .sse_customer_key(key)
                    .sse_customer_key_md5(md5)
            }
        }
    }};
}

/// SSE-C headers for reads (only SSE-C reads need any).
macro_rules! with_read_key {
    ($req:expr, $mode:expr) => {{
        let req = $req;
        match $mode {
            Mode::Customer(seed) => {
                let (key, md5) = customer_key(seed);
                req.sse_customer_algorithm("AES256")
                    .sse_customer_key(key)
                    .sse_customer_key_md5(md5)
            }
            _ => req,
        }
    }};
}

/// PutObject of `body` encrypted as `mode`.
async fn put_with(
    s3: &Client,
    bucket: &str,
    key: &str,
    body: &[u8],
    mode: Mode,
) -> aws_sdk_s3::operation::put_object::PutObjectOutput {
    with_mode!(
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.to_vec())),
        mode
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("PUT {key} {mode:?}: {e:?}"))
}

/// The ETag of a new object.
async fn put(s3: &Client, bucket: &str, key: &str, body: &[u8], mode: Mode) -> String {
    put_with(s3, bucket, key, body, mode).await.e_tag.unwrap()
}

/// The version id of a new object.
async fn put_version(s3: &Client, bucket: &str, key: &str, body: &[u8], mode: Mode) -> String {
    put_with(s3, bucket, key, body, mode)
        .await
        .version_id
        .unwrap()
}

async fn get(s3: &Client, bucket: &str, key: &str, range: Option<String>, mode: Mode) -> Vec<u8> {
    get_at(s3, bucket, key, None, range, mode).await
}

/// The bytes of `range` of a version (the latest when `None`), read with `mode`'s key.
async fn get_at(
    s3: &Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    range: Option<String>,
    mode: Mode,
) -> Vec<u8> {
    let out = with_read_key!(
        s3.get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .set_range(range),
        mode
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("GET {key} {mode:?}: {e:?}"));
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

async fn head_of(
    s3: &Client,
    bucket: &str,
    key: &str,
) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    s3.head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn every_mode_round_trips_every_size_and_range() {
    let server = server("");
    kms(&server, "add-key", "testkey-1");
    let s3 = server.client();
    s3.create_bucket().bucket("sse").send().await.unwrap();
    let sizes = [0, 1, PACKAGE - 1, PACKAGE, PACKAGE + 1, 300 * 1024 + 7];
    let modes = [Mode::S3, Mode::Kms("testkey-1"), Mode::Customer(1)];
    for mode in modes {
        for (i, &size) in sizes.iter().enumerate() {
            let key = format!("{mode:?}-{size}");
            let body = pattern(size, i as u64);
            let etag = put(&s3, "sse", &key, &body, mode).await;
            let md5 = format!("\"{}\"", hex::encode(md5::Md5::digest(&body)));
            // SSE-S3's ETag is the MD5; SSE-KMS's and SSE-C's must not reveal it.
            assert_eq!(etag == md5, matches!(mode, Mode::S3), "{key}: {etag}");
            assert_eq!(get(&s3, "sse", &key, None, mode).await, body, "{key}");
            if size > 2 {
                for (a, b) in [(0, 0), (size - 1, size - 1), (1, size - 2)]
                    .into_iter()
                    .chain((size > PACKAGE).then_some((PACKAGE - 1, PACKAGE)))
                {
                    let got = get(&s3, "sse", &key, Some(format!("bytes={a}-{b}")), mode).await;
                    assert_eq!(got, &body[a..=b], "{key} bytes {a}-{b}");
                }
            }
            let head = with_read_key!(s3.head_object().bucket("sse").key(&key), mode)
                .send()
                .await
                .unwrap();
            assert_eq!(head.content_length, Some(size as i64));
            assert_eq!(head.e_tag.as_deref(), Some(etag.as_str()));
            match mode {
                Mode::S3 => assert_eq!(
                    head.server_side_encryption,
                    Some(ServerSideEncryption::Aes256)
                ),
                Mode::Kms(k) => {
                    assert_eq!(
                        head.server_side_encryption,
                        Some(ServerSideEncryption::AwsKms)
                    );
                    assert_eq!(head.ssekms_key_id.as_deref(), Some(k));
                }
                Mode::Customer(seed) => {
                    assert_eq!(head.sse_customer_algorithm.as_deref(), Some("AES256"));
                    assert_eq!(head.sse_customer_key_md5, Some(customer_key(seed).1));
                    assert_eq!(head.server_side_encryption, None);
                }
                Mode::Plain => unreachable!(),
            }
        }
    }

    // After a restart the keyring is read again and everything still opens.
    let mut server = server;
    server.stop();
    server.restart();
    let s3 = server.client();
    for mode in modes {
        let body = pattern(PACKAGE + 1, 4);
        assert_eq!(
            get(&s3, "sse", &format!("{mode:?}-{}", PACKAGE + 1), None, mode).await,
            body
        );
    }
}

#[tokio::test]
async fn bad_keys_and_mixed_headers_get_s3s_errors() {
    let server = server("");
    kms(&server, "add-key", "testkey-1");
    let s3 = server.client();
    s3.create_bucket().bucket("errs").send().await.unwrap();
    let body = pattern(1000, 1);
    put(&s3, "errs", "c", &body, Mode::Customer(1)).await;
    put(&s3, "errs", "plain", &body, Mode::Plain).await;

    // An SSE-C object needs its key on GET and HEAD; the wrong key is 403.
    let e = s3
        .get_object()
        .bucket("errs")
        .key("c")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(400));
    let e = s3
        .head_object()
        .bucket("errs")
        .key("c")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(400));
    let e = with_read_key!(s3.get_object().bucket("errs").key("c"), Mode::Customer(2))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(403));
    // SSE-C headers on an object that is not SSE-C.
    let e = with_read_key!(
        s3.get_object().bucket("errs").key("plain"),
        Mode::Customer(1)
    )
    .send()
    .await
    .unwrap_err();
    assert_eq!(error_status(&e), Some(400));

    // A key MD5 that does not match, a key of the wrong length, a missing algorithm.
    let (key, _) = customer_key(1);
    let (_, other_md5) = customer_key(2);
    let e = s3
        .put_object()
        .bucket("errs")
        .key("x")
        .body(body.clone().into())
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key)
        .sse_customer_key_md5(&other_md5)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("InvalidArgument"));
    let b64 = base64::engine::general_purpose::STANDARD;
    let short = [9u8; 16];
    let e = s3
        .put_object()
        .bucket("errs")
        .key("x")
        .body(body.clone().into())
        .sse_customer_algorithm("AES256")
        .sse_customer_key(b64.encode(short))
        .sse_customer_key_md5(b64.encode(md5::Md5::digest(short)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("InvalidArgument"));

    // SSE-KMS: an unknown key; a key id without aws:kms.
    let e = with_mode!(
        s3.put_object()
            .bucket("errs")
            .key("x")
            .body(body.clone().into()),
        Mode::Kms("no-such-key")
    )
    .send()
    .await
    .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("KMS.NotFoundException"));
    let e = s3
        .put_object()
        .bucket("errs")
        .key("x")
        .body(body.clone().into())
        .server_side_encryption(ServerSideEncryption::Aes256)
        .ssekms_key_id("testkey-1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("InvalidArgument"));
    // Nothing was stored by any refused write.
    let e = s3
        .head_object()
        .bucket("errs")
        .key("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(404));

    // Without sse_c_over_http, SSE-C over plain HTTP is refused as on AWS.
    let strict = TestServer::start();
    let s3 = strict.client();
    s3.create_bucket().bucket("strict").send().await.unwrap();
    let e = with_mode!(
        s3.put_object().bucket("strict").key("c").body(body.into()),
        Mode::Customer(1)
    )
    .send()
    .await
    .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("InvalidRequest"));
}

async fn multipart(s3: &Client, bucket: &str, key: &str, parts: &[Vec<u8>], mode: Mode) -> String {
    let upload = with_mode!(s3.create_multipart_upload().bucket(bucket).key(key), mode)
        .send()
        .await
        .unwrap();
    let id = upload.upload_id.unwrap();
    let mut done = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = with_read_key!(
            s3.upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .part_number(n)
                .body(part.clone().into()),
            mode
        )
        .send()
        .await
        .unwrap();
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag.unwrap())
                .build(),
        );
    }
    let completed = s3
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap();
    // CompleteMultipartUpload reports the version's encryption (SSE-C has no fields there).
    match mode {
        Mode::S3 => assert_eq!(
            completed.server_side_encryption,
            Some(ServerSideEncryption::Aes256)
        ),
        Mode::Kms(k) => assert_eq!(completed.ssekms_key_id.as_deref(), Some(k)),
        _ => assert_eq!(completed.server_side_encryption, None),
    }
    completed.e_tag.unwrap()
}

#[tokio::test]
async fn multipart_and_copies_seal_every_part_with_the_versions_key() {
    let server = server("");
    kms(&server, "add-key", "testkey-2");
    let s3 = server.client();
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    let parts = vec![
        pattern(5 << 20, 1),
        pattern(5 << 20, 2),
        pattern(3 * PACKAGE + 5, 3),
    ];
    let whole: Vec<u8> = parts.concat();
    for mode in [Mode::S3, Mode::Kms("testkey-2"), Mode::Customer(7)] {
        let key = format!("mpu-{mode:?}");
        let etag = multipart(&s3, "mpu", &key, &parts, mode).await;
        assert!(etag.ends_with("-3\""), "{etag}");
        assert_eq!(get(&s3, "mpu", &key, None, mode).await, whole);
        // A range across the first part boundary, and part 3 by number.
        let a = (5 << 20) - 10;
        assert_eq!(
            get(
                &s3,
                "mpu",
                &key,
                Some(format!("bytes={a}-{}", a + 20)),
                mode
            )
            .await,
            &whole[a..=a + 20]
        );
        let part3 = with_read_key!(s3.get_object().bucket("mpu").key(&key).part_number(3), mode)
            .send()
            .await
            .unwrap();
        assert_eq!(
            part3.body.collect().await.unwrap().into_bytes().to_vec(),
            parts[2]
        );
    }

    // An SSE-C upload's parts need the key.
    let upload = with_mode!(
        s3.create_multipart_upload().bucket("mpu").key("nokey"),
        Mode::Customer(7)
    )
    .send()
    .await
    .unwrap();
    let e = s3
        .upload_part()
        .bucket("mpu")
        .key("nokey")
        .upload_id(upload.upload_id.unwrap())
        .part_number(1)
        .body(pattern(10, 1).into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(400));

    // CopyObject from SSE-C to SSE-S3 (copy-source key), then from SSE-S3 to clear.
    let (key, md5) = customer_key(7);
    s3.copy_object()
        .bucket("mpu")
        .key("copy-s3")
        .copy_source("mpu/mpu-Customer(7)")
        .copy_source_sse_customer_algorithm("AES256")
        .copy_source_sse_customer_key(&key)
        .copy_source_sse_customer_key_md5(&md5)
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();
    assert_eq!(get(&s3, "mpu", "copy-s3", None, Mode::S3).await, whole);
    let head = head_of(&s3, "mpu", "copy-s3").await;
    assert_eq!(
        head.server_side_encryption,
        Some(ServerSideEncryption::Aes256)
    );
    s3.copy_object()
        .bucket("mpu")
        .key("copy-plain")
        .copy_source("mpu/copy-s3")
        .send()
        .await
        .unwrap();
    let head = head_of(&s3, "mpu", "copy-plain").await;
    assert_eq!(head.server_side_encryption, None);
    assert_eq!(
        get(&s3, "mpu", "copy-plain", None, Mode::Plain).await,
        whole
    );
    // Without the copy-source key, the SSE-C source cannot be read.
    let e = s3
        .copy_object()
        .bucket("mpu")
        .key("copy-fail")
        .copy_source("mpu/mpu-Customer(7)")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(400));

    // UploadPartCopy from the SSE-C object into an SSE-KMS upload.
    let upload = with_mode!(
        s3.create_multipart_upload().bucket("mpu").key("pc"),
        Mode::Kms("testkey-2")
    )
    .send()
    .await
    .unwrap();
    let id = upload.upload_id.unwrap();
    let copied = s3
        .upload_part_copy()
        .bucket("mpu")
        .key("pc")
        .upload_id(&id)
        .part_number(1)
        .copy_source("mpu/mpu-Customer(7)")
        .copy_source_range(format!("bytes=0-{}", (5 << 20) + 99))
        .copy_source_sse_customer_algorithm("AES256")
        .copy_source_sse_customer_key(&key)
        .copy_source_sse_customer_key_md5(&md5)
        .send()
        .await
        .unwrap();
    s3.complete_multipart_upload()
        .bucket("mpu")
        .key("pc")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag(copied.copy_part_result.unwrap().e_tag.unwrap())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        get(&s3, "mpu", "pc", None, Mode::Plain).await,
        &whole[..(5 << 20) + 100]
    );
}

async fn set_default(
    s3: &Client,
    bucket: &str,
    algorithm: ServerSideEncryption,
    key: Option<&str>,
) -> Result<
    aws_sdk_s3::operation::put_bucket_encryption::PutBucketEncryptionOutput,
    aws_sdk_s3::error::SdkError<
        aws_sdk_s3::operation::put_bucket_encryption::PutBucketEncryptionError,
    >,
> {
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(default_encryption(algorithm, key))
        .send()
        .await
}

fn default_encryption(
    algorithm: ServerSideEncryption,
    key: Option<&str>,
) -> ServerSideEncryptionConfiguration {
    ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(algorithm)
                        .set_kms_master_key_id(key.map(str::to_owned))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn bucket_default_encryption_applies_to_writes_without_headers() {
    let server = server("");
    kms(&server, "add-key", "testkey-1");
    let s3 = server.client();
    s3.create_bucket().bucket("dflt").send().await.unwrap();
    let e = s3
        .get_bucket_encryption()
        .bucket("dflt")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&e).as_deref(),
        Some("ServerSideEncryptionConfigurationNotFoundError")
    );
    set_default(&s3, "dflt", ServerSideEncryption::Aes256, None)
        .await
        .unwrap();
    put(&s3, "dflt", "a", b"default", Mode::Plain).await;
    let head = head_of(&s3, "dflt", "a").await;
    assert_eq!(
        head.server_side_encryption,
        Some(ServerSideEncryption::Aes256)
    );

    set_default(&s3, "dflt", ServerSideEncryption::AwsKms, Some("testkey-1"))
        .await
        .unwrap();
    let got = s3
        .get_bucket_encryption()
        .bucket("dflt")
        .send()
        .await
        .unwrap();
    let rule = &got.server_side_encryption_configuration.unwrap().rules[0];
    let by_default = rule
        .apply_server_side_encryption_by_default
        .as_ref()
        .unwrap();
    assert_eq!(by_default.sse_algorithm, ServerSideEncryption::AwsKms);
    assert_eq!(by_default.kms_master_key_id.as_deref(), Some("testkey-1"));
    put(&s3, "dflt", "b", b"kms default", Mode::Plain).await;
    let head = head_of(&s3, "dflt", "b").await;
    assert_eq!(head.ssekms_key_id.as_deref(), Some("testkey-1"));
    // A request's own headers win over the default.
    put(&s3, "dflt", "c", b"own", Mode::S3).await;
    let head = head_of(&s3, "dflt", "c").await;
    assert_eq!(
        head.server_side_encryption,
        Some(ServerSideEncryption::Aes256)
    );
    // A default naming a key the keyring lacks is refused.
    let e = set_default(&s3, "dflt", ServerSideEncryption::AwsKms, Some("missing"))
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("KMS.NotFoundException"));

    s3.delete_bucket_encryption()
        .bucket("dflt")
        .send()
        .await
        .unwrap();
    put(&s3, "dflt", "d", b"clear", Mode::Plain).await;
    let head = head_of(&s3, "dflt", "d").await;
    assert_eq!(head.server_side_encryption, None);

    // `[encryption] default` gives every new bucket a default, as AWS does since 2023.
    let server = TestServer::start_with(ServerOptions {
        extra_config: "[encryption]\ndefault = \"AES256\"\n".into(),
        ..ServerOptions::default()
    });
    let s3 = server.client();
    s3.create_bucket().bucket("new").send().await.unwrap();
    put(&s3, "new", "a", b"x", Mode::Plain).await;
    let head = head_of(&s3, "new", "a").await;
    assert_eq!(
        head.server_side_encryption,
        Some(ServerSideEncryption::Aes256)
    );
}

#[tokio::test]
async fn disks_hold_ciphertext_a_flipped_shard_heals_and_keys_stay_out_of_logs() {
    let audit = tempfile::tempdir().unwrap();
    let audit_path = audit.path().join("audit.log");
    let server = server(&format!("[audit]\npath = \"{}\"\n", audit_path.display()));
    let s3 = server.client();
    s3.create_bucket().bucket("disk").send().await.unwrap();
    let body: Vec<u8> = MARKER.iter().copied().cycle().take(3 << 20).collect();
    let small: Vec<u8> = MARKER.iter().copied().cycle().take(4000).collect();
    put(&s3, "disk", "big", &body, Mode::S3).await;
    put(&s3, "disk", "small-c", &small, Mode::Customer(3)).await;
    put(
        &s3,
        "disk",
        "small-kms",
        &small,
        Mode::Kms("meridian-default-kms"),
    )
    .await;
    assert_eq!(
        get(&s3, "disk", "small-c", None, Mode::Customer(3)).await,
        small
    );
    let refused = with_read_key!(
        s3.get_object().bucket("disk").key("small-c"),
        Mode::Customer(4)
    )
    .send()
    .await
    .unwrap_err();
    // The error answer (status, headers, body) names neither key.
    let answer = format!("{refused:?}");
    for seed in [3u8, 4] {
        let (key, _) = customer_key(seed);
        assert!(
            !answer.contains(&key),
            "a key in the error answer: {answer}"
        );
    }

    // Neither the shards nor RocksDB (inline objects live there) hold the plaintext.
    for file in files_under(&server.data_dir) {
        if file.ends_with("server.log") {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        assert!(!contains(&bytes, MARKER), "plaintext in {}", file.display());
    }
    let mode = std::fs::metadata(server.data_dir.join("keyring.toml")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    // Flip bytes in the object's shard on two disks: served correctly, then healed.
    let mut originals = Vec::new();
    for slot in [1usize, 4] {
        let shard = files_under(&server.disk_dir(slot))
            .into_iter()
            .filter(|p| !p.to_string_lossy().contains("staging"))
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .unwrap();
        let good = std::fs::read(&shard).unwrap();
        let mut bad = good.clone();
        bad[good.len() / 2] ^= 0x21;
        std::fs::write(&shard, &bad).unwrap();
        originals.push((shard, good));
    }
    assert_eq!(get(&s3, "disk", "big", None, Mode::S3).await, body);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !originals
        .iter()
        .all(|(p, good)| std::fs::read(p).ok().as_ref() == Some(good))
    {
        assert!(
            Instant::now() < deadline,
            "not healed; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get(
            &s3,
            "disk",
            "big",
            Some("bytes=65530-65540".into()),
            Mode::S3
        )
        .await,
        &body[65530..=65540]
    );

    // No SSE-C key (base64, hex or raw) in the log, the audit log or RocksDB.
    let raw_keys: Vec<Vec<u8>> = [3u8, 4]
        .iter()
        .map(|&seed| {
            (0..32)
                .map(|i| seed.wrapping_mul(31).wrapping_add(i))
                .collect()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !contains(&std::fs::read(&audit_path).unwrap_or_default(), b"small-c") {
        assert!(
            Instant::now() < deadline,
            "no audit line for the SSE-C requests"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut places: Vec<PathBuf> = files_under(&server.data_dir.join("meta"));
    places.push(server.data_dir.join("server.log"));
    places.push(audit_path.clone());
    for place in places {
        let bytes = std::fs::read(&place).unwrap_or_default();
        for raw in &raw_keys {
            let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
            assert!(
                !contains(&bytes, b64.as_bytes()),
                "a key in {}",
                place.display()
            );
            assert!(
                !contains(&bytes, hex::encode(raw).as_bytes()),
                "a key in {}",
                place.display()
            );
            assert!(!contains(&bytes, raw), "a raw key in {}", place.display());
        }
    }
}

#[tokio::test]
async fn a_key_rotated_while_serving_seals_new_versions_and_still_opens_old_ones() {
    let mut server = server("");
    kms(&server, "add-key", "testkey-1");
    let s3 = server.client();
    s3.create_bucket().bucket("rot").send().await.unwrap();
    let old = pattern(200_000, 1);
    put(&s3, "rot", "old", &old, Mode::Kms("testkey-1")).await;
    kms(&server, "rotate", "testkey-1");
    let keyring = std::fs::read_to_string(server.data_dir.join("keyring.toml")).unwrap();
    assert_eq!(
        keyring.matches("name = \"testkey-1\"").count(),
        2,
        "{keyring}"
    );
    let new = pattern(200_000, 2);
    put(&s3, "rot", "new", &new, Mode::Kms("testkey-1")).await;
    assert_eq!(get(&s3, "rot", "old", None, Mode::Plain).await, old);
    assert_eq!(get(&s3, "rot", "new", None, Mode::Plain).await, new);
    // In the background, the old version's data key is sealed again with version 2.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.log().contains("re-sealed data keys") {
        assert!(
            Instant::now() < deadline,
            "no re-sealing pass; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop();
    server.restart();
    let s3 = server.client();
    assert_eq!(get(&s3, "rot", "old", None, Mode::Plain).await, old);
    assert_eq!(get(&s3, "rot", "new", None, Mode::Plain).await, new);

    // A keyring others can read is refused at start.
    server.stop();
    let path = server.data_dir.join("keyring.toml");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let status = std::process::Command::new(meridian_binary())
        .args(["serve", "--address", "127.0.0.1:0", "--data"])
        .arg(&server.data_dir)
        .env("MERIDIAN_LOG", "error")
        .output()
        .unwrap();
    assert!(!status.status.success());
    assert!(
        String::from_utf8_lossy(&status.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

/// `rule` selecting SSE-KMS objects too, re-encrypted at the destination with `key`.
fn with_kms(
    rule: aws_sdk_s3::types::ReplicationRule,
    key: &str,
) -> aws_sdk_s3::types::ReplicationRule {
    use aws_sdk_s3::types::{
        Destination, EncryptionConfiguration, SourceSelectionCriteria, SseKmsEncryptedObjects,
        SseKmsEncryptedObjectsStatus,
    };
    let dest = rule.destination().unwrap();
    aws_sdk_s3::types::ReplicationRule::builder()
        .set_id(rule.id().map(str::to_owned))
        .set_priority(rule.priority())
        .status(rule.status().clone())
        .set_filter(rule.filter().cloned())
        .set_delete_marker_replication(rule.delete_marker_replication().cloned())
        .source_selection_criteria(
            SourceSelectionCriteria::builder()
                .sse_kms_encrypted_objects(
                    SseKmsEncryptedObjects::builder()
                        .status(SseKmsEncryptedObjectsStatus::Enabled)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .destination(
            Destination::builder()
                .bucket(dest.bucket())
                .encryption_configuration(
                    EncryptionConfiguration::builder()
                        .replica_kms_key_id(key)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// Waits until the source reports `key` COMPLETED (HEAD, which reports the status, needs an
/// SSE-C key too).
async fn wait_completed_with(s3: &Client, key: &str, version: &str, mode: Mode) {
    meridian_tests::regions::wait_for(LIMIT, &format!("{key} COMPLETED"), || async {
        let head = with_read_key!(
            s3.head_object().bucket("enc").key(key).version_id(version),
            mode
        )
        .send()
        .await
        .ok()?;
        (head.replication_status().map(|s| s.as_str()) == Some("COMPLETED")).then_some(())
    })
    .await;
}

/// The ETag of an SSE-C object, read with its key.
async fn head_c(s3: &Client, key: &str) -> String {
    with_read_key!(s3.head_object().bucket("enc").key(key), Mode::Customer(5))
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap()
}

#[tokio::test]
async fn every_mode_replicates_sse_s3_and_kms_sealed_with_the_peers_keys_sse_c_as_ciphertext() {
    use meridian_tests::regions::{
        assert_exact_replica, put_rules, replication_status, rule_to, versioned_bucket, Regions,
        RegionsOptions,
    };
    let mut regions = Regions::start(RegionsOptions {
        extra: "[encryption]\nsse_c_over_http = true\n".into(),
        ..RegionsOptions::one_way(2)
    });
    for server in &regions.servers {
        kms(server, "add-key", "testkey-1");
    }
    let (east, west) = (regions.client(0), regions.client(1));
    for s3 in [&east, &west] {
        versioned_bucket(s3, "enc").await;
        versioned_bucket(s3, "nokms").await;
    }
    put_rules(
        &east,
        "enc",
        vec![with_kms(
            rule_to("west", "enc", "all", 1, true),
            "testkey-1",
        )],
    )
    .await;
    put_rules(
        &east,
        "nokms",
        vec![rule_to("west", "nokms", "all", 1, true)],
    )
    .await;

    let marker_body: Vec<u8> = MARKER.iter().copied().cycle().take(3 << 20).collect();
    let mut sent = Vec::new();
    for (key, body, mode) in [
        ("s3-small", pattern(1000, 1), Mode::S3),
        ("s3-big", marker_body.clone(), Mode::S3),
        ("kms-small", pattern(PACKAGE + 1, 2), Mode::Kms("testkey-1")),
        ("plain", pattern(5000, 3), Mode::Plain),
    ] {
        sent.push((key, put_version(&east, "enc", key, &body, mode).await));
    }
    let parts = vec![pattern(5 << 20, 4), pattern(1 << 20, 5)];
    multipart(&east, "enc", "kms-mpu", &parts, Mode::Kms("testkey-1")).await;
    let mpu_version = head_of(&east, "enc", "kms-mpu").await.version_id.unwrap();
    sent.push(("kms-mpu", mpu_version));
    for (key, version) in &sent {
        assert_exact_replica(&east, &west, "enc", key, version).await;
    }
    let replica = head_of(&west, "enc", "kms-mpu").await;
    assert_eq!(replica.ssekms_key_id.as_deref(), Some("testkey-1"));

    // The source rotates its key mid-way: new versions are sealed with the new version and
    // still replicate; old ones still open on both sides.
    kms(&regions.servers[0], "rotate", "testkey-1");
    let v = put_version(
        &east,
        "enc",
        "after-rotation",
        b"rotated",
        Mode::Kms("testkey-1"),
    )
    .await;
    assert_exact_replica(&east, &west, "enc", "after-rotation", &v).await;
    assert_eq!(
        get(&east, "enc", "kms-small", None, Mode::Plain).await,
        pattern(PACKAGE + 1, 2)
    );

    // Without SseKmsEncryptedObjects, SSE-KMS versions stay home (no replication status);
    // SSE-S3 ones go.
    let kms_v = put_version(&east, "nokms", "k", b"kms", Mode::Kms("testkey-1")).await;
    let s3_v = put_version(&east, "nokms", "s", b"sse-s3", Mode::S3).await;
    assert_exact_replica(&east, &west, "nokms", "s", &s3_v).await;
    assert_eq!(replication_status(&east, "nokms", "k", &kms_v).await, None);
    assert!(west
        .head_object()
        .bucket("nokms")
        .key("k")
        .send()
        .await
        .is_err());

    // kill -9 of the source, then of the target, while a large version of each mode is in
    // flight.
    let big: Vec<u8> = MARKER.iter().copied().cycle().take(24 << 20).collect();
    for (victim, mode) in [
        (0usize, Mode::S3),
        (1, Mode::S3),
        (0, Mode::Customer(5)),
        (1, Mode::Kms("testkey-1")),
    ] {
        let key = format!("inflight-{victim}-{mode:?}");
        let v = put_version(&east, "enc", &key, &big, mode).await;
        regions.servers[victim].kill9();
        regions.servers[victim].restart();
        let (east, west) = (regions.client(0), regions.client(1));
        wait_completed_with(&east, &key, &v, mode).await;
        match mode {
            Mode::Customer(_) => {
                let bytes = get_at(&west, "enc", &key, Some(&v), None, mode).await;
                assert!(
                    bytes == big,
                    "{key}: the replica decrypts to the source's bytes"
                );
            }
            _ => assert_exact_replica(&east, &west, "enc", &key, &v).await,
        }
    }

    // SSE-C versions travel sealed: inline, one segment, a 24 MiB one sent in parts cut
    // where they fall, and a multipart one sent as one PUT; only the key opens them on west.
    let (east, west) = (regions.client(0), regions.client(1));
    let mut sealed = Vec::new();
    for (key, body) in [
        ("c-small", pattern(3000, 7)),
        ("c-3mib", pattern(3 << 20, 8)),
        ("c-24mib", pattern(24 << 20, 9)),
    ] {
        let v = put_version(&east, "enc", key, &body, Mode::Customer(5)).await;
        sealed.push((key, v, body));
    }
    let parts = vec![pattern(5 << 20, 10), pattern(PACKAGE + 3, 11)];
    multipart(&east, "enc", "c-mpu", &parts, Mode::Customer(5)).await;
    let v = with_read_key!(
        east.head_object().bucket("enc").key("c-mpu"),
        Mode::Customer(5)
    )
    .send()
    .await
    .unwrap()
    .version_id
    .unwrap();
    sealed.push(("c-mpu", v, parts.concat()));
    for (key, version, body) in &sealed {
        wait_completed_with(&east, key, version, Mode::Customer(5)).await;
        let got = with_read_key!(
            west.get_object()
                .bucket("enc")
                .key(*key)
                .version_id(version),
            Mode::Customer(5)
        )
        .send()
        .await
        .unwrap();
        assert_eq!(got.e_tag, Some(head_c(&east, key).await), "{key}");
        assert_eq!(got.sse_customer_key_md5, Some(customer_key(5).1));
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert!(
            bytes[..] == body[..],
            "{key}: the replica decrypts to the source's bytes"
        );
        let e = west
            .get_object()
            .bucket("enc")
            .key(*key)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_status(&e), Some(400), "{key} without its key");
        let e = with_read_key!(west.get_object().bucket("enc").key(*key), Mode::Customer(6))
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_status(&e), Some(403), "{key} with another key");
    }
    let range = Some("bytes=16777210-16777230".to_owned());
    assert_eq!(
        get(&west, "enc", "c-24mib", range, Mode::Customer(5)).await,
        &pattern(24 << 20, 9)[16777210..=16777230]
    );
    let verify = meridian_tests::regions::drill_verify(&regions);
    assert!(verify.contains("0 different"), "{verify}");

    // West sealed its replicas with its own keys: its disks hold no plaintext.
    let west_dir = regions.servers[1].data_dir.clone();
    for file in files_under(&west_dir) {
        if file.ends_with("server.log") {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        assert!(!contains(&bytes, MARKER), "plaintext in {}", file.display());
    }
}
