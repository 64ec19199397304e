//! The replication outbox: one entry per committed change, keyed by a monotonically increasing
//! sequence number and written in the same WriteBatch as the change, so nothing acknowledged
//! can be missed by the replicator.
//!
//! Sequence numbers are handed out before the batch is written, so concurrent commits may land
//! out of order. The [`Sequencer`] tracks the numbers still in flight and readers only see
//! entries below the lowest of them: a reader never observes seq N+1 while N may still appear.
//! A failed commit releases its number, leaving a gap that readers simply step over.

use std::collections::BTreeSet;
use std::sync::Mutex;

use rocksdb::{WriteBatch, DB};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::MetaError;
use crate::record::{Nanos, Origin};
use crate::schema;
use crate::store::{last_u64_key, MetaStore};

/// What kind of change an outbox entry announces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutboxKind {
    /// A new object version.
    #[default]
    Put,
    /// A new delete marker.
    DeleteMarker,
    /// Removal of one version (or marker) by version id.
    DeleteVersion,
    /// The tags of a version were replaced.
    Tags,
}

/// One committed change, in commit order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboxEntry {
    pub seq: u64,
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub kind: OutboxKind,
    /// When the change was committed.
    pub committed: Nanos,
    /// Who made the change: replicas (`Origin::Replica`) must not be replicated again.
    pub origin: Origin,
    /// The peers whose replication rules matched when the change was committed (its
    /// version's PENDING statuses). Empty for changes no peer takes.
    pub peers: Vec<String>,
    /// Size of the version's data (0 for markers, tag changes and removals): what a peer
    /// still owes in bytes.
    pub size: u64,
}

impl OutboxEntry {
    /// Whether `peer` has to take this change.
    pub fn is_for(&self, peer: &str) -> bool {
        self.peers.iter().any(|p| p == peer)
    }
}

/// The parts of an outbox entry the change itself decides.
pub(crate) struct OutboxDraft {
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub kind: OutboxKind,
    pub origin: Origin,
    pub peers: Vec<String>,
    pub size: u64,
}

/// Hands out sequence numbers and knows which are still being committed.
pub(crate) struct Sequencer {
    state: Mutex<SequencerState>,
    cursors: Mutex<()>,
}

struct SequencerState {
    next: u64,
    in_flight: BTreeSet<u64>,
}

/// A sequence number being committed; released (committed or not) when dropped.
pub(crate) struct Ticket<'a> {
    seq: u64,
    sequencer: &'a Sequencer,
}

impl Ticket<'_> {
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.sequencer.lock().in_flight.remove(&self.seq);
    }
}

impl Sequencer {
    pub fn new(next: u64) -> Self {
        Sequencer {
            state: Mutex::new(SequencerState {
                next,
                in_flight: BTreeSet::new(),
            }),
            cursors: Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SequencerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn begin(&self) -> Ticket<'_> {
        let mut s = self.lock();
        let seq = s.next;
        s.next += 1;
        s.in_flight.insert(seq);
        Ticket {
            seq,
            sequencer: self,
        }
    }

    /// Every sequence number below this one is settled (committed or abandoned).
    pub fn watermark(&self) -> u64 {
        let s = self.lock();
        s.in_flight.first().copied().unwrap_or(s.next)
    }
}

/// The first sequence number to hand out after opening `db`: past the last entry and past
/// everything ever trimmed.
pub(crate) fn next_sequence_at_open(db: &DB) -> Result<u64, MetaError> {
    let after_last = last_u64_key(db, schema::OUTBOX)?.map_or(1, |s| s + 1);
    let meta = db
        .cf_handle(schema::META)
        .expect("meta column family exists");
    let floor = db
        .get_cf(meta, schema::META_OUTBOX_FLOOR)
        .map_err(MetaError::db("reading the outbox floor"))?;
    let floor = match floor {
        Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(|_| {
            MetaError::corrupt(
                schema::META,
                schema::META_OUTBOX_FLOOR,
                "outbox floor is not 8 bytes",
            )
        })?),
        None => 1,
    };
    Ok(after_last.max(floor))
}

impl MetaStore {
    /// Entries with `seq >= from`, in commit order, at most `limit`. Never returns an entry
    /// while an earlier sequence number is still being committed, so a reader that continues
    /// from the last seq it saw + 1 skips nothing.
    pub fn outbox_read(&self, from: u64, limit: usize) -> Result<Vec<OutboxEntry>, MetaError> {
        let inner = &self.inner;
        // Read the watermark before opening the iterator: everything below it is visible.
        let watermark = inner.outbox.watermark();
        if from >= watermark || limit == 0 {
            return Ok(Vec::new());
        }
        let mut it = inner.iter(
            schema::OUTBOX,
            &from.to_be_bytes(),
            Some(watermark.to_be_bytes().to_vec()),
        );
        let mut out = Vec::with_capacity(limit.min(1024));
        while out.len() < limit && it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            out.push(codec::decode(schema::OUTBOX, k, v)?.0);
            it.next();
        }
        it.status().map_err(MetaError::db("reading the outbox"))?;
        Ok(out)
    }

    /// Records that `peer` has handled every entry up to and including `seq`. The cursor never
    /// moves backwards.
    pub fn outbox_ack(&self, peer: &str, seq: u64) -> Result<(), MetaError> {
        if peer.is_empty() {
            return Err(MetaError::InvalidArgument(
                "peer name must not be empty".into(),
            ));
        }
        let inner = &self.inner;
        let _serial = inner
            .outbox
            .cursors
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let next = seq.saturating_add(1);
        if self.outbox_cursor(peer)? >= next {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            inner.cf(schema::OUTBOX_CURSORS),
            peer.as_bytes(),
            next.to_be_bytes(),
        );
        inner.commit(batch, None, "acknowledging outbox entries")?;
        Ok(())
    }

    /// The first sequence number `peer` has not acknowledged (0 if it never acknowledged any):
    /// `outbox_read(outbox_cursor(peer), n)` resumes where the peer left off.
    pub fn outbox_cursor(&self, peer: &str) -> Result<u64, MetaError> {
        match self.inner.get(schema::OUTBOX_CURSORS, peer.as_bytes())? {
            Some(v) => Ok(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                MetaError::corrupt(
                    schema::OUTBOX_CURSORS,
                    peer.as_bytes(),
                    "cursor is not 8 bytes",
                )
            })?)),
            None => Ok(0),
        }
    }

    /// Deletes every entry with `seq < below` (e.g. once all peers acknowledged them). Sequence
    /// numbers are never reused, even after trimming the outbox empty and reopening.
    pub fn outbox_trim(&self, below: u64) -> Result<(), MetaError> {
        let inner = &self.inner;
        let below = below.min(inner.outbox.watermark());
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            inner.cf(schema::OUTBOX),
            0u64.to_be_bytes(),
            below.to_be_bytes(),
        );
        let _serial = inner
            .outbox
            .cursors
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let floor = next_sequence_floor(self)?;
        if below > floor {
            batch.put_cf(
                inner.cf(schema::META),
                schema::META_OUTBOX_FLOOR,
                below.to_be_bytes(),
            );
        }
        inner.commit(batch, None, "trimming the outbox")?;
        Ok(())
    }
}

fn next_sequence_floor(store: &MetaStore) -> Result<u64, MetaError> {
    match store.inner.get(schema::META, schema::META_OUTBOX_FLOOR)? {
        Some(v) => Ok(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
            MetaError::corrupt(
                schema::META,
                schema::META_OUTBOX_FLOOR,
                "outbox floor is not 8 bytes",
            )
        })?)),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::Sequencer;

    #[test]
    fn watermark_stays_below_the_oldest_sequence_in_flight() {
        let s = Sequencer::new(1);
        assert_eq!(s.watermark(), 1);
        let (a, b, c) = (s.begin(), s.begin(), s.begin());
        assert_eq!((a.seq(), b.seq(), c.seq()), (1, 2, 3));
        drop(b); // 2 committed before 1: still invisible
        assert_eq!(s.watermark(), 1);
        drop(a); // 1 settled (committed or failed): 1 and 2 readable, 3 still in flight
        assert_eq!(s.watermark(), 3);
        drop(c);
        assert_eq!(s.watermark(), 4);
    }
}
