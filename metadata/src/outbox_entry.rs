//! What an outbox entry is, and the sequence numbers that key the outbox (and the reclaim
//! queue). A leaf below the store: the queue operations live in `outbox`.
//!
//! Sequence numbers are handed out before the batch is written, so concurrent commits may land
//! out of order. The [`Sequencer`] tracks the numbers still in flight and readers only see
//! entries below the lowest of them: a reader never observes seq N+1 while N may still appear.
//! A failed commit releases its number, leaving a gap that readers simply step over.

use std::collections::BTreeSet;
use std::sync::Mutex;

#[cfg(feature = "db")]
use rocksdb::DB;
use serde::{Deserialize, Serialize};

#[cfg(feature = "db")]
use crate::error::MetaError;
use crate::record::{Nanos, Origin};
#[cfg(feature = "db")]
use crate::schema;

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
    /// The retention or legal hold of a version changed.
    Lock,
}

impl OutboxKind {
    /// A change to a version's tags or lock: sent for replicas too (active-active), and
    /// never changes the version's replication status.
    pub fn is_metadata_only(self) -> bool {
        matches!(self, OutboxKind::Tags | OutboxKind::Lock)
    }
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
    pub(crate) cursors: Mutex<()>,
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
#[cfg(feature = "db")]
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

/// The largest big-endian u64 key of `cf`, if any.
#[cfg(feature = "db")]
pub(crate) fn last_u64_key(db: &DB, cf: &'static str) -> Result<Option<u64>, MetaError> {
    let mut it = db.raw_iterator_cf(db.cf_handle(cf).expect("column family created at open"));
    it.seek_to_last();
    it.status()
        .map_err(MetaError::db("finding the last sequence number"))?;
    match it.key() {
        Some(k) => {
            let bytes: [u8; 8] = k
                .try_into()
                .map_err(|_| MetaError::corrupt(cf, k, "sequence key is not 8 bytes"))?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
        None => Ok(None),
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
