//! The worker loop of one peer: it tails the outbox from the peer's cursor, runs up to
//! `workers` transfers at once (changes to the same key one after the other, in commit
//! order), settles each outcome durably, and moves the cursor only past changes whose outcome
//! is settled — done, skipped, or written to the retry queue. Retries come back from that
//! queue when due. Killing the process at any point loses nothing: what was not settled is
//! still past the cursor, or still in the retry queue, and is sent again (applying a change
//! twice is a no-op on the peer).

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use meridian_metadata::{
    now_nanos, Origin, OutboxEntry, PeerStatus, RetryRecord, Settlement, StatusUpdate,
};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::backoff;
use crate::error::{ErrorClass, SendError};
use crate::peer::Peer;
use crate::transfer::{metadata, send_change, Sent, Shared};

/// How often the loop looks for due retries and new entries when nothing wakes it.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// The cursor is written at most this often (a change settled but not yet behind the cursor
/// at a crash is sent again, which the peer ignores).
const ACK_EVERY: Duration = Duration::from_millis(100);
/// Outbox entries read per page, and pages read per turn of the loop at most.
const PAGE: usize = 512;
const MAX_PAGES_PER_TURN: usize = 16;

/// A finished transfer: the job, how sending went, and whether its outcome is stored.
type Finished = (Job, Result<Sent, SendError>, Result<(), SendError>);

/// A change to run: fresh from the outbox, or due from the retry queue.
enum Job {
    Fresh(OutboxEntry),
    Retry(RetryRecord),
}

impl Job {
    fn entry(&self) -> &OutboxEntry {
        match self {
            Job::Fresh(e) => e,
            Job::Retry(r) => &r.entry,
        }
    }

    fn key(&self) -> (String, String) {
        let e = self.entry();
        (e.bucket.clone(), e.key.clone())
    }
}

/// Whether `peer` takes this entry at all (decided at commit time; rules are checked again
/// when it is sent).
fn wanted(entry: &OutboxEntry, peer: &str, mirror: bool) -> bool {
    entry.is_for(peer)
        && (mirror
            || entry.kind.is_metadata_only()
            || !matches!(entry.origin, Origin::Replica { .. }))
}

/// Why a copy to another node of this region was dropped: that node does not take this one
/// for the partition's primary.
const NOT_LEADER: &str = "this node no longer leads the partition";

/// How an attempt is settled: COMPLETED, no longer wanted, or queued for a retry (PENDING
/// for transient failures, FAILED for those the peer will not fix by itself).
fn settlement_for(
    job: &Job,
    result: &Result<Sent, SendError>,
    peer: &str,
    max_backoff: Duration,
) -> Settlement {
    let entry = job.entry();
    // A removed version has no status left to keep (and a null version written since must
    // not take this one's).
    let metadata_only =
        entry.kind.is_metadata_only() || entry.kind == meridian_metadata::OutboxKind::DeleteVersion;
    let retried = match job {
        Job::Retry(r) => Some(r.clone()),
        Job::Fresh(_) => None,
    };
    match result {
        Ok(Sent::Done { target_version_id }) => Settlement {
            status: if metadata_only {
                StatusUpdate::Keep
            } else {
                StatusUpdate::Set(PeerStatus::Completed)
            },
            target_version_id: target_version_id.clone(),
            retried,
            retry: None,
            forget_upload: true,
        },
        Ok(Sent::Skipped(reason)) => {
            tracing::debug!(%peer, bucket = %entry.bucket, key = %entry.key, version = %entry.version_id, reason, "nothing to replicate");
            Settlement {
                status: if metadata_only {
                    StatusUpdate::Keep
                } else {
                    StatusUpdate::Remove
                },
                target_version_id: None,
                retried,
                retry: None,
                forget_upload: true,
            }
        }
        Err(e) => {
            let attempts = retried.as_ref().map_or(0, |r| r.attempts) + 1;
            let delay = backoff::delay(attempts, max_backoff);
            let permanent = e.class == ErrorClass::Permanent;
            tracing::warn!(
                %peer, bucket = %entry.bucket, key = %entry.key, version = %entry.version_id,
                attempts, retry_in = ?delay, permanent, error = %e,
                "replication failed; will retry"
            );
            let status = match (metadata_only, permanent) {
                (true, _) => StatusUpdate::Keep,
                (false, true) => StatusUpdate::Set(PeerStatus::Failed {
                    error: e.message.clone(),
                    attempts,
                }),
                (false, false) => StatusUpdate::Set(PeerStatus::Pending),
            };
            Settlement {
                status,
                target_version_id: None,
                retry: Some(RetryRecord {
                    entry: entry.clone(),
                    attempts,
                    next_attempt: now_nanos() + delay.as_nanos() as i64,
                    last_error: e.message.clone(),
                    permanent,
                }),
                retried,
                forget_upload: false,
            }
        }
    }
}

pub(crate) struct Pump {
    pub peer: Arc<Peer>,
    pub shared: Arc<Shared>,
    pub wakeup: Arc<Notify>,
    /// Who paused sending to this peer, while it is paused.
    pub paused: watch::Receiver<Option<crate::PausedBy>>,
}

struct State {
    /// Next outbox sequence to read.
    next_read: u64,
    /// Acknowledged up to (exclusive): the peer's cursor.
    acked: u64,
    /// Fresh entries read and not yet settled: the cursor stays below the first of them.
    fresh: BTreeSet<u64>,
    /// Sequences of retry records queued or running.
    retrying: HashSet<u64>,
    waiting: VecDeque<Job>,
    busy_keys: HashSet<(String, String)>,
    /// The last failure was the peer being unreachable.
    peer_down: bool,
    next_retry_scan: tokio::time::Instant,
    /// New outbox entries may exist (a commit woke the loop, or the last page was full).
    outbox_dirty: bool,
    next_ack: tokio::time::Instant,
}

impl State {
    fn at(cursor: u64) -> State {
        State {
            next_read: cursor,
            acked: cursor,
            fresh: BTreeSet::new(),
            retrying: HashSet::new(),
            waiting: VecDeque::new(),
            busy_keys: HashSet::new(),
            peer_down: false,
            next_retry_scan: tokio::time::Instant::now(),
            outbox_dirty: true,
            next_ack: tokio::time::Instant::now(),
        }
    }
}

impl Pump {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let peer = self.peer.name().to_owned();
        let cursor = loop {
            let p = peer.clone();
            match metadata(&self.shared.meta, move |m| m.outbox_cursor(&p)).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::error!(%peer, error = %e, "reading the replication cursor; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        };
        tracing::info!(%peer, endpoint = %self.peer.config.endpoint, cursor, "replicating to peer");
        let mut state = State::at(cursor);
        let workers = self.shared.settings.workers;
        let window = workers * 8;
        let mut running: JoinSet<Finished> = JoinSet::new();
        loop {
            let pause = self.paused.borrow().clone();
            if let Some(by) = pause {
                // Transfers in flight are dropped unsettled: their changes are still past the
                // cursor or in the retry queue, and go out again after the resume.
                running.abort_all();
                while running.join_next().await.is_some() {}
                state = State::at(state.acked);
                self.peer.metrics.paused.set(1);
                self.peer.metrics.paused_since.set(by.since);
                tracing::info!(%peer, by = %by.principal, "replication paused");
                tokio::select! {
                    _ = self.paused.wait_for(Option::is_none) => {}
                    _ = shutdown.changed() => return,
                }
                self.peer.metrics.paused.set(0);
                self.peer.metrics.paused_since.set(0);
                tracing::info!(%peer, "replication resumed");
                continue;
            }
            let more = match self.refill(&mut state, window).await {
                Ok(more) => more,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "reading replication work failed; will retry");
                    false
                }
            };
            self.start_jobs(&mut state, &mut running, workers);
            let now = tokio::time::Instant::now();
            if now >= state.next_ack || running.is_empty() {
                self.advance_cursor(&mut state).await;
                state.next_ack = now + ACK_EVERY;
            }
            let next_wake = if more && state.waiting.len() < window {
                now
            } else {
                state
                    .next_retry_scan
                    .min(now + IDLE_POLL)
                    .min(if running.is_empty() {
                        now + IDLE_POLL
                    } else {
                        state.next_ack
                    })
            };
            tokio::select! {
                Some(done) = running.join_next() => match done {
                    Ok((job, result, settled)) => self.finish(&mut state, job, result, settled).await,
                    Err(e) => tracing::error!(%peer, error = %e, "a replication transfer panicked"),
                },
                _ = self.wakeup.notified() => state.outbox_dirty = true,
                _ = self.paused.changed() => {}
                _ = tokio::time::sleep_until(next_wake) => state.outbox_dirty = true,
                _ = shutdown.changed() => {
                    // In-flight transfers are dropped: their changes are still past the
                    // cursor or in the retry queue, and resume after the restart.
                    running.abort_all();
                    return;
                }
            }
        }
    }

    /// Reads new outbox entries and due retries into the waiting queue, up to `window`.
    /// Returns whether more outbox entries may be ready to read right away.
    async fn refill(&self, state: &mut State, window: usize) -> Result<bool, SendError> {
        let peer = self.peer.name().to_owned();
        let mut more = false;
        // Entries for no peer (or other peers) are stepped over in pages; a bounded number
        // of pages per turn keeps the loop responsive to finished transfers.
        for _ in 0..MAX_PAGES_PER_TURN {
            if state.waiting.len() >= window || !state.outbox_dirty {
                break;
            }
            let (from, limit) = (state.next_read, PAGE);
            let page = metadata(&self.shared.meta, move |m| m.outbox_read(from, limit)).await?;
            more = page.len() == limit;
            state.outbox_dirty = more;
            for entry in page {
                state.next_read = entry.seq + 1;
                if wanted(&entry, &peer, self.peer.config.mirror) {
                    state.fresh.insert(entry.seq);
                    state.waiting.push_back(Job::Fresh(entry));
                }
            }
            if !more {
                break;
            }
        }
        // Retries already queued are still in the store until settled: scan again only once
        // they are out of the way, or when the next one may be due.
        let now = tokio::time::Instant::now();
        if state.waiting.len() < window && now >= state.next_retry_scan {
            let limit = window - state.waiting.len();
            let p = peer.clone();
            let due = metadata(&self.shared.meta, move |m| {
                let due = m.replication_retries_due(&p, now_nanos(), limit)?;
                let next = m.replication_next_retry(&p)?;
                Ok((due, next))
            })
            .await?;
            let (due, next) = due;
            for record in due {
                if state.retrying.insert(record.entry.seq) {
                    state.waiting.push_back(Job::Retry(record));
                }
            }
            // The soonest record may be one already running (due in the past): then look
            // again at the idle pace.
            let wait = match next.map(|t| t - now_nanos()) {
                Some(ahead) if ahead > 0 => Duration::from_nanos(ahead as u64),
                _ => IDLE_POLL,
            };
            state.next_retry_scan = now + wait.clamp(Duration::from_millis(20), IDLE_POLL);
        }
        Ok(more)
    }

    /// Starts waiting jobs, in order, while workers are free; a job waits while an earlier
    /// change of the same key is running or waiting.
    fn start_jobs(&self, state: &mut State, running: &mut JoinSet<Finished>, workers: usize) {
        let mut blocked: HashSet<(String, String)> = HashSet::new();
        let mut i = 0;
        while running.len() < workers && i < state.waiting.len() {
            let key = state.waiting[i].key();
            if state.busy_keys.contains(&key) || blocked.contains(&key) {
                blocked.insert(key);
                i += 1;
                continue;
            }
            let job = state.waiting.remove(i).expect("index in range");
            state.busy_keys.insert(key);
            let (shared, peer) = (self.shared.clone(), self.peer.clone());
            // The task settles its own outcome, so that settlements of concurrent transfers
            // share RocksDB's synced writes instead of queueing behind this loop.
            running.spawn(async move {
                let result = match send_change(&shared, &peer, job.entry()).await {
                    // Another node of this region answers that this node does not lead the
                    // version's partition in its layout. If this node does not lead it in
                    // its own either, the copy is moot (only the partition's primary sends
                    // copies); if it does, the other node's layout is behind (or this node
                    // led, lost and regained the partition): tried again, as a transient
                    // failure. Either way a writer waiting for it learns of the refusal.
                    Err(e)
                        if peer.config.mirror
                            && e.code.as_deref() == Some("OperationAborted")
                            && !peer.config.leads.as_ref().is_some_and(|leads| {
                                (leads.0)(&job.entry().bucket, &job.entry().key)
                            }) =>
                    {
                        Ok(Sent::Skipped(NOT_LEADER))
                    }
                    // A removal for a bucket the other node no longer has: the bucket was
                    // deleted after the version (its copy, sent before, had reached the
                    // bucket), so there is nothing left to remove.
                    Err(e)
                        if peer.config.mirror
                            && job.entry().kind == meridian_metadata::OutboxKind::DeleteVersion
                            && e.code.as_deref() == Some("NoSuchBucket") =>
                    {
                        Ok(Sent::Skipped("the bucket is gone on that node"))
                    }
                    other => other,
                };
                let settlement =
                    settlement_for(&job, &result, peer.name(), shared.settings.max_backoff);
                let (p, entry) = (peer.name().to_owned(), job.entry().clone());
                let settled = metadata(&shared.meta, move |m| {
                    m.settle_replication(&p, &entry, settlement)
                })
                .await;
                (job, result, settled)
            });
        }
    }

    /// Books a finished job; a job whose outcome could not be stored runs again.
    async fn finish(
        &self,
        state: &mut State,
        job: Job,
        result: Result<Sent, SendError>,
        settled: Result<(), SendError>,
    ) {
        let entry = job.entry().clone();
        state
            .busy_keys
            .remove(&(entry.bucket.clone(), entry.key.clone()));
        if let Err(e) = settled {
            tracing::error!(peer = %self.peer.name(), seq = entry.seq, error = %e, "recording a replication outcome failed; the change runs again");
            match job {
                Job::Fresh(_) => state.waiting.push_front(job),
                // Still in the retry queue: it is read again when due.
                Job::Retry(_) => {
                    state.retrying.remove(&entry.seq);
                }
            }
            return;
        }
        self.account(&entry, &result);
        match job {
            Job::Fresh(_) => {
                state.fresh.remove(&entry.seq);
            }
            Job::Retry(_) => {
                state.retrying.remove(&entry.seq);
            }
        }
        if result.is_err() {
            // Its retry is due after the backoff: look for it then at the latest.
            let soon = tokio::time::Instant::now() + self.shared.settings.max_backoff;
            state.next_retry_scan = state.next_retry_scan.min(soon);
        }
        self.note_reachability(state, &result).await;
    }

    /// Metrics of a settled change, and writers waiting for it in sync mode.
    fn account(&self, entry: &OutboxEntry, result: &Result<Sent, SendError>) {
        let m = &self.peer.metrics;
        // Removals are remembered once settled (writers may wait for them after).
        let removal = entry.kind == meridian_metadata::OutboxKind::DeleteVersion;
        let wait_key = || {
            (
                self.peer.name().to_owned(),
                entry.bucket.clone(),
                entry.key.clone(),
                entry.version_id.clone(),
                removal,
            )
        };
        match result {
            Ok(Sent::Done { .. }) => {
                m.sent_versions.inc();
                let age = (now_nanos() - entry.committed).max(0) as f64 / 1e9;
                m.latency.observe(age);
                if removal || !self.shared.waiters.is_empty() {
                    self.shared.waiters.done(&wait_key());
                }
            }
            Ok(Sent::Skipped(NOT_LEADER)) => self.shared.waiters.refused(&wait_key()),
            // A removal with nothing left to remove there is settled too.
            Ok(Sent::Skipped(_)) if removal => self.shared.waiters.done(&wait_key()),
            Ok(Sent::Skipped(_)) => {}
            Err(e) => {
                if self.peer.config.mirror && e.code.as_deref() == Some("OperationAborted") {
                    self.shared.waiters.refused(&wait_key());
                }
                m.failure(match (&e.code, e.unreachable) {
                    (Some(code), _) => code.as_str(),
                    (None, true) => "unreachable",
                    (None, false) if e.class == ErrorClass::Permanent => "permanent",
                    (None, false) => "transient",
                })
            }
        }
    }

    /// When the peer answers again after being unreachable, everything that failed while it
    /// was away is made due now instead of waiting out its backoff.
    async fn note_reachability(&self, state: &mut State, result: &Result<Sent, SendError>) {
        match result {
            Err(e) if e.unreachable => state.peer_down = true,
            Ok(Sent::Done { .. }) if state.peer_down => {
                state.peer_down = false;
                let peer = self.peer.name().to_owned();
                match metadata(&self.shared.meta, move |m| {
                    m.replication_retry_now(&peer, now_nanos())
                })
                .await
                {
                    Ok(n) if n > 0 => {
                        tracing::info!(peer = %self.peer.name(), rescheduled = n, "peer reachable again; retrying what failed meanwhile now");
                        state.next_retry_scan = tokio::time::Instant::now();
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(peer = %self.peer.name(), error = %e, "rescheduling retries failed")
                    }
                }
            }
            _ => {}
        }
    }

    /// Moves the peer's cursor up to the first fresh entry not yet settled.
    async fn advance_cursor(&self, state: &mut State) {
        let target = state.fresh.first().copied().unwrap_or(state.next_read);
        if target <= state.acked {
            return;
        }
        let peer = self.peer.name().to_owned();
        match metadata(&self.shared.meta, move |m| m.outbox_ack(&peer, target - 1)).await {
            Ok(()) => state.acked = target,
            Err(e) => {
                tracing::warn!(peer = %self.peer.name(), error = %e, "moving the replication cursor failed; will retry")
            }
        }
    }
}
