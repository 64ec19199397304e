//! Buckets: their records, versioning state and named configuration documents (replication,
//! tagging, policy, lifecycle, ... — opaque bytes to this crate).
//!
//! A bucket can only be deleted when no version, delete marker or multipart upload remains;
//! the check and the delete happen under the bucket's exclusive lock, which every change
//! inside the bucket holds shared, so nothing can be added in between.

use std::collections::BTreeMap;

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::MetaError;
use crate::keys;
use crate::record::Nanos;
use crate::schema;
use crate::store::MetaStore;

/// S3 bucket versioning state. A bucket that was ever versioned can only be enabled or
/// suspended, never unversioned again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VersioningState {
    #[default]
    Unversioned,
    Enabled,
    Suspended,
}

/// A bucket's configuration documents, by name.
pub type BucketDocs = BTreeMap<String, Vec<u8>>;

/// A bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BucketRecord {
    pub name: String,
    pub created: Nanos,
    pub owner: String,
    pub region: String,
    pub versioning: VersioningState,
    /// Object Lock is enabled (for ever: it cannot be disabled, and versioning stays
    /// enabled).
    pub object_lock: bool,
}

impl MetaStore {
    /// Creates a bucket; `Err(BucketExists)` (with the current owner) if the name is taken.
    pub fn create_bucket(&self, bucket: BucketRecord) -> Result<(), MetaError> {
        if bucket.name.is_empty() || bucket.name.len() > 255 {
            return Err(MetaError::InvalidArgument(format!(
                "invalid bucket name {:?}",
                bucket.name
            )));
        }
        if bucket.object_lock && bucket.versioning != VersioningState::Enabled {
            return Err(MetaError::InvalidArgument(
                "a bucket with Object Lock is created with versioning enabled".to_owned(),
            ));
        }
        let inner = &self.inner;
        let _create = inner.locks.create();
        let _bucket = inner.locks.bucket_shared(&bucket.name);
        if let Some(existing) = self.get_bucket(&bucket.name)? {
            return Err(MetaError::BucketExists {
                bucket: bucket.name,
                owner: existing.owner,
            });
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            inner.cf(schema::BUCKETS),
            bucket.name.as_bytes(),
            codec::encode(&bucket),
        );
        inner.commit(batch, None, "creating a bucket")?;
        Ok(())
    }

    pub fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>, MetaError> {
        Ok(self
            .inner
            .get_record(schema::BUCKETS, name.as_bytes())?
            .map(|(b, _)| b))
    }

    /// The bucket's record, or `Err(NoSuchBucket)`.
    pub(crate) fn require_bucket(&self, name: &str) -> Result<BucketRecord, MetaError> {
        self.get_bucket(name)?
            .ok_or_else(|| MetaError::NoSuchBucket {
                bucket: name.to_owned(),
            })
    }

    /// Every bucket, sorted by name.
    pub fn list_buckets(&self) -> Result<Vec<BucketRecord>, MetaError> {
        let mut it = self.inner.iter(schema::BUCKETS, &[], None);
        let mut out = Vec::new();
        while it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            out.push(codec::decode(schema::BUCKETS, k, v)?.0);
            it.next();
        }
        it.status().map_err(MetaError::db("listing buckets"))?;
        Ok(out)
    }

    /// Deletes a bucket and its configuration documents; `Err(BucketNotEmpty)` while any
    /// version or delete marker remains, `Err(NoSuchBucket)` if absent. Multipart uploads in
    /// progress are aborted in the same batch (as S3 does), their parts queued for reclaim.
    pub fn delete_bucket(&self, name: &str) -> Result<(), MetaError> {
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_exclusive(name);
        self.require_bucket(name)?;
        let prefix = keys::bucket_prefix(name);
        let it = inner.iter_prefix(schema::HISTORY, &prefix);
        it.status()
            .map_err(MetaError::db("checking that a bucket is empty"))?;
        if it.valid() {
            return Err(MetaError::BucketNotEmpty {
                bucket: name.to_owned(),
            });
        }
        let mut batch = WriteBatch::default();
        // The exclusive bucket lock keeps part writes and completions out while this runs.
        for upload in self.bucket_uploads(name)? {
            let parts = self.all_parts(name, &upload.key, &upload.upload_id)?;
            self.remove_upload(&mut batch, &upload, parts, &[]);
        }
        batch.delete_cf(inner.cf(schema::BUCKETS), name.as_bytes());
        let end = keys::successor(&prefix).expect("a bucket prefix ends with a terminator");
        batch.delete_range_cf(inner.cf(schema::BUCKET_CONFIGS), &prefix, &end);
        batch.delete_range_cf(inner.cf(schema::COMPLETED_UPLOADS), &prefix, &end);
        inner.commit(batch, None, "deleting a bucket")?;
        Ok(())
    }

    /// Enables Object Lock on a bucket whose versioning is enabled (`Err(InvalidBucketState)`
    /// otherwise). Enabling it again changes nothing; nothing disables it.
    pub fn enable_object_lock(&self, bucket: &str) -> Result<(), MetaError> {
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_exclusive(bucket);
        let mut record = self.require_bucket(bucket)?;
        if record.object_lock {
            return Ok(());
        }
        if record.versioning != VersioningState::Enabled {
            return Err(MetaError::InvalidBucketState {
                bucket: bucket.to_owned(),
                reason: "Object Lock needs versioning enabled".to_owned(),
            });
        }
        record.object_lock = true;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            inner.cf(schema::BUCKETS),
            bucket.as_bytes(),
            codec::encode(&record),
        );
        inner.commit(batch, None, "enabling Object Lock")?;
        Ok(())
    }

    /// Sets the versioning state. `Unversioned` is only accepted for a bucket that is still
    /// unversioned (S3 offers no way back).
    pub fn set_versioning(&self, bucket: &str, state: VersioningState) -> Result<(), MetaError> {
        let inner = &self.inner;
        // Exclusive: commits in flight finish under the old state before the change returns.
        let _bucket = inner.locks.bucket_exclusive(bucket);
        let mut record = self.require_bucket(bucket)?;
        if state == VersioningState::Unversioned
            && record.versioning != VersioningState::Unversioned
        {
            return Err(MetaError::InvalidArgument(format!(
                "bucket {bucket:?} is versioned; versioning can only be enabled or suspended"
            )));
        }
        if record.object_lock && state != VersioningState::Enabled {
            return Err(MetaError::InvalidBucketState {
                bucket: bucket.to_owned(),
                reason: "versioning cannot be suspended while Object Lock is enabled".to_owned(),
            });
        }
        if record.versioning == state {
            return Ok(());
        }
        record.versioning = state;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            inner.cf(schema::BUCKETS),
            bucket.as_bytes(),
            codec::encode(&record),
        );
        inner.commit(batch, None, "setting bucket versioning")?;
        Ok(())
    }

    /// Stores (or replaces) the configuration document `name` of a bucket.
    pub fn put_bucket_config(
        &self,
        bucket: &str,
        name: &str,
        doc: Vec<u8>,
    ) -> Result<(), MetaError> {
        if name.is_empty() {
            return Err(MetaError::InvalidArgument(
                "configuration name must not be empty".into(),
            ));
        }
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_shared(bucket);
        self.require_bucket(bucket)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            inner.cf(schema::BUCKET_CONFIGS),
            schema::config_key(bucket, name),
            doc,
        );
        inner.commit(batch, None, "storing a bucket configuration")?;
        Ok(())
    }

    /// The configuration document `name`, `Ok(None)` if unset; `Err(NoSuchBucket)`.
    pub fn get_bucket_config(
        &self,
        bucket: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, MetaError> {
        match self
            .inner
            .get(schema::BUCKET_CONFIGS, &schema::config_key(bucket, name))?
        {
            Some(doc) => Ok(Some(doc.to_vec())),
            None => {
                self.require_bucket(bucket)?;
                Ok(None)
            }
        }
    }

    /// The bucket's record and every configuration document, by name; `Ok(None)` if absent.
    pub fn bucket_state(
        &self,
        name: &str,
    ) -> Result<Option<(BucketRecord, BucketDocs)>, MetaError> {
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_shared(name);
        let Some(record) = self.get_bucket(name)? else {
            return Ok(None);
        };
        let prefix = keys::bucket_prefix(name);
        let mut it = inner.iter_prefix(schema::BUCKET_CONFIGS, &prefix);
        let mut docs = BTreeMap::new();
        while it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            let doc = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            docs.insert(doc, v.to_vec());
            it.next();
        }
        it.status()
            .map_err(MetaError::db("reading a bucket's configuration"))?;
        Ok(Some((record, docs)))
    }

    /// Makes the bucket exactly `record` with exactly `docs` as its configuration documents
    /// (made if absent, its record and documents replaced otherwise), in one batch: how a
    /// node of a region applies the bucket catalogue it reads from the control plane.
    pub fn set_bucket_state(
        &self,
        record: &BucketRecord,
        docs: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(), MetaError> {
        if record.name.is_empty() || record.name.len() > 255 || docs.keys().any(|d| d.is_empty()) {
            return Err(MetaError::InvalidArgument(format!(
                "invalid bucket state for {:?}",
                record.name
            )));
        }
        let inner = &self.inner;
        let _create = inner.locks.create();
        let _bucket = inner.locks.bucket_exclusive(&record.name);
        let prefix = keys::bucket_prefix(&record.name);
        let end = keys::successor(&prefix).expect("a bucket prefix ends with a terminator");
        let mut batch = WriteBatch::default();
        batch.put_cf(
            inner.cf(schema::BUCKETS),
            record.name.as_bytes(),
            codec::encode(record),
        );
        batch.delete_range_cf(inner.cf(schema::BUCKET_CONFIGS), &prefix, &end);
        for (name, doc) in docs {
            batch.put_cf(
                inner.cf(schema::BUCKET_CONFIGS),
                schema::config_key(&record.name, name),
                doc,
            );
        }
        inner.commit(batch, None, "applying a bucket's state")?;
        Ok(())
    }

    /// Removes the configuration document `name` (no error if it was unset).
    pub fn delete_bucket_config(&self, bucket: &str, name: &str) -> Result<(), MetaError> {
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_shared(bucket);
        self.require_bucket(bucket)?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(
            inner.cf(schema::BUCKET_CONFIGS),
            schema::config_key(bucket, name),
        );
        inner.commit(batch, None, "deleting a bucket configuration")?;
        Ok(())
    }
}
