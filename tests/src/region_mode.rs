//! `MERIDIAN_TEST_REGION=1`: the S3 suites against a region of three nodes instead of one.
//!
//! [`TestServer::start`](crate::TestServer::start) then starts etcd and three nodes on it
//! (R = 2), all in the first layout, and every client of the server sends each request to the
//! next node in turn — so a suite written for one node runs unchanged against a region, and
//! every request of it is forwarded, copied or merged as a region does. `make test` runs the
//! versioning, listing, multipart and conformance suites so; the tests of them that look at a
//! node's disks, restart it or configure it alone are not run so (see the Makefile).

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};

use crate::{meridian_binary, output_within, ServerOptions, TestServer};

/// Nodes of the region a test server stands for.
const NODES: usize = 3;

/// Whether `TestServer::start` starts a region (`MERIDIAN_TEST_REGION=1`).
pub fn enabled() -> bool {
    std::env::var("MERIDIAN_TEST_REGION").is_ok_and(|v| v == "1")
}

/// The rest of a region whose first node is a [`TestServer`].
pub struct RegionParts {
    /// Nodes 2 and 3 (the server itself is node 1), dropped (killed) before etcd.
    _others: Vec<TestServer>,
    _etcd: crate::etcd::Etcd,
    /// Every node's endpoint, node 1 first.
    pub endpoints: Vec<String>,
    next: Arc<AtomicUsize>,
}

impl RegionParts {
    /// An interceptor that sends each request of a client to the next node.
    pub fn spreader(&self) -> Spread {
        Spread {
            endpoints: self.endpoints.clone(),
            next: self.next.clone(),
        }
    }
}

/// Whether `options` describe a server that may be a region (a test that picks the port,
/// serves HTTPS or configures a cluster itself gets one node).
pub fn applies_to(options: &ServerOptions) -> bool {
    enabled()
        && options.port.is_none()
        && options.tls.is_none()
        && !options.extra_config.contains("[cluster]")
}

/// Starts etcd and three nodes with `options`, puts them in the first layout, and waits until
/// every node is ready: node 1, standing for the region.
pub fn start(options: ServerOptions) -> TestServer {
    let etcd = crate::etcd::Etcd::start();
    let mut nodes: Vec<TestServer> = Vec::new();
    for _ in 0..NODES {
        let port = crate::free_port();
        // One keyring for the region (node 1's, where the tests add their KMS keys), as a
        // region must have: a version's copies keep its SSE-KMS key.
        let config = match nodes.first() {
            Some(first) => {
                with_keyring(&options.extra_config, &first.data_dir.join("keyring.toml"))
            }
            None => options.extra_config.clone(),
        };
        let extra_config = format!(
            "{config}\n[cluster]\netcd = [\"{}\"]\nendpoint = \"http://127.0.0.1:{port}\"\nlease_ttl = \"3s\"\n",
            etcd.url()
        );
        nodes.push(TestServer::start_with(ServerOptions {
            extra_config,
            port: Some(port),
            ..options.clone()
        }));
    }
    let cli = |args: &[&str]| -> serde_json::Value {
        let out = output_within(
            Command::new(meridian_binary())
                .arg("cluster")
                .args(args)
                .args(["--etcd", &etcd.url(), "--json"]),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "cluster {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("cluster status is JSON")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = cli(&["status"]);
        let alive = status["nodes"]
            .as_array()
            .map_or(0, |n| n.iter().filter(|n| n["alive"] == true).count());
        if alive == NODES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the region's nodes did not join: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cli(&["add-node", "1", "2", "3"]);
    for node in &nodes {
        wait_ready(&node.endpoint);
    }
    let endpoints = nodes.iter().map(|n| n.endpoint.clone()).collect();
    let mut first = nodes.remove(0);
    first.region = Some(Box::new(RegionParts {
        _others: nodes,
        _etcd: etcd,
        endpoints,
        next: Arc::new(AtomicUsize::new(0)),
    }));
    first
}

/// `config` with `[encryption] keyring = path` (in its `[encryption]` table if it has one).
fn with_keyring(config: &str, path: &std::path::Path) -> String {
    let line = format!("keyring = \"{}\"\n", path.display());
    match config.find("[encryption]\n") {
        Some(at) => {
            let at = at + "[encryption]\n".len();
            format!("{}{line}{}", &config[..at], &config[at..])
        }
        None => format!("{config}\n[encryption]\n{line}"),
    }
}

/// Polls a node's readiness probe (lease held, layout known) for at most 30 s.
pub(crate) fn wait_ready(endpoint: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = crate::anonymous_request(endpoint, "GET", "/_meridian/health/ready");
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "{endpoint} not ready: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends each request to the next node of the region (before it is signed, so the signature
/// names the node it goes to).
#[derive(Clone, Debug)]
pub struct Spread {
    endpoints: Vec<String>,
    next: Arc<AtomicUsize>,
}

impl Intercept for Spread {
    fn name(&self) -> &'static str {
        "SpreadOverTheRegion"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        let request = context.request_mut();
        let uri = request.uri().to_owned();
        // http://127.0.0.1:PORT/rest -> the chosen node's endpoint + /rest
        let rest = uri
            .split_once("://")
            .and_then(|(_, after)| after.find('/').map(|i| &after[i..]))
            .unwrap_or("/");
        request.set_uri(format!("{}{rest}", self.endpoints[n]))?;
        Ok(())
    }
}
