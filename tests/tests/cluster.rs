//! A region of several nodes, as far as it is built: `meridian cluster simulate` (the
//! placement comparison behind docs/CLUSTER.md) run as a user runs it.

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
        let etcd = meridian_tests::etcd::Etcd::start();
        let mut links = Vec::new();
        let mut nodes = Vec::new();
        for _ in 0..count {
            let link = meridian_tests::fault_proxy::FaultProxy::start(etcd.client);
            let port = meridian_tests::free_port();
            let config = format!(
                "[cluster]\netcd = [\"http://{}\"]\nendpoint = \"http://127.0.0.1:{port}\"\nlease_ttl = \"3s\"\n",
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
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
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

    // Each node keeps its own buckets until the data plane lands (docs/CLUSTER.md).
    for node in &region.nodes {
        node.client()
            .create_bucket()
            .bucket("data")
            .send()
            .await
            .unwrap();
    }
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
    // The other nodes still write.
    put(&region.nodes[1].client(), "elsewhere").await.unwrap();

    // Healed: node 1 gets a lease again and writes.
    region.links[0].update(|f| f.blackhole = false);
    wait_put(&s3, Ok(()), Duration::from_secs(20)).await;
    region.wait_status("node 1 back", |s| alive(s, 1));

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
        status["current"]["version"], 1,
        "the layout survived: {status:#}"
    );
    assert_eq!(status["staged"]["version"], 2);

    // remove-node stages a layout without it.
    let removed = region.cli(&["remove-node", "3"]);
    assert_eq!(removed["staged"]["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(
        removed["copies_to_fill"], 0,
        "back to the current layout's nodes"
    );
}
