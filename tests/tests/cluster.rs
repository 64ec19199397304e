//! A region of several nodes, as far as it is built: `meridian cluster simulate` (the
//! placement comparison behind docs/CLUSTER.md) run as a user runs it.

use std::process::Command;
use std::time::Duration;

use meridian_tests::{meridian_binary, output_within};

#[test]
fn the_placement_simulation_reports_balance_movement_and_etcds_load() {
    let out = output_within(
        Command::new(meridian_binary()).args([
            "cluster", "simulate", "--nodes", "4,16,100", "--json",
        ]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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
        assert!(max <= (2048 / nodes + 1) as f64 / (2048.0 / nodes as f64) + 1e-9, "{layout}");
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
