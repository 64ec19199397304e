//! The replicator reads object data through the store's verified read path, as GET does:
//! decrypted with the version's data key when it is SSE-S3 or SSE-KMS (the peer encrypts the
//! replica with its own keys).

use std::ops::Range;

use meridian_metadata::VersionRecord;
use meridian_replicator::{BoxError, ObjectBytes, ObjectSource};
use meridian_store::Store;

/// The store as the replicator's [`ObjectSource`].
pub struct StoreSource(pub Store);

#[async_trait::async_trait]
impl ObjectSource for StoreSource {
    async fn read(
        &self,
        record: &VersionRecord,
        range: Range<u64>,
    ) -> Result<ObjectBytes, BoxError> {
        let key = match &record.encryption {
            Some(e) => Some(self.0.sse.data_key(e, None).await?),
            None => None,
        };
        Ok(Box::pin(self.0.read_plain(
            &record.storage,
            range,
            key.as_ref(),
        )?))
    }
}
