//! How the replicator reads the data of a version: through the same verified read path GET
//! uses, which the server provides (the replicator knows nothing of disks or shards).

use std::ops::Range;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use meridian_metadata::VersionRecord;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A stream of verified object bytes.
pub type ObjectBytes = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send + Sync>>;

/// Reads stored object data.
#[async_trait::async_trait]
pub trait ObjectSource: Send + Sync + 'static {
    /// The bytes `range` of what travels for `record`: its plaintext, decrypted when it is
    /// encrypted with a key the node holds (SSE-S3, SSE-KMS), or, for a version only its
    /// customer can decrypt (SSE-C), its stored ciphertext. Every byte has passed the store's
    /// integrity checks, and a read that cannot be verified ends the stream with an error.
    async fn read(
        &self,
        record: &VersionRecord,
        range: Range<u64>,
    ) -> Result<ObjectBytes, BoxError>;

    /// For a version that travels sealed (SSE-C): the size of its stored ciphertext and the
    /// plaintext sizes of its sealed segments; `None` for one that travels as plaintext.
    fn sealed_form(&self, record: &VersionRecord) -> Result<Option<(u64, Vec<u64>)>, BoxError>;
}
