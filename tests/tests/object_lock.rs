//! Object Lock end to end: the bucket configuration and its errors, retention and legal holds
//! on PutObject, multipart uploads and the retention API, who may bypass GOVERNANCE, what
//! nobody can do to a COMPLIANCE version, the paths below the API (lifecycle, reclaim, the
//! scrub's orphan collection, kill -9), and replication of locked versions and of their lock
//! changes between two regions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketVersioningStatus, DefaultRetention, Delete, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration, ObjectIdentifier,
    ObjectLockConfiguration, ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus,
    ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode, ObjectLockRule,
    VersioningConfiguration,
};
use aws_sdk_s3::Client;
use meridian_tests::regions::{
    self, all_versions, assert_exact_replica, put_rules, rule_to, status_json, wait_for, Regions,
    RegionsOptions,
};
use meridian_tests::{error_code, pattern, shard_bytes, ServerOptions, TestServer};

const LIMIT: Duration = Duration::from_secs(30);
/// Over the inline threshold, so the data is in shard files on the disks.
const BIG: usize = 300 * 1024;

const USERS: &str = r#"
[[users]]
access_key = "writer"
secret_key = "writer-secret"
grants = [{ bucket = "*", access = "read-write" }]

[[users]]
access_key = "custodian"
secret_key = "custodian-secret"
grants = [{ bucket = "*", access = "read-write", bypass_governance_retention = true }]
"#;

fn server_with(extra: &str) -> TestServer {
    TestServer::start_with(ServerOptions {
        extra_config: format!("{USERS}\n{extra}"),
        ..ServerOptions::default()
    })
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Whole seconds from now (retention dates round-trip exactly at that precision).
fn in_secs(secs: i64) -> DateTime {
    DateTime::from_secs(now_secs() + secs)
}

const DAY: i64 = 86_400;

async fn lock_bucket(s3: &Client, name: &str) {
    s3.create_bucket()
        .bucket(name)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
}

fn default_rule(mode: ObjectLockRetentionMode, days: i32) -> ObjectLockConfiguration {
    ObjectLockConfiguration::builder()
        .object_lock_enabled(ObjectLockEnabled::Enabled)
        .rule(
            ObjectLockRule::builder()
                .default_retention(DefaultRetention::builder().mode(mode).days(days).build())
                .build(),
        )
        .build()
}

/// A version with the given lock headers; its version id.
async fn put_locked(
    s3: &Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    retention: Option<(ObjectLockMode, DateTime)>,
    hold: bool,
) -> String {
    let (mode, until) = retention.unzip();
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .set_object_lock_mode(mode)
        .set_object_lock_retain_until_date(until)
        .set_object_lock_legal_hold_status(hold.then_some(ObjectLockLegalHoldStatus::On))
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned()
}

/// DeleteObject of one version; the S3 error code when refused.
async fn delete_version(
    s3: &Client,
    bucket: &str,
    key: &str,
    version_id: &str,
    bypass: bool,
) -> Result<(), String> {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .version_id(version_id)
        .set_bypass_governance_retention(bypass.then_some(true))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| error_code(&e).unwrap_or_else(|| format!("{e:?}")))
}

/// PutObjectRetention; the S3 error code when refused.
async fn set_retention(
    s3: &Client,
    bucket: &str,
    key: &str,
    version_id: &str,
    retention: Option<(ObjectLockRetentionMode, DateTime)>,
    bypass: bool,
) -> Result<(), String> {
    let (mode, until) = retention.unzip();
    s3.put_object_retention()
        .bucket(bucket)
        .key(key)
        .version_id(version_id)
        .retention(
            ObjectLockRetention::builder()
                .set_mode(mode)
                .set_retain_until_date(until)
                .build(),
        )
        .set_bypass_governance_retention(bypass.then_some(true))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| error_code(&e).unwrap_or_else(|| format!("{e:?}")))
}

async fn set_hold(s3: &Client, bucket: &str, key: &str, version_id: &str, on: bool) {
    s3.put_object_legal_hold()
        .bucket(bucket)
        .key(key)
        .version_id(version_id)
        .legal_hold(
            ObjectLockLegalHold::builder()
                .status(if on {
                    ObjectLockLegalHoldStatus::On
                } else {
                    ObjectLockLegalHoldStatus::Off
                })
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// (mode, retain-until seconds, legal hold on) as HEAD reports them, from the region's own
/// data.
async fn lock_of(
    s3: &Client,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> (Option<String>, Option<i64>, bool) {
    let h = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .version_id(version_id)
        .customize()
        .mutate_request(regions::own_copy_only)
        .send()
        .await
        .unwrap();
    (
        h.object_lock_mode().map(|m| m.as_str().to_owned()),
        h.object_lock_retain_until_date().map(|d| d.secs()),
        h.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On),
    )
}

/// Uploads `parts` to an upload and completes it; the version id.
async fn finish_upload(
    s3: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: &[Vec<u8>],
) -> String {
    let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    meridian_tests::upload_parts_and_complete(s3, bucket, key, upload_id, &parts).await
}

/// PutBucketVersioning to Suspended; the S3 error code when refused.
async fn suspend_versioning(s3: &Client, bucket: &str) -> Option<String> {
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .err()
        .and_then(|e| error_code(&e))
}

/// GetObjectLockConfiguration.
async fn lock_configuration(s3: &Client, bucket: &str) -> ObjectLockConfiguration {
    s3.get_object_lock_configuration()
        .bucket(bucket)
        .send()
        .await
        .unwrap()
        .object_lock_configuration()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn bucket_configuration_is_checked_and_object_lock_cannot_be_turned_off() {
    let server = server_with("");
    let s3 = server.client();
    lock_bucket(&s3, "locked").await;
    let versioning = s3
        .get_bucket_versioning()
        .bucket("locked")
        .send()
        .await
        .unwrap();
    assert_eq!(versioning.status(), Some(&BucketVersioningStatus::Enabled));
    // Enabled without a rule, then with one; the rule reads back.
    let config = lock_configuration(&s3, "locked").await;
    assert_eq!(
        config.object_lock_enabled(),
        Some(&ObjectLockEnabled::Enabled)
    );
    assert!(config.rule().is_none());
    let rule = default_rule(ObjectLockRetentionMode::Compliance, 3);
    s3.put_object_lock_configuration()
        .bucket("locked")
        .object_lock_configuration(rule.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(lock_configuration(&s3, "locked").await, rule);

    // Versioning cannot be suspended.
    assert_eq!(
        suspend_versioning(&s3, "locked").await.as_deref(),
        Some("InvalidBucketState")
    );

    // A plain bucket: no configuration, and none until versioning is enabled.
    s3.create_bucket().bucket("plain").send().await.unwrap();
    let none = s3
        .get_object_lock_configuration()
        .bucket("plain")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&none).as_deref(),
        Some("ObjectLockConfigurationNotFoundError")
    );
    let put_config = |bucket: &'static str, config: ObjectLockConfiguration| {
        let s3 = s3.clone();
        async move {
            s3.put_object_lock_configuration()
                .bucket(bucket)
                .object_lock_configuration(config)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| error_code(&e).unwrap())
        }
    };
    let governance = default_rule(ObjectLockRetentionMode::Governance, 1);
    assert_eq!(
        put_config("plain", governance.clone()).await.unwrap_err(),
        "InvalidBucketState"
    );
    // Bad documents change nothing.
    let both = ObjectLockConfiguration::builder()
        .object_lock_enabled(ObjectLockEnabled::Enabled)
        .rule(
            ObjectLockRule::builder()
                .default_retention(
                    DefaultRetention::builder()
                        .mode(ObjectLockRetentionMode::Governance)
                        .days(1)
                        .years(1)
                        .build(),
                )
                .build(),
        )
        .build();
    assert_eq!(
        put_config("locked", both).await.unwrap_err(),
        "MalformedXML"
    );
    assert_eq!(
        put_config(
            "locked",
            default_rule(ObjectLockRetentionMode::Governance, 0)
        )
        .await
        .unwrap_err(),
        "InvalidRetentionPeriod"
    );
    assert_eq!(lock_configuration(&s3, "locked").await, rule, "unchanged");
    // Lock headers on a bucket without Object Lock are refused, and store nothing.
    let refused = s3
        .put_object()
        .bucket("plain")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused).as_deref(), Some("InvalidRequest"));
    assert!(s3
        .head_object()
        .bucket("plain")
        .key("k")
        .send()
        .await
        .is_err());

    // An existing bucket: versioning first, then Object Lock, for good.
    regions::versioned_bucket(&s3, "later").await;
    put_config("later", governance.clone()).await.unwrap();
    assert_eq!(
        suspend_versioning(&s3, "later").await.as_deref(),
        Some("InvalidBucketState")
    );
}

#[tokio::test]
async fn governance_retention_yields_only_to_a_principal_allowed_to_bypass_it() {
    let server = server_with("");
    let root = server.client();
    let writer = server.client_for("writer", "writer-secret");
    let custodian = server.client_for("custodian", "custodian-secret");
    lock_bucket(&root, "gov").await;
    let until = in_secs(DAY);
    let v = put_locked(
        &writer,
        "gov",
        "ckpt",
        b"weights".to_vec(),
        Some((ObjectLockMode::Governance, until)),
        false,
    )
    .await;
    let mode = lock_of(&writer, "gov", "ckpt", &v).await;
    assert_eq!(mode, (Some("GOVERNANCE".into()), Some(until.secs()), false));

    // Without the bypass nobody removes it; the header alone is not enough.
    assert_eq!(
        delete_version(&root, "gov", "ckpt", &v, false)
            .await
            .unwrap_err(),
        "AccessDenied"
    );
    assert_eq!(
        delete_version(&writer, "gov", "ckpt", &v, true)
            .await
            .unwrap_err(),
        "AccessDenied"
    );
    // Shortening needs the bypass; extending does not.
    let shorter = (ObjectLockRetentionMode::Governance, in_secs(DAY / 2));
    assert_eq!(
        set_retention(&writer, "gov", "ckpt", &v, Some(shorter.clone()), false)
            .await
            .unwrap_err(),
        "AccessDenied"
    );
    let longer = in_secs(2 * DAY);
    set_retention(
        &writer,
        "gov",
        "ckpt",
        &v,
        Some((ObjectLockRetentionMode::Governance, longer)),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        lock_of(&writer, "gov", "ckpt", &v).await.1,
        Some(longer.secs())
    );
    // A delete without a version id adds a marker; the marker itself can always go.
    let marker = writer
        .delete_object()
        .bucket("gov")
        .key("ckpt")
        .send()
        .await
        .unwrap();
    assert_eq!(marker.delete_marker(), Some(true));
    delete_version(&writer, "gov", "ckpt", marker.version_id().unwrap(), false)
        .await
        .unwrap();
    // A grant with the bypass (or root) removes it with the header.
    delete_version(&custodian, "gov", "ckpt", &v, true)
        .await
        .unwrap();
    assert!(all_versions(&root, "gov").await.is_empty());

    // Root may bypass too, and a bucket policy can grant it.
    let v2 = put_locked(
        &writer,
        "gov",
        "b",
        b"x".to_vec(),
        Some((ObjectLockMode::Governance, in_secs(DAY))),
        false,
    )
    .await;
    delete_version(&root, "gov", "b", &v2, true).await.unwrap();
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Principal":{"AWS":["writer"]},"Action":["s3:BypassGovernanceRetention"],"Resource":["arn:aws:s3:::gov/*"]}]}"#;
    root.put_bucket_policy()
        .bucket("gov")
        .policy(policy)
        .send()
        .await
        .unwrap();
    let v3 = put_locked(
        &writer,
        "gov",
        "c",
        b"x".to_vec(),
        Some((ObjectLockMode::Governance, in_secs(DAY))),
        false,
    )
    .await;
    assert_eq!(
        delete_version(&writer, "gov", "c", &v3, false)
            .await
            .unwrap_err(),
        "AccessDenied"
    );
    delete_version(&writer, "gov", "c", &v3, true)
        .await
        .unwrap();
}

#[tokio::test]
async fn compliance_and_legal_holds_survive_root_and_every_delete_path() {
    let server = server_with("");
    let root = server.client();
    lock_bucket(&root, "vault").await;
    let until = in_secs(DAY);
    let v = put_locked(
        &root,
        "vault",
        "data",
        pattern(BIG, 1),
        Some((ObjectLockMode::Compliance, until)),
        false,
    )
    .await;
    let held = put_locked(&root, "vault", "held", b"evidence".to_vec(), None, true).await;
    for (key, version) in [("data", &v), ("held", &held)] {
        for bypass in [false, true] {
            assert_eq!(
                delete_version(&root, "vault", key, version, bypass)
                    .await
                    .unwrap_err(),
                "AccessDenied",
                "{key} (bypass {bypass})"
            );
        }
    }
    // DeleteObjects answers per key.
    let batch = root
        .delete_objects()
        .bucket("vault")
        .bypass_governance_retention(true)
        .delete(
            Delete::builder()
                .objects(
                    ObjectIdentifier::builder()
                        .key("data")
                        .version_id(&v)
                        .build()
                        .unwrap(),
                )
                .objects(
                    ObjectIdentifier::builder()
                        .key("held")
                        .version_id(&held)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(batch.deleted().is_empty());
    let refused: Vec<_> = batch
        .errors()
        .iter()
        .map(|e| (e.key().unwrap(), e.code().unwrap()))
        .collect();
    assert_eq!(
        refused,
        vec![("data", "AccessDenied"), ("held", "AccessDenied")]
    );
    // The date cannot be shortened nor the mode changed, even by root with the bypass.
    for change in [
        Some((ObjectLockRetentionMode::Compliance, in_secs(DAY / 2))),
        Some((ObjectLockRetentionMode::Governance, until)),
        None,
    ] {
        assert_eq!(
            set_retention(&root, "vault", "data", &v, change.clone(), true)
                .await
                .unwrap_err(),
            "AccessDenied",
            "{change:?}"
        );
    }
    // Anyone with write access can extend it.
    let later = in_secs(3 * DAY);
    set_retention(
        &root,
        "vault",
        "data",
        &v,
        Some((ObjectLockRetentionMode::Compliance, later)),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        lock_of(&root, "vault", "data", &v).await,
        (Some("COMPLIANCE".into()), Some(later.secs()), false)
    );
    // The bucket cannot go while they are there.
    let gone = root
        .delete_bucket()
        .bucket("vault")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&gone).as_deref(), Some("BucketNotEmpty"));
    // A hold lifted: the version can go.
    set_hold(&root, "vault", "held", &held, false).await;
    delete_version(&root, "vault", "held", &held, false)
        .await
        .unwrap();
    // Retention on a plain bucket's object: InvalidRequest.
    root.create_bucket().bucket("plain").send().await.unwrap();
    root.put_object()
        .bucket("plain")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let refused = root
        .get_object_retention()
        .bucket("plain")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused).as_deref(), Some("InvalidRequest"));
}

#[tokio::test]
async fn the_default_retention_covers_multipart_uploads_and_hold_only_writes() {
    let server = server_with("");
    let s3 = server.client();
    lock_bucket(&s3, "ckpts").await;
    s3.put_object_lock_configuration()
        .bucket("ckpts")
        .object_lock_configuration(default_rule(ObjectLockRetentionMode::Compliance, 2))
        .send()
        .await
        .unwrap();
    let before = now_secs();
    // A multipart upload that names no retention gets the default.
    let upload = s3
        .create_multipart_upload()
        .bucket("ckpts")
        .key("model.bin")
        .send()
        .await
        .unwrap();
    let body = [pattern(5 << 20, 1), pattern(5 << 20, 2)];
    let v = &finish_upload(
        &s3,
        "ckpts",
        "model.bin",
        upload.upload_id().unwrap(),
        &body,
    )
    .await;
    let (mode, until, hold) = lock_of(&s3, "ckpts", "model.bin", v).await;
    assert_eq!(mode.as_deref(), Some("COMPLIANCE"));
    let until = until.unwrap();
    assert!(
        (before + 2 * DAY..=now_secs() + 2 * DAY).contains(&until),
        "{until}"
    );
    assert!(!hold);
    assert_eq!(
        delete_version(&s3, "ckpts", "model.bin", v, true)
            .await
            .unwrap_err(),
        "AccessDenied"
    );

    // A legal hold alone does not suppress the default; an explicit retention replaces it.
    let held = put_locked(&s3, "ckpts", "held", b"x".to_vec(), None, true).await;
    let (mode, until, hold) = lock_of(&s3, "ckpts", "held", &held).await;
    assert_eq!((mode.as_deref(), hold), (Some("COMPLIANCE"), true));
    assert!(until.unwrap() >= before + 2 * DAY);
    let own = in_secs(7 * DAY);
    let explicit = put_locked(
        &s3,
        "ckpts",
        "own",
        b"x".to_vec(),
        Some((ObjectLockMode::Governance, own)),
        false,
    )
    .await;
    assert_eq!(
        lock_of(&s3, "ckpts", "own", &explicit).await,
        (Some("GOVERNANCE".into()), Some(own.secs()), false)
    );
    // A multipart upload's own headers go to the completed object.
    let upload = s3
        .create_multipart_upload()
        .bucket("ckpts")
        .key("gov.bin")
        .object_lock_mode(ObjectLockMode::Governance)
        .object_lock_retain_until_date(own)
        .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)
        .send()
        .await
        .unwrap();
    let v = finish_upload(
        &s3,
        "ckpts",
        "gov.bin",
        upload.upload_id().unwrap(),
        &[b"abc".to_vec()],
    )
    .await;
    assert_eq!(
        lock_of(&s3, "ckpts", "gov.bin", &v).await,
        (Some("GOVERNANCE".into()), Some(own.secs()), true)
    );
    // A copy gets what its request names, or the default; never its source's lock.
    let copy = |key: &'static str| {
        s3.copy_object()
            .bucket("ckpts")
            .key(key)
            .copy_source(format!("ckpts/own?versionId={explicit}"))
    };
    let three_days = in_secs(3 * DAY);
    let named = copy("copy-named")
        .object_lock_mode(ObjectLockMode::Compliance)
        .object_lock_retain_until_date(three_days)
        .send()
        .await
        .unwrap();
    assert_eq!(
        lock_of(&s3, "ckpts", "copy-named", named.version_id().unwrap()).await,
        (Some("COMPLIANCE".into()), Some(three_days.secs()), false)
    );
    let plain = copy("copy-plain").send().await.unwrap();
    let (mode, until, hold) =
        lock_of(&s3, "ckpts", "copy-plain", plain.version_id().unwrap()).await;
    assert_eq!(
        (mode.as_deref(), hold),
        (Some("COMPLIANCE"), false),
        "the default, not the source's GOVERNANCE"
    );
    assert!(until.unwrap() < own.secs());
    // A date in the past is refused.
    let past = s3
        .put_object()
        .bucket("ckpts")
        .key("late")
        .body(ByteStream::from_static(b"x"))
        .object_lock_mode(ObjectLockMode::Governance)
        .object_lock_retain_until_date(in_secs(-60))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&past).as_deref(), Some("InvalidArgument"));
}

/// Lifecycle expiry, the reclaimer and the scrub's orphan collection all run here (a
/// lifecycle day of a second, a scrub every second with a one-second orphan grace): the
/// unlocked versions go and their space comes back, the locked ones keep their record and
/// every byte of their shards, through a kill -9 too.
#[tokio::test]
async fn below_the_api_nothing_removes_a_locked_version() {
    let mut server = TestServer::start_with(ServerOptions {
        extra_config: "scrub_interval = \"1s\"\norphan_grace = \"1s\"\n[lifecycle]\nday = \"1s\"\n"
            .into(),
        env: vec![(
            "MERIDIAN_LOG".into(),
            "info,s3s=off,meridian_store=debug".into(),
        )],
        ..ServerOptions::default()
    });
    let s3 = server.client();
    lock_bucket(&s3, "keep").await;
    let locked = put_locked(
        &s3,
        "keep",
        "a",
        pattern(BIG, 1),
        Some((ObjectLockMode::Compliance, in_secs(DAY))),
        false,
    )
    .await;
    let held = put_locked(&s3, "keep", "b", pattern(BIG, 2), None, true).await;
    let locked_bytes = shard_bytes(&server, 6);
    let free = put_locked(&s3, "keep", "c", pattern(BIG, 3), None, false).await;
    // Every version becomes noncurrent, and every object current expires after a "day".
    for key in ["a", "b", "c"] {
        s3.put_object()
            .bucket("keep")
            .key(key)
            .body(ByteStream::from_static(b"new"))
            .send()
            .await
            .unwrap();
    }
    s3.put_bucket_lifecycle_configuration()
        .bucket("keep")
        .lifecycle_configuration(
            aws_sdk_s3::types::BucketLifecycleConfiguration::builder()
                .rules(
                    LifecycleRule::builder()
                        .id("all")
                        .status(ExpirationStatus::Enabled)
                        .filter(LifecycleRuleFilter::builder().prefix("").build())
                        .expiration(LifecycleExpiration::builder().days(1).build())
                        .noncurrent_version_expiration(
                            NoncurrentVersionExpiration::builder()
                                .noncurrent_days(1)
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // The unlocked old version goes, and the reclaimer gives its space back.
    wait_for(
        LIMIT,
        "the unlocked noncurrent version to expire",
        || async {
            let all = all_versions(&s3, "keep").await;
            (!all.iter().any(|l| l.version_id == free)).then_some(())
        },
    )
    .await;
    wait_for(LIMIT, "its shards to be reclaimed", || async {
        (shard_bytes(&server, 6) <= locked_bytes).then_some(())
    })
    .await;
    // Several scrubs (each ending with an orphan collection) pass over the locked shards.
    let scrubs = |log: &str| log.matches("no orphaned shards").count();
    let seen = scrubs(&server.log());
    wait_for(LIMIT, "two more orphan collections", || async {
        (scrubs(&server.log()) >= seen + 2).then_some(())
    })
    .await;
    // The preview leaves them out until their retention ends, and the held one for good.
    let previewed = |at: &str| {
        let (ok, out) = regions::admin_cli(
            &server.endpoint,
            &[
                "lifecycle",
                "preview",
                "--bucket",
                "keep",
                "--at",
                at,
                "--json",
            ],
            &[],
        );
        assert!(ok, "{out}");
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        out["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let soon = previewed("1h");
    assert!(!soon.contains(&locked) && !soon.contains(&held), "{soon:?}");
    let later = previewed("2d");
    assert!(
        later.contains(&locked) && !later.contains(&held),
        "{later:?}"
    );
    let kept = [("a", locked.as_str()), ("b", held.as_str())];
    assert_kept(&s3, &kept, shard_bytes(&server, 6), locked_bytes).await;
    server.kill9();
    server.restart();
    let s3 = server.client();
    assert_kept(&s3, &kept, shard_bytes(&server, 6), locked_bytes).await;
}

/// The locked versions are all there, readable and undeletable, with every byte of their
/// shards (`bytes` on the disks now, `locked_bytes` when they were written).
async fn assert_kept(s3: &Client, kept: &[(&str, &str)], bytes: u64, locked_bytes: u64) {
    let all = all_versions(s3, "keep").await;
    for (_, v) in kept {
        assert!(
            all.iter().any(|l| l.version_id == *v),
            "{v} is gone: {all:?}"
        );
    }
    assert_eq!(
        bytes, locked_bytes,
        "every byte of the locked shards is there"
    );
    for (key, v) in kept {
        assert_eq!(
            delete_version(s3, "keep", key, v, true).await.unwrap_err(),
            "AccessDenied"
        );
        let body = s3
            .get_object()
            .bucket("keep")
            .key(*key)
            .version_id(*v)
            .send()
            .await
            .unwrap();
        assert_eq!(body.body.collect().await.unwrap().into_bytes().len(), BIG);
    }
}

/// kill -9 while locked versions are written and their retention extended: after the restart
/// every version that exists has a lock at least as strong as its write asked for.
#[tokio::test]
async fn kill_9_never_leaves_a_locked_version_unlocked() {
    let mut server = server_with("");
    let s3 = server.client();
    lock_bucket(&s3, "crash").await;
    let until = in_secs(DAY);
    let writer = {
        let s3 = s3.clone();
        tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..200u64 {
                let put = s3
                    .put_object()
                    .bucket("crash")
                    .key(format!("k{}", i % 5))
                    .body(ByteStream::from(pattern(
                        if i % 2 == 0 { BIG } else { 100 },
                        i,
                    )))
                    .object_lock_mode(ObjectLockMode::Compliance)
                    .object_lock_retain_until_date(until)
                    .send()
                    .await;
                let Ok(put) = put else { break };
                let v = put.version_id().unwrap().to_owned();
                let _ = set_retention(
                    &s3,
                    "crash",
                    &format!("k{}", i % 5),
                    &v,
                    Some((
                        ObjectLockRetentionMode::Compliance,
                        DateTime::from_secs(until.secs() + DAY),
                    )),
                    false,
                )
                .await;
                written.push(v);
            }
            written
        })
    };
    wait_for(LIMIT, "a few locked writes", || async {
        (all_versions(&s3, "crash").await.len() >= 6).then_some(())
    })
    .await;
    server.kill9();
    let acknowledged = writer.await.unwrap();
    server.restart();
    let s3 = server.client();
    let all = all_versions(&s3, "crash").await;
    assert!(all.len() >= acknowledged.len());
    for v in &acknowledged {
        assert!(
            all.iter().any(|l| &l.version_id == v),
            "acknowledged {v} lost"
        );
    }
    for l in &all {
        let (mode, retained, _) = lock_of(&s3, "crash", &l.key, &l.version_id).await;
        assert_eq!(mode.as_deref(), Some("COMPLIANCE"), "{l:?}");
        assert!(retained.unwrap() >= until.secs(), "{l:?}");
        assert_eq!(
            delete_version(&s3, "crash", &l.key, &l.version_id, true)
                .await
                .unwrap_err(),
            "AccessDenied"
        );
    }
}

#[tokio::test]
async fn locked_versions_replicate_with_their_lock_and_its_changes() {
    // Parts of 5 MiB: a larger single PUT goes to the peer as a multipart upload.
    let regions = Regions::start(RegionsOptions {
        replication: "part_size = \"5MiB\"".into(),
        ..RegionsOptions::one_way(2)
    });
    let (east, west) = (regions.client(0), regions.client(1));
    for s3 in [&east, &west] {
        lock_bucket(s3, "vault").await;
    }
    // The target's own default retention must not touch replicas: they keep the source's.
    west.put_object_lock_configuration()
        .bucket("vault")
        .object_lock_configuration(default_rule(ObjectLockRetentionMode::Compliance, 30))
        .send()
        .await
        .unwrap();
    put_rules(
        &east,
        "vault",
        vec![rule_to(regions::NAMES[1], "vault", "all", 1, true)],
    )
    .await;
    let unlocked = put_locked(&east, "vault", "free", b"free".to_vec(), None, false).await;
    assert_exact_replica(&east, &west, "vault", "free", &unlocked).await;
    east.put_object_lock_configuration()
        .bucket("vault")
        .object_lock_configuration(default_rule(ObjectLockRetentionMode::Governance, 2))
        .send()
        .await
        .unwrap();
    let split = put_locked(&east, "vault", "big", pattern(6 << 20, 7), None, true).await;
    assert_exact_replica(&east, &west, "vault", "big", &split).await;
    assert_eq!(
        lock_of(&west, "vault", "big", &split).await.0.as_deref(),
        Some("GOVERNANCE")
    );
    let until = in_secs(DAY);
    let compliance = put_locked(
        &east,
        "vault",
        "c",
        pattern(BIG, 1),
        Some((ObjectLockMode::Compliance, until)),
        false,
    )
    .await;
    let governance = put_locked(
        &east,
        "vault",
        "g",
        b"gov".to_vec(),
        Some((ObjectLockMode::Governance, until)),
        true,
    )
    .await;
    assert_exact_replica(&east, &west, "vault", "c", &compliance).await;
    assert_exact_replica(&east, &west, "vault", "g", &governance).await;
    // The COMPLIANCE replica refuses deletes on the target as the source does.
    for bypass in [false, true] {
        assert_eq!(
            delete_version(&west, "vault", "c", &compliance, bypass)
                .await
                .unwrap_err(),
            "AccessDenied"
        );
    }
    // Changes on the source arrive: an extension, a hold cleared, a GOVERNANCE date
    // shortened with the bypass.
    let later = in_secs(5 * DAY);
    set_retention(
        &east,
        "vault",
        "c",
        &compliance,
        Some((ObjectLockRetentionMode::Compliance, later)),
        false,
    )
    .await
    .unwrap();
    set_hold(&east, "vault", "g", &governance, false).await;
    let shorter = in_secs(DAY / 4);
    set_retention(
        &east,
        "vault",
        "g",
        &governance,
        Some((ObjectLockRetentionMode::Governance, shorter)),
        true,
    )
    .await
    .unwrap();
    wait_for(LIMIT, "the lock changes on the target", || async {
        let c = lock_of(&west, "vault", "c", &compliance).await;
        let g = lock_of(&west, "vault", "g", &governance).await;
        (c == (Some("COMPLIANCE".into()), Some(later.secs()), false)
            && g == (Some("GOVERNANCE".into()), Some(shorter.secs()), false))
            .then_some(())
    })
    .await;
    // A GOVERNANCE retention removed with the bypass is removed on the target too.
    set_retention(&east, "vault", "g", &governance, None, true)
        .await
        .unwrap();
    wait_for(LIMIT, "the cleared retention on the target", || async {
        (lock_of(&west, "vault", "g", &governance).await == (None, None, false)).then_some(())
    })
    .await;
    // And a hold put on the source.
    set_hold(&east, "vault", "c", &compliance, true).await;
    wait_for(LIMIT, "the hold on the target", || async {
        lock_of(&west, "vault", "c", &compliance)
            .await
            .2
            .then_some(())
    })
    .await;
    assert_exact_replica(&east, &west, "vault", "c", &compliance).await;
    let verify = regions::drill_verify(&regions);
    assert!(
        verify.contains("4 matching") && verify.contains("0 different"),
        "{verify}"
    );
    // A replica's retention extended on the target alone: drill verify names the field.
    set_retention(
        &west,
        "vault",
        "c",
        &compliance,
        Some((ObjectLockRetentionMode::Compliance, in_secs(9 * DAY))),
        false,
    )
    .await
    .unwrap();
    let verify = regions::drill_verify(&regions);
    assert!(
        verify.contains("1 different") && verify.contains("object lock retain until"),
        "{verify}"
    );
}

#[tokio::test]
async fn a_destination_without_object_lock_leaves_locked_versions_failed_with_the_reason() {
    let regions = Regions::start(RegionsOptions::one_way(2));
    let (east, west) = (regions.client(0), regions.client(1));
    lock_bucket(&east, "vault").await;
    regions::versioned_bucket(&west, "vault").await;
    put_rules(
        &east,
        "vault",
        vec![rule_to(regions::NAMES[1], "vault", "all", 1, true)],
    )
    .await;
    let v = put_locked(
        &east,
        "vault",
        "c",
        b"locked".to_vec(),
        Some((ObjectLockMode::Compliance, in_secs(DAY))),
        false,
    )
    .await;
    let endpoint = &regions.servers[0].endpoint;
    let status = wait_for(LIMIT, "the version to fail", || async {
        let s = status_json(endpoint);
        (s["peers"][0]["failed"] == 1).then_some(s)
    })
    .await;
    let error = status["peers"][0]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("DstBucketObjectLockConfigMissing"),
        "{status}"
    );
    assert_eq!(
        regions::replication_status(&east, "vault", "c", &v)
            .await
            .as_deref(),
        Some("FAILED")
    );
    assert!(
        all_versions(&west, "vault").await.is_empty(),
        "nothing unlocked arrived"
    );
}
