//! One kind of bucket configuration document (replication rules, lifecycle rules), read from
//! the store once per bucket and kept decoded in memory: hot paths consult them on every
//! request or commit, so they cost no extra read. Only this process changes them, and it
//! invalidates the entry when it does.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::{MetaError, MetaStore};

/// Decodes a stored document, or says why it cannot.
pub type DecodeDocument<T> = fn(&[u8]) -> Result<T, String>;

pub struct ConfigCache<T> {
    meta: MetaStore,
    document: &'static str,
    decode: DecodeDocument<T>,
    buckets: RwLock<HashMap<String, Option<Arc<T>>>>,
}

impl<T> ConfigCache<T> {
    /// A cache of the configuration document named `document` of every bucket.
    pub fn new(meta: MetaStore, document: &'static str, decode: DecodeDocument<T>) -> Self {
        ConfigCache {
            meta,
            document,
            decode,
            buckets: RwLock::new(HashMap::new()),
        }
    }

    /// The bucket's document, `None` when it has none (or the bucket does not exist).
    /// Blocking on a miss: call it where metadata reads may block.
    pub fn get(&self, bucket: &str) -> Result<Option<Arc<T>>, MetaError> {
        if let Some(found) = self.cached(bucket) {
            return Ok(found);
        }
        let loaded = match self.meta.get_bucket_config(bucket, self.document) {
            Ok(Some(doc)) => Some(Arc::new((self.decode)(&doc).map_err(|reason| {
                MetaError::Corrupt {
                    cf: "bucket_configs",
                    key: format!("{bucket}/{}", self.document),
                    reason,
                }
            })?)),
            Ok(None) | Err(MetaError::NoSuchBucket { .. }) => None,
            Err(e) => return Err(e),
        };
        self.buckets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(bucket.to_owned(), loaded.clone());
        Ok(loaded)
    }

    /// What is cached for `bucket`, without reading the store: `None` on a miss.
    pub fn cached(&self, bucket: &str) -> Option<Option<Arc<T>>> {
        self.buckets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(bucket)
            .cloned()
    }

    /// Forgets what is cached for `bucket` (its document was put or deleted, or the bucket
    /// was deleted).
    pub fn invalidate(&self, bucket: &str) {
        self.buckets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(bucket);
    }
}
