//! The replicator reads object data through the store's verified read path, as GET does.

use std::ops::Range;

use meridian_metadata::Storage;
use meridian_replicator::{BoxError, ObjectBytes, ObjectSource};
use meridian_store::Store;

/// The store as the replicator's [`ObjectSource`].
pub struct StoreSource(pub Store);

impl ObjectSource for StoreSource {
    fn read(&self, storage: &Storage, range: Range<u64>) -> Result<ObjectBytes, BoxError> {
        Ok(Box::pin(self.0.read(storage, range)?))
    }
}
