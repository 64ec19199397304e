//! The lifecycle due-time index: one row per obligation (a version to expire while current,
//! a version to expire once noncurrent, a delete marker to remove when nothing is behind it,
//! an upload to abort), keyed by when it is due. Rows are written in the same batch as the
//! change that creates the obligation, so nothing due is forgotten across a crash, and the
//! worker reads only what is due: the index costs nothing for the versions that are not.
//!
//! This module knows nothing of lifecycle rules: a [`DuePlanner`] (the store's lifecycle,
//! which holds the rules) says when each obligation falls due. Each action re-reads what it
//! acts on under the key lock and removes its row in the batch that acts, so an action runs
//! at most once and a row that no longer applies is simply dropped.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use rocksdb::WriteBatch;

use crate::bucket::VersioningState;
use crate::error::MetaError;
use crate::keys;
use crate::multipart::UploadRecord;
use crate::outbox_entry::{OutboxDraft, OutboxKind};
use crate::record::{Nanos, NewVersion, Origin, VersionRecord};
use crate::schema::{self, VersionSummary};
use crate::store::{Inner, MetaStore};
use crate::version_id::now_nanos;
use crate::versions::Planned;

/// How far before a caught-up scan later reads of the index start (see `due_caught_up`).
pub const DUE_MARGIN: Nanos = 10_000_000_000;
/// How long a row whose version is under a legal hold waits before it is looked at again.
const LOCKED_RECHECK: Nanos = 86_400 * 1_000_000_000;

/// When lifecycle obligations fall due; implemented by whoever holds the rules.
pub trait DuePlanner: Send + Sync {
    /// Whether the bucket has rules at all (the cheap check before anything else is asked).
    fn active(&self, bucket: &str) -> bool;
    /// When this version, while it is the current one, expires.
    fn current(&self, record: &VersionRecord) -> Option<Nanos>;
    /// When this version, noncurrent since `since`, expires.
    fn noncurrent(&self, record: &VersionRecord, since: Nanos) -> Option<Nanos>;
    /// Whether a delete marker of this key with no versions behind it is removed.
    fn lone_marker(&self, bucket: &str, key: &str) -> bool;
    /// When a multipart upload of this key started at `initiated` is aborted.
    fn upload(&self, bucket: &str, key: &str, initiated: Nanos) -> Option<Nanos>;
}

/// What a due row asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DueKind {
    /// Expire the version while it is current (a delete marker in versioned buckets).
    Current,
    /// Remove the version if it is still noncurrent.
    Noncurrent,
    /// Remove the delete marker if it is the only version of its key.
    LoneMarker,
    /// Abort the multipart upload (`id` is the upload id).
    Upload,
}

impl DueKind {
    fn byte(self) -> u8 {
        match self {
            DueKind::Current => b'C',
            DueKind::Noncurrent => b'N',
            DueKind::LoneMarker => b'M',
            DueKind::Upload => b'U',
        }
    }

    fn of(b: u8) -> Option<DueKind> {
        Some(match b {
            b'C' => DueKind::Current,
            b'N' => DueKind::Noncurrent,
            b'M' => DueKind::LoneMarker,
            b'U' => DueKind::Upload,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            DueKind::Current => "expire_current",
            DueKind::Noncurrent => "expire_noncurrent",
            DueKind::LoneMarker => "remove_lone_marker",
            DueKind::Upload => "abort_upload",
        }
    }
}

/// One obligation of the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueEntry {
    pub due: Nanos,
    pub kind: DueKind,
    pub bucket: String,
    pub key: String,
    /// The version id, or the upload id for [`DueKind::Upload`].
    pub id: String,
}

impl DueEntry {
    /// `due(i64, order-preserving) kind esc(bucket) esc(key) esc(id)`.
    pub fn row_key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(16 + self.bucket.len() + self.key.len() + self.id.len());
        k.extend_from_slice(&keys::order_preserving_i64(self.due).to_be_bytes());
        k.push(self.kind.byte());
        keys::push_component(&mut k, self.bucket.as_bytes());
        keys::push_component(&mut k, self.key.as_bytes());
        keys::push_component(&mut k, self.id.as_bytes());
        k
    }

    fn from_row_key(k: &[u8]) -> Option<DueEntry> {
        let (due, rest) = k.split_first_chunk::<8>()?;
        let (&kind, rest) = rest.split_first()?;
        let (bucket, rest) = keys::read_component(rest)?;
        let (key, rest) = keys::read_component(rest)?;
        let (id, _) = keys::read_component(rest)?;
        Some(DueEntry {
            due: (u64::from_be_bytes(*due) ^ (1 << 63)) as i64,
            kind: DueKind::of(kind)?,
            bucket: String::from_utf8(bucket).ok()?,
            key: String::from_utf8(key).ok()?,
            id: String::from_utf8(id).ok()?,
        })
    }
}

/// What the rules say of a due row, once the version it names has been read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Act, unless more than `keep_newer` noncurrent versions are not newer than it (then
    /// look again at `recheck`).
    Act { keep_newer: u32, recheck: Nanos },
    /// Not yet (replication of the version is not complete, or the rules moved the date).
    Wait(Nanos),
    /// No rule asks for it any more.
    Drop,
}

/// What acting on a due row did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DueOutcome {
    /// The row no longer applied (the version went, became current again, …): dropped.
    Dropped,
    /// The row was moved to a later time.
    Postponed,
    /// The version was removed (its storage queued for reclaim).
    Removed(Box<VersionRecord>),
    /// A delete marker was added on top of the version.
    Marked,
    /// The upload was aborted.
    Aborted,
}

impl Inner {
    pub(crate) fn planner(&self) -> Option<Arc<dyn DuePlanner>> {
        self.planner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(Weak::upgrade)
    }

    /// Adds a row. One that is already due is written as due now: every row is written at
    /// or after its insertion time, which is what lets readers start at the floor.
    fn put_due(&self, batch: &mut WriteBatch, entry: &DueEntry) {
        let now = now_nanos();
        let row = if entry.due < now {
            DueEntry {
                due: now,
                ..entry.clone()
            }
        } else {
            entry.clone()
        };
        batch.put_cf(self.cf(schema::LIFECYCLE_DUE), row.row_key(), []);
    }

    /// Where reads of the index start: below it there are only the tombstones of rows the
    /// worker removed (which a seek from the very start would step over one by one).
    fn due_start(&self) -> Vec<u8> {
        let floor = self.due_floor.load(Ordering::Acquire);
        keys::order_preserving_i64(floor).to_be_bytes().to_vec()
    }

    /// The rows a new version brings: its own expiry while current (or, for a delete marker,
    /// its removal once alone) and the noncurrent expiry of the version it pushes down.
    ///
    /// `newer`: the mtime of the newest other version when that one is newer than `record`
    /// (a replica arriving late is noncurrent at once); `previous` reads the version `record`
    /// pushes down, and is only called when the bucket has rules.
    pub(crate) fn plan_due(
        &self,
        batch: &mut WriteBatch,
        record: &VersionRecord,
        newer: Option<Nanos>,
        previous: impl FnOnce() -> Result<Option<VersionRecord>, MetaError>,
    ) -> Result<(), MetaError> {
        let Some(planner) = self.planner() else {
            return Ok(());
        };
        if !planner.active(&record.bucket) {
            return Ok(());
        }
        let row = |due, kind, r: &VersionRecord| DueEntry {
            due,
            kind,
            bucket: r.bucket.clone(),
            key: r.key.clone(),
            id: r.version_id.clone(),
        };
        if let Some(since) = newer {
            if !record.is_delete_marker {
                if let Some(due) = planner.noncurrent(record, since) {
                    self.put_due(batch, &row(due, DueKind::Noncurrent, record));
                }
            }
            return Ok(());
        }
        if record.is_delete_marker {
            if planner.lone_marker(&record.bucket, &record.key) {
                self.put_due(batch, &row(record.mtime, DueKind::LoneMarker, record));
            }
        } else if let Some(due) = planner.current(record) {
            self.put_due(batch, &row(due, DueKind::Current, record));
        }
        if let Some(prev) = previous()?.filter(|p| !p.is_delete_marker) {
            if let Some(due) = planner.noncurrent(&prev, record.mtime) {
                self.put_due(batch, &row(due, DueKind::Noncurrent, &prev));
            }
        }
        Ok(())
    }

    /// The row of a new multipart upload, if a rule aborts it.
    pub(crate) fn plan_upload_due(
        &self,
        batch: &mut WriteBatch,
        bucket: &str,
        key: &str,
        upload_id: &str,
        initiated: Nanos,
    ) {
        let Some(planner) = self.planner() else {
            return;
        };
        if !planner.active(bucket) {
            return;
        }
        if let Some(due) = planner.upload(bucket, key, initiated) {
            self.put_due(
                batch,
                &DueEntry {
                    due,
                    kind: DueKind::Upload,
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    id: upload_id.to_owned(),
                },
            );
        }
    }
}

impl MetaStore {
    /// Installs the planner whose dates every later commit indexes. Held weakly: the planner
    /// usually holds this store, and the database must close when its owners drop it.
    pub fn set_due_planner(&self, planner: &Arc<dyn DuePlanner>) {
        *self
            .inner
            .planner
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(planner));
    }

    /// Up to `limit` rows due at or before `now`, earliest first.
    pub fn due_entries(&self, now: Nanos, limit: usize) -> Result<Vec<DueEntry>, MetaError> {
        self.due_entries_after(now, limit, None)
    }

    /// [`Self::due_entries`] after the row `after` (the last of the previous batch of one
    /// drain), so a long backlog is not read again from its removed start at every batch.
    pub fn due_entries_after(
        &self,
        now: Nanos,
        limit: usize,
        after: Option<&[u8]>,
    ) -> Result<Vec<DueEntry>, MetaError> {
        let start = match after {
            Some(row) => keys::just_after(row).max(self.inner.due_start()),
            None => self.inner.due_start(),
        };
        let mut it = self.inner.iter(schema::LIFECYCLE_DUE, &start, None);
        let mut out = Vec::new();
        while it.valid() && out.len() < limit {
            let k = it.key().unwrap_or_default();
            let entry = DueEntry::from_row_key(k)
                .ok_or_else(|| MetaError::corrupt(schema::LIFECYCLE_DUE, k, "bad due row"))?;
            if entry.due > now {
                break;
            }
            out.push(entry);
            it.next();
        }
        it.status()
            .map_err(MetaError::db("reading the lifecycle index"))?;
        Ok(out)
    }

    /// The worker took every row due at `scan_started` without error: later reads start a
    /// margin before that time. A row committed after the scan was written at or after its
    /// own insertion time, which is later than `scan_started - DUE_MARGIN` unless its commit
    /// took longer than the margin.
    pub fn due_caught_up(&self, scan_started: Nanos) {
        self.inner
            .due_floor
            .fetch_max(scan_started.saturating_sub(DUE_MARGIN), Ordering::AcqRel);
    }

    /// When the earliest row falls due, if there is one.
    pub fn next_due(&self) -> Result<Option<Nanos>, MetaError> {
        let it = self
            .inner
            .iter(schema::LIFECYCLE_DUE, &self.inner.due_start(), None);
        it.status()
            .map_err(MetaError::db("reading the lifecycle index"))?;
        Ok(it.key().and_then(DueEntry::from_row_key).map(|e| e.due))
    }

    /// How many rows are due at or before `now` (counting at most `cap`), and the earliest.
    pub fn due_backlog(&self, now: Nanos, cap: usize) -> Result<(usize, Option<Nanos>), MetaError> {
        let due = self.due_entries(now, cap)?;
        Ok((due.len(), due.first().map(|e| e.due)))
    }

    /// Writes rows computed outside a commit (the pass that indexes a bucket's existing
    /// versions when its rules change).
    pub fn index_due(&self, entries: &[DueEntry]) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        for e in entries {
            self.inner.put_due(&mut batch, e);
        }
        self.inner
            .commit(batch, None, "indexing lifecycle obligations")?;
        Ok(())
    }

    /// Compacts the index up to `now`: the rows the worker removed leave tombstones that
    /// every seek from the start of the index would step over until RocksDB compacts them.
    pub fn compact_due_index(&self, now: Nanos) -> Result<(), MetaError> {
        let end = (keys::order_preserving_i64(now).saturating_add(1)).to_be_bytes();
        self.inner.db.compact_range_cf(
            self.inner.cf(schema::LIFECYCLE_DUE),
            None::<&[u8]>,
            Some(&end[..]),
        );
        Ok(())
    }

    /// Every multipart upload of the bucket in progress: `(key, upload id, initiated)`.
    pub fn bucket_upload_starts(
        &self,
        bucket: &str,
    ) -> Result<Vec<(String, String, Nanos)>, MetaError> {
        Ok(self
            .bucket_uploads(bucket)?
            .into_iter()
            .map(|u| (u.key, u.upload_id, u.initiated))
            .collect())
    }

    /// The bucket's versioning state; `Err(NoSuchBucket)`.
    pub fn bucket_versioning(&self, bucket: &str) -> Result<VersioningState, MetaError> {
        Ok(self.require_bucket(bucket)?.versioning)
    }

    /// Drops a row without acting.
    pub fn drop_due(&self, entry: &DueEntry) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.inner.cf(schema::LIFECYCLE_DUE), entry.row_key());
        self.inner.commit(batch, None, "dropping a lifecycle row")?;
        Ok(())
    }

    /// The versions of a key, newest first (summaries: no record reads).
    pub fn key_history(&self, bucket: &str, key: &str) -> Result<Vec<VersionSummary>, MetaError> {
        self.inner.newest_versions(bucket, key, usize::MAX)
    }

    /// Acts on one due row. Under the bucket and key locks the row is re-checked against
    /// what is stored now, `judge` says what the rules make of the version, and the row is
    /// removed (or moved) in the batch that acts. `judge` is given the version and, when it is
    /// noncurrent, since when. Lifecycle changes are never replicated
    /// (their outbox entries name no peers). Upload rows are judged by the caller.
    pub fn act_on_due(
        &self,
        entry: &DueEntry,
        judge: impl FnOnce(&VersionRecord, Option<Nanos>) -> Verdict,
    ) -> Result<DueOutcome, MetaError> {
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_shared(&entry.bucket);
        let bucket = match self.require_bucket(&entry.bucket) {
            Ok(b) => b,
            Err(MetaError::NoSuchBucket { .. }) => {
                self.drop_due(entry)?;
                return Ok(DueOutcome::Dropped);
            }
            Err(e) => return Err(e),
        };
        let mut batch = WriteBatch::default();
        batch.delete_cf(inner.cf(schema::LIFECYCLE_DUE), entry.row_key());
        let dropped = |batch| -> Result<DueOutcome, MetaError> {
            inner.commit(batch, None, "dropping a lifecycle row")?;
            Ok(DueOutcome::Dropped)
        };
        if entry.kind == DueKind::Upload {
            // The upload's own lock, as every upload operation takes it.
            let _upload = inner.locks.upload(&entry.bucket, &entry.key, &entry.id);
            return self.abort_due_upload(entry, batch);
        }
        let _key = inner.locks.key(&entry.bucket, &entry.key);
        let history = inner.newest_versions(&entry.bucket, &entry.key, usize::MAX)?;
        let Some(pos) = history.iter().position(|s| s.version_id == entry.id) else {
            return dropped(batch);
        };
        let still = match entry.kind {
            DueKind::Current => pos == 0 && !history[0].delete_marker,
            DueKind::Noncurrent => pos > 0,
            DueKind::LoneMarker => pos == 0 && history.len() == 1 && history[0].delete_marker,
            DueKind::Upload => false,
        };
        let vkey = schema::version_key(&entry.bucket, &entry.key, &entry.id);
        let record = match self.read_version(&vkey)? {
            Some(r) if still => r,
            _ => return dropped(batch),
        };
        let postpone = |mut batch: WriteBatch, until: Nanos| -> Result<DueOutcome, MetaError> {
            let later = DueEntry {
                due: until,
                ..entry.clone()
            };
            inner.put_due(&mut batch, &later);
            inner.commit(batch, None, "postponing a lifecycle action")?;
            Ok(DueOutcome::Postponed)
        };
        // When it became noncurrent: when the next newer version was created.
        let since = pos.checked_sub(1).map(|p| history[p].mtime);
        match judge(&record, since) {
            Verdict::Drop => return dropped(batch),
            Verdict::Wait(until) => return postpone(batch, until),
            Verdict::Act {
                keep_newer,
                recheck,
            } => {
                // Noncurrent versions newer than this one (history[0] is the current one).
                let newer_noncurrent = history
                    .get(1..pos)
                    .map_or(0, |newer| newer.iter().filter(|s| !s.delete_marker).count());
                if entry.kind == DueKind::Noncurrent && newer_noncurrent < keep_newer as usize {
                    return postpone(batch, recheck);
                }
            }
        }
        if entry.kind == DueKind::Current && bucket.versioning != VersioningState::Unversioned {
            // A delete marker on top; a suspended bucket's null marker replaces the null version.
            // In a versioned bucket the marker's id and time come from the version it expires
            // and the time it fell due, so every node of a region that holds the version puts
            // the same marker on it (the rule runs on each; the marker is not copied).
            let at = entry.due.max(record.mtime + 1);
            let marker = match bucket.versioning {
                VersioningState::Enabled => NewVersion {
                    delete_marker: true,
                    version_id: Some(crate::version_id::derived_version_id(
                        at,
                        format!("lifecycle\0{}\0{}\0{}", entry.bucket, entry.key, entry.id)
                            .as_bytes(),
                    )),
                    mtime: Some(at),
                    ..NewVersion::default()
                },
                _ => NewVersion {
                    delete_marker: true,
                    ..NewVersion::default()
                },
            };
            return match self.plan_version(&bucket, &entry.key, marker, &mut batch)? {
                Planned::Commit { draft, .. } => {
                    inner.commit(batch, Some(unreplicated(draft)), "expiring a version")?;
                    Ok(DueOutcome::Marked)
                }
                Planned::Duplicate(_) => dropped(batch),
            };
        }
        // Object Lock: a locked version stays; look again when its retention ends (a legal
        // hold has no end date: once a day).
        let now = now_nanos();
        if record.lock.blocks_removal(now, false).is_some() {
            let until = match record.lock.active_retention(now) {
                Some(r) if !record.lock.legal_hold => r.until,
                _ => now.saturating_add(LOCKED_RECHECK),
            };
            return postpone(batch, until);
        }
        // Remove the version: the unversioned current one, a noncurrent one, a lone marker.
        batch.delete_cf(inner.cf(schema::VERSIONS), &vkey);
        batch.delete_cf(
            inner.cf(schema::HISTORY),
            schema::history_key(&entry.bucket, &entry.key, record.mtime, &entry.id),
        );
        inner.queue_reclaim(&mut batch, &record.storage);
        let rest: Vec<&VersionSummary> = history
            .iter()
            .filter(|s| s.version_id != entry.id)
            .collect();
        self.put_listing(&mut batch, &entry.bucket, &entry.key, rest.first().copied());
        // A marker this removal leaves alone goes too, if a rule says so.
        if let [only] = rest.as_slice() {
            let lone = only.delete_marker
                && inner
                    .planner()
                    .is_some_and(|p| p.lone_marker(&entry.bucket, &entry.key));
            if lone {
                inner.put_due(
                    &mut batch,
                    &DueEntry {
                        due: only.mtime,
                        kind: DueKind::LoneMarker,
                        bucket: entry.bucket.clone(),
                        key: entry.key.clone(),
                        id: only.version_id.clone(),
                    },
                );
            }
        }
        let draft = OutboxDraft {
            bucket: entry.bucket.clone(),
            key: entry.key.clone(),
            version_id: entry.id.clone(),
            kind: OutboxKind::DeleteVersion,
            origin: Origin::Local,
            peers: Vec::new(),
            size: 0,
        };
        inner.commit(batch, Some(draft), "expiring a version")?;
        Ok(DueOutcome::Removed(Box::new(record)))
    }

    fn abort_due_upload(
        &self,
        entry: &DueEntry,
        mut batch: WriteBatch,
    ) -> Result<DueOutcome, MetaError> {
        let ukey = schema::upload_key(&entry.bucket, &entry.key, &entry.id);
        let Some((upload, _)) = self
            .inner
            .get_record::<UploadRecord>(schema::UPLOADS, &ukey)?
        else {
            self.inner.commit(batch, None, "dropping a lifecycle row")?;
            return Ok(DueOutcome::Dropped);
        };
        let parts = self.all_parts(&entry.bucket, &entry.key, &entry.id)?;
        self.remove_upload(&mut batch, &upload, parts, &[]);
        self.inner
            .commit(batch, None, "aborting an upload by lifecycle")?;
        Ok(DueOutcome::Aborted)
    }

    /// The versions of the bucket's keys after `after` (whole keys, at least `limit` versions
    /// unless the bucket ends first): the pass that indexes existing versions when the rules
    /// change. Each record comes with the time it became noncurrent (`None` while current);
    /// the second value is the key to resume after, `None` at the end of the bucket.
    #[allow(clippy::type_complexity)]
    pub fn bucket_versions_page(
        &self,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<(VersionRecord, Option<Nanos>)>, Option<String>), MetaError> {
        let prefix = keys::bucket_prefix(bucket);
        let mut from = match after {
            Some(k) => keys::successor(&keys::object_prefix(bucket, k)).unwrap_or_default(),
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        loop {
            let it = self
                .inner
                .iter(schema::HISTORY, &from, keys::successor(&prefix));
            it.status()
                .map_err(MetaError::db("reading a bucket's versions"))?;
            let Some(k) = it.key() else {
                return Ok((out, None));
            };
            let key = keys::read_component(&k[prefix.len()..])
                .and_then(|(raw, _)| String::from_utf8(raw).ok())
                .ok_or_else(|| MetaError::corrupt(schema::HISTORY, k, "bad history key"))?;
            drop(it);
            let history = self.inner.newest_versions(bucket, &key, usize::MAX)?;
            let mut since = None;
            for summary in &history {
                let vkey = schema::version_key(bucket, &key, &summary.version_id);
                if let Some(record) = self.read_version(&vkey)? {
                    out.push((record, since));
                }
                since = Some(summary.mtime);
            }
            from = keys::successor(&keys::object_prefix(bucket, &key)).unwrap_or_default();
            if out.len() >= limit {
                return Ok((out, Some(key)));
            }
        }
    }
}

/// Lifecycle changes stay in this region.
fn unreplicated(mut draft: OutboxDraft) -> OutboxDraft {
    draft.peers = Vec::new();
    draft
}
