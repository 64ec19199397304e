//! The reclaim queue: storage that no committed version references any more. Entries are
//! written in the same batch as the change that orphaned the storage (a replaced null
//! version, a deleted version, a replaced or unused part), so a crash between commit and
//! deleting the data leaks nothing; the gateway deletes the data, then acknowledges.

use rocksdb::WriteBatch;

use crate::codec;
use crate::error::MetaError;
use crate::record::{ReclaimEntry, ReclaimRecord};
use crate::schema;
use crate::store::MetaStore;

impl MetaStore {
    /// Up to `limit` entries, oldest first. Entries stay until `reclaim_done`.
    pub fn reclaim_pending(&self, limit: usize) -> Result<Vec<ReclaimEntry>, MetaError> {
        let mut it = self.inner.iter(schema::RECLAIM, &[], None);
        let mut out = Vec::new();
        while out.len() < limit && it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            let seq = u64::from_be_bytes(k.try_into().map_err(|_| {
                MetaError::corrupt(schema::RECLAIM, k, "sequence key is not 8 bytes")
            })?);
            let (record, _): (ReclaimRecord, u8) = codec::decode(schema::RECLAIM, k, v)?;
            out.push(ReclaimEntry {
                seq,
                storage: record.storage,
            });
            it.next();
        }
        it.status()
            .map_err(MetaError::db("reading the reclaim queue"))?;
        Ok(out)
    }

    /// Removes entry `seq` (its data has been deleted). Unknown sequence numbers are ignored.
    pub fn reclaim_done(&self, seq: u64) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.inner.cf(schema::RECLAIM), seq.to_be_bytes());
        self.inner
            .commit(batch, None, "acknowledging a reclaim entry")?;
        Ok(())
    }

    /// Queues a layout blob directly, e.g. shards written for a PUT whose commit then failed.
    pub fn reclaim_add(&self, storage: Vec<u8>) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        self.inner.queue_reclaim_layout(&mut batch, storage);
        self.inner
            .commit(batch, None, "queueing storage for reclaim")?;
        Ok(())
    }
}
