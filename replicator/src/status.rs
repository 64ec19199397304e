//! What an operator reads about replication: per peer and bucket, what is pending (changes,
//! bytes, the age of the oldest — the lag), what failed last, and how far backfills and
//! resyncs got; and the checkpoint barrier, which waits until a peer has everything committed
//! before it was called. Every figure is computed from the outbox, the retry queue and the
//! job records, so it is exact after any restart.

use meridian_metadata::{now_nanos, BacklogFilter, JobKind, PeerBacklog, ReplicationJob};
use serde::Serialize;

/// Pending work, as reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pending {
    pub versions: u64,
    pub bytes: u64,
    /// Age of the oldest pending change; 0 when nothing is pending.
    pub lag_seconds: f64,
    /// Pending changes that failed at least once, and of those, permanently.
    pub retrying: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

impl Pending {
    pub(crate) fn of(b: &PeerBacklog) -> Pending {
        Pending {
            versions: b.changes,
            bytes: b.bytes,
            lag_seconds: b
                .oldest_committed
                .map_or(0.0, |t| (now_nanos() - t).max(0) as f64 / 1e9),
            retrying: b.retrying,
            failed: b.failed,
            last_error: b.last_error.clone(),
        }
    }
}

/// A bucket's share of a peer's pending work.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketReport {
    pub bucket: String,
    #[serde(flatten)]
    pub pending: Pending,
}

/// A backfill or resync, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobReport {
    pub bucket: String,
    pub kind: &'static str,
    pub running: bool,
    pub cancelled: bool,
    pub scanned: u64,
    pub queued: u64,
    pub queued_bytes: u64,
    pub skipped: u64,
    /// Unix seconds.
    pub started: i64,
    pub finished: Option<i64>,
}

impl JobReport {
    pub(crate) fn of(j: &ReplicationJob) -> JobReport {
        JobReport {
            bucket: j.bucket.clone(),
            kind: match j.kind {
                JobKind::Backfill => "backfill",
                JobKind::Resync => "resync",
            },
            running: j.is_running(),
            cancelled: j.cancelled,
            scanned: j.scanned,
            queued: j.queued,
            queued_bytes: j.queued_bytes,
            skipped: j.skipped,
            started: j.started / 1_000_000_000,
            finished: j.finished.map(|f| f / 1_000_000_000),
        }
    }
}

/// One peer, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerReport {
    pub peer: String,
    pub endpoint: String,
    pub kind: &'static str,
    pub mode: &'static str,
    pub paused: bool,
    #[serde(flatten)]
    pub pending: Pending,
    /// Since this process started.
    pub sent_versions: u64,
    pub sent_bytes: u64,
    pub buckets: Vec<BucketReport>,
    pub jobs: Vec<JobReport>,
}

/// What a checkpoint found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointReport {
    pub peer: String,
    pub bucket: Option<String>,
    /// The peer has every change committed before the checkpoint was called.
    pub reached: bool,
    pub waited_seconds: f64,
    /// What was still pending of those changes when the checkpoint returned.
    pub pending: Pending,
}

pub(crate) fn filter(bucket: Option<&str>, below_seq: Option<u64>) -> BacklogFilter {
    BacklogFilter {
        bucket: bucket.map(str::to_owned),
        below_seq,
    }
}
