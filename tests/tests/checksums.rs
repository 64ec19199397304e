//! Flexible checksums end to end: every algorithm in headers and aws-chunked trailers,
//! mismatches rejected with nothing stored, checksums returned with checksum mode, composite
//! and full-object multipart checksums, and GetObjectAttributes.

use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ChecksumType, ObjectAttributes};
use aws_sdk_s3::Client;
use base64::Engine;
use meridian_tests::raw::{aws_chunked, send_signed};
use meridian_tests::{
    checksummed_multipart, error_code, error_status, pattern, TestServer, ACCESS_KEY, SECRET_KEY,
};

const MIB: usize = 1 << 20;

fn b64(raw: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn crc32_raw(data: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, data) as u32
}

fn crc32(data: &[u8]) -> String {
    b64(&crc32_raw(data).to_be_bytes())
}

fn crc64nvme(data: &[u8]) -> String {
    b64(&crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, data).to_be_bytes())
}

async fn setup() -> (TestServer, Client) {
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("cks").send().await.unwrap();
    (server, s3)
}

#[tokio::test]
async fn every_algorithm_is_verified_stored_and_returned() {
    let (_server, s3) = setup().await;
    let data = pattern(700_000, 5);
    for alg in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ] {
        let key = format!("obj-{}", alg.as_str());
        let put = s3
            .put_object()
            .bucket("cks")
            .key(&key)
            .checksum_algorithm(alg.clone())
            .body(data.clone().into())
            .send()
            .await
            .unwrap();
        let sent = [
            put.checksum_crc32(),
            put.checksum_crc32_c(),
            put.checksum_crc64_nvme(),
            put.checksum_sha1(),
            put.checksum_sha256(),
        ]
        .into_iter()
        .flatten()
        .next()
        .map(str::to_owned);
        assert!(sent.is_some(), "{alg:?}: PUT returns the checksum");
        let head = s3
            .head_object()
            .bucket("cks")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let stored = [
            head.checksum_crc32(),
            head.checksum_crc32_c(),
            head.checksum_crc64_nvme(),
            head.checksum_sha1(),
            head.checksum_sha256(),
        ]
        .into_iter()
        .flatten()
        .next()
        .map(str::to_owned);
        assert_eq!(stored, sent, "{alg:?}");
        assert_eq!(head.checksum_type(), Some(&ChecksumType::FullObject));
        // The SDK validates the returned checksum against the body it receives.
        let got = s3
            .get_object()
            .bucket("cks")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes().as_ref(),
            data.as_slice()
        );
    }
    let head = s3
        .head_object()
        .bucket("cks")
        .key("obj-CRC32")
        .send()
        .await
        .unwrap();
    assert!(
        head.checksum_crc32().is_none(),
        "checksums only with checksum mode"
    );
}

#[tokio::test]
async fn wrong_checksum_header_is_rejected_and_nothing_stored() {
    let (_server, s3) = setup().await;
    let err = s3
        .put_object()
        .bucket("cks")
        .key("bad")
        .checksum_crc32(crc32(b"something else"))
        .body(b"the real body".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("BadDigest"));
    let err = s3
        .head_object()
        .bucket("cks")
        .key("bad")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), Some(404));
    let err = s3
        .put_object()
        .bucket("cks")
        .key("bad")
        .checksum_sha256("too-short")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), Some(400));
}

fn put_with_trailer(
    server: &TestServer,
    key: &str,
    data: &[u8],
    trailer_value: &str,
) -> meridian_tests::raw::RawResponse {
    let body = aws_chunked(data, 64 * 1024, &[("x-amz-checksum-crc32", trailer_value)]);
    send_signed(
        &server.endpoint,
        "PUT",
        &format!("/cks/{key}"),
        &[
            ("content-encoding", "aws-chunked".into()),
            ("x-amz-decoded-content-length", data.len().to_string()),
            ("x-amz-trailer", "x-amz-checksum-crc32".into()),
        ],
        &body,
        aws_sigv4::http_request::SignableBody::StreamingUnsignedPayloadTrailer,
        ACCESS_KEY,
        SECRET_KEY,
    )
}

#[tokio::test]
async fn trailer_checksums_are_verified() {
    let (server, s3) = setup().await;
    let data = pattern(300_000, 11);
    let good = put_with_trailer(&server, "trailer-ok", &data, &crc32(&data));
    assert_eq!(good.status, 200, "{}", good.body);
    let head = s3
        .head_object()
        .bucket("cks")
        .key("trailer-ok")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_crc32(), Some(crc32(&data).as_str()));

    let bad = put_with_trailer(&server, "trailer-bad", &data, &crc32(b"not the data"));
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("BadDigest"), "{}", bad.body);
    let err = s3
        .head_object()
        .bucket("cks")
        .key("trailer-bad")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_status(&err),
        Some(404),
        "a mismatched trailer stores nothing"
    );
}

#[tokio::test]
async fn composite_multipart_checksums_and_object_attributes() {
    let (_server, s3) = setup().await;
    let parts = vec![pattern(5 * MIB, 1), pattern(5 * MIB, 2), pattern(12345, 3)];
    checksummed_multipart(
        &s3,
        "cks",
        "composite",
        ChecksumAlgorithm::Crc32,
        None,
        &parts,
    )
    .await;

    let mut concat = Vec::new();
    for p in &parts {
        concat.extend_from_slice(&crc32_raw(p).to_be_bytes());
    }
    let expected = format!("{}-3", crc32(&concat));
    let head = s3
        .head_object()
        .bucket("cks")
        .key("composite")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_crc32(), Some(expected.as_str()));
    assert_eq!(head.checksum_type(), Some(&ChecksumType::Composite));

    let part2 = s3
        .head_object()
        .bucket("cks")
        .key("composite")
        .part_number(2)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(part2.checksum_crc32(), Some(crc32(&parts[1]).as_str()));

    let attrs = s3
        .get_object_attributes()
        .bucket("cks")
        .key("composite")
        .object_attributes(ObjectAttributes::Etag)
        .object_attributes(ObjectAttributes::Checksum)
        .object_attributes(ObjectAttributes::ObjectParts)
        .object_attributes(ObjectAttributes::ObjectSize)
        .max_parts(2)
        .send()
        .await
        .unwrap();
    assert_eq!(attrs.object_size(), Some((10 * MIB + 12345) as i64));
    // S3 quotes ETags everywhere but here: GetObjectAttributes gives the bare value.
    let bare_etag = head.e_tag().unwrap().trim_matches('"');
    assert!(bare_etag.ends_with("-3"));
    assert_eq!(attrs.e_tag(), Some(bare_etag));
    assert_eq!(
        attrs.checksum().and_then(|c| c.checksum_crc32()),
        Some(expected.as_str())
    );
    let object_parts = attrs.object_parts().unwrap();
    assert_eq!(object_parts.total_parts_count(), Some(3));
    assert_eq!(object_parts.parts().len(), 2);
    assert_eq!(object_parts.is_truncated(), Some(true));
    assert_eq!(
        object_parts.parts()[0].checksum_crc32(),
        Some(crc32(&parts[0]).as_str())
    );
}

#[tokio::test]
async fn full_object_crc64nvme_multipart_checksum_is_the_whole_objects_crc() {
    let (_server, s3) = setup().await;
    let parts = vec![pattern(5 * MIB + 1, 4), pattern(777, 5)];
    checksummed_multipart(
        &s3,
        "cks",
        "full",
        ChecksumAlgorithm::Crc64Nvme,
        Some(ChecksumType::FullObject),
        &parts,
    )
    .await;
    let whole = parts.concat();
    let head = s3
        .head_object()
        .bucket("cks")
        .key("full")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_crc64_nvme(), Some(crc64nvme(&whole).as_str()));
    assert_eq!(head.checksum_type(), Some(&ChecksumType::FullObject));
    let got = s3
        .get_object()
        .bucket("cks")
        .key("full")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        whole.as_slice()
    );

    let err = s3
        .create_multipart_upload()
        .bucket("cks")
        .key("x")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_type(ChecksumType::FullObject)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidRequest"));
}

#[tokio::test]
async fn part_with_a_different_algorithm_than_the_upload_is_refused() {
    let (_server, s3) = setup().await;
    let id = s3
        .create_multipart_upload()
        .bucket("cks")
        .key("mixed")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let err = s3
        .upload_part()
        .bucket("cks")
        .key("mixed")
        .upload_id(&id)
        .part_number(1)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(b"abc".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidRequest"));
    let parts = s3
        .list_parts()
        .bucket("cks")
        .key("mixed")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    assert!(parts.parts().is_empty());
}
