//! Streaming writes of a new object.

use bytes::Bytes;

use crate::{DataId, ErasureError, ObjectDescriptor};

/// Result of a successful write.
#[derive(Clone, Debug)]
pub struct WriteOutcome {
    pub descriptor: ObjectDescriptor,
    /// Shards that could not be written (write quorum was still met); heal them.
    pub missing_shards: Vec<usize>,
}

/// A streaming write of one new object.
pub struct ObjectWriter {
    data_id: DataId,
}

impl ObjectWriter {
    /// The data id the object's shards are stored under.
    pub fn data_id(&self) -> DataId {
        self.data_id
    }

    /// Accepts a chunk of any size.
    pub async fn write(&mut self, _chunk: Bytes) -> Result<(), ErasureError> {
        todo!()
    }

    /// Flushes, fsyncs per durability and renames the shards into place.
    pub async fn finish(self) -> Result<WriteOutcome, ErasureError> {
        todo!()
    }

    /// Discards everything written so far.
    pub async fn abort(self) {
        todo!()
    }
}
