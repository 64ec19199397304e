//! `meridian replication status|checkpoint|pause|resume|resync`: the admin API of a running
//! server from the command line, signed with SigV4 as root. Status prints a table (`--json`
//! for the API's JSON); resync shows its progress until the peer has everything (a progress
//! bar on a terminal, plain lines otherwise).

use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use aws_sigv4::http_request::SignableBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meridian_api::{
    ApiError, CheckpointReport, JobReport, PauseState, Pending, ReplicationStatus, ResyncStarted,
};

use crate::units::parse_duration;

/// Where the server is and who asks.
#[derive(clap::Args, Clone, Debug)]
pub struct Endpoint {
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
    /// The HTTP client of these calls, made on the first one and reused by the rest (a
    /// resync or checkpoint polls many times).
    #[arg(skip)]
    pub http: std::sync::OnceLock<AdminHttp>,
}

type AdminHttp = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<bytes::Bytes>,
>;

#[derive(clap::Subcommand, Clone, Debug)]
pub enum ReplicationCommand {
    /// Pending versions and bytes, lag, failures and jobs, per peer and bucket.
    Status {
        #[command(flatten)]
        target: Endpoint,
        #[arg(long)]
        bucket: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Wait until a peer has everything committed before now; exits 1 if the timeout passes.
    Checkpoint {
        #[command(flatten)]
        target: Endpoint,
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
        target: Endpoint,
        #[arg(long)]
        peer: String,
    },
    /// Start sending to a paused peer again.
    Resume {
        #[command(flatten)]
        target: Endpoint,
        #[arg(long)]
        peer: String,
    },
    /// Re-send what a peer lacks (after it lost data), then wait until it has it all.
    Resync {
        #[command(flatten)]
        target: Endpoint,
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

/// A signed request to the admin API; its JSON answer as `T` (a `meridian_api` document), or
/// the error it carries.
pub async fn call<T: serde::de::DeserializeOwned>(
    target: &Endpoint,
    method: &str,
    path_and_query: &str,
) -> anyhow::Result<T> {
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
    let signer = crate::s3::Signer::new(&target.access_key, &target.secret_key, &target.region);
    let (instructions, _) = signer
        .sign(
            crate::s3::s3_signing_settings(),
            SystemTime::now(),
            method,
            &url,
            [("host", host.as_str())].into_iter(),
            SignableBody::Bytes(b""),
        )
        .map_err(|e| anyhow::anyhow!("signing {method} {url}: {e}"))?;
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", &host)
        .body(Full::new(bytes::Bytes::new()))?;
    instructions.apply_to_request_http1x(&mut req);
    let client = match target.http.get() {
        Some(client) => client,
        None => {
            let client = Client::builder(TokioExecutor::new()).build(https_connector(target)?);
            target.http.get_or_init(|| client)
        }
    };
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        // The API's own refusals are JSON; those of the S3 layer below it (a bad signature,
        // access denied) are S3 error documents.
        let text = String::from_utf8_lossy(&body);
        let reason = match serde_json::from_slice::<ApiError>(&body) {
            Ok(e) => e.error,
            Err(_) => match crate::xml::error_fields(&text) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code,
                _ => text.into_owned(),
            },
        };
        bail!("{method} {url}: {status}: {reason}");
    }
    let value: T = serde_json::from_slice(&body).with_context(|| {
        format!(
            "{method} {url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    Ok(value)
}

/// A connector for `http://` and `https://` endpoints; HTTPS is verified against
/// `--ca-file` or the system roots.
fn https_connector(
    target: &Endpoint,
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
            let status: ReplicationStatus =
                call(&target, "GET", &format!("/_meridian/replication/status{q}")).await?;
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
            let r: CheckpointReport = call(
                &target,
                "POST",
                &format!("/_meridian/replication/checkpoint{q}"),
            )
            .await?;
            if r.reached {
                println!(
                    "peer {peer} has everything committed before the checkpoint (waited {:.2} s)",
                    r.waited_seconds
                );
            } else {
                println!(
                    "peer {peer} still lacks {} versions ({}) after {:.0} s; last error: {}",
                    r.pending.pending_versions,
                    bytes(r.pending.pending_bytes),
                    r.waited_seconds,
                    r.pending.last_error.as_deref().unwrap_or("none")
                );
            }
            Ok(r.reached)
        }
        ReplicationCommand::Pause { target, peer } => {
            let _: PauseState = call(
                &target,
                "POST",
                &format!("/_meridian/replication/pause?peer={}", encode(&peer)),
            )
            .await?;
            println!("sending to {peer} is paused; changes keep queuing");
            Ok(true)
        }
        ReplicationCommand::Resume { target, peer } => {
            let _: PauseState = call(
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
            let started: ResyncStarted = call(
                &target,
                "POST",
                &format!("/_meridian/replication/resync{q}"),
            )
            .await?;
            let buckets: Vec<String> = started.jobs.into_iter().map(|j| j.bucket).collect();
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
async fn follow_resync(target: &Endpoint, peer: &str, buckets: &[String]) -> anyhow::Result<bool> {
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
        let status: ReplicationStatus =
            call(target, "GET", "/_meridian/replication/status").await?;
        let Some(report) = status.peer(peer) else {
            bail!("{} has no peer named {peer}", target.endpoint);
        };
        let jobs: Vec<&JobReport> = report
            .jobs
            .iter()
            .filter(|j| j.kind == "resync" && buckets.contains(&j.bucket))
            .collect();
        let sum = |field: fn(&JobReport) -> u64| jobs.iter().map(|j| field(j)).sum::<u64>();
        let walking = jobs.iter().any(|j| j.running);
        let pending: u64 = report
            .buckets
            .iter()
            .filter(|b| buckets.contains(&b.bucket))
            .map(|b| b.pending.pending_versions)
            .sum();
        let line = format!(
            "scanned {} versions, {} already on {peer}, {} re-sent ({}), {} still to arrive{}",
            sum(|j| j.scanned),
            sum(|j| j.skipped),
            sum(|j| j.queued),
            bytes(sum(|j| j.queued_bytes)),
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
        if jobs.iter().any(|j| j.cancelled) {
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

/// The status as a table: one line per peer, one per bucket with pending work, one per job.
pub fn status_table(status: &ReplicationStatus) -> String {
    let row = |name: &str, mode: &str, state: &str, v: &Pending| {
        format!(
            "{:<12} {:<8} {:<7} {:>9} {:>13} {:>8} {:>8} {:>7}  {}\n",
            name,
            mode,
            state,
            v.pending_versions,
            bytes(v.pending_bytes),
            lag(v.lag_seconds),
            v.retrying,
            v.failed,
            v.last_error.as_deref().unwrap_or("")
        )
    };
    let mut out = format!(
        "{:<12} {:<8} {:<7} {:>9} {:>13} {:>8} {:>8} {:>7}  {}\n",
        "PEER",
        "MODE",
        "STATE",
        "PENDING",
        "PENDING-BYTES",
        "LAG",
        "RETRYING",
        "FAILED",
        "LAST ERROR"
    );
    for p in &status.peers {
        let state = if p.paused { "paused" } else { "running" };
        out.push_str(&row(&p.peer, &p.mode, state, &p.pending));
        if let Some(by) = &p.paused_by {
            let since = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(by.since.max(0) as u64),
            );
            out.push_str(&format!("  paused by {} since {since}\n", by.principal));
        }
        for b in &p.buckets {
            out.push_str(&row(&format!("  {}", b.bucket), "", "", &b.pending));
        }
        for j in &p.jobs {
            out.push_str(&format!(
                "  {} {} of {}: scanned {}, queued {} ({}), skipped {}\n",
                if j.running {
                    "running"
                } else if j.cancelled {
                    "cancelled"
                } else {
                    "finished"
                },
                j.kind,
                j.bucket,
                j.scanned,
                j.queued,
                bytes(j.queued_bytes),
                j.skipped,
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
        let status: ReplicationStatus = serde_json::from_value(serde_json::json!({"peers": [{
            "peer": "west", "endpoint": "http://127.0.0.1:9102", "kind": "meridian",
            "mode": "async", "paused": true, "pending_versions": 3, "pending_bytes": 2048,
            "paused_by": {"principal": "root", "since": 1700000000},
            "lag_seconds": 75.0, "retrying": 1, "failed": 0, "last_error": "connection refused",
            "sent_versions": 0, "sent_bytes": 0,
            "buckets": [{"bucket": "models", "pending_versions": 3, "pending_bytes": 2048, "lag_seconds": 75.0,
                         "retrying": 1, "failed": 0, "last_error": null}],
            "jobs": [{"kind": "resync", "bucket": "models", "running": true, "cancelled": false,
                      "scanned": 10, "queued": 3, "queued_bytes": 2048, "skipped": 7,
                      "started": 1700000000, "finished": null}]
        }]}))
        .unwrap();
        let t = status_table(&status);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[0].contains("PENDING-BYTES"));
        assert!(
            lines[1].starts_with("west")
                && lines[1].contains("paused")
                && lines[1].contains("1m15s")
        );
        assert!(lines[1].contains("connection refused"));
        assert_eq!(lines[2], "  paused by root since 2023-11-14T22:13:20Z");
        assert!(lines[3].contains("models"));
        assert!(lines[4].contains("running resync of models"));
    }
}
