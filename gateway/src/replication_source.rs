//! The replicator reads object data through the store's verified read path, as GET does:
//! decrypted with the version's data key when it is SSE-S3 or SSE-KMS (the peer encrypts the
//! replica with its own keys), and as stored — ciphertext — when it is SSE-C, whose key only
//! the customer has (it travels sealed, with its sealed data key).

use std::ops::Range;

use meridian_metadata::{EncryptionMode, VersionRecord};
use meridian_replicator::{BoxError, ObjectBytes, ObjectSource};
use meridian_store::Store;

/// The store as the replicator's [`ObjectSource`].
pub struct StoreSource(pub Store);

fn is_sealed_in_transit(record: &VersionRecord) -> bool {
    record.encryption.as_ref().and_then(|e| e.mode) == Some(EncryptionMode::Customer)
}

#[async_trait::async_trait]
impl ObjectSource for StoreSource {
    async fn read(
        &self,
        record: &VersionRecord,
        range: Range<u64>,
    ) -> Result<ObjectBytes, BoxError> {
        if is_sealed_in_transit(record) {
            return Ok(Box::pin(self.0.read(&record.storage, range)?));
        }
        let key = match &record.encryption {
            Some(e) => Some(self.0.sse.data_key(e, None).await?),
            None => None,
        };
        let segments = record.encryption.as_ref().map_or(&[][..], |e| &e.segments);
        Ok(Box::pin(self.0.read_plain(
            &record.storage,
            range,
            key.as_ref(),
            segments,
        )?))
    }

    fn sealed_form(&self, record: &VersionRecord) -> Result<Option<(u64, Vec<u64>)>, BoxError> {
        if !is_sealed_in_transit(record) {
            return Ok(None);
        }
        let segments = record.encryption.as_ref().map_or(&[][..], |e| &e.segments);
        Ok(Some((
            Store::stored_size(&record.storage)?,
            Store::sealed_segments(&record.storage, segments)?,
        )))
    }
}
