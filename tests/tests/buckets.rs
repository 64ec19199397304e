//! Bucket operations end to end: create (name rules, location constraint, already owned),
//! list with owner, head, location, versioning state, delete (empty only).

use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    VersioningConfiguration,
};
use meridian_tests::{error_code, error_status, TestServer};

#[tokio::test]
async fn create_list_head_delete_bucket() {
    let server = TestServer::start();
    let s3 = server.client();
    let created = s3.create_bucket().bucket("alpha").send().await.unwrap();
    assert_eq!(created.location(), Some("/alpha"));
    s3.create_bucket().bucket("beta").send().await.unwrap();

    let list = s3.list_buckets().send().await.unwrap();
    let names: Vec<_> = list.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert!(list.buckets()[0].creation_date().is_some());
    assert_eq!(
        list.owner().and_then(|o| o.id()),
        Some(meridian_tests::ACCESS_KEY)
    );

    s3.head_bucket().bucket("alpha").send().await.unwrap();
    let missing = s3.head_bucket().bucket("gamma").send().await.unwrap_err();
    assert_eq!(error_status(&missing), Some(404));

    s3.delete_bucket().bucket("alpha").send().await.unwrap();
    let names: Vec<_> = s3
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    assert_eq!(names, ["beta"]);
}

#[tokio::test]
async fn creating_an_existing_bucket_reports_already_owned() {
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("dup").send().await.unwrap();
    let err = s3.create_bucket().bucket("dup").send().await.unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("BucketAlreadyOwnedByYou"));
    assert_eq!(error_status(&err), Some(409));
}

#[tokio::test]
async fn invalid_bucket_names_are_refused() {
    let server = TestServer::start();
    let s3 = server.client();
    for name in [
        "UPPER",
        "ab",
        "under_score",
        "-leading",
        "a..b",
        "192.168.1.1",
    ] {
        let err = s3.create_bucket().bucket(name).send().await.unwrap_err();
        assert_eq!(error_status(&err), Some(400), "{name} must be refused");
    }
    assert!(
        s3.list_buckets().send().await.unwrap().buckets().is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn location_constraint_must_match_the_region() {
    let server = TestServer::start();
    let s3 = server.client();
    let wrong = CreateBucketConfiguration::builder()
        .location_constraint(BucketLocationConstraint::EuWest1)
        .build();
    let err = s3
        .create_bucket()
        .bucket("elsewhere")
        .create_bucket_configuration(wrong)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&err).as_deref(),
        Some("IllegalLocationConstraintException")
    );
    assert!(
        s3.head_bucket().bucket("elsewhere").send().await.is_err(),
        "refused request created nothing"
    );

    s3.create_bucket().bucket("here").send().await.unwrap();
    let loc = s3
        .get_bucket_location()
        .bucket("here")
        .send()
        .await
        .unwrap();
    // us-east-1 is reported as an empty constraint, as S3 does.
    assert!(
        loc.location_constraint().is_none()
            || loc.location_constraint().map(|c| c.as_str()) == Some("")
    );
}

#[tokio::test]
async fn delete_bucket_requires_it_empty() {
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("full").send().await.unwrap();
    s3.put_object()
        .bucket("full")
        .key("k")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    let err = s3.delete_bucket().bucket("full").send().await.unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("BucketNotEmpty"));
    assert_eq!(error_status(&err), Some(409));

    s3.delete_object()
        .bucket("full")
        .key("k")
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket("full").send().await.unwrap();
    let err = s3.delete_bucket().bucket("full").send().await.unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchBucket"));
}

#[tokio::test]
async fn versioned_bucket_with_only_a_delete_marker_is_not_empty() {
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("vbk").send().await.unwrap();
    let enabled = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Enabled)
        .build();
    s3.put_bucket_versioning()
        .bucket("vbk")
        .versioning_configuration(enabled)
        .send()
        .await
        .unwrap();
    let put = s3
        .put_object()
        .bucket("vbk")
        .key("k")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    let marker = s3
        .delete_object()
        .bucket("vbk")
        .key("k")
        .send()
        .await
        .unwrap();
    s3.delete_object()
        .bucket("vbk")
        .key("k")
        .version_id(put.version_id().unwrap())
        .send()
        .await
        .unwrap();
    let err = s3.delete_bucket().bucket("vbk").send().await.unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("BucketNotEmpty"));
    s3.delete_object()
        .bucket("vbk")
        .key("k")
        .version_id(marker.version_id().unwrap())
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket("vbk").send().await.unwrap();
}

#[tokio::test]
async fn versioning_state_moves_from_unset_to_enabled_to_suspended() {
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("ver").send().await.unwrap();
    assert!(s3
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap()
        .status()
        .is_none());
    for status in [
        BucketVersioningStatus::Enabled,
        BucketVersioningStatus::Suspended,
    ] {
        let config = VersioningConfiguration::builder()
            .status(status.clone())
            .build();
        s3.put_bucket_versioning()
            .bucket("ver")
            .versioning_configuration(config)
            .send()
            .await
            .unwrap();
        assert_eq!(
            s3.get_bucket_versioning()
                .bucket("ver")
                .send()
                .await
                .unwrap()
                .status(),
            Some(&status)
        );
    }
    let config = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Enabled)
        .build();
    let err = s3
        .put_bucket_versioning()
        .bucket("nope")
        .versioning_configuration(config)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchBucket"));
}

#[tokio::test]
async fn unsupported_bucket_operations_answer_not_implemented() {
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("nim").send().await.unwrap();
    let err = s3
        .get_bucket_website()
        .bucket("nim")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NotImplemented"));
    assert_eq!(error_status(&err), Some(501));
}

#[tokio::test]
async fn virtual_hosted_style_requests_name_the_bucket_in_the_host() {
    use aws_sigv4::http_request::SignableBody;
    use meridian_tests::raw::send_signed_as;
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("vhost").send().await.unwrap();
    let address = server.endpoint.trim_start_matches("http://").to_owned();
    let port = address.rsplit_once(':').unwrap().1.to_owned();
    let host = format!("vhost.localhost:{port}");
    let put = send_signed_as(
        &address,
        &host,
        "PUT",
        "/greeting.txt",
        &[],
        b"hello from a virtual host",
        SignableBody::UnsignedPayload,
        meridian_tests::ACCESS_KEY,
        meridian_tests::SECRET_KEY,
    );
    assert_eq!(put.status, 200, "{}", put.body);
    let got = s3
        .get_object()
        .bucket("vhost")
        .key("greeting.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"hello from a virtual host"
    );
    let list = send_signed_as(
        &address,
        &host,
        "GET",
        "/?list-type=2",
        &[],
        b"",
        SignableBody::Bytes(b""),
        meridian_tests::ACCESS_KEY,
        meridian_tests::SECRET_KEY,
    );
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.body.contains("<Key>greeting.txt</Key>"),
        "{}",
        list.body
    );
}
