//! `meridian replication status|checkpoint|pause|resume|resync`: the admin API of a running
//! server from the command line, signed with SigV4 as root. Status prints a table (`--json`
//! for the API's JSON); resync shows its progress until the peer has everything (a progress
//! bar on a terminal, plain lines otherwise).

use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meridian_bench::parse_duration;
use serde_json::Value;

/// Where the server is and who asks.
#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// The server's endpoint.
    #[arg(
        long,
        env = "MERIDIAN_ENDPOINT",
        default_value = "http://127.0.0.1:9000"
    )]
    pub endpoint: String,
    /// Root credentials of that server.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_key: String,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// PEM file of the CA an `https://` endpoint's certificate must chain to (instead of the
    /// system roots).
    #[arg(long, env = "MERIDIAN_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum ReplicationCommand {
    /// Pending versions and bytes, lag, failures and jobs, per peer and bucket.
    Status {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        bucket: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Wait until a peer has everything committed before now; exits 1 if the timeout passes.
    Checkpoint {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        peer: String,
        #[arg(long)]
        bucket: Option<String>,
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        timeout: Duration,
    },
    /// Stop sending to a peer (changes keep queuing; nothing is lost).
    Pause {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        peer: String,
    },
    /// Start sending to a paused peer again.
    Resume {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        peer: String,
    },
    /// Re-send what a peer lacks (after it lost data), then wait until it has it all.
    Resync {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        peer: String,
        /// One bucket; by default every bucket with a rule to the peer.
        #[arg(long)]
        bucket: Option<String>,
        /// Restart the walk from the first key instead of continuing an earlier resync.
        #[arg(long)]
        from_scratch: bool,
        /// Start it and return without waiting.
        #[arg(long)]
        no_wait: bool,
    },
}

/// A signed request to the admin API; the JSON answer, or the error it carries.
pub async fn call(target: &Target, method: &str, path_and_query: &str) -> anyhow::Result<Value> {
    let url = format!(
        "{}{}",
        target.endpoint.trim_end_matches('/'),
        path_and_query
    );
    let uri: http::Uri = url.parse().with_context(|| format!("bad endpoint {url}"))?;
    let host = uri
        .authority()
        .context("the endpoint names no host")?
        .to_string();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    let identity = aws_credential_types::Credentials::new(
        &target.access_key,
        &target.secret_key,
        None,
        None,
        "cli",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&target.region)
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()?
        .into();
    let headers = [("host", host.as_str())];
    let signable =
        SignableRequest::new(method, &url, headers.into_iter(), SignableBody::Bytes(b""))?;
    let (instructions, _) = sign(signable, &params)?.into_parts();
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", &host)
        .body(Full::new(bytes::Bytes::new()))?;
    instructions.apply_to_request_http1x(&mut req);
    let client = Client::builder(TokioExecutor::new()).build(https_connector(target)?);
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    let value: Value = serde_json::from_slice(&body).with_context(|| {
        format!(
            "{method} {url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    if !status.is_success() {
        bail!(
            "{method} {url}: {status}: {}",
            value["error"].as_str().unwrap_or("error")
        );
    }
    Ok(value)
}

/// A connector for `http://` and `https://` endpoints; HTTPS is verified against
/// `--ca-file` or the system roots.
fn https_connector(
    target: &Target,
) -> anyhow::Result<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>>
{
    let tls = crate::tls::client_config(target.ca_file.as_deref())?;
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build())
}

fn encode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// Runs a `meridian replication` command; the exit status is success unless it failed (or a
/// checkpoint timed out).
pub async fn run(command: ReplicationCommand) -> anyhow::Result<bool> {
    match command {
        ReplicationCommand::Status {
            target,
            bucket,
            json,
        } => {
            let q = bucket
                .map(|b| format!("?bucket={}", encode(&b)))
                .unwrap_or_default();
            let status = call(&target, "GET", &format!("/_meridian/replication/status{q}")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status_table(&status));
            }
            Ok(true)
        }
        ReplicationCommand::Checkpoint {
            target,
            peer,
            bucket,
            timeout,
        } => {
            let mut q = format!("?peer={}&timeout={}", encode(&peer), timeout.as_secs_f64());
            if let Some(b) = bucket {
                q.push_str(&format!("&bucket={}", encode(&b)));
            }
            let r = call(
                &target,
                "POST",
                &format!("/_meridian/replication/checkpoint{q}"),
            )
            .await?;
            let reached = r["reached"].as_bool().unwrap_or(false);
            if reached {
                println!(
                    "peer {peer} has everything committed before the checkpoint (waited {:.2} s)",
                    r["waited_seconds"].as_f64().unwrap_or(0.0)
                );
            } else {
                println!(
                    "peer {peer} still lacks {} versions ({}) after {:.0} s; last error: {}",
                    r["pending"]["versions"],
                    bytes(r["pending"]["bytes"].as_u64().unwrap_or(0)),
                    r["waited_seconds"].as_f64().unwrap_or(0.0),
                    r["pending"]["last_error"].as_str().unwrap_or("none")
                );
            }
            Ok(reached)
        }
        ReplicationCommand::Pause { target, peer } => {
            call(
                &target,
                "POST",
                &format!("/_meridian/replication/pause?peer={}", encode(&peer)),
            )
            .await?;
            println!("sending to {peer} is paused; changes keep queuing");
            Ok(true)
        }
        ReplicationCommand::Resume { target, peer } => {
            call(
                &target,
                "POST",
                &format!("/_meridian/replication/resume?peer={}", encode(&peer)),
            )
            .await?;
            println!("sending to {peer} resumed");
            Ok(true)
        }
        ReplicationCommand::Resync {
            target,
            peer,
            bucket,
            from_scratch,
            no_wait,
        } => {
            let mut q = format!("?peer={}", encode(&peer));
            if let Some(b) = &bucket {
                q.push_str(&format!("&bucket={}", encode(b)));
            }
            if from_scratch {
                q.push_str("&from_scratch=true");
            }
            let started = call(
                &target,
                "POST",
                &format!("/_meridian/replication/resync{q}"),
            )
            .await?;
            let buckets: Vec<String> = started["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|j| j["bucket"].as_str().map(str::to_owned))
                .collect();
            println!(
                "resync of {} towards {peer} started",
                if buckets.is_empty() {
                    "no bucket".to_string()
                } else {
                    buckets.join(", ")
                }
            );
            if no_wait || buckets.is_empty() {
                return Ok(true);
            }
            follow_resync(&target, &peer, &buckets).await
        }
    }
}

/// Shows a resync until its walks are done and the peer has everything they queued.
async fn follow_resync(target: &Target, peer: &str, buckets: &[String]) -> anyhow::Result<bool> {
    let terminal = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new_spinner();
    if terminal {
        bar.set_style(indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} {msg}",
        )?);
        bar.enable_steady_tick(Duration::from_millis(200));
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = Instant::now();
    let mut last_line = Instant::now() - Duration::from_secs(10);
    loop {
        let status = call(target, "GET", "/_meridian/replication/status").await?;
        let report = status["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["peer"] == peer)
            .cloned()
            .unwrap_or_default();
        let jobs: Vec<&Value> = report["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["kind"] == "resync" && buckets.iter().any(|b| j["bucket"] == b.as_str()))
            .collect();
        let sum = |field: &str| {
            jobs.iter()
                .map(|j| j[field].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        let walking = jobs.iter().any(|j| j["running"].as_bool().unwrap_or(false));
        let pending: u64 = report["buckets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| buckets.iter().any(|x| b["bucket"] == x.as_str()))
            .map(|b| b["versions"].as_u64().unwrap_or(0))
            .sum();
        let line = format!(
            "scanned {} versions, {} already on {peer}, {} re-sent ({}), {} still to arrive{}",
            sum("scanned"),
            sum("skipped"),
            sum("queued"),
            bytes(sum("queued_bytes")),
            pending,
            if walking { " — walking" } else { "" }
        );
        if terminal {
            bar.set_message(line.clone());
        } else if last_line.elapsed() >= Duration::from_secs(2) {
            eprintln!("{line}");
            last_line = Instant::now();
        }
        if !walking && pending == 0 {
            bar.finish_and_clear();
            println!(
                "resync done in {:.1} s: {line}",
                started.elapsed().as_secs_f64()
            );
            return Ok(true);
        }
        if jobs
            .iter()
            .any(|j| j["cancelled"].as_bool().unwrap_or(false))
        {
            bar.finish_and_clear();
            println!("resync cancelled: {line}");
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn lag(seconds: f64) -> String {
    if seconds < 1.0 {
        "0s".into()
    } else {
        humanize(Duration::from_secs_f64(seconds))
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// The status JSON as a table: one line per peer, one per bucket with pending work, one per job.
pub fn status_table(status: &Value) -> String {
    let mut out = format!(
        "{:<12} {:<8} {:<7} {:>9} {:>10} {:>8} {:>8} {:>7}  {}\n",
        "PEER", "MODE", "STATE", "PENDING", "BYTES", "LAG", "RETRYING", "FAILED", "LAST ERROR"
    );
    for p in status["peers"].as_array().into_iter().flatten() {
        let row = |name: &str, mode: &str, state: &str, v: &Value| {
            format!(
                "{:<12} {:<8} {:<7} {:>9} {:>10} {:>8} {:>8} {:>7}  {}\n",
                name,
                mode,
                state,
                v["versions"].as_u64().unwrap_or(0),
                bytes(v["bytes"].as_u64().unwrap_or(0)),
                lag(v["lag_seconds"].as_f64().unwrap_or(0.0)),
                v["retrying"].as_u64().unwrap_or(0),
                v["failed"].as_u64().unwrap_or(0),
                v["last_error"].as_str().unwrap_or("")
            )
        };
        let state = if p["paused"].as_bool().unwrap_or(false) {
            "paused"
        } else {
            "running"
        };
        out.push_str(&row(
            p["peer"].as_str().unwrap_or("?"),
            p["mode"].as_str().unwrap_or(""),
            state,
            p,
        ));
        for b in p["buckets"].as_array().into_iter().flatten() {
            out.push_str(&row(
                &format!("  {}", b["bucket"].as_str().unwrap_or("?")),
                "",
                "",
                b,
            ));
        }
        for j in p["jobs"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {} {} of {}: scanned {}, queued {} ({}), skipped {}\n",
                if j["running"].as_bool().unwrap_or(false) {
                    "running"
                } else if j["cancelled"].as_bool().unwrap_or(false) {
                    "cancelled"
                } else {
                    "finished"
                },
                j["kind"].as_str().unwrap_or("?"),
                j["bucket"].as_str().unwrap_or("?"),
                j["scanned"],
                j["queued"],
                bytes(j["queued_bytes"].as_u64().unwrap_or(0)),
                j["skipped"],
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_peer_bucket_and_job() {
        let status = serde_json::json!({"peers": [{
            "peer": "west", "mode": "async", "paused": true, "versions": 3, "bytes": 2048,
            "lag_seconds": 75.0, "retrying": 1, "failed": 0, "last_error": "connection refused",
            "buckets": [{"bucket": "models", "versions": 3, "bytes": 2048, "lag_seconds": 75.0,
                         "retrying": 1, "failed": 0, "last_error": null}],
            "jobs": [{"kind": "resync", "bucket": "models", "running": true, "cancelled": false,
                      "scanned": 10, "queued": 3, "queued_bytes": 2048, "skipped": 7}]
        }]});
        let t = status_table(&status);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[1].starts_with("west")
                && lines[1].contains("paused")
                && lines[1].contains("1m15s")
        );
        assert!(lines[1].contains("connection refused"));
        assert!(lines[2].contains("models"));
        assert!(lines[3].contains("running resync of models"));
    }
}
