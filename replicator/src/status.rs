//! What an operator reads about replication: per peer and bucket, what is pending (changes,
//! bytes, the age of the oldest — the lag), what failed last, and how far backfills and
//! resyncs got; and the checkpoint barrier, which waits until a peer has everything committed
//! before it was called. Every figure is computed from the outbox, the retry queue and the
//! job records, so it is exact after any restart.

use meridian_metadata::{now_nanos, BacklogFilter, JobKind, PeerBacklog, ReplicationJob};

pub use meridian_api::{BucketReport, CheckpointReport, JobReport, PausedBy, PeerReport, Pending};

pub(crate) fn pending_of(b: &PeerBacklog) -> Pending {
    Pending {
        pending_versions: b.changes,
        pending_bytes: b.bytes,
        lag_seconds: b
            .oldest_committed
            .map_or(0.0, |t| (now_nanos() - t).max(0) as f64 / 1e9),
        retrying: b.retrying,
        failed: b.failed,
        last_error: b.last_error.clone(),
    }
}

pub(crate) fn job_report(j: &ReplicationJob) -> JobReport {
    JobReport {
        bucket: j.bucket.clone(),
        kind: match j.kind {
            JobKind::Backfill => "backfill",
            JobKind::Resync => "resync",
        }
        .into(),
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

pub(crate) fn filter(bucket: Option<&str>, below_seq: Option<u64>) -> BacklogFilter {
    BacklogFilter {
        bucket: bucket.map(str::to_owned),
        below_seq,
    }
}
