//! CopyObject (directives, source conditions and versions, across buckets, onto itself) and
//! object tagging end to end.

use aws_sdk_s3::types::{
    BucketVersioningStatus, MetadataDirective, Tag, Tagging, TaggingDirective,
    VersioningConfiguration,
};
use aws_sdk_s3::Client;
use meridian_tests::{error_code, error_status, pattern, TestServer};

async fn setup() -> (TestServer, Client) {
    let server = TestServer::start();
    let s3 = server.client();
    for b in ["src", "dst"] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    (server, s3)
}

async fn body(s3: &Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
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

#[tokio::test]
async fn copy_across_buckets_keeps_bytes_and_metadata() {
    let (_server, s3) = setup().await;
    let data = pattern(2 * (1 << 20) + 7, 3);
    s3.put_object()
        .bucket("src")
        .key("big")
        .body(data.clone().into())
        .content_type("application/x-weights")
        .metadata("epoch", "3")
        .tagging("team=ml")
        .send()
        .await
        .unwrap();
    let out = s3
        .copy_object()
        .bucket("dst")
        .key("copy")
        .copy_source("src/big")
        .send()
        .await
        .unwrap();
    let result = out.copy_object_result().unwrap();
    assert!(result.e_tag().is_some() && result.last_modified().is_some());
    assert_eq!(body(&s3, "dst", "copy").await, data);
    let head = s3
        .head_object()
        .bucket("dst")
        .key("copy")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/x-weights"));
    assert_eq!(
        head.metadata().unwrap().get("epoch").map(String::as_str),
        Some("3")
    );
    let tags = s3
        .get_object_tagging()
        .bucket("dst")
        .key("copy")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set().len(), 1);
}

#[tokio::test]
async fn replace_directives_take_the_request_values() {
    let (_server, s3) = setup().await;
    s3.put_object()
        .bucket("src")
        .key("k")
        .body(b"x".to_vec().into())
        .metadata("old", "1")
        .tagging("a=1")
        .send()
        .await
        .unwrap();
    s3.copy_object()
        .bucket("dst")
        .key("k")
        .copy_source("src/k")
        .metadata_directive(MetadataDirective::Replace)
        .metadata("new", "2")
        .content_type("text/plain")
        .tagging_directive(TaggingDirective::Replace)
        .tagging("b=2&c=3")
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("dst")
        .key("k")
        .send()
        .await
        .unwrap();
    let meta = head.metadata().unwrap();
    assert_eq!(meta.get("new").map(String::as_str), Some("2"));
    assert!(!meta.contains_key("old"));
    assert_eq!(head.content_type(), Some("text/plain"));
    let tags = s3
        .get_object_tagging()
        .bucket("dst")
        .key("k")
        .send()
        .await
        .unwrap();
    let mut keys: Vec<_> = tags.tag_set().iter().map(|t| t.key()).collect();
    keys.sort();
    assert_eq!(keys, ["b", "c"]);
}

#[tokio::test]
async fn copy_onto_itself_needs_replace() {
    let (_server, s3) = setup().await;
    s3.put_object()
        .bucket("src")
        .key("self")
        .body(b"same".to_vec().into())
        .send()
        .await
        .unwrap();
    let err = s3
        .copy_object()
        .bucket("src")
        .key("self")
        .copy_source("src/self")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidRequest"));
    s3.copy_object()
        .bucket("src")
        .key("self")
        .copy_source("src/self")
        .metadata_directive(MetadataDirective::Replace)
        .metadata("touched", "yes")
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("src")
        .key("self")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata().unwrap().get("touched").map(String::as_str),
        Some("yes")
    );
    assert_eq!(body(&s3, "src", "self").await, b"same");
}

#[tokio::test]
async fn copy_source_conditions_and_versions() {
    let (_server, s3) = setup().await;
    let config = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Enabled)
        .build();
    s3.put_bucket_versioning()
        .bucket("src")
        .versioning_configuration(config)
        .send()
        .await
        .unwrap();
    let v1 = s3
        .put_object()
        .bucket("src")
        .key("k")
        .body(b"one".to_vec().into())
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket("src")
        .key("k")
        .body(b"two".to_vec().into())
        .send()
        .await
        .unwrap();

    let out = s3
        .copy_object()
        .bucket("dst")
        .key("old")
        .copy_source(format!("src/k?versionId={}", v1.version_id().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.copy_source_version_id(), v1.version_id());
    assert_eq!(body(&s3, "dst", "old").await, b"one");

    let err = s3
        .copy_object()
        .bucket("dst")
        .key("c")
        .copy_source("src/k")
        .copy_source_if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), Some(412));
    let err = s3
        .copy_object()
        .bucket("dst")
        .key("c")
        .copy_source("src/k")
        .copy_source_if_none_match(v1.e_tag().unwrap())
        .send()
        .await;
    assert!(err.is_ok(), "the latest is v2, whose ETag differs");
    let err = s3
        .copy_object()
        .bucket("dst")
        .key("c")
        .copy_source("src/missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchKey"));
    let err = s3
        .copy_object()
        .bucket("dst")
        .key("c")
        .copy_source("nobucket/k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchBucket"));
}

#[tokio::test]
async fn tagging_put_get_delete_and_limits() {
    let (_server, s3) = setup().await;
    s3.put_object()
        .bucket("src")
        .key("t")
        .body(b"x".to_vec().into())
        .tagging("a=1&b=two%20words")
        .send()
        .await
        .unwrap();
    let tags = s3
        .get_object_tagging()
        .bucket("src")
        .key("t")
        .send()
        .await
        .unwrap();
    let mut pairs: Vec<_> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "two words".to_owned())
        ]
    );
    let get = s3.get_object().bucket("src").key("t").send().await.unwrap();
    assert_eq!(get.tag_count(), Some(2));

    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key("only").value("one").build().unwrap())
        .build()
        .unwrap();
    s3.put_object_tagging()
        .bucket("src")
        .key("t")
        .tagging(tagging)
        .send()
        .await
        .unwrap();
    let tags = s3
        .get_object_tagging()
        .bucket("src")
        .key("t")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set().len(), 1);

    s3.delete_object_tagging()
        .bucket("src")
        .key("t")
        .send()
        .await
        .unwrap();
    assert!(s3
        .get_object_tagging()
        .bucket("src")
        .key("t")
        .send()
        .await
        .unwrap()
        .tag_set()
        .is_empty());

    let eleven: Vec<Tag> = (0..11)
        .map(|i| {
            Tag::builder()
                .key(format!("k{i}"))
                .value("v")
                .build()
                .unwrap()
        })
        .collect();
    let err = s3
        .put_object_tagging()
        .bucket("src")
        .key("t")
        .tagging(
            Tagging::builder()
                .set_tag_set(Some(eleven))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), Some(400));
    let dup = vec![
        Tag::builder().key("d").value("1").build().unwrap(),
        Tag::builder().key("d").value("2").build().unwrap(),
    ];
    let err = s3
        .put_object_tagging()
        .bucket("src")
        .key("t")
        .tagging(Tagging::builder().set_tag_set(Some(dup)).build().unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidTag"));
    assert!(
        s3.get_object_tagging()
            .bucket("src")
            .key("t")
            .send()
            .await
            .unwrap()
            .tag_set()
            .is_empty(),
        "rejected input changed nothing"
    );
    let err = s3
        .get_object_tagging()
        .bucket("src")
        .key("absent")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchKey"));
}
