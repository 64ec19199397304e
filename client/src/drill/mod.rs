//! `meridian drill`: a disaster-recovery drill between two regions in one command, with a
//! report a human reads and JSON a scheduler keeps. Exit status 0 only if the regions end
//! identical.
//!
//! - `verify` compares both regions version for version (see [`verify`]) and reports the
//!   current lag; it changes nothing.
//! - `failover` (planned): a marked workload on the source, fence the source (clients get
//!   503, replication keeps draining), wait until the target has everything (RPO must be 0),
//!   write to the target as the new primary (RTO: from the fence to the first successful
//!   write there), fail back (target -> source resync), verify, unfence.
//! - `outage` (unplanned): the same workload, then the link is cut without draining (the
//!   operator's `--cut-command`, or pausing replication), the acknowledged changes the target
//!   lacks are the data-loss window (RPO), the target takes writes (RTO), the link comes back
//!   (`--restore-command`, or resuming) and a resync makes both regions identical.
//!
//! The workload lives under `meridian-drill/<run id>/` and is removed afterwards unless
//! `--keep`.

mod report;
mod sites;
mod verify;
mod workload;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::units::{parse_duration, ByteSize};
use anyhow::{bail, Context as _};

use crate::replication::Endpoint;
use report::{DrillReport, Phase, Rpo};
use sites::{replicated_buckets, BucketPair, Site};

#[derive(clap::Args, Clone, Debug)]
pub struct DrillArgs {
    /// The source (primary) region's endpoint.
    #[arg(long)]
    pub source: String,
    /// The target (secondary) region's endpoint.
    #[arg(long)]
    pub target: String,
    /// Root credentials of the source.
    #[arg(long, env = "MERIDIAN_SOURCE_ACCESS_KEY")]
    pub source_access_key: String,
    #[arg(long, env = "MERIDIAN_SOURCE_SECRET_KEY", hide_env_values = true)]
    pub source_secret_key: String,
    /// Root credentials of the target (default: the source's).
    #[arg(long, env = "MERIDIAN_TARGET_ACCESS_KEY")]
    pub target_access_key: Option<String>,
    #[arg(long, env = "MERIDIAN_TARGET_SECRET_KEY", hide_env_values = true)]
    pub target_secret_key: Option<String>,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// PEM file of the CA the regions' `https://` certificates chain to (instead of the
    /// system roots).
    #[arg(long, env = "MERIDIAN_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The source's name for the target peer (default: the peer configured with the
    /// endpoint `--target`; name it when the regions reach each other at other addresses,
    /// through a proxy or a load balancer).
    #[arg(long)]
    pub peer: Option<String>,
    /// Only this source bucket (default: every bucket replicated to the target).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Workload: changes per second and how long.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Workload object size.
    #[arg(long, default_value = "64KiB")]
    pub object_size: ByteSize,
    /// Keep the workload's objects afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Outage: a shell command that cuts the link (default: pause the source's replication).
    #[arg(long)]
    pub cut_command: Option<String>,
    /// Outage: a shell command that restores it (default: resume).
    #[arg(long)]
    pub restore_command: Option<String>,
    /// Longest wait for replication to catch up, in each phase.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,
    /// Compare listings only (ids, ETags, sizes, markers), not checksums, metadata and tags.
    #[arg(long)]
    pub quick: bool,
    #[command(subcommand)]
    pub mode: Mode,
}

#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Compare both regions version for version; change nothing.
    Verify,
    /// Planned failover and failback: fence, drain, promote, fail back, verify, unfence.
    Failover,
    /// Unplanned outage: cut the link, measure RPO and RTO, restore, resync, verify.
    Outage,
}

/// Progress on a terminal (a spinner line) or as plain lines every few seconds.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last: std::cell::Cell<Instant>,
}

impl Progress {
    fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .expect("valid template"),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            bar,
            last: std::cell::Cell::new(Instant::now() - Duration::from_secs(60)),
        }
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(b) => b.set_message(line.to_owned()),
            None if self.last.get().elapsed() >= Duration::from_secs(2) => {
                eprintln!("{line}");
                self.last.set(Instant::now());
            }
            None => {}
        }
    }

    fn phase(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn run_shell(command: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()?;
    if !status.success() {
        bail!("`{command}` failed: {status}");
    }
    Ok(())
}

struct Drill {
    args: DrillArgs,
    source: Site,
    target: Site,
    /// The names each region gives the other.
    to_target: String,
    to_source: Option<String>,
    pairs: Vec<BucketPair>,
    report: DrillReport,
    progress: Progress,
    run_id: String,
}

/// Runs a drill; returns whether the regions ended identical.
pub async fn run(args: DrillArgs) -> anyhow::Result<bool> {
    let source = Site::new(Endpoint {
        endpoint: args.source.clone(),
        access_key: args.source_access_key.clone(),
        secret_key: args.source_secret_key.clone(),
        region: args.region.clone(),
        ca_file: args.ca_file.clone(),
        http: Default::default(),
    })?;
    let target = Site::new(Endpoint {
        endpoint: args.target.clone(),
        access_key: args
            .target_access_key
            .clone()
            .unwrap_or_else(|| args.source_access_key.clone()),
        secret_key: args
            .target_secret_key
            .clone()
            .unwrap_or_else(|| args.source_secret_key.clone()),
        region: args.region.clone(),
        ca_file: args.ca_file.clone(),
        http: Default::default(),
    })?;
    let to_target = match &args.peer {
        Some(peer) => peer.clone(),
        None => source
            .peer_named_for(target.endpoint())
            .await
            .context("reading the source's replication status")?
            .with_context(|| {
                format!(
                    "the source has no replication peer at {} (name it with --peer)",
                    target.endpoint()
                )
            })?,
    };
    let to_source = target
        .peer_named_for(source.endpoint())
        .await
        .unwrap_or(None);
    let pairs = replicated_buckets(&source, &to_target, args.bucket.as_deref()).await?;
    if pairs.is_empty() {
        bail!("the source replicates no bucket to the target");
    }
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let mut drill = Drill {
        report: DrillReport::new(&args.mode, &pairs, &run_id),
        args,
        source,
        target,
        to_target,
        to_source,
        pairs,
        progress: Progress::new(),
        run_id,
    };
    let outcome = match drill.args.mode {
        Mode::Verify => drill.verify_only().await,
        Mode::Failover => drill.failover().await,
        Mode::Outage => drill.outage().await,
    };
    drill.progress.done();
    if let Err(e) = &outcome {
        drill.report.error = Some(format!("{e:#}"));
    }
    print!("{}", drill.report.human());
    if let Some(path) = &drill.args.json {
        std::fs::write(path, serde_json::to_string_pretty(&drill.report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    outcome?;
    Ok(drill.report.identical)
}

impl Drill {
    /// Times a phase and records it.
    fn phase_done(&mut self, name: &str, started: Instant, note: String) {
        let p = Phase {
            name: name.to_owned(),
            seconds: started.elapsed().as_secs_f64(),
            note,
        };
        self.progress
            .phase(&format!("{:<10} {:>8.2} s  {}", p.name, p.seconds, p.note));
        self.report.phases.push(p);
    }

    fn prefix(&self) -> String {
        format!("meridian-drill/{}/", self.run_id)
    }

    async fn lag(&mut self) {
        for (site, label) in [(&self.source, "source"), (&self.target, "target")] {
            if let Ok(status) = site.status().await {
                for p in status.peers {
                    self.report.lag.push(report::Lag {
                        region: label.to_owned(),
                        peer: p.peer,
                        pending_versions: p.pending.pending_versions,
                        pending_bytes: p.pending.pending_bytes,
                        lag_seconds: p.pending.lag_seconds,
                    });
                }
            }
        }
    }

    /// Compares the regions (only the workload's prefix when `prefix`), records the result.
    async fn compare(&mut self, prefix: Option<String>) -> anyhow::Result<()> {
        let started = Instant::now();
        let progress = &self.progress;
        let c = verify::compare(
            &self.source.s3,
            &self.target.s3,
            &self.pairs,
            prefix.as_deref(),
            !self.args.quick,
            &|n| progress.say(&format!("verify: {n} versions compared")),
        )
        .await?;
        let keys = self.compare_keys().await;
        self.report.identical = c.identical() && keys.as_ref().is_none_or(|d| d.is_empty());
        self.report.key_differences = keys;
        let note = format!(
            "{} matching, {} missing, {} extra, {} different",
            c.matching, c.missing, c.extra, c.different
        );
        self.report.verify = Some(c);
        self.phase_done("verify", started, note);
        Ok(())
    }

    /// The run-time keys and grants of both regions, compared (those of the configuration
    /// files are each region's own and not compared). `None` when either list could not be
    /// read (credentials without the admin grant, an older server).
    async fn compare_keys(&mut self) -> Option<Vec<String>> {
        let path = "/_meridian/admin/keys";
        let source: meridian_api::KeyList = self.source.admin("GET", path).await.ok()?;
        let target: meridian_api::KeyList = self.target.admin("GET", path).await.ok()?;
        Some(key_differences(&source, &target))
    }

    async fn verify_only(&mut self) -> anyhow::Result<()> {
        self.lag().await;
        self.compare(None).await
    }

    async fn workload(&mut self) -> anyhow::Result<Vec<workload::Acked>> {
        let started = Instant::now();
        let bucket = self.pairs[0].source.clone();
        let progress = &self.progress;
        let (acked, w) = workload::write(
            &self.source.s3,
            &bucket,
            &self.prefix(),
            self.args.rate,
            self.args.duration,
            self.args.object_size.0 as usize,
            &|n| progress.say(&format!("workload: {n} changes written")),
        )
        .await;
        if w.acknowledged == 0 {
            bail!("the source acknowledged none of the workload's writes");
        }
        let note = format!(
            "{} changes acknowledged ({} bytes), {} failed",
            w.acknowledged, w.bytes, w.failed
        );
        self.report.workload = Some(w);
        self.phase_done("workload", started, note);
        Ok(acked)
    }

    /// Writes and reads on the target as the new primary; returns when the first write
    /// succeeded.
    async fn promote(&mut self, since: Instant) -> anyhow::Result<()> {
        let started = Instant::now();
        let bucket = self.pairs[0].target.clone();
        let key = format!("{}promoted", self.prefix());
        let deadline = Instant::now() + self.args.timeout;
        loop {
            match self
                .target
                .s3
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .body(b"written on the new primary".to_vec().into())
                .send()
                .await
            {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    self.progress.say(&format!(
                        "promote: waiting for the target to take writes: {e}"
                    ));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => bail!("the target never took a write: {e}"),
            }
        }
        self.report.rto_seconds = Some(since.elapsed().as_secs_f64());
        let read = self
            .target
            .s3
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await?;
        let body = read.body.collect().await?.into_bytes();
        if body.as_ref() != b"written on the new primary" {
            bail!("the target read back something else than it was given");
        }
        let note = format!(
            "the target took a write and served it back; RTO {:.2} s",
            self.report.rto_seconds.unwrap_or(0.0)
        );
        self.phase_done("promote", started, note);
        Ok(())
    }

    /// The acknowledged changes the target lacks: the data-loss window.
    async fn measure_rpo(&mut self, acked: &[workload::Acked], cut: Instant) -> Rpo {
        let bucket = self.pairs[0].target.clone();
        let missing = workload::missing_on(&self.target.s3, &bucket, acked).await;
        let oldest = missing.iter().map(|a| a.at).min();
        let rpo = Rpo {
            versions: missing.len() as u64,
            bytes: missing.iter().map(|a| a.bytes).sum(),
            seconds: oldest.map_or(0.0, |o| cut.saturating_duration_since(o).as_secs_f64()),
            examples: missing
                .iter()
                .take(10)
                .map(|a| format!("{}/{} {}", a.bucket, a.key, a.version_id))
                .collect(),
        };
        self.report.rpo = Some(rpo.clone());
        rpo
    }

    /// Resync from `from` to the peer it calls `peer`, and wait until that peer has it all.
    async fn resync(
        &mut self,
        from: &Site,
        peer: &str,
        buckets: Vec<String>,
    ) -> anyhow::Result<()> {
        for b in &buckets {
            from.admin::<meridian_api::ResyncStarted>(
                "POST",
                &format!("/_meridian/replication/resync?peer={peer}&bucket={b}"),
            )
            .await?;
        }
        let deadline = Instant::now() + self.args.timeout;
        loop {
            let status = from.status().await?;
            let Some(p) = status.peer(peer) else {
                bail!("{} has no peer named {peer}", from.endpoint());
            };
            let walking = p.jobs.iter().any(|j| j.running);
            let pending = p.pending.pending_versions;
            self.progress.say(&format!(
                "resync: {pending} versions still to arrive{}",
                if walking { ", walking" } else { "" }
            ));
            if !walking && pending == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the resync to {peer} did not finish within {:?}",
                    self.args.timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn cleanup(&mut self) {
        if self.args.keep {
            return;
        }
        let started = Instant::now();
        let prefix = self.prefix();
        let mut removed = 0;
        for pair in self.pairs.clone() {
            removed += workload::remove(&self.source.s3, &pair.source, &prefix)
                .await
                .unwrap_or(0);
            removed += workload::remove(&self.target.s3, &pair.target, &prefix)
                .await
                .unwrap_or(0);
        }
        self.phase_done(
            "cleanup",
            started,
            format!("{removed} workload versions removed from both regions"),
        );
    }

    async fn failover(&mut self) -> anyhow::Result<()> {
        let Some(to_source) = self.to_source.clone() else {
            bail!("the target has no replication peer at {}: failing back needs the target to replicate to the source", self.source.endpoint());
        };
        self.lag().await;
        let acked = self.workload().await?;

        let started = Instant::now();
        self.source
            .admin::<meridian_api::FenceState>(
                "POST",
                &format!("/_meridian/fence?note=drill-{}", self.run_id),
            )
            .await?;
        let fenced_at = Instant::now();
        self.phase_done(
            "fence",
            started,
            "the source refuses client writes; replication keeps draining".into(),
        );

        let outcome = async {
            let started = Instant::now();
            let c = self
                .source
                .checkpoint(&self.to_target, None, self.args.timeout)
                .await?;
            if !c.reached {
                bail!(
                    "the target did not catch up within {:?}: {} versions ({} bytes) pending",
                    self.args.timeout,
                    c.pending.pending_versions,
                    c.pending.pending_bytes
                );
            }
            let rpo = self.measure_rpo(&acked, fenced_at).await;
            self.phase_done(
                "drain",
                started,
                format!("the target has everything; RPO {} versions", rpo.versions),
            );

            self.promote(fenced_at).await?;

            let started = Instant::now();
            let c = self
                .target
                .checkpoint(&to_source, None, self.args.timeout)
                .await?;
            if !c.reached {
                bail!(
                    "the source did not get the target's writes back within {:?}",
                    self.args.timeout
                );
            }
            let buckets: Vec<String> = self.pairs.iter().map(|p| p.target.clone()).collect();
            let target = Site::new(self.target.admin.clone())?;
            self.resync(&target, &to_source, buckets).await?;
            self.phase_done("failback", started, "target -> source resync done".into());

            self.compare(Some(self.prefix())).await
        }
        .await;

        let started = Instant::now();
        let unfenced = self
            .source
            .admin::<meridian_api::FenceState>("POST", "/_meridian/unfence")
            .await;
        self.phase_done("unfence", started, "the source takes writes again".into());
        outcome?;
        unfenced?;
        self.cleanup().await;
        Ok(())
    }

    async fn outage(&mut self) -> anyhow::Result<()> {
        self.lag().await;
        let acked = self.workload().await?;

        let started = Instant::now();
        match &self.args.cut_command {
            Some(cmd) => run_shell(cmd)?,
            None => {
                self.source
                    .admin::<meridian_api::PauseState>(
                        "POST",
                        &format!("/_meridian/replication/pause?peer={}", self.to_target),
                    )
                    .await?;
            }
        }
        let cut_at = Instant::now();
        self.phase_done(
            "cut",
            started,
            match &self.args.cut_command {
                Some(cmd) => format!("ran `{cmd}`"),
                None => "paused the source's replication to the target, without draining".into(),
            },
        );

        let started = Instant::now();
        let rpo = self.measure_rpo(&acked, cut_at).await;
        self.phase_done(
            "loss",
            started,
            format!(
                "{} acknowledged versions ({} bytes, {:.2} s of writes) did not reach the target",
                rpo.versions, rpo.bytes, rpo.seconds
            ),
        );

        self.promote(cut_at).await?;

        let started = Instant::now();
        match &self.args.restore_command {
            Some(cmd) => run_shell(cmd)?,
            None if self.args.cut_command.is_none() => {
                self.source
                    .admin::<meridian_api::PauseState>(
                        "POST",
                        &format!("/_meridian/replication/resume?peer={}", self.to_target),
                    )
                    .await?;
            }
            None => {}
        }
        if !self.source.ready(self.args.timeout).await {
            bail!(
                "the source did not come back within {:?}",
                self.args.timeout
            );
        }
        let buckets: Vec<String> = self.pairs.iter().map(|p| p.source.clone()).collect();
        let source = Site::new(self.source.admin.clone())?;
        let to_target = self.to_target.clone();
        self.resync(&source, &to_target, buckets).await?;
        if let Some(to_source) = self.to_source.clone() {
            // The target's own writes while it was primary go back to the source.
            self.target
                .checkpoint(&to_source, None, self.args.timeout)
                .await?;
        }
        self.phase_done(
            "restore",
            started,
            "link restored; source -> target resync done".into(),
        );

        self.compare(Some(self.prefix())).await?;
        self.cleanup().await;
        Ok(())
    }
}

/// What differs between two regions' run-time keys: missing, extra, or another state,
/// expiry or set of grants.
pub fn key_differences(
    source: &meridian_api::KeyList,
    target: &meridian_api::KeyList,
) -> Vec<String> {
    use std::collections::BTreeMap;
    let runtime = |l: &meridian_api::KeyList| -> BTreeMap<String, meridian_api::KeyInfo> {
        l.keys
            .iter()
            .filter(|k| k.source == "runtime")
            .map(|k| (k.access_key.clone(), k.clone()))
            .collect()
    };
    let (s, t) = (runtime(source), runtime(target));
    let mut out = Vec::new();
    for (key, a) in &s {
        match t.get(key) {
            None => out.push(format!("key {key} missing on the target")),
            Some(b) => {
                if a.enabled != b.enabled {
                    out.push(format!(
                        "key {key} is {} on the source, {} on the target",
                        if a.enabled { "enabled" } else { "disabled" },
                        if b.enabled { "enabled" } else { "disabled" }
                    ));
                }
                if a.expires != b.expires {
                    out.push(format!("key {key} expires differently"));
                }
                if a.grants != b.grants {
                    let show = |g: &[meridian_api::GrantInfo]| {
                        g.iter()
                            .map(|g| format!("{}:{}", g.bucket, g.access))
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    out.push(format!(
                        "key {key} grants [{}] on the source, [{}] on the target",
                        show(&a.grants),
                        show(&b.grants)
                    ));
                }
            }
        }
    }
    for key in t.keys().filter(|k| !s.contains_key(*k)) {
        out.push(format!("key {key} only on the target"));
    }
    out
}
