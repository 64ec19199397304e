//! The replication outbox: one entry per committed change, keyed by a monotonically increasing
//! sequence number and written in the same WriteBatch as the change, so nothing acknowledged
//! can be missed by the replicator. Entries and their sequence numbers are in
//! `outbox_entry`; this is the queue: reading, acknowledging, trimming.

use rocksdb::WriteBatch;

use crate::codec;
use crate::error::MetaError;
use crate::outbox_entry::OutboxEntry;
use crate::schema;
use crate::store::MetaStore;

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
