//! Lifecycle execution: each bucket's rules (decoded once, kept in memory), the dates they
//! give (the [`DuePlanner`] every commit asks, so obligations are indexed in the batch that
//! creates them), the worker that acts on what is due, and the pass that indexes a bucket's
//! existing versions when its rules change.
//!
//! The worker reads only the due rows of the index: with nothing due it costs one seek per
//! wake-up, whatever the store holds. Every action re-checks the version under its key lock
//! and removes its row in the same batch, so a crash repeats nothing and forgets nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian_documents::lifecycle::{Day, LifecycleConfig, CONFIG_DOCUMENT};
use meridian_metadata::{
    now_nanos, ConfigCache, DueEntry, DueKind, DueOutcome, DuePlanner, MetaError, MetaStore, Nanos,
    PeerStatus, Verdict, VersionRecord, VersioningState,
};
use tokio::sync::watch;

use crate::{Store, StoreError};

/// Rows acted on per batch of the worker.
const BATCH: usize = 256;
/// The worker's longest sleep: it also wakes when a rule change asks it to.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// After a full batch the worker pauses this many times as long as the batch took: expiry
/// takes at most half of one core, and foreground requests keep the rest.
pub const PACE: f64 = 1.0;
/// Rows acted on after which the worker compacts the index once it has caught up.
const COMPACT_AFTER: usize = 4096;
/// Versions read per page of an indexing pass.
const INDEX_PAGE: usize = 1000;
/// The setting that holds an indexing pass's position, per bucket.
const PASS_SETTING: &str = "lifecycle-index/";

/// The lifecycle state of a node: cheap to share.
pub struct Lifecycle {
    rules: ConfigCache<LifecycleConfig>,
    day: Day,
    /// Indexing passes in progress: bucket → versions indexed so far.
    passes: Mutex<HashMap<String, u64>>,
    wakeup: tokio::sync::Notify,
    /// When the worker last looked for due rows (ns; 0 before it first did).
    last_run: std::sync::atomic::AtomicI64,
}

impl Lifecycle {
    /// `day`: `None` for AWS's days (due at midnight UTC), or a short test day.
    pub fn new(meta: MetaStore, day: Option<Duration>) -> Lifecycle {
        let day = match day {
            None => Day::Utc,
            Some(d) => Day::Debug(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX).max(1)),
        };
        Lifecycle {
            rules: ConfigCache::new(meta, CONFIG_DOCUMENT, |doc| {
                LifecycleConfig::from_json(doc).map_err(|e| e.to_string())
            }),
            day,
            passes: Mutex::new(HashMap::new()),
            wakeup: tokio::sync::Notify::new(),
            last_run: std::sync::atomic::AtomicI64::new(0),
        }
    }

    pub fn day(&self) -> Day {
        self.day
    }

    /// The bucket's rules; blocking on a cache miss.
    pub fn rules(&self, bucket: &str) -> Result<Option<Arc<LifecycleConfig>>, MetaError> {
        self.rules.get(bucket)
    }

    /// The bucket's rules if they are cached: `None` when a read would be needed.
    pub fn cached_rules(&self, bucket: &str) -> Option<Option<Arc<LifecycleConfig>>> {
        self.rules.cached(bucket)
    }

    /// The bucket's rules were put or deleted (or the bucket went).
    pub fn invalidate(&self, bucket: &str) {
        self.rules.invalidate(bucket);
    }

    /// When the worker last looked for due rows.
    pub fn last_run(&self) -> Option<Nanos> {
        Some(self.last_run.load(std::sync::atomic::Ordering::Relaxed)).filter(|t| *t != 0)
    }

    /// Buckets whose existing versions are being indexed, with the versions done so far.
    pub fn passes(&self) -> HashMap<String, u64> {
        self.passes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// When a current version expires, and by which rule.
    pub fn expiry_of(
        &self,
        config: &LifecycleConfig,
        record: &VersionRecord,
    ) -> Option<(Nanos, String)> {
        expiry_with(config, record, self.day)
    }

    /// What `x-amz-expiration` says of a current version: `(expiry, rule id)` in real days
    /// (midnight UTC) even when a test day is set, as RGW does with its debug interval, so
    /// the header always means what it means on AWS.
    pub fn header_expiry_of(
        &self,
        config: &LifecycleConfig,
        record: &VersionRecord,
    ) -> Option<(Nanos, String)> {
        expiry_with(config, record, Day::Utc)
    }

    fn config(&self, bucket: &str) -> Option<Arc<LifecycleConfig>> {
        match self.rules.get(bucket) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(bucket, error = %e, "lifecycle rules unreadable; none applied");
                None
            }
        }
    }

    /// How long to wait before looking again at a version that replication has not finished
    /// with: a minute, or a test day if that is shorter.
    fn replication_retry(&self) -> Nanos {
        let minute = 60_000_000_000;
        match self.day {
            Day::Utc => minute,
            Day::Debug(len) => len.min(minute),
        }
    }
}

fn expiry_with(
    config: &LifecycleConfig,
    record: &VersionRecord,
    day: Day,
) -> Option<(Nanos, String)> {
    if record.is_delete_marker {
        return None;
    }
    config
        .current_expiry(&record.key, record.size, &record.tags, record.mtime, day)
        .map(|(at, id)| (at, id.to_owned()))
}

/// A version is expired only once every peer its bucket sends it to has it.
fn replication_settled(record: &VersionRecord) -> bool {
    record
        .replication
        .peers
        .values()
        .all(|s| matches!(s, PeerStatus::Completed))
}

impl DuePlanner for Lifecycle {
    fn active(&self, bucket: &str) -> bool {
        self.config(bucket).is_some()
    }

    fn current(&self, record: &VersionRecord) -> Option<Nanos> {
        let config = self.config(&record.bucket)?;
        config
            .current_expiry(
                &record.key,
                record.size,
                &record.tags,
                record.mtime,
                self.day,
            )
            .map(|(at, _)| at)
    }

    fn noncurrent(&self, record: &VersionRecord, since: Nanos) -> Option<Nanos> {
        let config = self.config(&record.bucket)?;
        config
            .noncurrent_expiry(&record.key, record.size, &record.tags, since, self.day)
            .map(|(at, _)| at)
    }

    fn lone_marker(&self, bucket: &str, key: &str) -> bool {
        self.config(bucket)
            .is_some_and(|c| c.expires_lone_markers(key))
    }

    fn upload(&self, bucket: &str, key: &str, initiated: Nanos) -> Option<Nanos> {
        self.config(bucket)?.upload_abort(key, initiated, self.day)
    }
}

impl Lifecycle {
    /// What the rules make of a due row now that its version has been read.
    fn judge(
        &self,
        entry: &DueEntry,
        record: &VersionRecord,
        since: Option<Nanos>,
        now: Nanos,
    ) -> Verdict {
        let Some(config) = self.config(&entry.bucket) else {
            return Verdict::Drop;
        };
        let wait_for_replication = || Verdict::Wait(now.saturating_add(self.replication_retry()));
        match entry.kind {
            DueKind::Current => match self.expiry_of(&config, record) {
                Some((at, _)) if at > now => Verdict::Wait(at),
                Some(_) if !replication_settled(record) => wait_for_replication(),
                Some(_) => Verdict::Act {
                    keep_newer: 0,
                    recheck: now,
                },
                None => Verdict::Drop,
            },
            DueKind::Noncurrent => {
                let Some(since) = since else {
                    return Verdict::Drop;
                };
                let found = config.noncurrent_expiry(
                    &record.key,
                    record.size,
                    &record.tags,
                    since,
                    self.day,
                );
                match found {
                    None => Verdict::Drop,
                    Some((at, _)) if at > now => Verdict::Wait(at),
                    Some(_) if !replication_settled(record) => wait_for_replication(),
                    Some((_, keep_newer)) => Verdict::Act {
                        keep_newer,
                        // Kept for now by NewerNoncurrentVersions: look again in a day.
                        recheck: self.day.after(now, 1),
                    },
                }
            }
            DueKind::LoneMarker if config.expires_lone_markers(&entry.key) => Verdict::Act {
                keep_newer: 0,
                recheck: now,
            },
            DueKind::LoneMarker | DueKind::Upload => Verdict::Drop,
        }
    }

    /// Whether a rule still aborts uploads of this key.
    fn aborts_uploads(&self, entry: &DueEntry) -> bool {
        self.config(&entry.bucket)
            .is_some_and(|c| c.upload_abort(&entry.key, 0, Day::Debug(1)).is_some())
    }
}

/// Acts on up to one batch of due rows (blocking). Returns how many rows it took.
///
/// `cursor`: within one drain of a backlog, the last row of the previous batch (the next
/// batch starts after it, not at the removed rows before it); `None` to start at the floor.
/// Left at the last row when the batch was full, `None` once caught up.
pub fn run_due_batch(
    store: &Store,
    now: Nanos,
    cursor: &mut Option<Vec<u8>>,
) -> Result<usize, StoreError> {
    let lifecycle = &store.lifecycle;
    let metrics = crate::metrics::global();
    let from_floor = cursor.is_none();
    let entries = store
        .meta
        .due_entries_after(now, BATCH, cursor.as_deref())?;
    let caught_up = entries.len() < BATCH;
    *cursor = None;
    let mut freed_any = false;
    for entry in &entries {
        let outcome = if entry.kind == DueKind::Upload && !lifecycle.aborts_uploads(entry) {
            store.meta.drop_due(entry)?;
            DueOutcome::Dropped
        } else {
            store.meta.act_on_due(entry, |record, since| {
                lifecycle.judge(entry, record, since, now)
            })?
        };
        let counted = match &outcome {
            DueOutcome::Removed(record) => {
                metrics
                    .lifecycle_bytes_freed
                    .inc_by(if record.is_delete_marker {
                        0
                    } else {
                        record.size
                    });
                freed_any = true;
                true
            }
            DueOutcome::Aborted => {
                freed_any = true;
                true
            }
            DueOutcome::Marked => true,
            DueOutcome::Dropped | DueOutcome::Postponed => false,
        };
        if counted {
            metrics
                .lifecycle_actions
                .with_label_values(&[entry.kind.name()])
                .inc();
            tracing::debug!(bucket = %entry.bucket, key = %entry.key, id = %entry.id, action = entry.kind.name(), "lifecycle action");
        }
    }
    if freed_any {
        store.wake_reclaimer();
    }
    if caught_up && from_floor {
        // Every row due at `now` was taken (any error returned above). After a drain that
        // went by cursor, rows committed meanwhile may sit behind it: the next look starts
        // at the floor again, and raises it only when it finds nothing left behind.
        store.meta.due_caught_up(now);
    }
    if !caught_up {
        *cursor = entries.last().map(DueEntry::row_key);
    }
    Ok(entries.len())
}

/// The backlog gauges: rows due now and how long the oldest has waited.
fn update_backlog(store: &Store, now: Nanos) -> Result<(), StoreError> {
    let (count, oldest) = store.meta.due_backlog(now, 100_000)?;
    let m = crate::metrics::global();
    m.lifecycle_backlog.set(count as i64);
    m.lifecycle_oldest_due_age
        .set(oldest.map_or(0, |t| now.saturating_sub(t) / 1_000_000_000));
    Ok(())
}

/// One step of the worker: rows taken, when the next is due, where the drain goes on.
type Step = (usize, Option<Nanos>, Option<Vec<u8>>);

/// The lifecycle worker: acts on what is due, then sleeps until the next row is due (at most
/// [`IDLE_POLL`]), or until a rule change wakes it.
pub async fn run_worker(store: Store, mut shutdown: watch::Receiver<bool>) {
    resume_passes(&store);
    // A commit does not wake the worker: with short test days it looks more often, so a
    // version due a day after its PUT goes within a quarter of a day.
    let poll = match store.lifecycle.day {
        Day::Utc => IDLE_POLL,
        Day::Debug(len) => IDLE_POLL.min(Duration::from_nanos((len / 4).max(50_000_000) as u64)),
    };
    let mut since_compaction = 0usize;
    let mut cursor: Option<Vec<u8>> = None;
    let mut last_gauge = std::time::Instant::now();
    loop {
        let s = store.clone();
        let mut c = cursor.take();
        let started = std::time::Instant::now();
        let compact = since_compaction >= COMPACT_AFTER;
        // The backlog gauges count up to 100k rows: once caught up, and every few seconds
        // during a drain, not after every batch.
        let gauge = last_gauge.elapsed() >= IDLE_POLL;
        let step = tokio::task::spawn_blocking(move || -> Result<Step, StoreError> {
            let now = now_nanos();
            s.lifecycle
                .last_run
                .store(now, std::sync::atomic::Ordering::Relaxed);
            let n = run_due_batch(&s, now, &mut c)?;
            if n < BATCH && compact {
                // Caught up after many actions: drop the removed rows' tombstones, which
                // every later look at the index would otherwise step over.
                s.meta.compact_due_index(now)?;
            }
            if n < BATCH || gauge {
                update_backlog(&s, now)?;
            }
            Ok((n, s.meta.next_due()?, c))
        })
        .await;
        if let Ok(Ok((n, _, c))) = &step {
            cursor = c.clone();
            if *n < BATCH || gauge {
                last_gauge = std::time::Instant::now();
            }
            since_compaction = if *n < BATCH && compact {
                0
            } else {
                since_compaction + n
            };
        }
        let sleep = match step {
            // More is due: go on after a pause (see PACE).
            Ok(Ok((n, _, _))) if n == BATCH => {
                tokio::select! {
                    _ = tokio::time::sleep(started.elapsed().mul_f64(PACE)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
            Ok(Ok((_, Some(next), _))) => {
                let wait = next.saturating_sub(now_nanos()).max(0);
                poll.min(Duration::from_nanos(wait as u64 + 1_000_000))
            }
            Ok(Ok((_, None, _))) => poll,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "lifecycle worker failed; will retry");
                poll
            }
            Err(e) => {
                tracing::error!(error = %e, "lifecycle worker panicked; will retry");
                poll
            }
        };
        tokio::select! {
            _ = store.lifecycle.wakeup.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The rows a version already stored is due for under the bucket's current rules.
fn rows_for(
    lifecycle: &Lifecycle,
    config: &LifecycleConfig,
    record: &VersionRecord,
    since: Option<Nanos>,
) -> Option<DueEntry> {
    let (due, kind) = match since {
        None if record.is_delete_marker => {
            if !config.expires_lone_markers(&record.key) {
                return None;
            }
            (record.mtime, DueKind::LoneMarker)
        }
        None => (lifecycle.expiry_of(config, record)?.0, DueKind::Current),
        Some(_) if record.is_delete_marker => return None,
        Some(since) => (
            config
                .noncurrent_expiry(&record.key, record.size, &record.tags, since, lifecycle.day)?
                .0,
            DueKind::Noncurrent,
        ),
    };
    Some(DueEntry {
        due,
        kind,
        bucket: record.bucket.clone(),
        key: record.key.clone(),
        id: record.version_id.clone(),
    })
}

/// Starts (or restarts) the pass that indexes the bucket's existing versions and uploads under
/// its new rules. Its position is kept in a setting, so a restart resumes it.
pub fn start_pass(store: &Store, bucket: &str) {
    spawn_pass(store.clone(), bucket.to_owned(), true);
}

fn spawn_pass(store: Store, bucket: String, fresh: bool) {
    store
        .lifecycle
        .passes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(bucket.clone(), 0);
    tokio::task::spawn_blocking(move || {
        let setting = format!("{PASS_SETTING}{bucket}");
        let run = || -> Result<(), StoreError> {
            if fresh {
                store.meta.put_setting(&setting, Some(b""))?;
            }
            index_bucket_now(&store, &bucket)
        };
        if let Err(e) = run() {
            tracing::warn!(bucket, error = %e, "lifecycle indexing pass failed; it resumes at the next start");
        }
        store
            .lifecycle
            .passes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&bucket);
        store.lifecycle.wakeup.notify_one();
    });
}

fn resume_passes(store: &Store) {
    match store.meta.settings_with_prefix(PASS_SETTING) {
        Ok(found) => {
            for (name, _) in found {
                let bucket = name[PASS_SETTING.len()..].to_owned();
                tracing::info!(bucket, "resuming the lifecycle indexing pass");
                spawn_pass(store.clone(), bucket, false);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read lifecycle passes to resume"),
    }
}

/// Indexes every version and upload of `bucket` under its current rules, a page at a time,
/// recording the position after each page (blocking; the pass `start_pass` runs, and what
/// `meridian bench lifecycle` times).
pub fn index_bucket_now(store: &Store, bucket: &str) -> Result<(), StoreError> {
    let setting = format!("{PASS_SETTING}{bucket}");
    let lifecycle = &store.lifecycle;
    let mut after = store
        .meta
        .setting(&setting)?
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    if after.is_none() {
        // Uploads first (there are few): their rows are cheap and idempotent.
        if let Some(config) = lifecycle.config(bucket) {
            let rows: Vec<DueEntry> = store
                .meta
                .bucket_upload_starts(bucket)?
                .into_iter()
                .filter_map(|(key, id, initiated)| {
                    Some(DueEntry {
                        due: config.upload_abort(&key, initiated, lifecycle.day)?,
                        kind: DueKind::Upload,
                        bucket: bucket.to_owned(),
                        key,
                        id,
                    })
                })
                .collect();
            store.meta.index_due(&rows)?;
        }
    }
    let mut done = 0u64;
    // The rules may be deleted while this runs: then there is nothing to index.
    while let Some(config) = lifecycle.config(bucket) {
        let (page, next) =
            match store
                .meta
                .bucket_versions_page(bucket, after.as_deref(), INDEX_PAGE)
            {
                Ok(p) => p,
                Err(MetaError::NoSuchBucket { .. }) => break,
                Err(e) => return Err(e.into()),
            };
        done += page.len() as u64;
        let rows: Vec<DueEntry> = page
            .iter()
            .filter_map(|(record, since)| rows_for(lifecycle, &config, record, *since))
            .collect();
        store.meta.index_due(&rows)?;
        lifecycle
            .passes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(bucket.to_owned(), done);
        match next {
            Some(key) => {
                store.meta.put_setting(&setting, Some(key.as_bytes()))?;
                after = Some(key);
            }
            None => break,
        }
    }
    store.meta.put_setting(&setting, None)?;
    tracing::info!(bucket, versions = done, "lifecycle rules indexed");
    Ok(())
}

/// One version or upload that the rules would act on by `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub kind: DueKind,
    pub key: String,
    pub id: String,
    pub due: Nanos,
    /// Bytes the action frees.
    pub frees: u64,
}

/// What the bucket's rules would do by `at`, without acting: every version (and upload) whose
/// date falls at or before it, of the keys `keep` keeps (all without one: a node of a region
/// previews the keys it leads). NewerNoncurrentVersions is applied as the worker applies it.
pub fn preview(
    store: &Store,
    bucket: &str,
    at: Nanos,
    limit: usize,
    keep: Option<meridian_metadata::KeyFilter<'_>>,
) -> Result<Vec<Preview>, StoreError> {
    let lifecycle = &store.lifecycle;
    let kept = |key: &str| keep.is_none_or(|k| k(key));
    // Err(NoSuchBucket) first: a bucket without rules previews nothing, a missing one fails.
    let versioned = store.meta.bucket_versioning(bucket)? != VersioningState::Unversioned;
    let Some(config) = lifecycle.rules(bucket)? else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Preview> = store
        .meta
        .bucket_upload_starts(bucket)?
        .into_iter()
        .filter(|(key, _, _)| kept(key))
        .filter_map(|(key, id, initiated)| {
            let due = config.upload_abort(&key, initiated, lifecycle.day)?;
            (due <= at).then_some(Preview {
                kind: DueKind::Upload,
                key,
                id,
                due,
                frees: 0,
            })
        })
        .take(limit)
        .collect();
    let mut after: Option<String> = None;
    loop {
        let (page, next) = store
            .meta
            .bucket_versions_page(bucket, after.as_deref(), INDEX_PAGE)?;
        // Noncurrent versions seen so far per key, newest first (pages hold whole keys).
        let mut noncurrent_seen: HashMap<&str, u32> = HashMap::new();
        for (record, since) in page.iter().filter(|(r, _)| kept(&r.key)) {
            let Some(row) = rows_for(lifecycle, &config, record, *since) else {
                if since.is_some() && !record.is_delete_marker {
                    *noncurrent_seen.entry(record.key.as_str()).or_default() += 1;
                }
                continue;
            };
            let mut include = row.due <= at;
            if row.kind == DueKind::Noncurrent {
                let seen = noncurrent_seen.entry(record.key.as_str()).or_default();
                let keep = config
                    .rules_for(&record.key, record.size, &record.tags)
                    .filter_map(|r| r.noncurrent)
                    .min_by_key(|n| n.days)
                    .and_then(|n| n.newer_versions)
                    .unwrap_or(0);
                include &= *seen >= keep;
                *seen += 1;
            }
            if row.kind == DueKind::LoneMarker {
                include = false;
            }
            // Object Lock: a version is not removed while it is held, nor before its
            // retention ends (a versioned bucket's current version only gets a marker).
            let removes = row.kind == DueKind::Noncurrent || !versioned;
            let lock = &record.lock;
            if removes && (lock.legal_hold || lock.retention.is_some_and(|r| r.until > at)) {
                include = false;
            }
            if include {
                out.push(Preview {
                    kind: row.kind,
                    key: row.key,
                    id: row.id,
                    due: row.due,
                    // A versioned bucket's current version gets a marker: nothing is freed.
                    frees: if row.kind == DueKind::Current && versioned {
                        0
                    } else {
                        record.size
                    },
                });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        match next {
            Some(k) => after = Some(k),
            None => return Ok(out),
        }
    }
}
