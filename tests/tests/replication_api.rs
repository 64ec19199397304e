//! The bucket replication API as AWS answers it (every error code, nothing stored on error),
//! and who may send replica headers.

use aws_sdk_s3::types::{
    DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination, ReplicationConfiguration,
    ReplicationRule, ReplicationRuleFilter, ReplicationRuleStatus, Tag,
};
use aws_sdk_s3::Client;
use aws_sigv4::http_request::SignableBody;
use meridian_tests::raw::send_signed;
use meridian_tests::regions::{
    put_rules, rule_to, versioned_bucket, Regions, RegionsOptions, REPLICATOR_KEY,
    REPLICATOR_SECRET, WRITER_KEY, WRITER_SECRET,
};
use meridian_tests::{error_code, error_status, ACCESS_KEY, SECRET_KEY};

fn config(rules: Vec<ReplicationRule>) -> ReplicationConfiguration {
    ReplicationConfiguration::builder()
        .role("arn:aws:iam::000000000000:role/replication")
        .set_rules(Some(rules))
        .build()
        .unwrap()
}

async fn put_config(
    client: &Client,
    bucket: &str,
    rules: Vec<ReplicationRule>,
) -> Result<(), (Option<String>, Option<u16>)> {
    client
        .put_bucket_replication()
        .bucket(bucket)
        .replication_configuration(config(rules))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| (error_code(&e), error_status(&e)))
}

fn rule(
    id: &str,
    priority: Option<i32>,
    filter: Option<ReplicationRuleFilter>,
    markers: Option<bool>,
    arn: &str,
) -> ReplicationRule {
    let mut b = ReplicationRule::builder()
        .id(id)
        .set_priority(priority)
        .status(ReplicationRuleStatus::Enabled)
        .set_filter(filter)
        .destination(Destination::builder().bucket(arn).build().unwrap());
    if let Some(m) = markers {
        b = b.delete_marker_replication(
            DeleteMarkerReplication::builder()
                .status(if m {
                    DeleteMarkerReplicationStatus::Enabled
                } else {
                    DeleteMarkerReplicationStatus::Disabled
                })
                .build(),
        );
    }
    b.build().unwrap()
}

fn all() -> Option<ReplicationRuleFilter> {
    Some(ReplicationRuleFilter::builder().prefix("").build())
}

const TO_WEST: &str = "arn:meridian:replication:west::dest";

async fn has_no_config(client: &Client, bucket: &str) {
    let err = client
        .get_bucket_replication()
        .bucket(bucket)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&err).as_deref(),
        Some("ReplicationConfigurationNotFoundError")
    );
    assert_eq!(error_status(&err), Some(404));
}

#[tokio::test]
async fn every_invalid_configuration_gets_the_aws_error_and_stores_nothing() {
    let regions = Regions::start(RegionsOptions::one_way(2));
    let (east, west) = (regions.client(0), regions.client(1));
    east.create_bucket().bucket("plain").send().await.unwrap();
    versioned_bucket(&east, "src").await;
    versioned_bucket(&west, "dest").await;
    west.create_bucket()
        .bucket("unversioned")
        .send()
        .await
        .unwrap();
    has_no_config(&east, "src").await;

    let tag = Some(
        ReplicationRuleFilter::builder()
            .tag(Tag::builder().key("k").value("v").build().unwrap())
            .build(),
    );
    let good = || rule("r", Some(1), all(), Some(true), TO_WEST);
    let many: Vec<ReplicationRule> = (0..1001)
        .map(|i| rule(&format!("r{i}"), Some(i), all(), Some(false), TO_WEST))
        .collect();
    let cases: Vec<(&str, &str, Vec<ReplicationRule>, &str)> = vec![
        (
            "plain",
            "source not versioned",
            vec![good()],
            "InvalidRequest",
        ),
        (
            "src",
            "destination missing",
            vec![rule(
                "r",
                Some(1),
                all(),
                Some(true),
                "arn:meridian:replication:west::nope",
            )],
            "InvalidRequest",
        ),
        (
            "src",
            "destination unversioned",
            vec![rule(
                "r",
                Some(1),
                all(),
                Some(true),
                "arn:meridian:replication:west::unversioned",
            )],
            "InvalidRequest",
        ),
        (
            "src",
            "filter without DeleteMarkerReplication",
            vec![rule("r", Some(1), all(), None, TO_WEST)],
            "InvalidRequest",
        ),
        (
            "src",
            "filter without Priority",
            vec![rule("r", None, all(), Some(true), TO_WEST)],
            "InvalidRequest",
        ),
        (
            "src",
            "tag filter replicating markers",
            vec![rule("r", Some(1), tag, Some(true), TO_WEST)],
            "InvalidRequest",
        ),
        (
            "src",
            "unknown peer",
            vec![rule(
                "r",
                Some(1),
                all(),
                Some(true),
                "arn:meridian:replication:north::dest",
            )],
            "InvalidArgument",
        ),
        (
            "src",
            "duplicate rule id",
            vec![good(), rule("r", Some(2), all(), Some(true), TO_WEST)],
            "InvalidArgument",
        ),
        (
            "src",
            "duplicate priority",
            vec![good(), rule("s", Some(1), all(), Some(true), TO_WEST)],
            "InvalidArgument",
        ),
        ("src", "more than 1,000 rules", many, "InvalidArgument"),
    ];
    for (bucket, what, rules, code) in cases {
        let (got, status) = put_config(&east, bucket, rules).await.expect_err(what);
        assert_eq!(got.as_deref(), Some(code), "{what}");
        assert_eq!(status, Some(400), "{what}");
        has_no_config(&east, bucket).await;
    }

    // Malformed XML, sent by hand.
    let body = b"<ReplicationConfiguration><Rule><ID>x</Rule>";
    let resp = send_signed(
        &regions.servers[0].endpoint,
        "PUT",
        "/src?replication",
        &[("content-type", "application/xml".into())],
        body,
        SignableBody::Bytes(body),
        ACCESS_KEY,
        SECRET_KEY,
    );
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(resp.body.contains("MalformedXML"), "{}", resp.body);
    has_no_config(&east, "src").await;

    let err = east
        .get_bucket_replication()
        .bucket("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("NoSuchBucket"));
}

#[tokio::test]
async fn a_configuration_round_trips_and_pins_versioning() {
    let regions = Regions::start(RegionsOptions::one_way(2));
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, "src").await;
    versioned_bucket(&west, "dest").await;
    // With exactly one peer, the plain AWS ARN names it.
    let rules = vec![
        rule("all", Some(1), all(), Some(true), "arn:aws:s3:::dest"),
        rule(
            "tagged",
            Some(5),
            Some(
                ReplicationRuleFilter::builder()
                    .tag(Tag::builder().key("team").value("ml").build().unwrap())
                    .build(),
            ),
            Some(false),
            TO_WEST,
        ),
    ];
    put_config(&east, "src", rules.clone()).await.unwrap();
    let got = east
        .get_bucket_replication()
        .bucket("src")
        .send()
        .await
        .unwrap();
    let got = got.replication_configuration().unwrap();
    assert_eq!(got.role(), "arn:aws:iam::000000000000:role/replication");
    assert_eq!(got.rules(), &rules[..]);

    // Versioning cannot be suspended under a replication configuration.
    let err = east
        .put_bucket_versioning()
        .bucket("src")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("InvalidBucketState"));

    // Read-write (read + write) is not enough to change it: it is the bucket's
    // configuration, which needs `owner` (or creating the bucket).
    let writer = regions.servers[0].client_for(WRITER_KEY, WRITER_SECRET);
    east.delete_bucket_replication()
        .bucket("src")
        .send()
        .await
        .unwrap();
    has_no_config(&east, "src").await;
    let (code, _) = put_config(&writer, "src", rules.clone()).await.unwrap_err();
    assert_eq!(code.as_deref(), Some("AccessDenied"));
    has_no_config(&east, "src").await;
    put_config(&east, "src", rules).await.unwrap();
    let err = writer
        .delete_bucket_replication()
        .bucket("src")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err).as_deref(), Some("AccessDenied"));
}

#[tokio::test]
async fn a_destination_that_cannot_be_reached_is_accepted() {
    let regions = Regions::start(RegionsOptions::one_way(2));
    let east = regions.client(0);
    versioned_bucket(&east, "src").await;
    let mut regions = regions;
    regions.servers[1].stop();
    put_rules(&east, "src", vec![rule_to("west", "dest", "r", 1, true)]).await;
    assert!(east
        .get_bucket_replication()
        .bucket("src")
        .send()
        .await
        .is_ok());
}

#[tokio::test]
async fn only_replication_users_may_send_replica_headers() {
    let regions = Regions::start(RegionsOptions::one_way(2));
    let west = regions.client(1);
    versioned_bucket(&west, "dest").await;
    let endpoint = &regions.servers[1].endpoint;
    let headers = |vid: &str| {
        vec![
            ("x-meridian-replica-version-id", vid.to_string()),
            (
                "x-meridian-replica-mtime",
                "1700000000000000000".to_string(),
            ),
            ("x-meridian-replica-region", "east".to_string()),
            ("content-type", "application/octet-stream".to_string()),
        ]
    };
    let body = b"forged";
    let resp = send_signed(
        endpoint,
        "PUT",
        "/dest/k",
        &headers("00000000000000000000FORGED00000001"),
        body,
        SignableBody::Bytes(body),
        WRITER_KEY,
        WRITER_SECRET,
    );
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert!(resp.body.contains("AccessDenied"));
    let listed = west
        .list_object_versions()
        .bucket("dest")
        .send()
        .await
        .unwrap();
    assert!(listed.versions().is_empty(), "nothing stored");

    // The same request from the replication user keeps the id and mtime it names.
    let vid = "0000018BCFE56800AAAAAAAAAAAAAAAAAAAA";
    let resp = send_signed(
        endpoint,
        "PUT",
        "/dest/k",
        &headers(vid),
        body,
        SignableBody::Bytes(body),
        REPLICATOR_KEY,
        REPLICATOR_SECRET,
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let h = west
        .head_object()
        .bucket("dest")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(h.version_id(), Some(vid));
    assert_eq!(h.replication_status().map(|s| s.as_str()), Some("REPLICA"));
    assert_eq!(h.last_modified().unwrap().secs(), 1_700_000_000);
}

#[test]
fn a_peer_list_that_would_misroute_data_stops_the_server_at_start() {
    let cases = [
        (
            "[[peers]]\nname = \"self\"\nendpoint = \"http://127.0.0.1:{port}\"\naccess_key = \"a\"\nsecret_key = \"s\"\n",
            "cannot replicate to itself",
        ),
        (
            "[[peers]]\nname = \"w\"\nendpoint = \"http://127.0.0.1:1\"\naccess_key = \"a\"\nsecret_key = \"s\"\n\
             [[peers]]\nname = \"w\"\nendpoint = \"http://127.0.0.1:2\"\naccess_key = \"a\"\nsecret_key = \"s\"\n",
            "used twice",
        ),
        (
            "[[peers]]\nname = \"w\"\nendpoint = \"west:9000\"\naccess_key = \"a\"\nsecret_key = \"s\"\n",
            "not usable",
        ),
    ];
    for (peers, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let port = meridian_tests::free_port();
        let config = dir.path().join("meridian.toml");
        std::fs::write(&config, peers.replace("{port}", &port.to_string())).unwrap();
        let mut cmd = std::process::Command::new(meridian_tests::meridian_binary());
        cmd.args([
            "serve",
            "--address",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(&config)
        .arg("--data")
        .arg(dir.path())
        .env("MERIDIAN_LOG", "warn");
        let out = meridian_tests::output_within(&mut cmd, std::time::Duration::from_secs(30));
        assert!(
            !out.status.success(),
            "{expected}: the server must not start"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
}
