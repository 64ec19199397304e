//! Several Meridian regions on loopback, wired as replication peers, and the waits and
//! comparisons replication tests need. Every wait polls with a deadline; none sleeps for
//! correctness.

use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{
    BucketVersioningStatus, DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination,
    ExistingObjectReplication, ExistingObjectReplicationStatus, ReplicationConfiguration,
    ReplicationRule, ReplicationRuleFilter, ReplicationRuleStatus, VersioningConfiguration,
};
use aws_sdk_s3::Client;
pub use meridian_api::version::{differences, Fidelity, ObservedVersion, ABSENT_CONTENT_TYPE};

use crate::fault_proxy::FaultProxy;
use crate::{hold_ports, port_of, ServerOptions, TestServer};

/// The user each region's peers replicate as (`access = "replicate"` on every bucket).
pub const REPLICATOR_KEY: &str = "replicator";
pub const REPLICATOR_SECRET: &str = "replicator-secret";
/// A plain read-write user on every region.
pub const WRITER_KEY: &str = "writer";
pub const WRITER_SECRET: &str = "writer-secret";

/// Region (and peer) names, by index.
pub const NAMES: [&str; 3] = ["east", "west", "south"];

/// A replication link: region `from` sends to region `to`, which is a Meridian peer or is
/// treated as any S3 server (`foreign`).
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub from: usize,
    pub to: usize,
    pub foreign: bool,
}

impl Link {
    pub fn new(from: usize, to: usize) -> Link {
        Link {
            from,
            to,
            foreign: false,
        }
    }
}

/// How to start a set of regions.
#[derive(Clone, Debug)]
pub struct RegionsOptions {
    pub count: usize,
    pub links: Vec<Link>,
    /// Lines added to every region's `[replication]` table.
    pub replication: String,
    /// Erasure coding of every region.
    pub erasure: String,
    /// Top-level config lines for every region (before any table).
    pub extra: String,
    /// Lines added to every `[[peers]]` entry (e.g. `bandwidth = "20MB/s"`).
    pub peer_extra: String,
    /// Every link goes through a [`FaultProxy`] (see [`Regions::proxy`]).
    pub proxied: bool,
    /// Environment variables for one region: `(region, name, value)`.
    pub env: Vec<(usize, String, String)>,
    /// Every region serves HTTPS with this certificate (clients trust the CA PEM given),
    /// and peers are `https://` endpoints. Each peer's `ca_file` goes in `peer_extra`.
    pub tls: Option<(crate::tls::ServerCert, String)>,
}

impl RegionsOptions {
    /// `count` regions, region 0 sending to each of the others.
    pub fn one_way(count: usize) -> RegionsOptions {
        RegionsOptions {
            count,
            links: (1..count).map(|to| Link::new(0, to)).collect(),
            replication: String::new(),
            erasure: "4+2".into(),
            extra: String::new(),
            peer_extra: String::new(),
            proxied: false,
            env: Vec::new(),
            tls: None,
        }
    }

    /// Two regions, each sending to the other.
    pub fn active_active() -> RegionsOptions {
        RegionsOptions {
            links: vec![Link::new(0, 1), Link::new(1, 0)],
            ..RegionsOptions::one_way(2)
        }
    }
}

/// Running regions; region `i` is `servers[i]`, named `NAMES[i]`.
pub struct Regions {
    pub servers: Vec<TestServer>,
    /// With `proxied`: the proxy of each link, in `options.links` order.
    proxies: Vec<(Link, FaultProxy)>,
}

impl Regions {
    pub fn start(options: RegionsOptions) -> Regions {
        // Held while the proxies pick their own ports, released just before the servers bind.
        let held = hold_ports(options.count);
        let ports: Vec<u16> = held.iter().map(port_of).collect();
        let proxies: Vec<(Link, FaultProxy)> = if options.proxied {
            options
                .links
                .iter()
                .map(|l| {
                    let target = std::net::SocketAddr::from(([127, 0, 0, 1], ports[l.to]));
                    (*l, FaultProxy::start(target))
                })
                .collect()
        } else {
            Vec::new()
        };
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let endpoint_of = |link: &Link| match proxies
            .iter()
            .find(|(l, _)| l.from == link.from && l.to == link.to)
        {
            Some((_, proxy)) => format!("{scheme}://{}", proxy.addr()),
            None => format!("{scheme}://127.0.0.1:{}", ports[link.to]),
        };
        drop(held);
        let servers = (0..options.count)
            .map(|i| {
                let mut config = options.extra.clone();
                config.push_str(&format!(
                    "\n[[users]]\naccess_key = \"{REPLICATOR_KEY}\"\nsecret_key = \"{REPLICATOR_SECRET}\"\n\
                     grants = [{{ bucket = \"*\", access = \"replicate\" }}]\n\
                     [[users]]\naccess_key = \"{WRITER_KEY}\"\nsecret_key = \"{WRITER_SECRET}\"\n\
                     grants = [{{ bucket = \"*\", access = \"read-write\" }}]\n"
                ));
                for link in options.links.iter().filter(|l| l.from == i) {
                    config.push_str(&format!(
                        "[[peers]]\nname = \"{}\"\nendpoint = \"{}\"\nregion = \"{}\"\n\
                         access_key = \"{}\"\nsecret_key = \"{}\"\nkind = \"{}\"\n{}\n",
                        NAMES[link.to],
                        endpoint_of(link),
                        crate::REGION,
                        if link.foreign { crate::ACCESS_KEY } else { REPLICATOR_KEY },
                        if link.foreign { crate::SECRET_KEY } else { REPLICATOR_SECRET },
                        if link.foreign { "s3" } else { "meridian" },
                        options.peer_extra,
                    ));
                }
                config.push_str(&format!(
                    "[replication]\nmax_backoff = \"1s\"\n{}\n",
                    options.replication
                ));
                TestServer::start_with(ServerOptions {
                    erasure: options.erasure.clone(),
                    extra_config: config,
                    port: Some(ports[i]),
                    tls: options.tls.clone(),
                    env: options
                        .env
                        .iter()
                        .filter(|(r, _, _)| *r == i)
                        .map(|(_, k, v)| (k.clone(), v.clone()))
                        .collect(),
                })
            })
            .collect();
        Regions { servers, proxies }
    }

    /// The proxy on the link `from` -> `to` (regions started with `proxied`).
    pub fn proxy(&self, from: usize, to: usize) -> &FaultProxy {
        self.proxies
            .iter()
            .find(|(l, _)| l.from == from && l.to == to)
            .map(|(_, p)| p)
            .expect("a proxied link")
    }

    pub fn client(&self, i: usize) -> Client {
        self.servers[i].client()
    }
}

/// Creates `bucket` with versioning enabled.
pub async fn versioned_bucket(client: &Client, bucket: &str) {
    client.create_bucket().bucket(bucket).send().await.unwrap();
    client
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// `bucket`, versioned, on `from` and `to`, with one rule on `from` sending every change
/// (delete markers too) to `to`, which `from` knows as `peer`.
pub async fn replicated_bucket(from: &Client, to: &Client, peer: &str, bucket: &str) {
    for s3 in [from, to] {
        versioned_bucket(s3, bucket).await;
    }
    put_rules(from, bucket, vec![rule_to(peer, bucket, "all", 1, true)]).await;
}

/// Versioned `bucket` on both regions, each sending it to the other (rules `to-west` on `a`,
/// `to-east` on `b`: `a` is east, `b` west).
pub async fn replicated_both_ways(a: &Client, b: &Client, bucket: &str) {
    versioned_bucket(a, bucket).await;
    versioned_bucket(b, bucket).await;
    put_rules(a, bucket, vec![rule_to("west", bucket, "to-west", 1, true)]).await;
    put_rules(b, bucket, vec![rule_to("east", bucket, "to-east", 1, true)]).await;
}

/// `rule` with existing-object replication on: versions written before it are backfilled.
pub fn with_existing_objects(rule: ReplicationRule) -> ReplicationRule {
    ReplicationRule::builder()
        .set_id(rule.id().map(str::to_owned))
        .set_priority(rule.priority())
        .status(rule.status().clone())
        .set_filter(rule.filter().cloned())
        .set_delete_marker_replication(rule.delete_marker_replication().cloned())
        .existing_object_replication(
            ExistingObjectReplication::builder()
                .status(ExistingObjectReplicationStatus::Enabled)
                .build()
                .unwrap(),
        )
        .set_destination(rule.destination().cloned())
        .build()
        .unwrap()
}

/// A rule sending every key of the bucket (delete markers too, unless `markers` is false) to
/// `bucket` on peer `peer`.
pub fn rule_to(
    peer: &str,
    bucket: &str,
    id: &str,
    priority: i32,
    markers: bool,
) -> ReplicationRule {
    ReplicationRule::builder()
        .id(id)
        .priority(priority)
        .status(ReplicationRuleStatus::Enabled)
        .filter(ReplicationRuleFilter::builder().prefix("").build())
        .delete_marker_replication(
            DeleteMarkerReplication::builder()
                .status(if markers {
                    DeleteMarkerReplicationStatus::Enabled
                } else {
                    DeleteMarkerReplicationStatus::Disabled
                })
                .build(),
        )
        .destination(
            Destination::builder()
                .bucket(format!("arn:meridian:replication:{peer}::{bucket}"))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// Puts `rules` as the replication configuration of `bucket`.
pub async fn put_rules(client: &Client, bucket: &str, rules: Vec<ReplicationRule>) {
    client
        .put_bucket_replication()
        .bucket(bucket)
        .replication_configuration(
            ReplicationConfiguration::builder()
                .role("arn:aws:iam::000000000000:role/replication")
                .set_rules(Some(rules))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Polls `probe` every 50 ms until it returns `Some`, or panics after `limit` saying `what`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub use meridian_client::s3::own_copy_only;

/// Removes the `Content-Type` the SDK adds to every body, as boto3 and the aws CLI send none
/// for a file they cannot guess (for `customize().mutate_request`).
pub fn without_content_type(req: &mut aws_sdk_s3::config::http::HttpRequest) {
    req.headers_mut().remove("content-type");
}

/// `x-amz-replication-status` of a version as the region itself holds it (None when absent
/// or when the region does not have the version: a peer's copy, proxied, does not count).
pub async fn replication_status(
    client: &Client,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> Option<String> {
    client
        .head_object()
        .bucket(bucket)
        .key(key)
        .version_id(version_id)
        .customize()
        .mutate_request(own_copy_only)
        .send()
        .await
        .ok()?
        .replication_status()
        .map(|s| s.as_str().to_owned())
}

/// One version as a client observes it (HEAD with checksum mode, HEAD of part 1 for a
/// multipart ETag, the tag set), from the region's own data: what replication must keep.
pub async fn observe(
    client: &Client,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> ObservedVersion {
    let head = |part: Option<i32>| {
        client
            .head_object()
            .bucket(bucket)
            .key(key)
            .version_id(version_id)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .set_part_number(part)
            .customize()
            .mutate_request(own_copy_only)
            .send()
    };
    let whole = head(None).await.unwrap();
    let part1 = match whole.e_tag() {
        Some(e) if e.contains('-') => Some(head(Some(1)).await.unwrap()),
        _ => None,
    };
    let tags = client
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .version_id(version_id)
        .send()
        .await
        .unwrap()
        .tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    ObservedVersion::from_head(&whole, part1.as_ref(), Some(tags))
}

/// The replica of `version_id` on `dst` is the source's version in every field a client can
/// observe (the comparison the replicator and `meridian drill verify` use), and in its bytes.
pub async fn assert_exact_replica(
    src: &Client,
    dst: &Client,
    bucket: &str,
    key: &str,
    version_id: &str,
) {
    wait_completed(src, bucket, key, version_id).await;
    assert_eq!(
        replication_status(dst, bucket, key, version_id)
            .await
            .as_deref(),
        Some("REPLICA"),
        "{key}: the target marks it a replica"
    );
    let (a, b) = (
        observe(src, bucket, key, version_id).await,
        observe(dst, bucket, key, version_id).await,
    );
    let d = differences(&a, &b, Fidelity::Exact);
    assert!(d.is_empty(), "{key}: the replica differs: {d:?}");
    let (a, b) = (
        get_bytes(src, bucket, key, version_id).await,
        get_bytes(dst, bucket, key, version_id).await,
    );
    assert!(
        a == b,
        "{key}: same bytes ({} vs {} bytes)",
        a.len(),
        b.len()
    );
}

/// Waits until the source reports the version COMPLETED on every peer.
pub async fn wait_completed(client: &Client, bucket: &str, key: &str, version_id: &str) {
    wait_for(
        Duration::from_secs(60),
        &format!("{bucket}/{key} {version_id} to be COMPLETED"),
        || async {
            (replication_status(client, bucket, key, version_id)
                .await
                .as_deref()
                == Some("COMPLETED"))
            .then_some(())
        },
    )
    .await
}

/// One entry of ListObjectVersions (versions and delete markers alike).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    pub key: String,
    pub version_id: String,
    pub is_latest: bool,
    pub delete_marker: bool,
    pub etag: Option<String>,
    pub size: Option<i64>,
    /// Milliseconds since the epoch.
    pub last_modified: Option<i64>,
}

fn millis(t: &aws_smithy_types::DateTime) -> i64 {
    t.secs() * 1000 + i64::from(t.subsec_nanos() / 1_000_000)
}

/// Every version and delete marker of `bucket`, keys ascending, newest first per key.
pub async fn all_versions(client: &Client, bucket: &str) -> Vec<Listed> {
    let mut out = Vec::new();
    let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = client
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .unwrap();
        let mut batch: Vec<Listed> = page
            .versions()
            .iter()
            .map(|v| Listed {
                key: v.key().unwrap_or_default().to_owned(),
                version_id: v.version_id().unwrap_or_default().to_owned(),
                is_latest: v.is_latest().unwrap_or(false),
                delete_marker: false,
                etag: v.e_tag().map(str::to_owned),
                size: v.size(),
                last_modified: v.last_modified().map(millis),
            })
            .chain(page.delete_markers().iter().map(|m| Listed {
                key: m.key().unwrap_or_default().to_owned(),
                version_id: m.version_id().unwrap_or_default().to_owned(),
                is_latest: m.is_latest().unwrap_or(false),
                delete_marker: true,
                etag: None,
                size: None,
                last_modified: m.last_modified().map(millis),
            }))
            .collect();
        out.append(&mut batch);
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
    }
    // Versions and markers come in two lists: merge them newest first per key (version ids
    // are time-ordered, so they break ties within a millisecond).
    out.sort_by(|a, b| {
        a.key
            .cmp(&b.key)
            .then_with(|| (&b.last_modified, &b.version_id).cmp(&(&a.last_modified, &a.version_id)))
    });
    out
}

/// Waits until `bucket` lists the same versions (ids, ETags, sizes, markers, latest flags) on
/// both clients, and returns them.
pub async fn wait_identical(a: &Client, b: &Client, bucket: &str, limit: Duration) -> Vec<Listed> {
    wait_for(
        limit,
        &format!("{bucket} to be identical on both sides"),
        || async {
            let (x, y) = (all_versions(a, bucket).await, all_versions(b, bucket).await);
            (x == y).then_some(x)
        },
    )
    .await
}

/// The whole body of one version.
pub async fn get_bytes(client: &Client, bucket: &str, key: &str, version_id: &str) -> Vec<u8> {
    client
        .get_object()
        .bucket(bucket)
        .key(key)
        .version_id(version_id)
        .customize()
        .mutate_request(own_copy_only)
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

/// Runs `meridian replication ARGS` against `endpoint` as root; returns (success, stdout).
pub fn replication_cli(endpoint: &str, args: &[&str]) -> (bool, String) {
    replication_cli_with(endpoint, args, &[])
}

/// [`replication_cli`] with extra environment variables (`MERIDIAN_CA_FILE`).
pub fn replication_cli_with(endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut all = vec!["replication"];
    all.extend_from_slice(args);
    admin_cli(endpoint, &all, env)
}

/// Runs `meridian ARGS --endpoint ENDPOINT` as root (an admin command: `replication ...`,
/// `lifecycle ...`); returns (success, stdout).
pub fn admin_cli(endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = std::process::Command::new(crate::meridian_binary());
    cmd.envs(env.iter().copied());
    cmd.args(args)
        .args(["--endpoint", endpoint])
        .env("AWS_ACCESS_KEY_ID", crate::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", crate::SECRET_KEY);
    let out = crate::output_within(&mut cmd, Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        eprintln!("meridian {args:?} failed:\n{stdout}\n{stderr}");
    }
    (out.status.success(), stdout)
}

/// `meridian replication checkpoint`: waits until `peer` has everything committed on the
/// region at `endpoint` so far; panics if it does not within `limit`.
pub fn checkpoint(endpoint: &str, peer: &str, limit: Duration) {
    let timeout = format!("{}s", limit.as_secs());
    let (ok, out) = replication_cli(
        endpoint,
        &["checkpoint", "--peer", peer, "--timeout", &timeout],
    );
    assert!(ok, "checkpoint of {peer} not reached: {out}");
}

/// The replication status JSON of the region at `endpoint`.
/// `meridian drill verify` from region 0 to region 1 (root's keys); its stdout.
pub fn drill_verify(regions: &Regions) -> String {
    let out = crate::output_within(
        std::process::Command::new(crate::meridian_binary())
            .args(["drill", "--source", &regions.servers[0].endpoint])
            .args(["--target", &regions.servers[1].endpoint])
            .args(["--source-access-key", crate::ACCESS_KEY])
            .args(["--source-secret-key", crate::SECRET_KEY])
            .args(["--timeout", "30s", "verify"]),
        Duration::from_secs(120),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn status_json(endpoint: &str) -> serde_json::Value {
    let (ok, out) = replication_cli(endpoint, &["status", "--json"]);
    assert!(ok, "status failed: {out}");
    serde_json::from_str(&out).expect("status is JSON")
}
