//! A region of several nodes: the placement simulation behind docs/CLUSTER.md, leases in
//! etcd, and a three-node region (R = 2) serving S3 from every node, keeping two copies of
//! every acknowledged version, and failing over when a primary is killed.

use std::process::Command;
use std::time::Duration;

use meridian_tests::{meridian_binary, output_within};

#[test]
fn the_placement_simulation_reports_balance_movement_and_etcds_load() {
    let out = output_within(
        Command::new(meridian_binary())
            .args(["cluster", "simulate", "--nodes", "4,16,100", "--json"]),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = doc["rows"].as_array().unwrap();
    let row = |scheme: &str, nodes: u64| {
        rows.iter()
            .find(|r| r["scheme"] == scheme && r["nodes"] == nodes)
            .unwrap_or_else(|| panic!("{scheme} at {nodes}"))
            .clone()
    };
    for nodes in [4, 16, 100] {
        let layout = row("meridian layout, P=1024", nodes);
        let max = layout["max_over_mean"].as_f64().unwrap();
        // Balance is exact to one partition: 2,048 copies over `nodes`, rounded up.
        assert!(
            max <= (2048 / nodes + 1) as f64 / (2048.0 / nodes as f64) + 1e-9,
            "{layout}"
        );
        let moved = layout["moved_on_add"].as_f64().unwrap();
        let ideal = layout["ideal_move"].as_f64().unwrap();
        assert!((moved - ideal).abs() < 0.005, "{layout}");
        // A bare ring is far less even than the layout.
        let ring = row("consistent hashing, 1 point per node", nodes);
        assert!(ring["max_over_mean"].as_f64().unwrap() > max, "{ring}");
    }
    let etcd = &doc["etcd_at_100_nodes"];
    assert!(etcd["layout_bytes"].as_u64().unwrap() < 100_000, "{etcd}");
    assert_eq!(etcd["keepalives_per_s"].as_f64(), Some(30.0));

    let refused = output_within(
        Command::new(meridian_binary()).args(["cluster", "simulate", "--nodes", "1"]),
        Duration::from_secs(60),
    );
    assert!(!refused.status.success(), "one node cannot hold two copies");
}

/// Three nodes registered with one etcd, each reaching it through its own fault proxy.
struct Region {
    etcd: meridian_tests::etcd::Etcd,
    links: Vec<meridian_tests::fault_proxy::FaultProxy>,
    nodes: Vec<meridian_tests::TestServer>,
}

impl Region {
    fn start(count: usize) -> Region {
        Region::start_with(count, "")
    }

    /// `count` nodes with `extra` in their `[cluster]` table.
    fn start_with(count: usize, extra: &str) -> Region {
        let etcd = meridian_tests::etcd::Etcd::start();
        let mut links = Vec::new();
        let mut nodes = Vec::new();
        for _ in 0..count {
            let link = meridian_tests::fault_proxy::FaultProxy::start(etcd.client);
            let port = meridian_tests::free_port();
            let config = format!(
                "[cluster]\netcd = [\"http://{}\"]\nendpoint = \"http://127.0.0.1:{port}\"\nlease_ttl = \"3s\"\n{extra}\n",
                link.addr()
            );
            nodes.push(meridian_tests::TestServer::start_with(
                meridian_tests::ServerOptions {
                    extra_config: config,
                    port: Some(port),
                    ..Default::default()
                },
            ));
            links.push(link);
        }
        Region { etcd, links, nodes }
    }

    fn cli(&self, args: &[&str]) -> serde_json::Value {
        let out = output_within(
            Command::new(meridian_binary())
                .arg("cluster")
                .args(args)
                .args(["--etcd", &self.etcd.url(), "--json"]),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "cluster {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Polls `cluster status` until `check` holds (at most 30 s).
    fn wait_status(
        &self,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.wait_status_for(what, Duration::from_secs(30), check)
    }

    /// Polls `cluster status` until `check` holds, at most `limit`.
    fn wait_status_for(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let status = self.cli(&["status"]);
            if check(&status) {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {status:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn alive(status: &serde_json::Value, id: u64) -> bool {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["id"] == id && n["alive"] == true)
}

async fn put(s3: &aws_sdk_s3::Client, key: &str) -> Result<(), Option<String>> {
    s3.put_object()
        .bucket("data")
        .key(key)
        .body(b"x".to_vec().into())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| meridian_tests::error_code(&e))
}

/// Polls PUTs to `s3` until one gives `want` (Ok or the error code), at most `limit`.
async fn wait_put(s3: &aws_sdk_s3::Client, want: Result<(), &str>, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    let mut i = 0;
    loop {
        i += 1;
        let got = put(s3, &format!("probe-{i}")).await;
        let same = match (&got, want) {
            (Ok(()), Ok(())) => true,
            (Err(Some(code)), Err(w)) => code == w,
            _ => false,
        };
        if same {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waiting for {want:?}, got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_hold_leases_in_etcd_and_stop_writing_without_one() {
    let mut region = Region::start(3);
    // Every node registers itself (ids 1..3) and holds its lease.
    region.wait_status("three nodes alive", |s| (1..=3).all(|id| alive(s, id)));

    // The first layout needs R = 2 nodes; a third joins as a staged change.
    let one = region.cli(&["add-node", "1"]);
    assert!(
        one["current"].is_null(),
        "one node cannot hold two copies: {one:#}"
    );
    let two = region.cli(&["add-node", "2"]);
    assert_eq!(two["current"]["version"], 1);
    assert_eq!(two["current"]["partitions"].as_array().unwrap().len(), 1024);
    let three = region.cli(&["add-node", "3"]);
    assert_eq!(three["staged"]["version"], 2);
    let to_fill = three["copies_to_fill"].as_u64().unwrap();
    assert!(
        (680..=684).contains(&to_fill),
        "node 3's share of 2048 copies: {to_fill}"
    );

    for node in &region.nodes {
        wait_ready(&node.endpoint);
    }
    // A bucket made on one node is made on every node.
    region.create_bucket(1, "data").await;
    let s3 = region.nodes[0].client();
    put(&s3, "before").await.unwrap();

    // Cut node 1 off from etcd: it stops taking writes once its lease would lapse, reads
    // go on, and etcd sees it gone.
    region.links[0].update(|f| f.blackhole = true);
    wait_put(&s3, Err("SlowDown"), Duration::from_secs(10)).await;
    let read = s3.get_object().bucket("data").key("before").send().await;
    assert!(read.is_ok(), "reads go on without the lease");
    region.wait_status("node 1 down", |s| {
        !alive(s, 1) && alive(s, 2) && alive(s, 3)
    });
    // The other nodes still write: node 1's partitions go to their followers.
    wait_put(&region.nodes[1].client(), Ok(()), Duration::from_secs(10)).await;
    let status = region.wait_status("node 1 marked down", |s| {
        s["current"]["down"] == serde_json::json!([1])
    });
    assert!(
        status["current"]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p[0] != 1),
        "node 1 leads nothing while it is down"
    );

    // Healed: node 1 gets a lease again, writes, and once nothing is queued for it any
    // more it is marked up.
    region.links[0].update(|f| f.blackhole = false);
    wait_put(&s3, Ok(()), Duration::from_secs(20)).await;
    region.wait_status("node 1 back and caught up", |s| {
        alive(s, 1) && s["current"]["down"].is_null()
    });

    // etcd restarted: every node holds a lease again and writes go on.
    region.etcd.kill();
    wait_put(&s3, Err("SlowDown"), Duration::from_secs(10)).await;
    region.etcd.restart();
    for node in &region.nodes {
        wait_put(&node.client(), Ok(()), Duration::from_secs(30)).await;
    }
    let status = region.wait_status("all alive after etcd's restart", |s| {
        (1..=3).all(|id| alive(s, id))
    });
    assert_eq!(
        status["current"]["partitions"].as_array().unwrap().len(),
        1024,
        "the layout survived: {status:#}"
    );
    // Node 3's staged copies were filled and its layout took effect (at once or after the
    // restart); remove-node stages a layout without it, with copies to fill on the others.
    region.wait_status_for(
        "the three-node layout in force",
        Duration::from_secs(90),
        |s| s["staged"].is_null() && s["current"]["nodes"].as_array().unwrap().len() == 3,
    );
    let removed = region.cli(&["remove-node", "3"]);
    assert_eq!(removed["staged"]["nodes"].as_array().unwrap().len(), 2);
    assert!(
        removed["copies_to_fill"].as_u64().unwrap() > 0,
        "{removed:#}"
    );
    region.wait_status_for(
        "the layout without node 3 in force",
        Duration::from_secs(90),
        |s| s["staged"].is_null() && s["current"]["nodes"].as_array().unwrap().len() == 2,
    );
}

impl Region {
    /// `count` nodes, all in the first layout (R = 2), each ready (lease held, layout known).
    fn in_layout(count: usize, extra: &str) -> Region {
        let region = Region::start_with(count, extra);
        region.wait_status("every node alive", |s| {
            (1..=count as u64).all(|id| alive(s, id))
        });
        let ids: Vec<String> = (1..=count).map(|i| i.to_string()).collect();
        let mut args = vec!["add-node"];
        args.extend(ids.iter().map(String::as_str));
        let status = region.cli(&args);
        assert_eq!(status["current"]["nodes"].as_array().unwrap().len(), count);
        for node in &region.nodes {
            wait_ready(&node.endpoint);
        }
        region
    }

    fn layout(&self) -> serde_json::Value {
        self.cli(&["status"])["current"].clone()
    }

    /// Creates `bucket` through node `n` (0-based).
    async fn create_bucket(&self, n: usize, bucket: &str) {
        self.nodes[n]
            .client()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating {bucket} through node {}: {e:?}", n + 1));
    }
}

/// Polls the node's readiness probe (lease held, layout known) for at most 30 s.
fn wait_ready(endpoint: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) =
            meridian_tests::anonymous_request(endpoint, "GET", "/_meridian/health/ready");
        if status == 200 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{endpoint} not ready: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The node id (1-based) that leads the partition of (`bucket`, `key`) in `layout`.
fn leader(layout: &serde_json::Value, bucket: &str, key: &str) -> u64 {
    let partitions = layout["partitions"].as_array().unwrap();
    let p = meridian_cluster::partition_of(bucket, key, partitions.len());
    partitions[p][0].as_u64().unwrap()
}

/// The nodes of the partition of (`bucket`, `key`) in `layout`.
fn copies_of(layout: &serde_json::Value, bucket: &str, key: &str) -> Vec<u64> {
    let partitions = layout["partitions"].as_array().unwrap();
    let p = meridian_cluster::partition_of(bucket, key, partitions.len());
    partitions[p]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect()
}

/// The bytes of a version as `node` alone holds it (a request marked as coming from another
/// node is served where it arrives), or the error code.
async fn held_by(
    node: &meridian_tests::TestServer,
    bucket: &str,
    key: &str,
    version: &str,
) -> Result<Vec<u8>, Option<String>> {
    let out = node
        .client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .customize()
        .mutate_request(from_a_node(&[]))
        .send()
        .await
        .map_err(|e| meridian_tests::error_code(&e))?;
    Ok(out.body.collect().await.unwrap().into_bytes().to_vec())
}

/// The bytes of a version read through the region (any node), panicking with its name.
async fn read_version(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, version: &str) -> Vec<u8> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key} ({version}): {e:?}"));
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// How many nodes hold exactly `bytes` as that version, polled until it is `want` (copies of
/// removals travel in the background) for at most 30 s.
async fn wait_held(
    region: &Region,
    bucket: &str,
    key: &str,
    version: &str,
    bytes: Option<&[u8]>,
    want: usize,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut holding = 0;
        let mut seen = Vec::new();
        for node in &region.nodes {
            let got = held_by(node, bucket, key, version).await;
            seen.push(got.as_ref().map(Vec::len).map_err(Clone::clone));
            match (got, bytes) {
                (Ok(got), Some(b)) if got == b => holding += 1,
                (Ok(got), Some(_)) => panic!(
                    "{bucket}/{key} ({version}) differs on {}: {} bytes",
                    node.endpoint,
                    got.len()
                ),
                (Ok(_), None) => holding += 1,
                (Err(_), _) => {}
            }
        }
        if holding == want {
            return;
        }
        if std::time::Instant::now() >= deadline {
            let logs: Vec<String> = region
                .nodes
                .iter()
                .map(|n| {
                    let log = n.log();
                    let lines: Vec<&str> = log
                        .lines()
                        .filter(|l| l.contains(key) || l.contains("meridian_gateway::cluster"))
                        .filter(|l| !l.contains("forwarding to the partition"))
                        .collect();
                    format!("{}:\n{}", n.endpoint, lines.join("\n"))
                })
                .collect();
            panic!(
                "{bucket}/{key} ({version}) is on {holding} nodes, not {want}: {seen:?}; layout {:?}\n{}",
                copies_of(&region.layout(), bucket, key),
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str, page: i32) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(page)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        if !out.is_truncated().unwrap_or(false) {
            return keys;
        }
        token = out.next_continuation_token().map(str::to_owned);
    }
}

async fn list_versions(s3: &aws_sdk_s3::Client, bucket: &str, page: i32) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let out = s3
            .list_object_versions()
            .bucket(bucket)
            .max_keys(page)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
            .unwrap();
        let mut rows: Vec<(String, String, String)> = out
            .versions()
            .iter()
            .map(|v| {
                let mtime = v.last_modified().unwrap().as_nanos().to_string();
                (
                    v.key().unwrap().to_owned(),
                    mtime,
                    v.version_id().unwrap().to_owned(),
                )
            })
            .chain(out.delete_markers().iter().map(|m| {
                let mtime = m.last_modified().unwrap().as_nanos().to_string();
                (
                    m.key().unwrap().to_owned(),
                    mtime,
                    m.version_id().unwrap().to_owned(),
                )
            }))
            .collect();
        rows.sort();
        all.extend(rows.into_iter().map(|(k, _, v)| (k, v)));
        if !out.is_truncated().unwrap_or(false) {
            all.sort();
            return all;
        }
        key_marker = out.next_key_marker().map(str::to_owned);
        version_marker = out.next_version_id_marker().map(str::to_owned);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_region_serves_every_request_from_every_node_with_two_copies_of_each_version()
{
    let region = Region::in_layout(3, "");
    let layout = region.layout();
    let client = |i: usize| region.nodes[i % 3].client();

    // Buckets made and configured through different nodes are everywhere.
    client(0)
        .create_bucket()
        .bucket("plain")
        .send()
        .await
        .unwrap();
    client(1)
        .create_bucket()
        .bucket("versions")
        .send()
        .await
        .unwrap();
    meridian_tests::enable_versioning(&client(2), "versions").await;
    for i in 0..3 {
        let names: Vec<String> = client(i)
            .list_buckets()
            .send()
            .await
            .unwrap()
            .buckets()
            .iter()
            .map(|b| b.name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["plain", "versions"], "node {}", i + 1);
    }

    // Objects written through every node, some overwritten, some deleted.
    let mut plain: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for i in 0..36u64 {
        let key = if i % 4 == 0 {
            format!("dir/k{i:03}")
        } else {
            format!("k{i:03}")
        };
        let bytes = meridian_tests::pattern((i as usize * 977) % 20_000, i);
        client(i as usize)
            .put_object()
            .bucket("plain")
            .key(&key)
            .body(bytes.clone().into())
            .send()
            .await
            .unwrap();
        plain.insert(key, bytes);
    }
    let overwritten: Vec<String> = plain.keys().step_by(7).cloned().collect();
    for (i, key) in overwritten.iter().enumerate() {
        let bytes = meridian_tests::pattern(5000 + i, 1000 + i as u64);
        client(i + 1)
            .put_object()
            .bucket("plain")
            .key(key)
            .body(bytes.clone().into())
            .send()
            .await
            .unwrap();
        plain.insert(key.clone(), bytes);
    }
    let deleted: Vec<String> = plain.keys().skip(3).step_by(9).cloned().collect();
    for (i, key) in deleted.iter().enumerate() {
        client(i + 2)
            .delete_object()
            .bucket("plain")
            .key(key)
            .send()
            .await
            .unwrap();
        plain.remove(key);
    }
    let leaders: std::collections::BTreeSet<u64> =
        plain.keys().map(|k| leader(&layout, "plain", k)).collect();
    assert_eq!(leaders.len(), 3, "every node leads some of the keys");

    // Reads through every node; listings from every node, paged and with a delimiter, are
    // the region's.
    for (i, (key, bytes)) in plain.iter().enumerate() {
        let got = meridian_tests::read_object(&client(i), "plain", key).await;
        assert_eq!(&got, bytes, "{key}");
    }
    let expected: Vec<String> = plain.keys().cloned().collect();
    for i in 0..3 {
        assert_eq!(list_keys(&client(i), "plain", "", 7).await, expected);
        assert_eq!(list_keys(&client(i), "plain", "", 1000).await, expected);
        let dir: Vec<String> = expected
            .iter()
            .filter(|k| k.starts_with("dir/"))
            .cloned()
            .collect();
        assert_eq!(list_keys(&client(i), "plain", "dir/", 2).await, dir);
        let out = client(i)
            .list_objects_v2()
            .bucket("plain")
            .delimiter("/")
            .max_keys(5)
            .send()
            .await
            .unwrap();
        assert_eq!(out.contents().len() + out.common_prefixes().len(), 5);
        assert_eq!(out.common_prefixes()[0].prefix(), Some("dir/"));
    }

    // Versions: several per key through different nodes, a delete marker, a version removed,
    // and a multipart upload.
    let mut versions: Vec<(String, String, Vec<u8>)> = Vec::new();
    for i in 0..24usize {
        let key = format!("v{:02}", i % 8);
        let bytes = meridian_tests::pattern(100 + i * 300, 7 + i as u64);
        let out = client(i)
            .put_object()
            .bucket("versions")
            .key(&key)
            .body(bytes.clone().into())
            .send()
            .await
            .unwrap();
        versions.push((key, out.version_id().unwrap().to_owned(), bytes));
    }
    let big = meridian_tests::pattern(12 << 20, 99);
    let upload = meridian_tests::create_upload(&client(2), "versions", "big").await;
    let mut parts = Vec::new();
    for (n, chunk) in big.chunks(5 << 20).enumerate() {
        let etag = meridian_tests::upload_part(
            &client(n),
            "versions",
            "big",
            &upload,
            n as i32 + 1,
            chunk,
        )
        .await;
        parts.push((n as i32 + 1, etag));
    }
    let parts: Vec<(i32, &str)> = parts.iter().map(|(n, e)| (*n, e.as_str())).collect();
    let done = client(1)
        .complete_multipart_upload()
        .bucket("versions")
        .key("big")
        .upload_id(&upload)
        .multipart_upload(meridian_tests::completed_parts(&parts))
        .send()
        .await
        .unwrap();
    versions.push(("big".into(), done.version_id().unwrap().to_owned(), big));
    let marker = client(0)
        .delete_object()
        .bucket("versions")
        .key("v00")
        .send()
        .await
        .unwrap();
    let marker = marker.version_id().unwrap().to_owned();
    let (gone_key, gone_version, _) = versions.remove(1);
    client(2)
        .delete_object()
        .bucket("versions")
        .key(&gone_key)
        .version_id(&gone_version)
        .send()
        .await
        .unwrap();
    let mut expected_versions: Vec<(String, String)> = versions
        .iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .chain([("v00".to_owned(), marker)])
        .collect();
    expected_versions.sort();
    for i in 0..3 {
        assert_eq!(
            list_versions(&client(i), "versions", 5).await,
            expected_versions
        );
    }
    let newest = client(1)
        .get_object()
        .bucket("versions")
        .key("v03")
        .send()
        .await
        .unwrap();
    assert_eq!(
        newest.version_id(),
        versions
            .iter()
            .rev()
            .find(|(k, _, _)| k == "v03")
            .map(|(_, v, _)| v.as_str())
    );

    // Every acknowledged version is on exactly its partition's two nodes, byte for byte;
    // what was removed is on none.
    for (key, bytes) in &plain {
        wait_held(&region, "plain", key, "null", Some(bytes), 2).await;
        let holders = copies_of(&layout, "plain", key);
        for id in holders {
            let got = held_by(&region.nodes[id as usize - 1], "plain", key, "null").await;
            assert_eq!(
                got.as_deref().ok(),
                Some(bytes.as_slice()),
                "{key} on node {id}"
            );
        }
    }
    for key in &deleted {
        wait_held(&region, "plain", key, "null", None, 0).await;
    }
    for (key, version, bytes) in &versions {
        wait_held(&region, "versions", key, version, Some(bytes), 2).await;
    }
    wait_held(&region, "versions", &gone_key, &gone_version, None, 0).await;

    // A copy from a node that does not lead the partition is refused (fencing).
    let key = plain.keys().next().unwrap();
    let copies = copies_of(&layout, "plain", key);
    let follower = &region.nodes[copies[1] as usize - 1];
    let stale = follower
        .client()
        .put_object()
        .bucket("plain")
        .key(key)
        .body(b"from a node that does not lead".to_vec().into())
        .customize()
        .mutate_request(from_a_node(&[
            (meridian_gateway::cluster::FROM, copies[1].to_string()),
            (meridian_gateway::cluster::EPOCH, "1".into()),
        ]))
        .send()
        .await;
    assert_eq!(
        stale
            .err()
            .as_ref()
            .and_then(meridian_tests::error_code)
            .as_deref(),
        Some("OperationAborted")
    );
    assert_eq!(
        &meridian_tests::read_object(&client(0), "plain", key).await,
        &plain[key]
    );
}

/// How many nodes hold a delete marker as that version (a GET of a marker by its id answers
/// 405 where it is held, 404 elsewhere).
async fn markers_held(region: &Region, bucket: &str, key: &str, version: &str) -> usize {
    let mut holding = 0;
    for node in &region.nodes {
        match held_by(node, bucket, key, version).await {
            Err(Some(code)) if code == "MethodNotAllowed" => holding += 1,
            Err(_) => {}
            Ok(_) => panic!("{key} ({version}) is an object on {}", node.endpoint),
        }
    }
    holding
}

/// A key of `bucket` whose partition `id` leads, made from `stem`.
fn key_led_by(layout: &serde_json::Value, bucket: &str, stem: &str, id: u64) -> String {
    (0..)
        .map(|i| format!("{stem}-{i}"))
        .find(|k| leader(layout, bucket, k) == id)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_deletes_copies_and_part_copies_span_nodes_when_their_keys_are_led_by_different_ones()
{
    use aws_sdk_s3::types::{Delete, MetadataDirective, ObjectIdentifier, ServerSideEncryption};
    // One keyring for the region, made before the nodes start (as deploy/local-cluster.sh
    // does), with an SSE-KMS key of its own.
    let keys = tempfile::tempdir().unwrap();
    let keyring = keys.path().join("keyring.toml");
    for key in [
        "meridian-sse-s3",
        "meridian-default-kms",
        "meridian-access-keys",
        "team-key",
    ] {
        let out = output_within(
            Command::new(meridian_binary())
                .args(["kms", "add-key", key, "--keyring"])
                .arg(&keyring),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let region = Region::in_layout(
        3,
        &format!(
            "[encryption]\nsse_c_over_http = true\nkeyring = \"{}\"",
            keyring.display()
        ),
    );
    let layout = region.layout();
    let client = |i: usize| region.nodes[i % 3].client();
    client(0)
        .create_bucket()
        .bucket("vers")
        .send()
        .await
        .unwrap();
    meridian_tests::enable_versioning(&client(1), "vers").await;
    client(2)
        .create_bucket()
        .bucket("flat")
        .send()
        .await
        .unwrap();

    // DeleteObjects through node 1 for keys every node leads: delete markers, removed
    // versions, a key that never existed; answered in request order, each as DeleteObject.
    let mut written = Vec::new();
    for i in 0..18usize {
        let key = format!("d{i:02}");
        let out = client(i)
            .put_object()
            .bucket("vers")
            .key(&key)
            .body(meridian_tests::pattern(500 + i, i as u64).into())
            .send()
            .await
            .unwrap();
        written.push((key, out.version_id().unwrap().to_owned()));
    }
    let leaders: std::collections::BTreeSet<u64> = written
        .iter()
        .map(|(k, _)| leader(&layout, "vers", k))
        .collect();
    assert_eq!(leaders.len(), 3);
    let mut objects: Vec<ObjectIdentifier> = Vec::new();
    for (i, (key, version)) in written.iter().enumerate() {
        let entry = ObjectIdentifier::builder().key(key);
        let entry = if i % 3 == 0 {
            entry.version_id(version)
        } else {
            entry
        };
        objects.push(entry.build().unwrap());
    }
    objects.push(ObjectIdentifier::builder().key("never").build().unwrap());
    let out = client(0)
        .delete_objects()
        .bucket("vers")
        .delete(
            Delete::builder()
                .set_objects(Some(objects))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(out.errors().is_empty(), "{:?}", out.errors());
    let deleted = out.deleted();
    assert_eq!(deleted.len(), written.len() + 1);
    for (i, (key, version)) in written.iter().enumerate() {
        let d = &deleted[i];
        assert_eq!(d.key(), Some(key.as_str()));
        if i % 3 == 0 {
            assert_eq!(d.version_id(), Some(version.as_str()));
            assert_eq!(d.delete_marker(), None);
            // Removed from both of its nodes before the answer (not polled).
            let bytes = meridian_tests::pattern(500 + i, i as u64);
            assert_eq!(
                holders_now(&region, "vers", key, version, &bytes).await,
                0,
                "{key}"
            );
        } else {
            assert_eq!(d.delete_marker(), Some(true), "{key}");
            let marker = d.delete_marker_version_id().unwrap();
            assert_eq!(markers_held(&region, "vers", key, marker).await, 2, "{key}");
            // The version under the marker stays, on both its nodes.
            wait_held(
                &region,
                "vers",
                key,
                version,
                Some(&meridian_tests::pattern(500 + i, i as u64)),
                2,
            )
            .await;
        }
        let gone = client(i + 1)
            .get_object()
            .bucket("vers")
            .key(key)
            .send()
            .await;
        assert_eq!(
            gone.err()
                .as_ref()
                .and_then(meridian_tests::error_code)
                .as_deref(),
            Some("NoSuchKey"),
            "{key}"
        );
    }

    // Quiet, in an unversioned bucket, through node 2: the keys are gone from every node.
    let keys: Vec<String> = (0..12).map(|i| format!("q{i:02}")).collect();
    for (i, key) in keys.iter().enumerate() {
        client(i)
            .put_object()
            .bucket("flat")
            .key(key)
            .body(b"quiet".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let objects = keys
        .iter()
        .map(|k| ObjectIdentifier::builder().key(k).build().unwrap())
        .collect();
    let out = client(1)
        .delete_objects()
        .bucket("flat")
        .delete(
            Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(out.deleted().is_empty() && out.errors().is_empty());
    for key in &keys {
        assert_eq!(
            holders_now(&region, "flat", key, "null", b"quiet").await,
            0,
            "{key}"
        );
    }

    // CopyObject sent to a third node, from a source led by one node to a destination led by
    // another: plain, SSE-S3 and SSE-C sources, an older version, metadata kept.
    let (source, target) = (
        key_led_by(&layout, "vers", "src", 1),
        key_led_by(&layout, "vers", "dst", 2),
    );
    let old = meridian_tests::pattern(3 << 20, 11);
    let old_version = client(1)
        .put_object()
        .bucket("vers")
        .key(&source)
        .metadata("origin", "node-one")
        .body(old.clone().into())
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    let new = meridian_tests::pattern(2 << 20, 12);
    let new_version = client(2)
        .put_object()
        .bucket("vers")
        .key(&source)
        .server_side_encryption(ServerSideEncryption::Aes256)
        .body(new.clone().into())
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    // The SSE-S3 source is readable on both of its nodes, each with its own keyring.
    wait_held(&region, "vers", &source, &new_version, Some(&new), 2).await;
    let copied = client(2)
        .copy_object()
        .bucket("vers")
        .key(&target)
        .copy_source(format!("vers/{source}"))
        .send()
        .await
        .unwrap();
    assert_eq!(copied.copy_source_version_id(), Some(new_version.as_str()));
    let copy_version = copied.version_id().unwrap().to_owned();
    wait_held(&region, "vers", &target, &copy_version, Some(&new), 2).await;
    let copied = client(2)
        .copy_object()
        .bucket("vers")
        .key(&target)
        .copy_source(format!("vers/{source}?versionId={old_version}"))
        .send()
        .await
        .unwrap();
    assert_eq!(copied.copy_source_version_id(), Some(old_version.as_str()));
    let copy_version = copied.version_id().unwrap().to_owned();
    wait_held(&region, "vers", &target, &copy_version, Some(&old), 2).await;
    let head = client(0)
        .head_object()
        .bucket("vers")
        .key(&target)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("origin"))
            .map(String::as_str),
        Some("node-one")
    );
    let replaced = client(1)
        .copy_object()
        .bucket("flat")
        .key(key_led_by(&layout, "flat", "replaced", 3))
        .copy_source(format!("vers/{source}"))
        .metadata_directive(MetadataDirective::Replace)
        .metadata("origin", "copy")
        .send()
        .await;
    assert!(replaced.is_ok(), "{replaced:?}");

    let (key, md5) = meridian_tests::customer_key(7);
    let secret = key_led_by(&layout, "flat", "secret", 3);
    let sealed = meridian_tests::pattern(700_000, 13);
    client(0)
        .put_object()
        .bucket("flat")
        .key(&secret)
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key)
        .sse_customer_key_md5(&md5)
        .body(sealed.clone().into())
        .send()
        .await
        .unwrap();
    let opened = key_led_by(&layout, "flat", "opened", 1);
    let (wrong, wrong_md5) = meridian_tests::customer_key(8);
    let refused = client(1)
        .copy_object()
        .bucket("flat")
        .key(&opened)
        .copy_source(format!("flat/{secret}"))
        .copy_source_sse_customer_algorithm("AES256")
        .copy_source_sse_customer_key(&wrong)
        .copy_source_sse_customer_key_md5(&wrong_md5)
        .send()
        .await;
    assert_eq!(
        refused
            .err()
            .as_ref()
            .and_then(meridian_tests::error_code)
            .as_deref(),
        Some("AccessDenied")
    );
    client(1)
        .copy_object()
        .bucket("flat")
        .key(&opened)
        .copy_source(format!("flat/{secret}"))
        .copy_source_sse_customer_algorithm("AES256")
        .copy_source_sse_customer_key(&key)
        .copy_source_sse_customer_key_md5(&md5)
        .send()
        .await
        .unwrap();
    wait_held(&region, "flat", &opened, "null", Some(&sealed), 2).await;
    let missing = client(0)
        .copy_object()
        .bucket("flat")
        .key(&opened)
        .copy_source(format!(
            "flat/{}",
            key_led_by(&layout, "flat", "missing", 2)
        ))
        .send()
        .await;
    assert_eq!(
        missing
            .err()
            .as_ref()
            .and_then(meridian_tests::error_code)
            .as_deref(),
        Some("NoSuchKey")
    );

    // An SSE-KMS version keeps its key on both of its nodes, and a copy of it made by
    // another node opens it there.
    let kms_key = key_led_by(&layout, "flat", "kms", 2);
    let kms_bytes = meridian_tests::pattern(300_000, 31);
    client(0)
        .put_object()
        .bucket("flat")
        .key(&kms_key)
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id("team-key")
        .body(kms_bytes.clone().into())
        .send()
        .await
        .unwrap();
    wait_held(&region, "flat", &kms_key, "null", Some(&kms_bytes), 2).await;
    for id in copies_of(&layout, "flat", &kms_key) {
        let head = region.nodes[id as usize - 1]
            .client()
            .head_object()
            .bucket("flat")
            .key(&kms_key)
            .customize()
            .mutate_request(from_a_node(&[]))
            .send()
            .await
            .unwrap();
        assert_eq!(head.ssekms_key_id(), Some("team-key"), "on node {id}");
    }
    let kms_copy = key_led_by(&layout, "flat", "kms-copy", 3);
    client(1)
        .copy_object()
        .bucket("flat")
        .key(&kms_copy)
        .copy_source(format!("flat/{kms_key}"))
        .send()
        .await
        .unwrap();
    wait_held(&region, "flat", &kms_copy, "null", Some(&kms_bytes), 2).await;

    // UploadPartCopy: an upload led by node 3 takes its parts from sources node 1 and node 2
    // lead, one of them by range.
    let whole = key_led_by(&layout, "flat", "assembled", 3);
    let first = meridian_tests::pattern(6 << 20, 21);
    let first_key = key_led_by(&layout, "flat", "part-one", 1);
    let second_key = key_led_by(&layout, "flat", "part-two", 2);
    let second = meridian_tests::pattern(1 << 20, 22);
    for (k, bytes) in [(&first_key, &first), (&second_key, &second)] {
        client(0)
            .put_object()
            .bucket("flat")
            .key(k)
            .body(bytes.clone().into())
            .send()
            .await
            .unwrap();
    }
    let upload = meridian_tests::create_upload(&client(1), "flat", &whole).await;
    let mut parts = Vec::new();
    for (n, (source, range)) in [(&first_key, Some("bytes=0-5242879")), (&second_key, None)]
        .into_iter()
        .enumerate()
    {
        let out = client(n)
            .upload_part_copy()
            .bucket("flat")
            .key(&whole)
            .upload_id(&upload)
            .part_number(n as i32 + 1)
            .copy_source(format!("flat/{source}"))
            .set_copy_source_range(range.map(str::to_owned))
            .send()
            .await
            .unwrap();
        parts.push((
            n as i32 + 1,
            out.copy_part_result().unwrap().e_tag().unwrap().to_owned(),
        ));
    }
    let parts: Vec<(i32, &str)> = parts.iter().map(|(n, e)| (*n, e.as_str())).collect();
    client(2)
        .complete_multipart_upload()
        .bucket("flat")
        .key(&whole)
        .upload_id(&upload)
        .multipart_upload(meridian_tests::completed_parts(&parts))
        .send()
        .await
        .unwrap();
    let mut expected = first[..5 << 20].to_vec();
    expected.extend_from_slice(&second);
    wait_held(&region, "flat", &whole, "null", Some(&expected), 2).await;
}

/// How many nodes of `region` hold exactly `bytes` as that version, now.
async fn holders_now(
    region: &Region,
    bucket: &str,
    key: &str,
    version: &str,
    bytes: &[u8],
) -> usize {
    let mut holding = 0;
    for node in &region.nodes {
        if let Ok(got) = held_by(node, bucket, key, version).await {
            assert_eq!(got, bytes, "{key} ({version}) differs on {}", node.endpoint);
            holding += 1;
        }
    }
    holding
}

/// Two three-node regions: west takes replicas; east sends its writes of bucket `geo`
/// (versioned on both) to west by a rule, through one of west's nodes (any node of a region
/// forwards) — over a link the test can cut.
async fn geo_regions() -> (Region, Region, meridian_tests::fault_proxy::FaultProxy) {
    use meridian_tests::regions::{
        put_rules, rule_to, versioned_bucket, REPLICATOR_KEY, REPLICATOR_SECRET,
    };
    let west = Region::in_layout(
        3,
        &format!(
            "[[users]]\naccess_key = \"{REPLICATOR_KEY}\"\nsecret_key = \"{REPLICATOR_SECRET}\"\n\
             grants = [{{ bucket = \"*\", access = \"replicate\" }}]"
        ),
    );
    let link = meridian_tests::fault_proxy::FaultProxy::start(
        west.nodes[1]
            .endpoint
            .trim_start_matches("http://")
            .parse()
            .unwrap(),
    );
    let east = Region::in_layout(
        3,
        &format!(
            "[[peers]]\nname = \"west\"\nendpoint = \"http://{}\"\nregion = \"{}\"\n\
             access_key = \"{REPLICATOR_KEY}\"\nsecret_key = \"{REPLICATOR_SECRET}\"\n\
             kind = \"meridian\"\n[replication]\nmax_backoff = \"1s\"",
            link.addr(),
            meridian_tests::REGION
        ),
    );
    versioned_bucket(&west.nodes[2].client(), "geo").await;
    versioned_bucket(&east.nodes[0].client(), "geo").await;
    put_rules(
        &east.nodes[1].client(),
        "geo",
        vec![rule_to("west", "geo", "to-west", 1, true)],
    )
    .await;
    (west, east, link)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geo_replication_runs_between_two_regions_of_several_nodes() {
    use meridian_tests::regions::wait_completed;
    let (west, east, _link) = geo_regions().await;

    // Writes through every east node, for keys every east node leads: small objects, a
    // multipart upload, overwrites and a delete marker.
    let east_layout = east.layout();
    let mut written: Vec<(String, String, Vec<u8>)> = Vec::new();
    for i in 0..18usize {
        let key = format!("g{:02}", i % 12);
        let bytes = meridian_tests::pattern(1000 + i * 4099, 40 + i as u64);
        let out = east.nodes[i % 3]
            .client()
            .put_object()
            .bucket("geo")
            .key(&key)
            .body(bytes.clone().into())
            .send()
            .await
            .unwrap();
        written.push((key, out.version_id().unwrap().to_owned(), bytes));
    }
    let leaders: std::collections::BTreeSet<u64> = written
        .iter()
        .map(|(k, _, _)| leader(&east_layout, "geo", k))
        .collect();
    assert_eq!(leaders.len(), 3, "every east node ships some of the writes");
    let big = meridian_tests::pattern(11 << 20, 77);
    let upload = meridian_tests::create_upload(&east.nodes[2].client(), "geo", "big").await;
    let mut parts = Vec::new();
    for (n, chunk) in big.chunks(5 << 20).enumerate() {
        let etag = meridian_tests::upload_part(
            &east.nodes[n % 3].client(),
            "geo",
            "big",
            &upload,
            n as i32 + 1,
            chunk,
        )
        .await;
        parts.push((n as i32 + 1, etag));
    }
    let parts: Vec<(i32, &str)> = parts.iter().map(|(n, e)| (*n, e.as_str())).collect();
    let done = east.nodes[0]
        .client()
        .complete_multipart_upload()
        .bucket("geo")
        .key("big")
        .upload_id(&upload)
        .multipart_upload(meridian_tests::completed_parts(&parts))
        .send()
        .await
        .unwrap();
    written.push(("big".into(), done.version_id().unwrap().to_owned(), big));
    let marker = east.nodes[1]
        .client()
        .delete_object()
        .bucket("geo")
        .key("g03")
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();

    // Once east says a version reached west, west holds it on both nodes of its partition
    // there, with east's version id and bytes: west acknowledged it only with its copy made.
    for (key, version, bytes) in &written {
        wait_completed(&east.nodes[0].client(), "geo", key, version).await;
        assert_eq!(
            holders_now(&west, "geo", key, version, bytes).await,
            2,
            "{key} ({version}) on west, layout {:?}",
            copies_of(&west.layout(), "geo", key)
        );
        let got = read_version(&west.nodes[0].client(), "geo", key, version).await;
        assert_eq!(&got, bytes);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while markers_held(&west, "geo", "g03", &marker).await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the delete marker did not reach both of its west nodes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let current = west.nodes[2]
        .client()
        .get_object()
        .bucket("geo")
        .key("g03")
        .send()
        .await;
    assert_eq!(
        current
            .err()
            .as_ref()
            .and_then(meridian_tests::error_code)
            .as_deref(),
        Some("NoSuchKey")
    );
    // The replicas are not sent back, nor on: west's nodes queue nothing for peers.
    let replica = west.nodes[0]
        .client()
        .head_object()
        .bucket("geo")
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(
        replica.replication_status().map(|s| s.as_str()),
        Some("REPLICA")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifecycle_rule_puts_the_same_delete_marker_on_every_copy() {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
        LifecycleRuleFilter,
    };
    // A lifecycle day of one second; the rule runs on every node that holds a version.
    let region = Region::in_layout(3, "[lifecycle]\nday = \"1s\"");
    let layout = region.layout();
    let s3 = region.nodes[0].client();
    s3.create_bucket().bucket("aging").send().await.unwrap();
    meridian_tests::enable_versioning(&region.nodes[1].client(), "aging").await;
    let mut written = Vec::new();
    for i in 0..9u64 {
        let key = format!("tmp/{i}");
        let out = region.nodes[i as usize % 3]
            .client()
            .put_object()
            .bucket("aging")
            .key(&key)
            .body(meridian_tests::pattern(2000, i).into())
            .send()
            .await
            .unwrap();
        written.push((key, out.version_id().unwrap().to_owned()));
    }
    region.nodes[2]
        .client()
        .put_bucket_lifecycle_configuration()
        .bucket("aging")
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(
                    LifecycleRule::builder()
                        .id("tmp")
                        .status(ExpirationStatus::Enabled)
                        .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
                        .expiration(LifecycleExpiration::builder().days(2).build())
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // The region shows each key expired (the object and one marker), and both of the key's
    // nodes hold that very marker: each made it itself (the marker is not copied), alike.
    for (key, version) in &written {
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        loop {
            let out = s3
                .list_object_versions()
                .bucket("aging")
                .prefix(key)
                .send()
                .await
                .unwrap();
            let markers: Vec<String> = out
                .delete_markers()
                .iter()
                .map(|m| m.version_id().unwrap().to_owned())
                .collect();
            if let [marker] = markers.as_slice() {
                assert_eq!(out.versions().len(), 1);
                assert_eq!(out.versions()[0].version_id(), Some(version.as_str()));
                if markers_held(&region, "aging", key, marker).await == 2 {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{key} was not expired alike on nodes {:?}: {markers:?}",
                copies_of(&layout, "aging", key)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let gone = s3.get_object().bucket("aging").key(key).send().await;
        assert_eq!(
            gone.err()
                .as_ref()
                .and_then(meridian_tests::error_code)
                .as_deref(),
            Some("NoSuchKey")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_primary_under_load_loses_nothing_acknowledged() {
    let mut region = Region::in_layout(3, "copy_timeout = \"2s\"");
    region.create_bucket(0, "load").await;
    meridian_tests::enable_versioning(&region.nodes[1].client(), "load").await;
    let layout = region.layout();

    // Two writers through nodes 1 and 2, recording what was acknowledged.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(
        Vec::<(String, String, Vec<u8>)>::new(),
    ));
    let mut writers = Vec::new();
    for w in 0..2usize {
        let s3 = region.nodes[w].client();
        let (stop, acked) = (stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut failed = 0;
            for n in 0..2000u64 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let key = format!("w{w}-{n:04}");
                let bytes = meridian_tests::pattern(1000 + (n as usize % 7) * 1000, n);
                match s3
                    .put_object()
                    .bucket("load")
                    .key(&key)
                    .body(bytes.clone().into())
                    .send()
                    .await
                {
                    Ok(out) => acked.lock().unwrap().push((
                        key,
                        out.version_id().unwrap().to_owned(),
                        bytes,
                    )),
                    Err(_) => {
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            failed
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writers make no progress"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // kill -9 node 3 under load: the partitions it led get a new primary, and writes to
    // them resume within 10 s.
    region.nodes[2].kill9();
    let killed = std::time::Instant::now();
    let key = (0..)
        .map(|i| format!("led-by-3-{i}"))
        .find(|k| leader(&layout, "load", k) == 3)
        .unwrap();
    loop {
        let out = region.nodes[0]
            .client()
            .put_object()
            .bucket("load")
            .key(&key)
            .body(b"after the failover".to_vec().into())
            .send()
            .await;
        if let Ok(out) = out {
            acked.lock().unwrap().push((
                key.clone(),
                out.version_id().unwrap().to_owned(),
                b"after the failover".to_vec(),
            ));
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "writes to node 3's partitions did not resume within 10 s: {:?}",
            out.err().as_ref().and_then(meridian_tests::error_code)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = acked.lock().unwrap().len();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < after + 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writers make no progress after the failover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    // Nothing acknowledged is lost: readable through the region at once...
    for (key, version, bytes) in &acked {
        assert_eq!(
            &read_version(&region.nodes[1].client(), "load", key, version).await,
            bytes
        );
    }
    // ...and, once node 3 is back and caught up (marked up again), on two nodes each.
    region.nodes[2].restart();
    region.wait_status("node 3 back and caught up", |s| {
        alive(s, 3) && s["current"]["down"].is_null()
    });
    for (key, version, bytes) in &acked {
        wait_held(&region, "load", key, version, Some(bytes), 2).await;
    }
}

impl Region {
    /// Starts one more node with the same settings; returns its id once it holds a lease.
    fn add_node(&mut self, extra: &str) -> u64 {
        let link = meridian_tests::fault_proxy::FaultProxy::start(self.etcd.client);
        let port = meridian_tests::free_port();
        let config = format!(
            "[cluster]\netcd = [\"http://{}\"]\nendpoint = \"http://127.0.0.1:{port}\"\nlease_ttl = \"3s\"\n{extra}\n",
            link.addr()
        );
        self.nodes.push(meridian_tests::TestServer::start_with(
            meridian_tests::ServerOptions {
                extra_config: config,
                port: Some(port),
                ..Default::default()
            },
        ));
        self.links.push(link);
        let id = self.nodes.len() as u64;
        self.wait_status("the new node alive", |s| alive(s, id));
        id
    }
}

/// An acknowledged write: key, version id, bytes.
type Acked = (String, String, Vec<u8>);

/// Writers through the first two nodes until stopped, recording what was acknowledged.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<Acked>>>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(region: &Region, bucket: &'static str) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writers = (0..2usize)
            .map(|w| {
                let s3 = region.nodes[w].client();
                let (stop, acked) = (stop.clone(), acked.clone());
                tokio::spawn(async move {
                    for n in 0..5000u64 {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let key = format!("w{w}-{n:04}");
                        let bytes = meridian_tests::pattern(500 + (n as usize % 5) * 700, n);
                        match s3
                            .put_object()
                            .bucket(bucket)
                            .key(&key)
                            .body(bytes.clone().into())
                            .send()
                            .await
                        {
                            Ok(out) => acked.lock().unwrap().push((
                                key,
                                out.version_id().unwrap_or("null").to_owned(),
                                bytes,
                            )),
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            writers,
        }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits (at most 60 s) until `more` further writes were acknowledged.
    async fn progress(&self, more: usize) {
        let target = self.count() + more;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.count() < target {
            assert!(
                std::time::Instant::now() < deadline,
                "the writers make no progress"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) -> Vec<Acked> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in self.writers {
            w.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_and_one_leaves_under_load_and_every_copy_moves() {
    let mut region = Region::in_layout(3, "");
    region.create_bucket(0, "grow").await;
    meridian_tests::enable_versioning(&region.nodes[2].client(), "grow").await;
    let load = Load::start(&region, "grow");
    load.progress(60).await;

    // A fourth node joins: the staged layout gives it about a quarter of the copies, the
    // nodes that lead those partitions fill them, and the layout switches.
    let four = region.add_node("");
    let staged = region.cli(&["add-node", &four.to_string()]);
    let to_fill = staged["copies_to_fill"].as_u64().unwrap();
    assert!(
        (500..=530).contains(&to_fill),
        "a quarter of 2048 copies: {to_fill}"
    );
    let before = staged["current"]["version"].as_u64().unwrap();
    let grown = region.wait_status_for(
        "the four-node layout in force",
        Duration::from_secs(90),
        |s| {
            s["staged"].is_null()
                && s["current"]["nodes"].as_array().unwrap().len() == 4
                && s["current"]["version"].as_u64().unwrap() > before
        },
    );
    assert!(alive(&grown, 4));
    load.progress(30).await;

    // Node 1 leaves: it drains (its copies are filled on the others) before the layout
    // without it takes effect.
    let drained = region.cli(&["remove-node", "1"]);
    assert!(
        drained["copies_to_fill"].as_u64().unwrap() > 0,
        "{drained:#}"
    );
    let last = region.wait_status_for(
        "the layout without node 1 in force",
        Duration::from_secs(90),
        |s| s["staged"].is_null() && s["current"]["nodes"].as_array().unwrap().len() == 3,
    );
    let layout = last["current"].clone();
    assert!(layout["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| !p.as_array().unwrap().contains(&serde_json::json!(1))));
    load.progress(30).await;
    let acked = load.stop().await;
    // A node the load left behind (marked down when a copy took longer than copy_timeout)
    // is caught up before it counts again.
    let layout = region.wait_status_for("no node down", Duration::from_secs(90), |s| {
        s["current"]["down"].is_null()
    })["current"]
        .clone();

    // Every acknowledged version is readable through the region, and held byte for byte by
    // both nodes of its partition in the final layout.
    for (i, (key, version, bytes)) in acked.iter().enumerate() {
        assert_eq!(
            &read_version(&region.nodes[1 + i % 3].client(), "grow", key, version).await,
            bytes
        );
        for id in copies_of(&layout, "grow", key) {
            let held = held_by(&region.nodes[id as usize - 1], "grow", key, version).await;
            if held.as_deref().ok() != Some(bytes.as_slice()) {
                // Which nodes hold it, and what the nodes said about layouts and this key.
                let mut on = Vec::new();
                for (n, node) in region.nodes.iter().enumerate() {
                    on.push((n + 1, held_by(node, "grow", key, version).await.is_ok()));
                }
                let logs: Vec<String> = region
                    .nodes
                    .iter()
                    .map(|n| {
                        n.log()
                            .lines()
                            .filter(|l| {
                                l.contains("layout")
                                    || l.contains("down")
                                    || l.contains(key.as_str())
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .collect();
                panic!(
                    "{key} ({version}) is not on node {id}; held: {on:?}\n{}",
                    logs.join("\n----\n")
                );
            }
        }
    }

    // The copies the layout changes left behind (on node 1, and where partitions moved) are
    // removed once their holders have them: in the end each version is on exactly the two
    // nodes of its partition, and nowhere else.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    for (key, version, _) in &acked {
        let mut want = copies_of(&layout, "grow", key);
        want.sort_unstable();
        loop {
            let mut on = Vec::new();
            for (n, node) in region.nodes.iter().enumerate() {
                if held_by(node, "grow", key, version).await.is_ok() {
                    on.push(n as u64 + 1);
                }
            }
            if on == want {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{key} ({version}) is on nodes {on:?}, not only on {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Every bucket of the region as `node` alone lists it (ListBuckets is served where it
/// arrives).
async fn buckets_on(node: &meridian_tests::TestServer) -> Vec<String> {
    let out = node.client().list_buckets().send().await.unwrap();
    out.buckets()
        .iter()
        .map(|b| b.name().unwrap().to_owned())
        .collect()
}

/// The bucket's tags as `node` alone holds them (bucket reads are served where they arrive).
async fn bucket_tags_on(node: &meridian_tests::TestServer, bucket: &str) -> Vec<(String, String)> {
    let out = node
        .client()
        .get_bucket_tagging()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect()
}

fn tagging(pairs: &[(&str, &str)]) -> aws_sdk_s3::types::Tagging {
    let mut t = aws_sdk_s3::types::Tagging::builder();
    for (k, v) in pairs {
        t = t.tag_set(
            aws_sdk_s3::types::Tag::builder()
                .key(*k)
                .value(*v)
                .build()
                .unwrap(),
        );
    }
    t.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_catalogue_is_in_etcd_and_a_node_that_missed_changes_applies_them_on_return() {
    let mut region = Region::in_layout(3, "");
    let s3 = region.nodes[0].client();
    for bucket in ["keep", "gone"] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    // Every node has a bucket once CreateBucket answered.
    for node in &region.nodes {
        assert_eq!(buckets_on(node).await, ["gone", "keep"]);
    }

    // Node 3 misses a round of bucket changes made through the other two.
    region.nodes[2].kill9();
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:ListBucket","Resource":"arn:aws:s3:::keep"}]}"#;
    region.nodes[1]
        .client()
        .put_bucket_policy()
        .bucket("keep")
        .policy(policy)
        .send()
        .await
        .unwrap();
    meridian_tests::enable_versioning(&s3, "keep").await;
    s3.put_bucket_tagging()
        .bucket("keep")
        .tagging(tagging(&[("team", "ml")]))
        .send()
        .await
        .unwrap();
    // DeleteBucket asks every leader whether it holds a version of the bucket: it waits
    // until node 3 is marked down and its partitions are led by the others.
    region.wait_status("node 3 marked down", |s| {
        !alive(s, 3) && s["current"]["down"] == serde_json::json!([3])
    });
    region.nodes[1]
        .client()
        .delete_bucket()
        .bucket("gone")
        .send()
        .await
        .unwrap();
    s3.create_bucket().bucket("fresh").send().await.unwrap();

    region.nodes[2].restart();
    wait_ready(&region.nodes[2].endpoint);
    // Ready means the catalogue is applied: node 3 alone answers as the region.
    let back = &region.nodes[2];
    assert_eq!(buckets_on(back).await, ["fresh", "keep"]);
    let got = back
        .client()
        .get_bucket_policy()
        .bucket("keep")
        .send()
        .await
        .unwrap();
    let got: serde_json::Value = serde_json::from_str(got.policy().unwrap()).unwrap();
    assert_eq!(
        got,
        serde_json::from_str::<serde_json::Value>(policy).unwrap()
    );
    let versioning = back
        .client()
        .get_bucket_versioning()
        .bucket("keep")
        .send()
        .await
        .unwrap();
    assert_eq!(
        versioning.status(),
        Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled)
    );
    assert_eq!(
        bucket_tags_on(back, "keep").await,
        [("team".to_owned(), "ml".to_owned())]
    );
    let gone = back.client().head_bucket().bucket("gone").send().await;
    assert_eq!(
        gone.err().as_ref().and_then(meridian_tests::error_status),
        Some(404)
    );
    // The policy the returning node applied decides there (a bucket request is served where
    // it arrives): an anonymous listing, which only the policy allows.
    s3.put_object()
        .bucket("keep")
        .key("public/a")
        .body(b"open".to_vec().into())
        .send()
        .await
        .unwrap();
    let (status, body) =
        meridian_tests::anonymous_request(&back.endpoint, "GET", "/keep?list-type=2");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Key>public/a</Key>"), "{body}");
    let (status, _) =
        meridian_tests::anonymous_request(&back.endpoint, "GET", "/fresh?list-type=2");
    assert_eq!(status, 403);

    // Two nodes making one name at once: exactly one makes it, on every node.
    for round in 0..4 {
        let name = format!("race-{round}");
        let (a, b) = tokio::join!(
            region.nodes[0]
                .client()
                .create_bucket()
                .bucket(&name)
                .send(),
            region.nodes[1]
                .client()
                .create_bucket()
                .bucket(&name)
                .send(),
        );
        let codes: Vec<Option<String>> = [a.err(), b.err()]
            .iter()
            .map(|e| e.as_ref().and_then(meridian_tests::error_code))
            .collect();
        let made = codes.iter().filter(|c| c.is_none()).count();
        assert_eq!(made, 1, "{name}: {codes:?}");
        assert!(
            codes.contains(&Some("BucketAlreadyOwnedByYou".to_owned())),
            "{name}: {codes:?}"
        );
    }
    // Two documents of one bucket changed at once through two nodes: both stay, everywhere.
    let cors = aws_sdk_s3::types::CorsConfiguration::builder()
        .cors_rules(
            aws_sdk_s3::types::CorsRule::builder()
                .allowed_methods("GET")
                .allowed_origins("https://example.com")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let (a, b) = tokio::join!(
        region.nodes[1]
            .client()
            .put_bucket_cors()
            .bucket("race-0")
            .cors_configuration(cors)
            .send(),
        region.nodes[2]
            .client()
            .put_bucket_tagging()
            .bucket("race-0")
            .tagging(tagging(&[("stage", "raw")]))
            .send(),
    );
    a.unwrap();
    b.unwrap();
    for node in &region.nodes {
        assert_eq!(
            buckets_on(node).await,
            ["fresh", "keep", "race-0", "race-1", "race-2", "race-3"]
        );
        assert_eq!(
            bucket_tags_on(node, "race-0").await,
            [("stage".to_owned(), "raw".to_owned())]
        );
        let rules = node
            .client()
            .get_bucket_cors()
            .bucket("race-0")
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e:?}\n{}",
                    node.endpoint,
                    region
                        .nodes
                        .iter()
                        .map(|n| n.log())
                        .collect::<Vec<_>>()
                        .join("\n=====\n")
                )
            });
        assert_eq!(rules.cors_rules().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_only_whitespace_are_copied_and_removed_like_any_other() {
    // The AWS SDK the copies go through refuses such keys; S3 stores them (ceph/s3-tests
    // writes one), and a copy that cannot be sent marked the follower down for good.
    let region = Region::in_layout(3, "");
    let s3 = region.nodes[0].client();
    s3.create_bucket().bucket("blank").send().await.unwrap();
    meridian_tests::enable_versioning(&s3, "blank").await;
    for (i, key) in [" ", "\t", "  "].into_iter().enumerate() {
        let bytes = format!("blank key {i}; ").repeat(200).into_bytes();
        // (Sent by hand: the SDK will not send such a key either.)
        let path = format!(
            "/blank/{}",
            percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC)
        );
        let put = raw(&region.nodes[i % 3], "PUT", &path, &bytes).await;
        assert_eq!(put.status, 200, "{key:?}: {}", put.body);
        let version = put
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-version-id"))
            .map(|(_, v)| v.clone())
            .unwrap();
        assert_eq!(
            raw_holders(&region, &path, &version, &bytes).await,
            2,
            "{key:?}"
        );
        let delete = raw(
            &region.nodes[(i + 1) % 3],
            "DELETE",
            &format!("{path}?versionId={version}"),
            b"",
        )
        .await;
        assert_eq!(delete.status, 204, "{key:?}: {}", delete.body);
        assert_eq!(
            raw_holders(&region, &path, &version, &bytes).await,
            0,
            "{key:?}"
        );
    }
    // No node was marked down on the way.
    assert!(region.layout()["down"].is_null(), "{}", region.layout());
}

/// How many nodes hold exactly `bytes` as that version of `path` now (asked by hand).
async fn raw_holders(region: &Region, path: &str, version: &str, bytes: &[u8]) -> usize {
    let mut holding = 0;
    for node in &region.nodes {
        let got = raw_as(
            node,
            "GET",
            &format!("{path}?versionId={version}"),
            b"",
            vec![(
                meridian_gateway::cluster::HOP,
                meridian_gateway::cluster::hop_token(
                    meridian_tests::REGION,
                    meridian_tests::SECRET_KEY,
                ),
            )],
        )
        .await;
        if got.status == 200 {
            assert_eq!(got.body.as_bytes(), bytes, "{path} on {}", node.endpoint);
            holding += 1;
        }
    }
    holding
}

/// A request signed by hand, as root, to one node.
async fn raw(
    node: &meridian_tests::TestServer,
    method: &'static str,
    path: &str,
    body: &[u8],
) -> meridian_tests::raw::RawResponse {
    raw_as(node, method, path, body, Vec::new()).await
}

async fn raw_as(
    node: &meridian_tests::TestServer,
    method: &'static str,
    path: &str,
    body: &[u8],
    headers: Vec<(&'static str, String)>,
) -> meridian_tests::raw::RawResponse {
    let (endpoint, path, body) = (node.endpoint.clone(), path.to_owned(), body.to_vec());
    tokio::task::spawn_blocking(move || {
        meridian_tests::raw::send_signed(
            &endpoint,
            method,
            &path,
            &headers,
            &body,
            aws_sigv4::http_request::SignableBody::Bytes(&body),
            meridian_tests::ACCESS_KEY,
            meridian_tests::SECRET_KEY,
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_of_markers_and_of_governed_versions_reach_both_copies_and_mark_no_node_down() {
    // Removing a marker by its version id was taken for making one: the primary waited for
    // a copy of a marker that no longer existed, then marked its follower down.
    let region = Region::in_layout(3, "");
    let s3 = region.nodes[0].client();
    s3.create_bucket().bucket("markers").send().await.unwrap();
    meridian_tests::enable_versioning(&s3, "markers").await;
    for i in 0..6usize {
        let key = format!("k{i}");
        let client = region.nodes[i % 3].client();
        let put = client
            .put_object()
            .bucket("markers")
            .key(&key)
            .body(b"v".to_vec().into())
            .send()
            .await
            .unwrap();
        let marker = client
            .delete_object()
            .bucket("markers")
            .key(&key)
            .send()
            .await
            .unwrap();
        let marker = marker.version_id().unwrap().to_owned();
        assert_eq!(markers_held(&region, "markers", &key, &marker).await, 2);
        let removed = region.nodes[(i + 1) % 3]
            .client()
            .delete_object()
            .bucket("markers")
            .key(&key)
            .version_id(&marker)
            .send()
            .await
            .unwrap();
        assert_eq!(removed.delete_marker(), Some(true));
        assert_eq!(
            markers_held(&region, "markers", &key, &marker).await,
            0,
            "{key}"
        );
        // The object is back, on both of its nodes.
        let version = put.version_id().unwrap();
        assert_eq!(
            holders_now(&region, "markers", &key, version, b"v").await,
            2
        );
    }
    // A version under GOVERNANCE retention removed with the bypass: its copy goes too (the
    // follower refused the copied removal, for ever, and was marked down).
    s3.create_bucket()
        .bucket("governed")
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let until = aws_smithy_types::DateTime::from_secs(
        (std::time::SystemTime::now() + Duration::from_secs(3600))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    );
    for i in 0..4usize {
        let key = format!("locked-{i}");
        let put = region.nodes[i % 3]
            .client()
            .put_object()
            .bucket("governed")
            .key(&key)
            .body(b"kept".to_vec().into())
            .object_lock_mode(aws_sdk_s3::types::ObjectLockMode::Governance)
            .object_lock_retain_until_date(until)
            .send()
            .await
            .unwrap();
        let version = put.version_id().unwrap();
        assert_eq!(
            holders_now(&region, "governed", &key, version, b"kept").await,
            2
        );
        region.nodes[(i + 1) % 3]
            .client()
            .delete_object()
            .bucket("governed")
            .key(&key)
            .version_id(version)
            .bypass_governance_retention(true)
            .send()
            .await
            .unwrap();
        assert_eq!(
            holders_now(&region, "governed", &key, version, b"kept").await,
            0,
            "{key}"
        );
    }
    // A follower whose copy still has a legal hold the primary's no longer has (its lock
    // copy late, or lost): the primary's removal goes there too.
    let layout = region.layout();
    let key = "held";
    let put = s3
        .put_object()
        .bucket("governed")
        .key(key)
        .body(b"kept".to_vec().into())
        .send()
        .await
        .unwrap();
    let version = put.version_id().unwrap().to_owned();
    let copies = copies_of(&layout, "governed", key);
    let follower = &region.nodes[copies[1] as usize - 1];
    let primary = copies[0].to_string();
    follower
        .client()
        .put_object_legal_hold()
        .bucket("governed")
        .key(key)
        .version_id(&version)
        .legal_hold(
            aws_sdk_s3::types::ObjectLockLegalHold::builder()
                .status(aws_sdk_s3::types::ObjectLockLegalHoldStatus::On)
                .build(),
        )
        .customize()
        .mutate_request(from_a_node(&[(meridian_gateway::cluster::FROM, primary)]))
        .send()
        .await
        .unwrap();
    let held = follower
        .client()
        .get_object_legal_hold()
        .bucket("governed")
        .key(key)
        .version_id(&version)
        .customize()
        .mutate_request(from_a_node(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        held.legal_hold().and_then(|h| h.status()),
        Some(&aws_sdk_s3::types::ObjectLockLegalHoldStatus::On)
    );
    region.nodes[copies[0] as usize - 1]
        .client()
        .delete_object()
        .bucket("governed")
        .key(key)
        .version_id(&version)
        .send()
        .await
        .unwrap();
    assert_eq!(
        holders_now(&region, "governed", key, &version, b"kept").await,
        0
    );
    assert!(region.layout()["down"].is_null(), "{}", region.layout());
}

/// What makes a request one from another node of the region: the hop token, and `extra`
/// headers (the sending node, its epoch).
fn from_a_node(
    extra: &[(&'static str, String)],
) -> impl Fn(&mut aws_smithy_runtime_api::http::Request) + Send + Sync + 'static {
    let mut headers = vec![(
        meridian_gateway::cluster::HOP,
        meridian_gateway::cluster::hop_token(meridian_tests::REGION, meridian_tests::SECRET_KEY),
    )];
    headers.extend(extra.iter().cloned());
    move |r| {
        for (name, value) in &headers {
            r.headers_mut().insert(*name, value.clone());
        }
    }
}

/// `meridian admin ARGS` as root on `endpoint`; its stdout.
fn admin(endpoint: &str, args: &[&str]) -> String {
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    let (ok, out) = meridian_tests::regions::admin_cli(endpoint, &all, &[]);
    assert!(ok, "meridian admin {args:?} failed: {out}");
    out
}

/// A key made through `endpoint` with read on `bucket`: (access key, secret).
fn read_key(endpoint: &str, bucket: &str) -> (String, String) {
    let made: serde_json::Value =
        serde_json::from_str(&admin(endpoint, &["key", "create", "--json"])).unwrap();
    let ak = made["access_key"].as_str().unwrap().to_owned();
    admin(
        endpoint,
        &[
            "grant", "add", "--key", &ak, "--bucket", bucket, "--access", "read",
        ],
    );
    (ak, made["secret_key"].as_str().unwrap().to_owned())
}

/// Whether `node` lets `access_key` with `secret` list `bucket` (refused: a key or signature
/// error; anything else panics).
async fn lists(
    node: &meridian_tests::TestServer,
    access_key: &str,
    secret: &str,
    bucket: &str,
) -> bool {
    let s3 = meridian_tests::s3_client(&node.endpoint, access_key, secret);
    match s3.list_objects_v2().bucket(bucket).send().await {
        Ok(_) => true,
        Err(e) => {
            let code = meridian_tests::error_code(&e);
            assert!(
                matches!(
                    code.as_deref(),
                    Some("InvalidAccessKeyId" | "AccessDenied" | "SignatureDoesNotMatch")
                ),
                "unexpected answer {e:?}"
            );
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_keys_are_in_etcd_sealed_and_a_node_that_missed_changes_applies_them_on_return() {
    let mut region = Region::in_layout(3, "");
    region.create_bucket(0, "data").await;
    // Made through node 1: every node takes it once the admin answers came.
    let (ak, secret) = read_key(&region.nodes[0].endpoint, "data");
    for node in &region.nodes {
        assert!(lists(node, &ak, &secret, "data").await, "{}", node.endpoint);
    }
    // etcd holds the key, sealed: neither its secret nor its name is readable there.
    let control =
        meridian_cluster::control::ControlPlane::connect(&[region.etcd.url()], "us-east-1")
            .await
            .unwrap();
    let table = control
        .table(meridian_cluster::control::Table::Keys)
        .await
        .unwrap();
    let (sealed, _) = &table.entries[&ak];
    for needle in [secret.as_bytes(), b"data".as_slice()] {
        assert!(!sealed.windows(needle.len()).any(|w| w == needle));
    }
    // Disabled through node 2: refused by every node at once.
    admin(&region.nodes[1].endpoint, &["key", "disable", &ak]);
    for node in &region.nodes {
        assert!(
            !lists(node, &ak, &secret, "data").await,
            "{}",
            node.endpoint
        );
    }

    // Node 3 misses a round of key changes made through the other two.
    let (gone, gone_secret) = read_key(&region.nodes[0].endpoint, "data");
    assert!(lists(&region.nodes[2], &gone, &gone_secret, "data").await);
    region.nodes[2].kill9();
    admin(&region.nodes[0].endpoint, &["key", "enable", &ak]);
    let rotated: serde_json::Value = serde_json::from_str(&admin(
        &region.nodes[1].endpoint,
        &["key", "rotate", &ak, "--json"],
    ))
    .unwrap();
    let new_secret = rotated["secret_key"].as_str().unwrap().to_owned();
    let (fresh, fresh_secret) = read_key(&region.nodes[1].endpoint, "data");
    admin(&region.nodes[0].endpoint, &["key", "delete", &gone]);

    region.nodes[2].restart();
    wait_ready(&region.nodes[2].endpoint);
    // Ready means the keys are applied: node 3 alone answers as the region.
    let back = &region.nodes[2];
    assert!(lists(back, &ak, &new_secret, "data").await);
    assert!(!lists(back, &ak, &secret, "data").await, "the old secret");
    assert!(lists(back, &fresh, &fresh_secret, "data").await);
    assert!(
        !lists(back, &gone, &gone_secret, "data").await,
        "a deleted key"
    );

    // A grant added through the returned node reaches the others (a write to the bucket).
    admin(
        &back.endpoint,
        &[
            "grant", "add", "--key", &fresh, "--bucket", "data", "--access", "write",
        ],
    );
    for node in &region.nodes {
        meridian_tests::s3_client(&node.endpoint, &fresh, &fresh_secret)
            .put_object()
            .bucket("data")
            .key(format!("by-{}", node.endpoint))
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", node.endpoint));
    }
}

/// Versions of `geo` that node 3 of `east` leads, one per stem (bytes seeded from `seed`),
/// written through `through` in turn: (key, version id, bytes).
async fn write_led_by_node_3(
    east: &Region,
    stems: &[&str],
    through: &[usize],
    seed: u64,
) -> Vec<(String, String, Vec<u8>)> {
    let layout = east.layout();
    let mut written = Vec::new();
    for (i, stem) in stems.iter().enumerate() {
        let key = key_led_by(&layout, "geo", stem, 3);
        let bytes = meridian_tests::pattern(2000 + i * 777, seed + i as u64);
        let out = east.nodes[through[i % through.len()]]
            .client()
            .put_object()
            .bucket("geo")
            .key(&key)
            .body(bytes.clone().into())
            .send()
            .await
            .unwrap();
        written.push((key, out.version_id().unwrap().to_owned(), bytes));
    }
    written
}

/// Polls until west holds each of `written` on two of its nodes (60 s each); `how` names
/// the way it should have come.
async fn wait_shipped(west: &Region, written: &[(String, String, Vec<u8>)], how: &str) {
    for (key, version, bytes) in written {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while holders_now(west, "geo", key, version, bytes).await < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "{key} ({version}) did not reach west {how}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_that_takes_over_a_dead_primary_ships_what_it_had_not_shipped() {
    let (west, mut east, link) = geo_regions().await;

    // Node 3 has said how far it shipped (it ships its versions itself until it dies).
    let control = meridian_cluster::control::ControlPlane::connect(
        &[east.etcd.url()],
        meridian_tests::REGION,
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while control.shipped(3).await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "node 3 recorded no watermark"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // With west unreachable, versions node 3 leads are acknowledged (two east copies each)
    // but not shipped; then node 3 dies.
    link.update(|f| f.refuse = true);
    link.reset_all();
    let written = write_led_by_node_3(&east, &["owed-a", "owed-b", "owed-a"], &[0, 1], 0).await;
    east.nodes[2].kill9();
    east.wait_status("node 3 marked down", |s| {
        !alive(s, 3) && s["current"]["down"] == serde_json::json!([3])
    });
    link.update(|f| f.refuse = false);

    // The nodes that took over node 3's partitions ship its versions: west holds each on two
    // of its nodes, with east's version ids and bytes (node 3 stays down).
    wait_shipped(&west, &written, "after node 3 died").await;
    for (key, version, bytes) in &written {
        assert_eq!(
            &read_version(&west.nodes[0].client(), "geo", key, version).await,
            bytes
        );
    }
}

/// A three-node region with a versioned bucket `data` whose key (returned) was led by node
/// `old`, which is cut off from etcd (its layout stays the one where it leads), and has been
/// handed to its other copy `new`, which has read that layout: `(region, key, old, new)`.
async fn handed_behind_a_followers_back() -> (Region, String, u64, u64) {
    let region = Region::in_layout(3, "");
    region.create_bucket(0, "data").await;
    meridian_tests::enable_versioning(&region.nodes[0].client(), "data").await;
    let layout = region.layout();
    let key = key_led_by(&layout, "data", "handed", 1);
    let (old, new) = match copies_of(&layout, "data", &key)[..] {
        [old, new] => (old, new),
        ref other => panic!("two copies, not {other:?}"),
    };
    let primary = &region.nodes[new as usize - 1];

    // The follower-to-be cannot read etcd any more: its layout stays the one where it leads.
    region.links[old as usize - 1].update(|f| f.blackhole = true);
    // The partition is handed to the other copy (a layout the first cannot read), and that
    // node reads it (a request from a node naming the new version makes it read the layout).
    let control = meridian_cluster::control::ControlPlane::connect(
        &[region.etcd.url()],
        meridian_tests::REGION,
    )
    .await
    .unwrap();
    let partition = meridian_cluster::partition_of("data", &key, 1024);
    let handed = control
        .change_current(|l| {
            let mut next = l.clone();
            next.version += 1;
            next.partitions[partition] = vec![new as u32, old as u32];
            Some(next)
        })
        .await
        .unwrap()
        .unwrap();
    primary
        .client()
        .head_bucket()
        .bucket("data")
        .customize()
        .mutate_request(from_a_node(&[(
            meridian_gateway::cluster::EPOCH,
            handed.version.to_string(),
        )]))
        .send()
        .await
        .unwrap();
    (region, key, old, new)
}

/// A follower whose view of the layout is behind refuses a copy from the partition's new
/// primary (it takes itself for the primary still). The primary, which does lead, keeps the
/// copy queued and sends it again instead of dropping it: the follower, marked down
/// meanwhile, holds the version once it has caught up — not the primary alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_refused_by_a_follower_whose_layout_is_behind_reaches_it_once_it_caught_up() {
    let (region, key, old, new) = handed_behind_a_followers_back().await;
    let (follower, primary) = (
        &region.nodes[old as usize - 1],
        &region.nodes[new as usize - 1],
    );

    // Written through the new primary: the follower refuses the copy; the write is
    // acknowledged once the follower is marked down (for refusing, or for its lapsed lease).
    let bytes = meridian_tests::pattern(70_000, 7);
    let put = primary
        .client()
        .put_object()
        .bucket("data")
        .key(&key)
        .body(bytes.clone().into())
        .send()
        .await
        .unwrap();
    let version = put.version_id().unwrap().to_owned();
    let marked = region.wait_status("the follower marked down", |s| {
        s["current"]["down"] == serde_json::json!([old])
    });
    assert_eq!(leader(&marked["current"], "data", &key), new);
    assert!(
        follower
            .log()
            .contains("refused a copy from a node that no longer leads the partition"),
        "the follower refused the copy"
    );

    // Healed: the follower reads the layout, takes the copy still queued for it, and only
    // then marks itself up; it holds the version with the primary's bytes.
    region.links[old as usize - 1].update(|f| f.blackhole = false);
    region.wait_status_for(
        "the follower caught up and up",
        Duration::from_secs(60),
        |s| alive(s, old) && s["current"]["down"].is_null(),
    );
    for (name, node) in [("primary", primary), ("follower", follower)] {
        let held = held_by(node, "data", &key, &version).await;
        assert_eq!(held.map(|b| b == bytes), Ok(true), "on the {name}");
    }
}

/// A node that leaves the layout keeps the versions it still owes a peer region (it ships
/// them itself: the nodes that lead its partitions now do not) until they are shipped, and
/// then removes them like every other copy it no longer holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_keeps_what_a_peer_region_is_owed_until_shipped_then_frees_it() {
    let (west, east, link) = geo_regions().await;

    // West unreachable: versions node 3 leads are acknowledged (two east copies) but owed.
    link.update(|f| f.refuse = true);
    link.reset_all();
    let owed = write_led_by_node_3(
        &east,
        &["leaving-a", "leaving-b", "leaving-c"],
        &[0, 1, 2],
        40,
    )
    .await;

    // Node 3 leaves: drained, then the layout without it is in force. Its walk of the copies
    // it no longer holds runs, and keeps what west is still owed.
    east.cli(&["remove-node", "3"]);
    let last = east.wait_status_for(
        "the layout without node 3 in force",
        Duration::from_secs(90),
        |s| s["staged"].is_null() && s["current"]["nodes"].as_array().unwrap().len() == 2,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let walked = |log: String| {
        log.contains("removed the copies this node no longer holds")
            || log.contains("the others are not confirmed on their holders yet")
    };
    while !walked(east.nodes[2].log()) {
        assert!(
            std::time::Instant::now() < deadline,
            "node 3 walked no left-behind copies"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (key, version, bytes) in &owed {
        let held = held_by(&east.nodes[2], "geo", key, version).await;
        assert_eq!(
            held.map(|b| &b == bytes),
            Ok(true),
            "{key} ({version}), owed to west, stays on node 3\n{}",
            east.nodes[2]
                .log()
                .lines()
                .filter(|l| l.contains("meridian_gateway::cluster"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // Healed: node 3 ships them (west holds each on two nodes), then frees them; each stays
    // on the two nodes of its partition.
    link.update(|f| f.refuse = false);
    wait_shipped(&west, &owed, "from the node that left").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    for (key, version, bytes) in &owed {
        while held_by(&east.nodes[2], "geo", key, version).await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "{key} ({version}) stays on node 3 after it was shipped"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for id in copies_of(&last["current"], "geo", key) {
            let held = held_by(&east.nodes[id as usize - 1], "geo", key, version).await;
            assert_eq!(held.map(|b| &b == bytes), Ok(true), "{key} on node {id}");
        }
    }
}

/// The value of the metric line `series` in `node`'s metrics (0 when absent).
fn metric_of(node: &meridian_tests::TestServer, series: &str) -> f64 {
    meridian_tests::metrics(node)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `node`'s metric `series` until it is `want` (at most 30 s).
async fn wait_metric(node: &meridian_tests::TestServer, series: &str, want: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = metric_of(node, series);
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} is {got} on {}, not {want}",
            node.endpoint
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const DISCARDED: &str = "meridian_cluster_staged_bodies_total{outcome=\"discarded\"}";
const STREAMED: &str = "meridian_cluster_staged_bodies_total{outcome=\"streamed\"}";
const TAKEN: &str = "meridian_cluster_staged_bodies_total{outcome=\"taken\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_put_reaches_its_follower_while_it_arrives_and_its_copy_names_the_staged_body() {
    let region = Region::in_layout(3, "");
    region.create_bucket(0, "weights").await;
    meridian_tests::enable_versioning(&region.nodes[0].client(), "weights").await;
    let layout = region.layout();
    let key = "model/shard-00";
    let (primary, follower) = match copies_of(&layout, "weights", key)[..] {
        [p, f] => (&region.nodes[p as usize - 1], &region.nodes[f as usize - 1]),
        ref other => panic!("two copies, not {other:?}"),
    };
    let third = &region.nodes[(1..=3)
        .find(|n| !copies_of(&layout, "weights", key).contains(n))
        .unwrap() as usize
        - 1];
    let body: Vec<u8> = (0..6u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    // Sent to the node that holds no copy: forwarded to the primary, which tees it to the
    // follower as it arrives. The copy after the commit names what the follower staged.
    let put = third
        .client()
        .put_object()
        .bucket("weights")
        .key(key)
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    let version = put.version_id().unwrap().to_owned();
    assert_eq!(
        holders_now(&region, "weights", key, &version, &body).await,
        2
    );
    assert_eq!(metric_of(primary, STREAMED), 1.0);
    assert_eq!(metric_of(follower, TAKEN), 1.0);
    let head = held_by(follower, "weights", key, &version).await.unwrap();
    assert_eq!(head.len(), body.len());

    // A body the primary refuses (its Content-MD5 is another body's) reached the follower
    // too, but nothing names it: no version anywhere.
    let refused = third
        .client()
        .put_object()
        .bucket("weights")
        .key(key)
        .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
        .body(body.clone().into())
        .send()
        .await;
    assert_eq!(
        refused
            .err()
            .as_ref()
            .and_then(meridian_tests::error_code)
            .as_deref(),
        Some("BadDigest")
    );
    let versions = primary
        .client()
        .list_object_versions()
        .bucket("weights")
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 1, "{versions:?}");
    assert_eq!(metric_of(follower, TAKEN), 1.0);
    // The follower is told to drop what it staged of it.
    wait_metric(follower, DISCARDED, 1.0).await;

    // A small body is copied with the copy, as before.
    let small = third
        .client()
        .put_object()
        .bucket("weights")
        .key(key)
        .body(b"tiny".to_vec().into())
        .send()
        .await
        .unwrap();
    let small_version = small.version_id().unwrap();
    assert_eq!(
        holders_now(&region, "weights", key, small_version, b"tiny").await,
        2
    );
    assert_eq!(metric_of(primary, STREAMED), 1.0);

    // The parts of a multipart upload are teed as they arrive; the copy of the completed
    // object names each part instead of sending it again.
    let s3 = third.client();
    let upload = s3
        .create_multipart_upload()
        .bucket("weights")
        .key(key)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let mut parts = Vec::new();
    // Part 1 is sent twice (the first is replaced) and part 3 is left out of the object.
    let pieces = [
        (1, &body[1 << 20..6 << 20]),
        (1, &body[..5 << 20]),
        (2, &body[5 << 20..]),
        (3, &body[..1 << 20]),
    ];
    for (number, piece) in pieces {
        let part = s3
            .upload_part()
            .bucket("weights")
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(piece.to_vec().into())
            .send()
            .await
            .unwrap();
        parts.retain(|p: &aws_sdk_s3::types::CompletedPart| p.part_number() != Some(number));
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(number)
                .e_tag(part.e_tag().unwrap())
                .build(),
        );
    }
    parts.pop();
    let done = s3
        .complete_multipart_upload()
        .bucket("weights")
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let assembled = done.version_id().unwrap();
    assert_eq!(
        holders_now(&region, "weights", key, assembled, &body).await,
        2
    );
    assert_eq!(metric_of(primary, STREAMED), 5.0);
    assert_eq!(metric_of(follower, TAKEN), 3.0);
    // The replaced part and the one left out are reclaimed on the primary, and dropped on
    // the follower.
    wait_metric(follower, DISCARDED, 3.0).await;

    // A copy naming a staged body the follower does not hold is answered NoSuchStagedBody
    // (its sender then sends the body), and stores nothing.
    let epoch = layout["version"].as_u64().unwrap().to_string();
    let leader = leader(&layout, "weights", key).to_string();
    let missing = follower
        .client()
        .put_object()
        .bucket("weights")
        .key(key)
        .body(Vec::new().into())
        .customize()
        .mutate_request(from_a_node(&[
            (meridian_gateway::cluster::FROM, leader),
            (meridian_gateway::cluster::EPOCH, epoch),
            ("x-meridian-replica-region", meridian_tests::REGION.into()),
            (
                "x-meridian-replica-version-id",
                "0000000000000000000000000000staged".into(),
            ),
            ("x-meridian-replica-mtime", "1700000000000000000".into()),
            ("x-meridian-replica-staged", "never-staged".into()),
        ]))
        .send()
        .await;
    assert_eq!(
        missing
            .err()
            .as_ref()
            .and_then(meridian_tests::error_code)
            .as_deref(),
        Some("NoSuchStagedBody")
    );
    let versions = follower
        .client()
        .list_object_versions()
        .bucket("weights")
        .customize()
        .mutate_request(from_a_node(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 3, "{versions:?}");
}

/// A copy names a body its follower staged, but the follower restarted meanwhile and holds
/// it no more: it answers NoSuchStagedBody and the primary sends the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_whose_staged_body_the_follower_lost_carries_the_body() {
    let (mut region, key, old, new) = handed_behind_a_followers_back().await;
    let (f, p) = (old as usize - 1, new as usize - 1);

    // Written through the new primary: teed to the follower (its lease has not lapsed yet),
    // which stages it, then refuses the copy that names it (it takes itself for the primary);
    // the name is kept for the next attempt, and the write acknowledged once the follower is
    // marked down.
    let bytes = meridian_tests::pattern(1 << 20, 9);
    let put = region.nodes[p]
        .client()
        .put_object()
        .bucket("data")
        .key(&key)
        .body(bytes.clone().into())
        .send()
        .await
        .unwrap();
    let version = put.version_id().unwrap().to_owned();
    region.wait_status("the follower marked down", |s| {
        s["current"]["down"] == serde_json::json!([old])
    });
    assert_eq!(metric_of(&region.nodes[p], STREAMED), 1.0);

    // kill -9: the follower's staged bodies are gone. Back with its link to etcd, it takes
    // the copy still queued for it — with the body, once it answered that it has none staged.
    region.nodes[f].kill9();
    region.links[f].update(|l| l.blackhole = false);
    region.nodes[f].restart();
    region.wait_status_for(
        "the follower caught up and up",
        Duration::from_secs(60),
        |s| alive(s, old) && s["current"]["down"].is_null(),
    );
    let held = held_by(&region.nodes[f], "data", &key, &version).await;
    assert_eq!(held.map(|b| b == bytes), Ok(true));
    assert_eq!(metric_of(&region.nodes[f], TAKEN), 0.0);
    assert!(
        region.nodes[p]
            .log()
            .contains("the peer no longer holds the staged body; sending the body"),
        "the copy named the staged body first"
    );
}

/// Sends `signal` (`-STOP`, `-CONT`) to a node's process.
fn signal(node: &meridian_tests::TestServer, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &node.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

/// A follower that stops taking the body midway (SIGSTOP) is dropped from the tee: the write
/// goes on and is acknowledged once the follower is marked down; the follower, let go, takes
/// the copy queued for it — with the body, since nothing was staged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_stalls_mid_body_is_dropped_from_the_tee_and_gets_the_body_later() {
    let region = Region::in_layout(3, "");
    region.create_bucket(0, "weights").await;
    meridian_tests::enable_versioning(&region.nodes[0].client(), "weights").await;
    let layout = region.layout();
    let key = "stalled/shard";
    let (p, f) = match copies_of(&layout, "weights", key)[..] {
        [p, f] => (p, f),
        ref other => panic!("two copies, not {other:?}"),
    };
    let (primary, follower) = (&region.nodes[p as usize - 1], &region.nodes[f as usize - 1]);
    // More than the socket buffers and the tee's queue hold: the primary has to wait for it.
    let bytes = meridian_tests::pattern(24 << 20, 5);

    signal(follower, "-STOP");
    let put = primary
        .client()
        .put_object()
        .bucket("weights")
        .key(key)
        .body(bytes.clone().into())
        .send()
        .await;
    signal(follower, "-CONT");
    let version = put.unwrap().version_id().unwrap().to_owned();
    let status = region.cli(&["status"]);
    assert_eq!(
        status["current"]["down"],
        serde_json::json!([f]),
        "{status:#}"
    );
    assert_eq!(metric_of(primary, STREAMED), 0.0);
    assert!(
        primary.log().contains("dropped from the tee"),
        "the body was teed to the follower until it stalled"
    );
    assert_eq!(
        held_by(primary, "weights", key, &version)
            .await
            .map(|b| b == bytes),
        Ok(true)
    );

    region.wait_status_for(
        "the follower caught up and up",
        Duration::from_secs(60),
        |s| alive(s, f) && s["current"]["down"].is_null(),
    );
    assert_eq!(
        held_by(follower, "weights", key, &version)
            .await
            .map(|b| b == bytes),
        Ok(true)
    );
    assert_eq!(metric_of(follower, TAKEN), 0.0);
}
