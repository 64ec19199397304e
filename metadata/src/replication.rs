//! What the replicator keeps per peer besides its outbox cursor: changes a peer could not take
//! yet (the retry queue, ordered by when each is due) and multipart uploads to a peer in
//! progress (so a restarted replicator resumes a large object instead of starting over).
//!
//! A change leaves the outbox only when its outcome is settled in one batch with the
//! version's status: either done, or written to the retry queue. Nothing a peer owes is ever
//! held only in memory.

use std::collections::BTreeMap;

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::MetaError;
use crate::keys;
use crate::outbox_entry::{OutboxEntry, OutboxKind};
use crate::record::{Nanos, PeerStatus};
use crate::schema;
use crate::store::MetaStore;

/// A change `peer` has not taken yet, retried at `next_attempt`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryRecord {
    pub entry: OutboxEntry,
    /// Attempts so far (at least 1).
    pub attempts: u32,
    /// When the change is due again.
    pub next_attempt: Nanos,
    /// The last failure, as the operator should read it.
    pub last_error: String,
    /// Whether the peer will not fix the last failure by itself (the version shows FAILED);
    /// otherwise it was transient (the version stays PENDING).
    pub permanent: bool,
}

/// A multipart upload of one version to one peer, in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerUpload {
    pub upload_id: String,
    /// Bytes per part (the last may be smaller); for mirrored multipart sources, 0.
    pub part_size: u64,
    pub started: Nanos,
}

/// What settling a change does to the version's status for the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusUpdate {
    /// Leave the status alone (tag changes do not change whether the data is there).
    Keep,
    Set(PeerStatus),
    /// No rule sends the version to the peer any more.
    Remove,
}

/// The outcome of one attempt to send a change to a peer, written in one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub status: StatusUpdate,
    /// The version id the peer gave the version (foreign targets mint their own).
    pub target_version_id: Option<String>,
    /// The retry record this attempt was made for; it is replaced or removed.
    pub retried: Option<RetryRecord>,
    /// The change failed: retry it as described.
    pub retry: Option<RetryRecord>,
    /// The peer upload of this version is finished or abandoned: forget it.
    pub forget_upload: bool,
}

/// Figures about what a peer still owes, computed from the outbox and the retry queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerBacklog {
    /// Changes not yet taken (outbox past the cursor, plus the retry queue).
    pub changes: u64,
    /// Their data bytes.
    pub bytes: u64,
    /// Commit time of the oldest of them.
    pub oldest_committed: Option<Nanos>,
    /// Of `changes`, those in the retry queue; of those, failed permanently.
    pub retrying: u64,
    pub failed: u64,
    /// The most recent failure among the retried changes.
    pub last_error: Option<String>,
}

impl PeerBacklog {
    fn add(&mut self, entry: &OutboxEntry, retry: Option<&RetryRecord>) {
        self.changes += 1;
        self.bytes += owed_bytes(entry);
        self.oldest_committed = Some(
            self.oldest_committed
                .map_or(entry.committed, |o| o.min(entry.committed)),
        );
        if let Some(r) = retry {
            self.retrying += 1;
            self.failed += u64::from(r.permanent);
            self.last_error = Some(r.last_error.clone());
        }
    }
}

/// Which changes a backlog counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BacklogFilter {
    /// Only this bucket's.
    pub bucket: Option<String>,
    /// Only changes committed before this outbox sequence (a checkpoint's).
    pub below_seq: Option<u64>,
}

impl BacklogFilter {
    fn admits(&self, entry: &OutboxEntry) -> bool {
        self.bucket.as_ref().is_none_or(|b| *b == entry.bucket)
            && self.below_seq.is_none_or(|s| entry.seq < s)
    }
}

fn retry_key(peer: &str, record: &RetryRecord) -> Vec<u8> {
    let mut k = keys::bucket_prefix(peer);
    k.extend_from_slice(&keys::order_preserving_i64(record.next_attempt).to_be_bytes());
    k.extend_from_slice(&record.entry.seq.to_be_bytes());
    k
}

fn upload_key(peer: &str, bucket: &str, key: &str, version_id: &str) -> Vec<u8> {
    let mut k = keys::bucket_prefix(peer);
    keys::push_component(&mut k, bucket.as_bytes());
    keys::push_component(&mut k, key.as_bytes());
    k.extend_from_slice(version_id.as_bytes());
    k
}

impl MetaStore {
    /// Settles one attempt to send `entry` to `peer`: the version's status, the retry queue and
    /// the peer upload, in one batch. A version that no longer exists only loses its queue
    /// records (there is nothing left to mark).
    pub fn settle_replication(
        &self,
        peer: &str,
        entry: &OutboxEntry,
        settlement: Settlement,
    ) -> Result<(), MetaError> {
        let inner = &self.inner;
        let (bucket, key, version_id) = (&entry.bucket, &entry.key, &entry.version_id);
        let _bucket = inner.locks.bucket_shared(bucket);
        let _key = inner.locks.key(bucket, key);
        let mut batch = WriteBatch::default();
        let vkey = schema::version_key(bucket, key, version_id);
        let touches_record =
            settlement.status != StatusUpdate::Keep || settlement.target_version_id.is_some();
        if touches_record {
            if let Some(mut record) = self.read_version(&vkey)? {
                match settlement.status {
                    StatusUpdate::Keep => {}
                    StatusUpdate::Set(status) => {
                        record.replication.peers.insert(peer.to_owned(), status);
                    }
                    StatusUpdate::Remove => {
                        record.replication.peers.remove(peer);
                    }
                }
                if let Some(target) = settlement.target_version_id {
                    record
                        .replication
                        .target_versions
                        .insert(peer.to_owned(), target);
                }
                batch.put_cf(inner.cf(schema::VERSIONS), &vkey, codec::encode(&record));
            }
        }
        let retry_cf = inner.cf(schema::REPLICATION_RETRY);
        if let Some(old) = &settlement.retried {
            batch.delete_cf(retry_cf, retry_key(peer, old));
        }
        if let Some(new) = &settlement.retry {
            batch.put_cf(retry_cf, retry_key(peer, new), codec::encode(new));
        }
        if settlement.forget_upload {
            batch.delete_cf(
                inner.cf(schema::REPLICATION_UPLOADS),
                upload_key(peer, bucket, key, version_id),
            );
        }
        inner.commit(batch, None, "settling a replication attempt")?;
        Ok(())
    }

    /// Retry records of `peer` due at or before `now`, soonest first, at most `limit`.
    pub fn replication_retries_due(
        &self,
        peer: &str,
        now: Nanos,
        limit: usize,
    ) -> Result<Vec<RetryRecord>, MetaError> {
        let mut out = Vec::new();
        self.scan_retries(peer, |record| {
            if record.next_attempt > now || out.len() >= limit {
                return false;
            }
            out.push(record);
            true
        })?;
        Ok(out)
    }

    /// When the soonest retry of `peer` is due, if any is queued.
    pub fn replication_next_retry(&self, peer: &str) -> Result<Option<Nanos>, MetaError> {
        let mut next = None;
        self.scan_retries(peer, |record| {
            next = Some(record.next_attempt);
            false
        })?;
        Ok(next)
    }

    /// Makes every retry of `peer` due now (the peer came back: no need to wait out the
    /// backoff of changes that failed while it was away). Returns how many.
    pub fn replication_retry_now(&self, peer: &str, now: Nanos) -> Result<usize, MetaError> {
        let mut later = Vec::new();
        self.scan_retries(peer, |record| {
            if record.next_attempt > now {
                later.push(record);
            }
            true
        })?;
        let inner = &self.inner;
        let cf = inner.cf(schema::REPLICATION_RETRY);
        let n = later.len();
        for chunk in later.chunks(1000) {
            let mut batch = WriteBatch::default();
            for old in chunk {
                batch.delete_cf(cf, retry_key(peer, old));
                let new = RetryRecord {
                    next_attempt: now,
                    ..old.clone()
                };
                batch.put_cf(cf, retry_key(peer, &new), codec::encode(&new));
            }
            inner.commit(batch, None, "rescheduling replication retries")?;
        }
        Ok(n)
    }

    /// Calls `f` with the retry records of `peer`, soonest first, while it returns true.
    fn scan_retries(
        &self,
        peer: &str,
        mut f: impl FnMut(RetryRecord) -> bool,
    ) -> Result<(), MetaError> {
        let prefix = keys::bucket_prefix(peer);
        let mut it = self.inner.iter_prefix(schema::REPLICATION_RETRY, &prefix);
        while it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            let record: RetryRecord = codec::decode(schema::REPLICATION_RETRY, k, v)?.0;
            if !f(record) {
                return Ok(());
            }
            it.next();
        }
        it.status()
            .map_err(MetaError::db("reading the replication retry queue"))
    }

    /// What `peer` still owes: the outbox entries naming it from its cursor on, plus its
    /// retry queue, in total and per bucket. Exact after any restart: both are durable.
    pub fn peer_backlog(
        &self,
        peer: &str,
        filter: &BacklogFilter,
    ) -> Result<(PeerBacklog, BTreeMap<String, PeerBacklog>), MetaError> {
        let mut total = PeerBacklog::default();
        let mut buckets: BTreeMap<String, PeerBacklog> = BTreeMap::new();
        let mut from = self.outbox_cursor(peer)?;
        let end = filter.below_seq.unwrap_or(u64::MAX);
        while from < end {
            let page = self.outbox_read(from, 1024)?;
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            for e in page.iter().filter(|e| e.is_for(peer) && filter.admits(e)) {
                total.add(e, None);
                buckets.entry(e.bucket.clone()).or_default().add(e, None);
            }
        }
        self.scan_retries(peer, |r| {
            if filter.admits(&r.entry) {
                total.add(&r.entry, Some(&r));
                buckets
                    .entry(r.entry.bucket.clone())
                    .or_default()
                    .add(&r.entry, Some(&r));
            }
            true
        })?;
        Ok((total, buckets))
    }

    /// The commit time of the oldest change `peer` still owes, or `None` when it owes
    /// nothing: the first outbox entry naming it from its cursor on (entries are numbered in
    /// commit order), and its retry queue. Reads the outbox only up to that first entry, so
    /// it stays cheap however large the backlog.
    pub fn peer_oldest_owed(&self, peer: &str) -> Result<Option<Nanos>, MetaError> {
        let mut oldest: Option<Nanos> = None;
        let mut from = self.outbox_cursor(peer)?;
        'pages: loop {
            let page = self.outbox_read(from, 1024)?;
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            for e in &page {
                if e.is_for(peer) {
                    oldest = Some(e.committed);
                    break 'pages;
                }
            }
        }
        self.scan_retries(peer, |r| {
            oldest = Some(oldest.map_or(r.entry.committed, |o| o.min(r.entry.committed)));
            true
        })?;
        Ok(oldest)
    }

    /// Whether `peer` has settled every change committed below outbox sequence `below`: its
    /// cursor is past them and none of them waits in its retry queue. Cheap (no outbox scan),
    /// for checkpoints polled often.
    pub fn peer_reached(&self, peer: &str, below: u64) -> Result<bool, MetaError> {
        if self.outbox_cursor(peer)? < below {
            return Ok(false);
        }
        let mut waiting = false;
        self.scan_retries(peer, |r| {
            waiting |= r.entry.seq < below;
            !waiting
        })?;
        Ok(!waiting)
    }

    /// The upload of this version to `peer` in progress, if one was started.
    pub fn peer_upload(
        &self,
        peer: &str,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Option<PeerUpload>, MetaError> {
        Ok(self
            .inner
            .get_record(
                schema::REPLICATION_UPLOADS,
                &upload_key(peer, bucket, key, version_id),
            )?
            .map(|(u, _)| u))
    }

    /// Remembers an upload of this version to `peer`, so a restart resumes it.
    pub fn put_peer_upload(
        &self,
        peer: &str,
        bucket: &str,
        key: &str,
        version_id: &str,
        upload: &PeerUpload,
    ) -> Result<(), MetaError> {
        let inner = &self.inner;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            inner.cf(schema::REPLICATION_UPLOADS),
            upload_key(peer, bucket, key, version_id),
            codec::encode(upload),
        );
        inner.commit(batch, None, "recording a peer upload")?;
        Ok(())
    }
}

/// Data bytes a change carries to a peer.
fn owed_bytes(entry: &OutboxEntry) -> u64 {
    match entry.kind {
        OutboxKind::Put => entry.size,
        _ => 0,
    }
}
