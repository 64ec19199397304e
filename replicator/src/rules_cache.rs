//! The replication rules of every bucket, read from the metadata store once and kept in
//! memory: every commit consults them (to record PENDING), so a PUT costs no extra read. Only
//! this process changes them, and it invalidates the entry when it does.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use meridian_metadata::{MetaError, MetaStore};

use crate::rules::{ReplicationConfig, CONFIG_DOCUMENT};

pub struct RulesCache {
    meta: MetaStore,
    buckets: RwLock<HashMap<String, Option<Arc<ReplicationConfig>>>>,
}

impl RulesCache {
    pub fn new(meta: MetaStore) -> RulesCache {
        RulesCache {
            meta,
            buckets: RwLock::new(HashMap::new()),
        }
    }

    /// The bucket's replication configuration, `None` when it has none (or the bucket does
    /// not exist). Blocking on a miss: call it where metadata reads may block.
    pub fn get(&self, bucket: &str) -> Result<Option<Arc<ReplicationConfig>>, MetaError> {
        if let Some(found) = self
            .buckets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(bucket)
        {
            return Ok(found.clone());
        }
        let loaded = match self.meta.get_bucket_config(bucket, CONFIG_DOCUMENT) {
            Ok(Some(doc)) => Some(Arc::new(ReplicationConfig::from_json(&doc).map_err(
                |e| MetaError::Corrupt {
                    cf: "bucket_configs",
                    key: format!("{bucket}/{CONFIG_DOCUMENT}"),
                    reason: e.to_string(),
                },
            )?)),
            Ok(None) | Err(MetaError::NoSuchBucket { .. }) => None,
            Err(e) => return Err(e),
        };
        self.buckets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(bucket.to_owned(), loaded.clone());
        Ok(loaded)
    }

    /// Forgets what is cached for `bucket` (its configuration was put or deleted, or the
    /// bucket was deleted).
    pub fn invalidate(&self, bucket: &str) {
        self.buckets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(bucket);
    }
}
