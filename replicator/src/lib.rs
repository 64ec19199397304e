//! Geo-replication for Meridian: the peers a node replicates to, the bucket rules that say
//! what goes where, and one worker loop per peer that pushes committed changes — versions,
//! delete markers, tag changes — to it through aws-sdk-s3.
//!
//! Guarantees:
//! - nothing acknowledged is missed: every change is in the outbox (written in the same
//!   batch as the change), a peer's cursor moves only past changes whose outcome is durably
//!   settled, and failures wait in a durable retry queue, retried forever on a capped backoff;
//! - replicas are exact: same version id, mtime, ETag, checksums, headers, metadata and tags
//!   on Meridian peers, verified with a HEAD before a version counts as COMPLETED;
//! - no loops: replicas are never sent on;
//! - every figure an operator reads (pending versions and bytes, lag, checkpoints) is
//!   computed from durable state, exact after any restart.
//!
//! The server (`gateway`) owns HTTP: it supplies the bytes of stored objects through
//! [`ObjectSource`], records PENDING with each commit using [`Replicator::pending_peers`],
//! and applies replicas it receives using [`headers::ReplicaHeaders`].

mod backoff;
mod blank_key;
mod body;
mod compress;
pub use blank_key::sdk_key;
pub mod config;
mod error;
pub mod headers;
mod insecure;
mod jobs;
mod lock;
mod metrics;
mod peer;
mod pump;
pub use meridian_documents::replication as rules;
mod source;
mod status;
mod sync;
mod throttle;
mod transfer;
mod upload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meridian_metadata::{now_nanos, JobKind, MetaError, MetaStore, PeerStatus, ReplicationJob};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use config::{
    Compression, Leads, PeerConfig, PeerConfigError, PeerKind, PeerMode, ReplicationSettings,
    StagedBodies, StagedBody, Stamp,
};
pub use error::{ErrorClass, SendError};
pub use metrics::ReplicationMetrics;
pub use peer::{https_client_trusting, DestinationCheck};
pub use rules::{Change, Delivery, ReplicationConfig, RuleError};
/// Every bucket's replication rules, decoded once and kept in memory: every commit consults
/// them (to record PENDING).
pub type RulesCache = meridian_metadata::ConfigCache<ReplicationConfig>;

fn rules_cache(meta: MetaStore) -> RulesCache {
    RulesCache::new(meta, rules::CONFIG_DOCUMENT, |doc| {
        ReplicationConfig::from_json(doc).map_err(|e| e.to_string())
    })
}
pub use source::{BoxError, ObjectBytes, ObjectSource};

/// The kind of change a new version (or a change of its tags or lock) is for the rules: an
/// SSE-KMS version goes only where a rule selects SSE-KMS objects.
pub fn version_change(encryption: Option<&meridian_metadata::Encryption>) -> Change {
    match encryption.and_then(|e| e.mode) {
        Some(meridian_metadata::EncryptionMode::Kms) => Change::SseKmsVersion,
        _ => Change::Version,
    }
}
pub use status::{BucketReport, CheckpointReport, JobReport, PausedBy, PeerReport, Pending};

/// A `sync` peer that does not have a change it was waited for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsettled {
    pub peer: String,
    /// It refused the change (another node of this region that does not take this one for
    /// the partition's primary); the change stays queued for it only while this node leads
    /// the key ([`PeerConfig::leads`]). Else it timed out.
    pub refused: bool,
}

use peer::Peer;
use pump::Pump;
use sync::Settled;
use transfer::{metadata, Shared};

/// Cancel switches of running jobs by (peer, bucket), with the generation of their run.
type JobSwitches = Mutex<HashMap<(String, String), (u64, watch::Sender<bool>)>>;

struct PeerHandle {
    peer: Arc<Peer>,
    wakeup: Arc<Notify>,
    /// Who paused sending to the peer, while it is paused.
    paused: watch::Sender<Option<PausedBy>>,
}

/// The node setting that holds a peer's pause, so that it outlives the process.
fn pause_setting(peer: &str) -> String {
    format!("replication-paused/{peer}")
}

/// The pause of `peer` kept in the metadata, if any. An unreadable record counts as paused
/// (by "unknown"): resuming by mistake is the worse error.
fn stored_pause(meta: &MetaStore, peer: &str) -> Option<PausedBy> {
    match meta.setting(&pause_setting(peer)) {
        Ok(None) => None,
        Ok(Some(raw)) => Some(serde_json::from_slice(&raw).unwrap_or_else(|e| {
            tracing::error!(%peer, error = %e, "unreadable pause record; the peer stays paused");
            PausedBy {
                principal: "unknown".into(),
                since: 0,
            }
        })),
        Err(e) => {
            tracing::error!(%peer, error = %e, "reading the pause record failed; the peer starts paused");
            Some(PausedBy {
                principal: "unknown".into(),
                since: 0,
            })
        }
    }
}

/// The replication side of a node. Cheap to clone.
#[derive(Clone)]
pub struct Replicator {
    shared: Arc<Shared>,
    peers: Arc<Vec<PeerHandle>>,
    metrics: ReplicationMetrics,
    /// Cancel switches of the backfills and resyncs running in this process, with the
    /// generation of the run they belong to.
    jobs: Arc<JobSwitches>,
}

impl Replicator {
    /// A replicator for `peers` (already validated), its metrics in `registry`; nothing runs
    /// until [`Replicator::spawn`].
    pub fn new(
        meta: MetaStore,
        source: Arc<dyn ObjectSource>,
        peers: Vec<PeerConfig>,
        settings: ReplicationSettings,
        region: String,
        registry: &prometheus::Registry,
    ) -> Replicator {
        let metrics = ReplicationMetrics::new(registry);
        // Data streams in flight per peer: enough to keep the link busy, few enough that
        // memory stays at a few stripes each.
        let streams = settings.workers.clamp(4, 8);
        let peers = peers
            .into_iter()
            .map(|config| {
                let peer_metrics = metrics.peer(&config.name);
                let paused = stored_pause(&meta, &config.name);
                if let Some(by) = &paused {
                    tracing::warn!(peer = %config.name, by = %by.principal, since = by.since, "sending to this peer is paused (resume with `meridian replication resume`)");
                }
                PeerHandle {
                    peer: Arc::new(Peer::new(config, streams, peer_metrics)),
                    wakeup: Arc::new(Notify::new()),
                    paused: watch::channel(paused).0,
                }
            })
            .collect();
        Replicator {
            shared: Arc::new(Shared {
                rules: Arc::new(rules_cache(meta.clone())),
                meta,
                source,
                settings,
                region,
                waiters: sync::Waiters::default(),
            }),
            peers: Arc::new(peers),
            metrics,
            jobs: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Starts one worker loop per peer (they stop when `shutdown` flips) and resumes the
    /// backfills and resyncs a previous run left unfinished.
    pub fn spawn(&self, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let pumps = self
            .peers
            .iter()
            .map(|h| {
                let pump = Pump {
                    peer: h.peer.clone(),
                    shared: self.shared.clone(),
                    wakeup: h.wakeup.clone(),
                    paused: h.paused.subscribe(),
                };
                tokio::spawn(pump.run(shutdown.clone()))
            })
            .collect();
        let this = self.clone();
        tokio::spawn(async move {
            match metadata(&this.shared.meta, |m| m.replication_jobs()).await {
                Ok(jobs) => {
                    for job in jobs.into_iter().filter(ReplicationJob::is_running) {
                        this.run_job(job);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading replication jobs; unfinished ones do not resume")
                }
            }
        });
        pumps
    }

    fn handle(&self, peer: &str) -> Result<&PeerHandle, String> {
        self.peers
            .iter()
            .find(|h| h.peer.name() == peer)
            .ok_or_else(|| format!("peer {peer:?} is not configured"))
    }

    /// `Ok` when `peer` is configured; else why not.
    pub fn handle_exists(&self, peer: &str) -> Result<(), String> {
        self.handle(peer).map(|_| ())
    }

    /// The configured peers.
    pub fn peers(&self) -> impl Iterator<Item = &PeerConfig> {
        self.peers.iter().map(|h| &h.peer.config)
    }

    pub fn has_peers(&self) -> bool {
        !self.peers.is_empty()
    }

    /// The S3 client of a peer (proxy reads go through it).
    pub fn peer_client(&self, peer: &str) -> Option<aws_sdk_s3::Client> {
        self.handle(peer).ok().map(|h| h.peer.client().clone())
    }

    /// Every bucket's replication rules, cached.
    pub fn rules(&self) -> &RulesCache {
        &self.shared.rules
    }

    /// The configured peers that must take this change under the bucket's current rules: the
    /// PENDING statuses to commit with it. Blocking on a rules-cache miss.
    pub fn pending_peers(
        &self,
        bucket: &str,
        key: &str,
        tags: &[(String, String)],
        change: Change,
    ) -> Result<Vec<String>, MetaError> {
        if self.peers.is_empty() {
            return Ok(Vec::new());
        }
        let Some(rules) = self.shared.rules.get(bucket)? else {
            return Ok(Vec::new());
        };
        Ok(rules
            .targets(key, tags, change)
            .into_iter()
            .map(|t| t.peer)
            .filter(|p| self.peers().any(|c| &c.name == p))
            .collect())
    }

    /// Whether `bucket` here sends its versions to `dest_bucket` in the region named
    /// `region` (an enabled rule to a Meridian peer of that region): whether that region may
    /// read `bucket` through us as a copy of its own (a proxy read). Blocking on a
    /// rules-cache miss.
    pub fn replicates_to(
        &self,
        bucket: &str,
        region: &str,
        dest_bucket: &str,
    ) -> Result<bool, MetaError> {
        let Some(rules) = self.shared.rules.get(bucket)? else {
            return Ok(false);
        };
        Ok(rules.rules.iter().filter(|r| r.enabled).any(|r| {
            r.destination.bucket == dest_bucket
                && self.peers().any(|p| {
                    p.name == r.destination.peer
                        && p.kind == PeerKind::Meridian
                        && p.region == region
                })
        }))
    }

    /// Tells the worker loops that commits queued work for them.
    pub fn changed(&self) {
        for h in self.peers.iter() {
            h.wakeup.notify_one();
        }
    }

    /// Asks `peer` whether `bucket` exists there with versioning enabled.
    pub async fn check_destination(&self, peer: &str, bucket: &str) -> DestinationCheck {
        match self.handle(peer) {
            Ok(h) => h.peer.check_destination(bucket).await,
            Err(e) => DestinationCheck::Unknown(e),
        }
    }

    /// Pauses sending to `peer` (`Some`: who and when) or resumes it (`None`): changes keep
    /// queuing and nothing is lost; the lag shows it. Transfers in flight are abandoned and
    /// sent again after the resume. The pause is stored before it takes effect, so a restart
    /// keeps a paused peer paused; pausing a paused peer keeps the first pause. Returns the
    /// state now in force.
    pub async fn set_paused(
        &self,
        peer: &str,
        by: Option<PausedBy>,
    ) -> Result<Option<PausedBy>, String> {
        let h = self.handle(peer)?;
        let current = h.paused.borrow().clone();
        let next = match (current, by) {
            (Some(first), Some(_)) => return Ok(Some(first)),
            (None, None) => return Ok(None),
            (_, next) => next,
        };
        let value = next
            .as_ref()
            .map(|b| serde_json::to_vec(b).expect("a pause record serializes"));
        let name = pause_setting(peer);
        metadata(&self.shared.meta, move |m| {
            m.put_setting(&name, value.as_deref())
        })
        .await
        .map_err(|e| format!("storing the pause: {e}"))?;
        h.paused.send_replace(next.clone());
        h.wakeup.notify_one();
        Ok(next)
    }

    /// Waits until every `mode = "sync"` peer among `peers` has the version, verified, or
    /// its `sync_timeout` passed; returns the peers that timed out.
    pub async fn wait_synced(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        peers: &[String],
    ) -> Vec<String> {
        self.wait_settled(bucket, key, version_id, peers, false, Duration::ZERO)
            .await
            .into_iter()
            .map(|u| u.peer)
            .collect()
    }

    /// [`Replicator::wait_synced`] allowing `extra` beyond each peer's `sync_timeout` (a
    /// large version takes longer to send), saying of each peer that does not have it
    /// whether it refused it.
    pub async fn wait_synced_within(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        peers: &[String],
        extra: Duration,
    ) -> Vec<Unsettled> {
        self.wait_settled(bucket, key, version_id, peers, false, extra)
            .await
    }

    /// [`Replicator::wait_synced_within`] for the removal of a version (queued as
    /// `DeleteVersion`): until each `sync` peer among `peers` removed it too (or had nothing
    /// to remove).
    pub async fn wait_removed(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        peers: &[String],
    ) -> Vec<Unsettled> {
        self.wait_settled(bucket, key, version_id, peers, true, Duration::ZERO)
            .await
    }

    async fn wait_settled(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        peers: &[String],
        removal: bool,
        extra: Duration,
    ) -> Vec<Unsettled> {
        let sync: Vec<&PeerHandle> = self
            .peers
            .iter()
            .filter(|h| h.peer.config.mode == PeerMode::Sync && peers.contains(&h.peer.config.name))
            .collect();
        if sync.is_empty() {
            return Vec::new();
        }
        let waits = sync.into_iter().map(|h| async move {
            let name = h.peer.name().to_owned();
            let done = self.shared.waiters.register((
                name.clone(),
                bucket.to_owned(),
                key.to_owned(),
                version_id.to_owned(),
                removal,
            ));
            h.wakeup.notify_one();
            // It may have been settled before the waiter was in place (a removal: the
            // waiters remember it).
            let (b, k, v, p) = (
                bucket.to_owned(),
                key.to_owned(),
                version_id.to_owned(),
                name.clone(),
            );
            let already = !removal
                && metadata(&self.shared.meta, move |m| {
                    Ok(m.get_version(&b, &k, Some(&v))?.is_some_and(|r| {
                        r.replication.peers.get(&p) == Some(&PeerStatus::Completed)
                    }))
                })
                .await
                .unwrap_or(false);
            if already {
                return None;
            }
            match tokio::time::timeout(h.peer.config.sync_timeout + extra, done).await {
                Ok(Ok(Settled::Done)) => None,
                Ok(Ok(Settled::Refused)) => Some(Unsettled {
                    peer: name,
                    refused: true,
                }),
                // Timed out, or the worker loop is gone.
                Ok(Err(_)) | Err(_) => Some(Unsettled {
                    peer: name,
                    refused: false,
                }),
            }
        });
        futures::future::join_all(waits)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Per peer (optionally one bucket): pending work, failures, progress of jobs.
    pub async fn status(&self, bucket: Option<&str>) -> Result<Vec<PeerReport>, String> {
        let mut out = Vec::new();
        let jobs = metadata(&self.shared.meta, |m| m.replication_jobs())
            .await
            .map_err(|e| e.to_string())?;
        for h in self.peers.iter() {
            let (name, f) = (h.peer.name().to_owned(), status::filter(bucket, None));
            let (total, by_bucket) =
                metadata(&self.shared.meta, move |m| m.peer_backlog(&name, &f))
                    .await
                    .map_err(|e| e.to_string())?;
            let c = &h.peer.config;
            out.push(PeerReport {
                peer: c.name.clone(),
                endpoint: c.endpoint.clone(),
                kind: match c.kind {
                    PeerKind::Meridian => "meridian",
                    PeerKind::S3 => "s3",
                }
                .into(),
                mode: match c.mode {
                    PeerMode::Async => "async",
                    PeerMode::Sync => "sync",
                }
                .into(),
                paused: h.paused.borrow().is_some(),
                paused_by: h.paused.borrow().clone(),
                pending: status::pending_of(&total),
                sent_versions: h.peer.metrics.sent_versions.get(),
                sent_bytes: h.peer.metrics.sent_bytes.get(),
                buckets: by_bucket
                    .iter()
                    .map(|(b, p)| BucketReport {
                        bucket: b.clone(),
                        pending: status::pending_of(p),
                    })
                    .collect(),
                jobs: jobs
                    .iter()
                    .filter(|j| j.peer == c.name && bucket.is_none_or(|b| b == j.bucket))
                    .map(status::job_report)
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Brings the pending gauges up to date (called when metrics are read).
    pub async fn refresh_metrics(&self) {
        match self.status(None).await {
            Ok(reports) => {
                for r in reports {
                    let m = &self.metrics;
                    m.pending_versions
                        .with_label_values(&[&r.peer])
                        .set(r.pending.pending_versions as i64);
                    m.pending_bytes
                        .with_label_values(&[&r.peer])
                        .set(r.pending.pending_bytes as i64);
                    m.lag_seconds
                        .with_label_values(&[&r.peer])
                        .set(r.pending.lag_seconds as i64);
                    m.retrying_versions
                        .with_label_values(&[&r.peer])
                        .set(r.pending.retrying as i64);
                    m.failed_versions
                        .with_label_values(&[&r.peer])
                        .set(r.pending.failed as i64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "computing replication backlog for metrics"),
        }
    }

    /// Waits until `peer` has every change (of `bucket`, if given) committed before this
    /// call, or `timeout` passed; says which.
    pub async fn checkpoint(
        &self,
        peer: &str,
        bucket: Option<&str>,
        timeout: Duration,
    ) -> Result<CheckpointReport, String> {
        let h = self.handle(peer)?;
        let below = self.shared.meta.outbox_watermark();
        let started = Instant::now();
        h.wakeup.notify_one();
        loop {
            // Without a bucket the cursor and the retry queue answer cheaply; with one, the
            // outbox past the cursor is read for that bucket's entries.
            let (name, f) = (peer.to_owned(), status::filter(bucket, Some(below)));
            let reached = metadata(&self.shared.meta, move |m| match f.bucket {
                None => m.peer_reached(&name, below),
                Some(_) => m.peer_backlog(&name, &f).map(|(b, _)| b.changes == 0),
            })
            .await
            .map_err(|e| e.to_string())?;
            if reached || started.elapsed() >= timeout {
                let (name, f) = (peer.to_owned(), status::filter(bucket, Some(below)));
                let (pending, _) = metadata(&self.shared.meta, move |m| m.peer_backlog(&name, &f))
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(CheckpointReport {
                    peer: peer.to_owned(),
                    bucket: bucket.map(str::to_owned),
                    reached,
                    waited_seconds: started.elapsed().as_secs_f64(),
                    pending: status::pending_of(&pending),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts (or continues) a backfill or resync of `bucket` towards `peer`.
    /// `from_scratch` restarts the walk at the bucket's first key.
    pub async fn start_job(
        &self,
        peer: &str,
        bucket: &str,
        kind: JobKind,
        from_scratch: bool,
    ) -> Result<JobReport, String> {
        self.handle(peer)?;
        let (p, b) = (peer.to_owned(), bucket.to_owned());
        let existing = metadata(&self.shared.meta, move |m| {
            m.get_bucket(&b)?
                .ok_or(MetaError::NoSuchBucket { bucket: b.clone() })?;
            m.replication_job(&p, &b)
        })
        .await
        .map_err(|e| e.to_string())?;
        let continue_existing = existing
            .as_ref()
            .is_some_and(|j| j.is_running() && j.kind == kind && !from_scratch);
        let job = match existing {
            Some(j) if continue_existing => j,
            _ => ReplicationJob {
                peer: peer.to_owned(),
                bucket: bucket.to_owned(),
                kind,
                started: now_nanos(),
                cutoff: (kind == JobKind::Backfill).then(now_nanos),
                ..ReplicationJob::default()
            },
        };
        let j = job.clone();
        metadata(&self.shared.meta, move |m| m.put_replication_job(&j))
            .await
            .map_err(|e| e.to_string())?;
        self.run_job(job.clone());
        Ok(status::job_report(&job))
    }

    /// Starts a backfill of `bucket` towards `peer` unless one was ever started (a rule with
    /// existing-object replication was put).
    pub async fn backfill_once(&self, peer: &str, bucket: &str) -> Result<(), String> {
        let (p, b) = (peer.to_owned(), bucket.to_owned());
        let existing = metadata(&self.shared.meta, move |m| m.replication_job(&p, &b))
            .await
            .map_err(|e| e.to_string())?;
        if existing.is_none() {
            self.start_job(peer, bucket, JobKind::Backfill, false)
                .await?;
        }
        Ok(())
    }

    /// Stops the backfill or resync of `bucket` towards `peer` (its progress is kept).
    pub fn cancel_job(&self, peer: &str, bucket: &str) -> Result<(), String> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        match jobs.get(&(peer.to_owned(), bucket.to_owned())) {
            Some((_, cancel)) => {
                cancel.send_replace(true);
                Ok(())
            }
            None => Err(format!(
                "no job of peer {peer:?} on bucket {bucket:?} is running"
            )),
        }
    }

    /// Runs `job` in the background, replacing a job of the same peer and bucket.
    fn run_job(&self, job: ReplicationJob) {
        let Ok(h) = self.handle(&job.peer) else {
            tracing::warn!(peer = %job.peer, bucket = %job.bucket, "replication job for a peer that is no longer configured; not resumed");
            return;
        };
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let key = (job.peer.clone(), job.bucket.clone());
        if let Some((_, old)) = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), (generation, cancel_tx))
        {
            old.send_replace(true);
        }
        let (shared, peer, wakeup, jobs) = (
            self.shared.clone(),
            h.peer.clone(),
            h.wakeup.clone(),
            self.jobs.clone(),
        );
        tokio::spawn(async move {
            jobs::run_job(shared, peer, job, wakeup, cancel_rx).await;
            let mut jobs = jobs.lock().unwrap_or_else(|e| e.into_inner());
            // Only forget the switch if it is still this run's.
            if jobs.get(&key).is_some_and(|(g, _)| *g == generation) {
                jobs.remove(&key);
            }
        });
    }
}
