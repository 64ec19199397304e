//! Walks over existing versions that queue them for a peer again: a backfill (a rule with
//! `ExistingObjectReplication` sends the versions that existed before it) or a resync (a
//! peer that lost data gets back what it lacks). A job's position is stored after each step,
//! so a restarted server continues where it stopped; queueing a version twice only sends it
//! twice, which the peer ignores.

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::MetaError;
use crate::keys;
use crate::outbox_entry::{OutboxDraft, OutboxKind};
use crate::record::{Nanos, Origin, PeerStatus};
use crate::schema;
use crate::store::MetaStore;

/// Why a job walks a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    /// Versions older than the rule (`cutoff`), once.
    #[default]
    Backfill,
    /// Every version the peer does not hold with the same ETag.
    Resync,
}

/// A backfill or resync of one bucket towards one peer, and how far it got.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicationJob {
    pub peer: String,
    pub bucket: String,
    pub kind: JobKind,
    /// Where the walk continues (a ListObjectVersions position).
    pub key_marker: Option<String>,
    pub version_marker: Option<String>,
    /// Versions looked at, queued for the peer (and their bytes), and skipped (replicas, or
    /// already on the peer).
    pub scanned: u64,
    pub queued: u64,
    pub queued_bytes: u64,
    pub skipped: u64,
    pub started: Nanos,
    pub finished: Option<Nanos>,
    /// Backfills take only versions committed before this time (later ones went through
    /// the outbox already).
    pub cutoff: Option<Nanos>,
    /// Set when the job was cancelled.
    pub cancelled: bool,
}

impl ReplicationJob {
    pub fn is_running(&self) -> bool {
        self.finished.is_none() && !self.cancelled
    }
}

fn job_key(peer: &str, bucket: &str) -> Vec<u8> {
    let mut k = keys::bucket_prefix(peer);
    keys::push_component(&mut k, bucket.as_bytes());
    k
}

/// What queueing one version did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requeued {
    /// An outbox entry now names the peer; the version's data size.
    Queued(u64),
    /// Replicas are never sent on; nothing queued.
    Replica,
    /// The version no longer exists.
    Gone,
}

impl MetaStore {
    /// Stores (creates or replaces) a job.
    pub fn put_replication_job(&self, job: &ReplicationJob) -> Result<(), MetaError> {
        let inner = &self.inner;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            inner.cf(schema::REPLICATION_JOBS),
            job_key(&job.peer, &job.bucket),
            codec::encode(job),
        );
        inner.commit(batch, None, "storing a replication job")?;
        Ok(())
    }

    /// The job of `peer` on `bucket`, if one was ever started.
    pub fn replication_job(
        &self,
        peer: &str,
        bucket: &str,
    ) -> Result<Option<ReplicationJob>, MetaError> {
        Ok(self
            .inner
            .get_record(schema::REPLICATION_JOBS, &job_key(peer, bucket))?
            .map(|(j, _)| j))
    }

    /// Every job, by peer then bucket.
    pub fn replication_jobs(&self) -> Result<Vec<ReplicationJob>, MetaError> {
        let mut it = self.inner.iter(schema::REPLICATION_JOBS, &[], None);
        let mut out = Vec::new();
        while it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            out.push(codec::decode(schema::REPLICATION_JOBS, k, v)?.0);
            it.next();
        }
        it.status()
            .map_err(MetaError::db("reading replication jobs"))?;
        Ok(out)
    }

    /// Queues one existing version for `peer` again, in one batch: PENDING in its status
    /// and an outbox entry naming the peer (a new version or delete marker, as it is).
    pub fn requeue_version(
        &self,
        peer: &str,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Requeued, MetaError> {
        self.requeue(peer, bucket, key, version_id, false)
    }

    /// [`MetaStore::requeue_version`] of replicas too: for the other nodes of a region, which
    /// hold every version of their partitions, whatever its origin.
    pub fn requeue_copy(
        &self,
        peer: &str,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Requeued, MetaError> {
        self.requeue(peer, bucket, key, version_id, true)
    }

    /// Queues the removal of a version (gone here already) for `peer` again: another node
    /// of this region that refused it when it was first sent.
    pub fn requeue_removal(
        &self,
        peer: &str,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<(), MetaError> {
        let draft = OutboxDraft {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: version_id.to_owned(),
            kind: OutboxKind::DeleteVersion,
            origin: Origin::Local,
            peers: vec![peer.to_owned()],
            size: 0,
        };
        self.inner
            .commit(
                WriteBatch::default(),
                Some(draft),
                "queueing a removal for a peer again",
            )
            .map(|_| ())
    }

    fn requeue(
        &self,
        peer: &str,
        bucket: &str,
        key: &str,
        version_id: &str,
        replicas: bool,
    ) -> Result<Requeued, MetaError> {
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_shared(bucket);
        let _key = inner.locks.key(bucket, key);
        let vkey = schema::version_key(bucket, key, version_id);
        let Some(mut record) = self.read_version(&vkey)? else {
            return Ok(Requeued::Gone);
        };
        if !replicas && matches!(record.replication.origin, Origin::Replica { .. }) {
            return Ok(Requeued::Replica);
        }
        record
            .replication
            .peers
            .insert(peer.to_owned(), PeerStatus::Pending);
        let mut batch = WriteBatch::default();
        batch.put_cf(inner.cf(schema::VERSIONS), &vkey, codec::encode(&record));
        let draft = OutboxDraft {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: version_id.to_owned(),
            kind: if record.is_delete_marker {
                OutboxKind::DeleteMarker
            } else {
                OutboxKind::Put
            },
            origin: Origin::Local,
            peers: vec![peer.to_owned()],
            size: record.size,
        };
        inner.commit(batch, Some(draft), "queueing a version for a peer again")?;
        Ok(Requeued::Queued(record.size))
    }

    /// The first outbox sequence not yet settled: every change acknowledged before this call
    /// has a lower one (what a replication checkpoint waits for).
    pub fn outbox_watermark(&self) -> u64 {
        self.inner.outbox.watermark()
    }
}
