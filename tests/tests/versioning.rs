//! S3 versioning semantics end to end: unversioned overwrite, enabled history, delete markers,
//! suspended null versions, deletes by version id, DeleteObjects and ListObjectVersions paging.

use aws_sdk_s3::types::{
    BucketVersioningStatus, Delete, ObjectIdentifier, VersioningConfiguration,
};
use aws_sdk_s3::Client;
use meridian_tests::{error_code, error_status, TestServer};

async fn bucket_with(s3: &Client, name: &str, status: Option<BucketVersioningStatus>) {
    s3.create_bucket().bucket(name).send().await.unwrap();
    if let Some(status) = status {
        let config = VersioningConfiguration::builder().status(status).build();
        s3.put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(config)
            .send()
            .await
            .unwrap();
    }
}

async fn put(s3: &Client, bucket: &str, key: &str, body: &str) -> Option<String> {
    let out = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
    out.version_id().map(str::to_owned)
}

async fn read(s3: &Client, bucket: &str, key: &str, version: Option<&str>) -> String {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await
        .unwrap();
    String::from_utf8(out.body.collect().await.unwrap().into_bytes().to_vec()).unwrap()
}

async fn version_ids(s3: &Client, bucket: &str) -> Vec<(String, String, bool, bool)> {
    let out = s3
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let mut all: Vec<_> = out
        .versions()
        .iter()
        .map(|v| {
            (
                v.key().unwrap().to_owned(),
                v.version_id().unwrap().to_owned(),
                v.is_latest().unwrap(),
                false,
            )
        })
        .chain(out.delete_markers().iter().map(|m| {
            (
                m.key().unwrap().to_owned(),
                m.version_id().unwrap().to_owned(),
                m.is_latest().unwrap(),
                true,
            )
        }))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[tokio::test]
async fn unversioned_overwrite_replaces_the_object() {
    let server = TestServer::start();
    let s3 = server.client();
    bucket_with(&s3, "plain", None).await;
    assert_eq!(
        put(&s3, "plain", "k", "one").await,
        None,
        "no version id in unversioned buckets"
    );
    put(&s3, "plain", "k", "two").await;
    assert_eq!(read(&s3, "plain", "k", None).await, "two");
    let versions = version_ids(&s3, "plain").await;
    assert_eq!(versions, [("k".into(), "null".into(), true, false)]);
    let del = s3
        .delete_object()
        .bucket("plain")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), None);
    assert!(
        version_ids(&s3, "plain").await.is_empty(),
        "unversioned delete removes the object"
    );
}

#[tokio::test]
async fn enabled_bucket_keeps_every_version_and_markers() {
    let server = TestServer::start();
    let s3 = server.client();
    bucket_with(&s3, "hist", Some(BucketVersioningStatus::Enabled)).await;
    let v1 = put(&s3, "hist", "k", "one").await.unwrap();
    let v2 = put(&s3, "hist", "k", "two").await.unwrap();
    assert_ne!(v1, v2);
    assert_eq!(read(&s3, "hist", "k", None).await, "two");
    assert_eq!(read(&s3, "hist", "k", Some(&v1)).await, "one");

    let marker = s3
        .delete_object()
        .bucket("hist")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(marker.delete_marker(), Some(true));
    let marker_id = marker.version_id().unwrap().to_owned();

    let err = s3
        .get_object()
        .bucket("hist")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchKey"));
    let raw = err.raw_response().unwrap();
    assert_eq!(raw.headers().get("x-amz-delete-marker"), Some("true"));
    assert_eq!(
        raw.headers().get("x-amz-version-id"),
        Some(marker_id.as_str())
    );
    let err = s3
        .get_object()
        .bucket("hist")
        .key("k")
        .version_id(&marker_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_status(&err),
        Some(405),
        "a marker addressed by version id is MethodNotAllowed"
    );

    let versions = version_ids(&s3, "hist").await;
    assert_eq!(versions.len(), 3);
    assert!(versions.contains(&("k".into(), marker_id.clone(), true, true)));
    assert!(versions.contains(&("k".into(), v2.clone(), false, false)));

    // Removing the marker brings v2 back; removing v2 falls back to v1.
    let del = s3
        .delete_object()
        .bucket("hist")
        .key("k")
        .version_id(&marker_id)
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    assert_eq!(read(&s3, "hist", "k", None).await, "two");
    s3.delete_object()
        .bucket("hist")
        .key("k")
        .version_id(&v2)
        .send()
        .await
        .unwrap();
    assert_eq!(read(&s3, "hist", "k", None).await, "one");
    let err = s3
        .get_object()
        .bucket("hist")
        .key("k")
        .version_id(&v2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchVersion"));
}

#[tokio::test]
async fn suspended_bucket_overwrites_the_null_version_and_keeps_others() {
    let server = TestServer::start();
    let s3 = server.client();
    bucket_with(&s3, "susp", Some(BucketVersioningStatus::Enabled)).await;
    let v1 = put(&s3, "susp", "k", "kept").await.unwrap();
    let config = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Suspended)
        .build();
    s3.put_bucket_versioning()
        .bucket("susp")
        .versioning_configuration(config)
        .send()
        .await
        .unwrap();
    // The write makes the null version, and (as on S3 and MinIO) its answer names none.
    assert_eq!(put(&s3, "susp", "k", "null-1").await.as_deref(), None);
    assert_eq!(put(&s3, "susp", "k", "null-2").await.as_deref(), None);
    assert_eq!(read(&s3, "susp", "k", None).await, "null-2");
    assert_eq!(read(&s3, "susp", "k", Some(&v1)).await, "kept");
    let versions = version_ids(&s3, "susp").await;
    assert_eq!(
        versions.len(),
        2,
        "one null version and the enabled-era version: {versions:?}"
    );

    // DELETE in a suspended bucket puts a null delete marker in place of the null version.
    let del = s3
        .delete_object()
        .bucket("susp")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    assert_eq!(del.version_id(), Some("null"));
    let versions = version_ids(&s3, "susp").await;
    assert_eq!(versions.len(), 2);
    assert!(versions.contains(&("k".into(), "null".into(), true, true)));
}

#[tokio::test]
async fn delete_objects_reports_each_key_and_honours_quiet() {
    let server = TestServer::start();
    let s3 = server.client();
    bucket_with(&s3, "multi", Some(BucketVersioningStatus::Enabled)).await;
    let va = put(&s3, "multi", "a", "a").await.unwrap();
    put(&s3, "multi", "b", "b").await;
    let ids = vec![
        ObjectIdentifier::builder()
            .key("a")
            .version_id(&va)
            .build()
            .unwrap(),
        ObjectIdentifier::builder().key("b").build().unwrap(),
        ObjectIdentifier::builder()
            .key("never-existed")
            .build()
            .unwrap(),
    ];
    let out = s3
        .delete_objects()
        .bucket("multi")
        .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
        .send()
        .await
        .unwrap();
    assert!(out.errors().is_empty());
    let deleted = out.deleted();
    assert_eq!(deleted.len(), 3);
    let a = deleted.iter().find(|d| d.key() == Some("a")).unwrap();
    assert_eq!(a.version_id(), Some(va.as_str()));
    let b = deleted.iter().find(|d| d.key() == Some("b")).unwrap();
    assert_eq!(b.delete_marker(), Some(true));
    assert!(b.delete_marker_version_id().is_some());

    let quiet = s3
        .delete_objects()
        .bucket("multi")
        .delete(
            Delete::builder()
                .objects(ObjectIdentifier::builder().key("b").build().unwrap())
                .quiet(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(quiet.deleted().is_empty() && quiet.errors().is_empty());
    assert!(s3
        .list_objects_v2()
        .bucket("multi")
        .send()
        .await
        .unwrap()
        .contents()
        .is_empty());
}

#[tokio::test]
async fn list_object_versions_pages_with_markers() {
    let server = TestServer::start();
    let s3 = server.client();
    bucket_with(&s3, "pages", Some(BucketVersioningStatus::Enabled)).await;
    let mut expected = Vec::new();
    for key in ["a", "b", "c"] {
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(put(&s3, "pages", key, &format!("{key}{i}")).await.unwrap());
        }
        ids.reverse(); // newest first
        expected.extend(ids.into_iter().map(|id| (key.to_owned(), id)));
    }
    let mut seen = Vec::new();
    let (mut key_marker, mut vid_marker) = (None, None);
    loop {
        let out = s3
            .list_object_versions()
            .bucket("pages")
            .max_keys(2)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(vid_marker.clone())
            .send()
            .await
            .unwrap();
        seen.extend(out.versions().iter().map(|v| {
            (
                v.key().unwrap().to_owned(),
                v.version_id().unwrap().to_owned(),
            )
        }));
        if !out.is_truncated().unwrap_or(false) {
            break;
        }
        key_marker = out.next_key_marker().map(str::to_owned);
        vid_marker = out.next_version_id_marker().map(str::to_owned);
        assert!(seen.len() <= expected.len(), "paging must terminate");
    }
    assert_eq!(seen, expected);
    let err = s3
        .list_object_versions()
        .bucket("pages")
        .version_id_marker("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidArgument"));
}

#[tokio::test]
async fn delete_objects_handles_a_full_thousand_keys_in_request_order() {
    use futures::StreamExt;
    let server = TestServer::start();
    let s3 = server.client();
    bucket_with(&s3, "bulk", None).await;
    let keys: Vec<String> = (0..1000)
        .map(|i| format!("k/{:04}", (i * 7919) % 1000))
        .collect();
    futures::stream::iter(keys.clone())
        .for_each_concurrent(32, |k| {
            let s3 = s3.clone();
            async move {
                s3.put_object()
                    .bucket("bulk")
                    .key(k)
                    .body(b"x".to_vec().into())
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await;
    let ids: Vec<_> = keys
        .iter()
        .map(|k| ObjectIdentifier::builder().key(k).build().unwrap())
        .collect();
    let out = s3
        .delete_objects()
        .bucket("bulk")
        .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
        .send()
        .await
        .unwrap();
    let answered: Vec<_> = out
        .deleted()
        .iter()
        .map(|d| d.key().unwrap().to_owned())
        .collect();
    assert_eq!(answered, keys, "one answer per key, in request order");
    assert!(s3
        .list_objects_v2()
        .bucket("bulk")
        .send()
        .await
        .unwrap()
        .contents()
        .is_empty());
}
