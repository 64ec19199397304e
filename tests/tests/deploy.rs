//! What `deploy/` ships, checked: the Prometheus scrape config and alert rules with
//! promtool (and the alert unit test), every metric they and the Grafana dashboard name
//! exists on a live server, and `deploy/local-regions.sh 2` with `meridian drill` in all
//! three modes ends with identical regions and a complete JSON report.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use meridian_tests::{meridian_binary, output_within};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn promtool(args: &[&str]) {
    let mut cmd = Command::new("promtool");
    cmd.args(args).current_dir(repo().join("deploy/prometheus"));
    let out = output_within(&mut cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "promtool {args:?} (installed by scripts/setup.sh):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_prometheus_files_pass_promtool_and_the_lag_alert_fires() {
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts_test.yml"]);
}

/// Two regions from `deploy/local-regions.sh`, stopped and removed when dropped.
struct LocalRegions {
    dir: tempfile::TempDir,
    base: u16,
    /// Started with `--tls`.
    tls: bool,
}

impl LocalRegions {
    fn start(n: u16, bucket: &str) -> LocalRegions {
        Self::start_with(n, bucket, false)
    }

    fn start_with(n: u16, bucket: &str, tls: bool) -> LocalRegions {
        let dir = tempfile::tempdir().unwrap();
        // Consecutive free ports above a random base.
        let base = loop {
            let base = 20_000 + (rand::random::<u16>() % 30_000);
            if (1..=n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
                break base;
            }
        };
        let regions = LocalRegions { dir, base, tls };
        let mut script = regions.script();
        script.args([&n.to_string(), "--bucket", bucket]);
        if tls {
            script.arg("--tls");
        }
        let out = output_within(&mut script, Duration::from_secs(120));
        assert!(
            out.status.success(),
            "local-regions.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&format!("region1  {}", regions.endpoint(1))),
            "{said}"
        );
        regions
    }

    fn script(&self) -> Command {
        let mut cmd = Command::new(repo().join("deploy/local-regions.sh"));
        cmd.env("MERIDIAN_REGIONS_DIR", self.dir.path())
            .env("MERIDIAN_BASE_PORT", self.base.to_string())
            .env("MERIDIAN_BIN", meridian_binary())
            .env_remove("MERIDIAN_ROOT_USER")
            .env_remove("MERIDIAN_ROOT_PASSWORD");
        cmd
    }

    fn endpoint(&self, i: u16) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.base + i)
    }

    /// The CA the regions' certificates chain to (with `--tls`).
    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }
}

impl Drop for LocalRegions {
    fn drop(&mut self) {
        let _ = output_within(self.script().arg("clean"), Duration::from_secs(60));
    }
}

fn drill(regions: &LocalRegions, mode: &str, json: &Path) -> serde_json::Value {
    let mut cmd = Command::new(meridian_binary());
    cmd.args([
        "drill",
        "--source",
        &regions.endpoint(1),
        "--target",
        &regions.endpoint(2),
    ])
    .args([
        "--source-access-key",
        "local-admin",
        "--source-secret-key",
        "local-admin-secret",
    ])
    .args([
        "--rate",
        "25",
        "--duration",
        "2s",
        "--timeout",
        "60s",
        "--json",
    ])
    .arg(json);
    if regions.tls {
        cmd.arg("--ca-file").arg(regions.ca_file());
    }
    cmd.arg(mode);
    let out = output_within(&mut cmd, Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "drill {mode} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("result: the regions are identical"),
        "{stdout}"
    );
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

fn phases(report: &serde_json::Value) -> Vec<String> {
    report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn local_regions_and_the_drill_in_all_three_modes() {
    let regions = LocalRegions::start(2, "drill-data");
    let out = tempfile::tempdir().unwrap();

    let verify = drill(&regions, "verify", &out.path().join("verify.json"));
    assert_eq!(verify["mode"], "verify");
    assert_eq!(verify["identical"], true);
    assert_eq!(verify["buckets"][0]["source"], "drill-data");
    assert_eq!(phases(&verify), ["verify"]);

    let failover = drill(&regions, "failover", &out.path().join("failover.json"));
    assert_eq!(
        phases(&failover),
        ["workload", "fence", "drain", "promote", "failback", "verify", "unfence", "cleanup"]
    );
    assert_eq!(
        failover["rpo"]["versions"], 0,
        "a planned failover loses nothing"
    );
    assert!(failover["rto_seconds"].as_f64().unwrap() > 0.0);
    assert!(failover["workload"]["acknowledged"].as_u64().unwrap() >= 40);
    assert_eq!(failover["verify"]["missing"], 0);
    assert!(failover["verify"]["matching"].as_u64().unwrap() >= 40);

    let outage = drill(&regions, "outage", &out.path().join("outage.json"));
    assert_eq!(
        phases(&outage),
        ["workload", "cut", "loss", "promote", "restore", "verify", "cleanup"]
    );
    assert!(outage["rpo"]["versions"].is_u64() && outage["rpo"]["seconds"].is_f64());
    assert!(outage["rto_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(outage["identical"], true);

    // The workload was removed from both regions, and the source takes writes again.
    let final_check = drill(&regions, "verify", &out.path().join("after.json"));
    assert_eq!(
        final_check["verify"]["matching"], 0,
        "no workload left behind"
    );

    // Every metric the alerts and the dashboard use exists on a live region.
    let metrics = http_get(&regions.endpoint(1), "/_meridian/metrics");
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/meridian.json",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        for name in metric_names(&text) {
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_count")
                .trim_end_matches("_sum");
            assert!(
                metrics.contains(&format!("# TYPE {base} ")),
                "{file} uses {name}, which the server does not serve"
            );
        }
    }
}

#[test]
fn local_regions_over_https_fail_over_and_verify() {
    let regions = LocalRegions::start_with(2, "tls-data", true);
    let out = tempfile::tempdir().unwrap();
    let failover = drill(&regions, "failover", &out.path().join("failover.json"));
    assert_eq!(failover["identical"], true);
    assert_eq!(failover["rpo"]["versions"], 0);
    assert!(failover["verify"]["matching"].as_u64().unwrap() >= 40);
    let config = std::fs::read_to_string(regions.dir.path().join("region1/meridian.toml")).unwrap();
    assert!(
        config.contains("[tls]") && config.contains("endpoint = \"https://"),
        "{config}"
    );
}

fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("meridian_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        if name.len() > "meridian_".len() && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        rest = &tail[end..];
    }
    names
}

fn http_get(endpoint: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
