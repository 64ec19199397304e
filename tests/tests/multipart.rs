//! Multipart uploads end to end with aws-sdk-s3: the whole flow, part replacement, copy parts,
//! listings, every error S3 gives, no shard files left behind, and a server killed mid-upload.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use md5::Digest;
use meridian_tests::{error_code, error_status, pattern, TestServer};

const MIB: usize = 1 << 20;

async fn setup() -> (TestServer, Client) {
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    (server, s3)
}

async fn create(s3: &Client, key: &str) -> String {
    s3.create_multipart_upload()
        .bucket("mpu")
        .key(key)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned()
}

async fn upload(s3: &Client, key: &str, id: &str, n: i32, data: &[u8]) -> String {
    let out = s3
        .upload_part()
        .bucket("mpu")
        .key(key)
        .upload_id(id)
        .part_number(n)
        .body(data.to_vec().into())
        .send()
        .await
        .unwrap();
    out.e_tag().unwrap().to_owned()
}

fn completed(parts: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build())
                .collect(),
        ))
        .build()
}

async fn read(s3: &Client, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket("mpu")
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

fn shard_file_count(server: &TestServer) -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            count(&p)
                        } else if p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("format"))
                        {
                            0
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    (0..6).map(|slot| count(&server.disk_dir(slot))).sum()
}

/// Waits (bounded) until the reclaimer has brought the shard file count to `expected`.
async fn wait_for_shard_files(server: &TestServer, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while shard_file_count(server) != expected {
        assert!(
            Instant::now() < deadline,
            "shard files: {} != {expected}",
            shard_file_count(server)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn parts_uploaded_out_of_order_assemble_into_one_object() {
    let (server, s3) = setup().await;
    let parts = [pattern(5 * MIB, 1), pattern(5 * MIB + 3, 2), pattern(1, 3)];
    let id = create(&s3, "model.bin").await;
    let mut etags = vec![String::new(); 3];
    for i in [2usize, 0, 1] {
        etags[i] = upload(&s3, "model.bin", &id, i as i32 + 1, &parts[i]).await;
    }
    let listed = s3
        .list_parts()
        .bucket("mpu")
        .key("model.bin")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed
            .parts()
            .iter()
            .map(|p| p.part_number().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(listed.parts()[1].size(), Some(5 * MIB as i64 + 3));

    let done = s3
        .complete_multipart_upload()
        .bucket("mpu")
        .key("model.bin")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &etags[0]), (2, &etags[1]), (3, &etags[2])]))
        .send()
        .await
        .unwrap();
    let mut md5s = Vec::new();
    for p in &parts {
        md5s.extend_from_slice(&md5::Md5::digest(p));
    }
    let expected_etag = format!("\"{}-3\"", hex::encode(md5::Md5::digest(&md5s)));
    assert_eq!(done.e_tag(), Some(expected_etag.as_str()));
    let whole: Vec<u8> = parts.concat();
    assert_eq!(read(&s3, "model.bin").await, whole);

    let head = s3
        .head_object()
        .bucket("mpu")
        .key("model.bin")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(5 * MIB as i64 + 3));
    assert_eq!(head.parts_count(), Some(3));
    // S3 answers a HEAD for a part like the GET: 206 with the part's Content-Range.
    let raw_head = meridian_tests::raw::send_signed(
        &server.endpoint,
        "HEAD",
        "/mpu/model.bin?partNumber=2",
        &[],
        b"",
        aws_sigv4::http_request::SignableBody::UnsignedPayload,
        meridian_tests::ACCESS_KEY,
        meridian_tests::SECRET_KEY,
    );
    assert_eq!(raw_head.status, 206);
    let content_range = raw_head
        .headers
        .iter()
        .find(|(k, _)| k == "content-range")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        content_range,
        Some(format!("bytes {}-{}/{}", 5 * MIB, 10 * MIB + 2, whole.len()).as_str())
    );
    let part3 = s3
        .get_object()
        .bucket("mpu")
        .key("model.bin")
        .part_number(3)
        .send()
        .await
        .unwrap();
    assert_eq!(
        part3.body.collect().await.unwrap().into_bytes().as_ref(),
        parts[2].as_slice()
    );
    let err = s3
        .get_object()
        .bucket("mpu")
        .key("model.bin")
        .part_number(4)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidPartNumber"));
    // The upload is gone once completed.
    let err = s3
        .list_parts()
        .bucket("mpu")
        .key("model.bin")
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchUpload"));
}

#[tokio::test]
async fn reuploading_a_part_replaces_it_and_leaves_no_shards_behind() {
    let (server, s3) = setup().await;
    let id = create(&s3, "k").await;
    upload(&s3, "k", &id, 1, &pattern(5 * MIB, 1)).await;
    let second = pattern(5 * MIB, 2);
    let e1 = upload(&s3, "k", &id, 1, &second).await;
    let e2 = upload(&s3, "k", &id, 2, &pattern(300_000, 3)).await;
    let unused = upload(&s3, "k", &id, 3, &pattern(300_000, 4)).await;
    let _ = unused;
    s3.complete_multipart_upload()
        .bucket("mpu")
        .key("k")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .unwrap();
    let mut expected = second.clone();
    expected.extend(pattern(300_000, 3));
    assert_eq!(read(&s3, "k").await, expected);
    // Two erasure-coded parts remain, 6 shard files each; the replaced and the unused are reclaimed.
    wait_for_shard_files(&server, 12).await;
}

#[tokio::test]
async fn abort_removes_the_upload_and_its_shards() {
    let (server, s3) = setup().await;
    let id = create(&s3, "gone").await;
    upload(&s3, "gone", &id, 1, &pattern(5 * MIB, 1)).await;
    upload(&s3, "gone", &id, 2, &pattern(2 * MIB, 1)).await;
    assert_eq!(shard_file_count(&server), 12);
    s3.abort_multipart_upload()
        .bucket("mpu")
        .key("gone")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    wait_for_shard_files(&server, 0).await;
    let err = s3
        .upload_part()
        .bucket("mpu")
        .key("gone")
        .upload_id(&id)
        .part_number(3)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchUpload"));
    let err = s3
        .abort_multipart_upload()
        .bucket("mpu")
        .key("gone")
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchUpload"));
    assert_eq!(error_status(&err), Some(404));
}

#[tokio::test]
async fn completion_errors_match_s3() {
    let (_server, s3) = setup().await;
    let id = create(&s3, "e").await;
    let small = upload(&s3, "e", &id, 1, &pattern(1000, 1)).await;
    let small2 = upload(&s3, "e", &id, 2, &pattern(1000, 2)).await;
    let complete = |parts: CompletedMultipartUpload| {
        s3.complete_multipart_upload()
            .bucket("mpu")
            .key("e")
            .upload_id(&id)
            .multipart_upload(parts)
            .send()
    };
    let err = complete(completed(&[(1, &small), (2, &small2)]))
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("EntityTooSmall"));
    let err = complete(completed(&[(2, &small2), (1, &small)]))
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidPartOrder"));
    let err = complete(completed(&[(1, "\"00000000000000000000000000000000\"")]))
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidPart"));
    let err = complete(completed(&[(7, &small)])).await.unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidPart"));
    let err = complete(CompletedMultipartUpload::builder().build())
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("MalformedXML"));
    for n in [0, 10_001] {
        let err = s3
            .upload_part()
            .bucket("mpu")
            .key("e")
            .upload_id(&id)
            .part_number(n)
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            error_code(&err).as_deref(),
            Some("InvalidArgument"),
            "part number {n}"
        );
    }
    // None of that changed anything: a single small part still completes.
    complete(completed(&[(1, &small)])).await.unwrap();
    assert_eq!(read(&s3, "e").await, pattern(1000, 1));
    let err = s3
        .upload_part()
        .bucket("mpu")
        .key("e")
        .upload_id("no-such-upload")
        .part_number(1)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchUpload"));
}

#[tokio::test]
async fn upload_part_copy_takes_a_source_range() {
    let (_server, s3) = setup().await;
    let source = pattern(12 * MIB, 9);
    s3.put_object()
        .bucket("mpu")
        .key("src")
        .body(source.clone().into())
        .send()
        .await
        .unwrap();
    let id = create(&s3, "assembled").await;
    let p1 = s3
        .upload_part_copy()
        .bucket("mpu")
        .key("assembled")
        .upload_id(&id)
        .part_number(1)
        .copy_source("mpu/src")
        .copy_source_range(format!("bytes=0-{}", 6 * MIB - 1))
        .send()
        .await
        .unwrap();
    let p2 = s3
        .upload_part_copy()
        .bucket("mpu")
        .key("assembled")
        .upload_id(&id)
        .part_number(2)
        .copy_source("mpu/src")
        .copy_source_range(format!("bytes={}-{}", 10 * MIB, 12 * MIB - 1))
        .send()
        .await
        .unwrap();
    let e1 = p1.copy_part_result().unwrap().e_tag().unwrap().to_owned();
    let e2 = p2.copy_part_result().unwrap().e_tag().unwrap().to_owned();
    s3.complete_multipart_upload()
        .bucket("mpu")
        .key("assembled")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .unwrap();
    let mut expected = source[..6 * MIB].to_vec();
    expected.extend_from_slice(&source[10 * MIB..]);
    assert_eq!(read(&s3, "assembled").await, expected);
    let err = s3
        .upload_part_copy()
        .bucket("mpu")
        .key("assembled")
        .upload_id("x")
        .part_number(1)
        .copy_source("mpu/src")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchUpload"));
}

#[tokio::test]
async fn list_multipart_uploads_pages_and_groups() {
    let (_server, s3) = setup().await;
    let mut ids = Vec::new();
    for key in ["a/1", "a/2", "b/1", "c"] {
        ids.push((key, create(&s3, key).await));
    }
    let second_a1 = create(&s3, "a/1").await;
    let out = s3
        .list_multipart_uploads()
        .bucket("mpu")
        .send()
        .await
        .unwrap();
    assert_eq!(out.uploads().len(), 5);
    let out = s3
        .list_multipart_uploads()
        .bucket("mpu")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.uploads()
            .iter()
            .map(|u| u.key().unwrap())
            .collect::<Vec<_>>(),
        ["c"]
    );
    assert_eq!(
        out.common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap())
            .collect::<Vec<_>>(),
        ["a/", "b/"]
    );
    let out = s3
        .list_multipart_uploads()
        .bucket("mpu")
        .prefix("a/")
        .send()
        .await
        .unwrap();
    assert_eq!(out.uploads().len(), 3);

    let mut seen = Vec::new();
    let (mut km, mut um) = (None, None);
    for _ in 0..10 {
        let out = s3
            .list_multipart_uploads()
            .bucket("mpu")
            .max_uploads(2)
            .set_key_marker(km.clone())
            .set_upload_id_marker(um.clone())
            .send()
            .await
            .unwrap();
        seen.extend(
            out.uploads()
                .iter()
                .map(|u| u.upload_id().unwrap().to_owned()),
        );
        if !out.is_truncated().unwrap() {
            break;
        }
        km = out.next_key_marker().map(str::to_owned);
        um = out.next_upload_id_marker().map(str::to_owned);
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.contains(&second_a1));
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "no upload listed twice");
}

#[tokio::test]
async fn killed_mid_upload_the_upload_survives_and_completes() {
    let (mut server, s3) = setup().await;
    let id = s3
        .create_multipart_upload()
        .bucket("mpu")
        .key("resume")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let p1 = pattern(5 * MIB, 1);
    let p2 = pattern(5 * MIB, 2);
    let e1 = s3
        .upload_part()
        .bucket("mpu")
        .key("resume")
        .upload_id(&id)
        .part_number(1)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(p1.clone().into())
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    // Part 2 is in flight when the server dies.
    let s3b = s3.clone();
    let idb = id.clone();
    let in_flight = tokio::spawn(async move {
        s3b.upload_part()
            .bucket("mpu")
            .key("resume")
            .upload_id(&idb)
            .part_number(2)
            .body(pattern(40 * MIB, 7).into())
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.kill9();
    let _ = in_flight.await;
    server.restart();
    let s3 = server.client();

    let uploads = s3
        .list_multipart_uploads()
        .bucket("mpu")
        .send()
        .await
        .unwrap();
    assert_eq!(
        uploads
            .uploads()
            .iter()
            .map(|u| u.upload_id().unwrap())
            .collect::<Vec<_>>(),
        [id.as_str()]
    );
    let parts = s3
        .list_parts()
        .bucket("mpu")
        .key("resume")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    let first = parts
        .parts()
        .iter()
        .find(|p| p.part_number() == Some(1))
        .unwrap();
    assert_eq!(first.e_tag(), Some(e1.as_str()));
    assert_eq!(first.size(), Some(5 * MIB as i64));

    let e2 = s3
        .upload_part()
        .bucket("mpu")
        .key("resume")
        .upload_id(&id)
        .part_number(2)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(p2.clone().into())
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    s3.complete_multipart_upload()
        .bucket("mpu")
        .key("resume")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .unwrap();
    assert_eq!(read(&s3, "resume").await, [p1, p2].concat());
}

#[tokio::test]
async fn stale_uploads_are_aborted_in_the_background() {
    let server = TestServer::start_with(meridian_tests::ServerOptions {
        extra_config: "multipart_expiry = \"2s\"\n".into(),
        ..Default::default()
    });
    let s3 = server.client();
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    let id = create(&s3, "forgotten").await;
    upload(&s3, "forgotten", &id, 1, &pattern(MIB, 1)).await;
    assert_eq!(shard_file_count(&server), 6);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let uploads = s3
            .list_multipart_uploads()
            .bucket("mpu")
            .send()
            .await
            .unwrap();
        if uploads.uploads().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stale upload was not aborted"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_for_shard_files(&server, 0).await;
    let err = s3
        .list_parts()
        .bucket("mpu")
        .key("forgotten")
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchUpload"));
}
