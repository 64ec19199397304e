//! Multipart uploads: the upload records, their parts, and completing or aborting them.
//!
//! Part writes, completion and abort of one upload are serialised by the upload's lock.
//! Completion is one batch: the new version (per the bucket's versioning state, with its
//! outbox entry), removal of the upload and all its parts, and reclaim entries for parts the
//! object does not use. Abort removes the upload and queues every part's storage for reclaim.

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::MetaError;
use crate::keys;
use crate::record::{
    Checksum, ChecksumAlgorithm, ChecksumType, Encryption, Nanos, NewVersion, ObjectHeaders,
    ObjectLock, PutOutcome,
};
use crate::schema;
use crate::store::MetaStore;
use crate::versions::{validate_key, Planned};
use crate::walk::{Step, Walk};

/// Highest part number S3 allows.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// A multipart upload in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UploadRecord {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub initiated: Nanos,
    pub owner: String,
    pub headers: ObjectHeaders,
    pub user_metadata: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    pub checksum_type: Option<ChecksumType>,
    /// The Object Lock state the completed version gets.
    pub lock: ObjectLock,
    /// The encryption of every part and of the completed version (one data key).
    pub encryption: Option<Encryption>,
    /// The completed version's ACL (opaque), from CreateMultipartUpload's ACL headers.
    #[serde(with = "crate::codec::opt_bytes")]
    pub acl: Option<Vec<u8>>,
}

/// One uploaded part.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartRecord {
    pub number: u32,
    pub size: u64,
    pub etag: String,
    pub checksum: Option<Checksum>,
    pub mtime: Nanos,
    /// Opaque layout blob of the part's data.
    #[serde(with = "crate::codec::bytes")]
    pub storage: Vec<u8>,
}

/// What is kept of a completed upload for a while, so that a repeated
/// CompleteMultipartUpload (a client retrying after a lost response) gets the same answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompletedUpload {
    pub completed: Nanos,
    pub version_id: String,
    pub etag: String,
    /// The parts the object was made of: number and ETag, ascending.
    pub parts: Vec<(u32, String)>,
}

/// A page of ListParts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPartsPage {
    pub parts: Vec<PartRecord>,
    pub is_truncated: bool,
    pub next_part_number_marker: Option<u32>,
}

/// A ListMultipartUploads request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListUploadsQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    /// Only with `key_marker`: continue after this upload of that key.
    pub upload_id_marker: Option<String>,
    pub max_uploads: usize,
}

impl Default for ListUploadsQuery {
    fn default() -> Self {
        ListUploadsQuery {
            prefix: String::new(),
            delimiter: None,
            key_marker: None,
            upload_id_marker: None,
            max_uploads: 1000,
        }
    }
}

/// A page of ListMultipartUploads: keys ascending, uploads of one key by upload id (which
/// `new_upload_id` makes initiation order).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListUploadsPage {
    pub uploads: Vec<UploadRecord>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
}

impl MetaStore {
    /// Records a new upload. `Err(NoSuchBucket)`; `Err(InvalidArgument)` if the id is taken.
    pub fn create_upload(&self, upload: UploadRecord) -> Result<(), MetaError> {
        validate_key(&upload.key)?;
        if upload.upload_id.is_empty() {
            return Err(MetaError::InvalidArgument(
                "upload id must not be empty".into(),
            ));
        }
        let inner = &self.inner;
        let (bucket, key, id) = (&upload.bucket, &upload.key, &upload.upload_id);
        let _bucket = inner.locks.bucket_shared(bucket);
        self.require_bucket(bucket)?;
        let _upload = inner.locks.upload(bucket, key, id);
        let ukey = schema::upload_key(bucket, key, id);
        if inner.get(schema::UPLOADS, &ukey)?.is_some() {
            return Err(MetaError::InvalidArgument(format!(
                "upload id {id:?} already exists"
            )));
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(inner.cf(schema::UPLOADS), &ukey, codec::encode(&upload));
        batch.put_cf(
            inner.cf(schema::UPLOADS_BY_TIME),
            schema::upload_time_key(upload.initiated, bucket, key, id),
            [],
        );
        inner.plan_upload_due(&mut batch, bucket, key, id, upload.initiated);
        inner.commit(batch, None, "creating a multipart upload")?;
        Ok(())
    }

    /// The upload, `Ok(None)` if there is no such upload.
    pub fn get_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<UploadRecord>, MetaError> {
        Ok(self
            .inner
            .get_record(schema::UPLOADS, &schema::upload_key(bucket, key, upload_id))?
            .map(|(u, _)| u))
    }

    fn require_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<UploadRecord, MetaError> {
        self.get_upload(bucket, key, upload_id)?
            .ok_or_else(|| MetaError::NoSuchUpload {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                upload_id: upload_id.to_owned(),
            })
    }

    /// Stores or replaces a part; a replaced part's storage goes to the reclaim queue in the
    /// same batch. `Err(NoSuchUpload)`, `Err(InvalidArgument)` for a number outside 1..=10000.
    pub fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: PartRecord,
    ) -> Result<(), MetaError> {
        if !(1..=MAX_PART_NUMBER).contains(&part.number) {
            return Err(MetaError::InvalidArgument(format!(
                "part number {} outside 1..={MAX_PART_NUMBER}",
                part.number
            )));
        }
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_shared(bucket);
        let _upload = inner.locks.upload(bucket, key, upload_id);
        self.require_upload(bucket, key, upload_id)?;
        let pkey = schema::part_key(bucket, key, upload_id, part.number);
        let mut batch = WriteBatch::default();
        if let Some((old, _)) = inner.get_record::<PartRecord>(schema::PARTS, &pkey)? {
            inner.queue_reclaim_layout(&mut batch, old.storage);
        }
        batch.put_cf(inner.cf(schema::PARTS), &pkey, codec::encode(&part));
        inner.commit(batch, None, "storing a part")?;
        Ok(())
    }

    /// Parts with number > `part_number_marker`, ascending, at most `max_parts`.
    pub fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number_marker: u32,
        max_parts: usize,
    ) -> Result<ListPartsPage, MetaError> {
        self.require_upload(bucket, key, upload_id)?;
        let prefix = schema::upload_key(bucket, key, upload_id);
        let Some(first) = part_number_marker.checked_add(1) else {
            return Ok(ListPartsPage::default());
        };
        let mut start = prefix.clone();
        start.extend_from_slice(&first.to_be_bytes());
        let mut it = self
            .inner
            .iter(schema::PARTS, &start, keys::successor(&prefix));
        let mut page = ListPartsPage::default();
        while it.valid() {
            if page.parts.len() == max_parts {
                page.is_truncated = true;
                page.next_part_number_marker = page.parts.last().map(|p| p.number);
                break;
            }
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            page.parts.push(codec::decode(schema::PARTS, k, v)?.0);
            it.next();
        }
        it.status().map_err(MetaError::db("listing parts"))?;
        Ok(page)
    }

    /// Every part of an upload, ascending.
    pub(crate) fn all_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<PartRecord>, MetaError> {
        let mut it = self
            .inner
            .iter_prefix(schema::PARTS, &schema::upload_key(bucket, key, upload_id));
        let mut parts = Vec::new();
        while it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            parts.push(codec::decode(schema::PARTS, k, v)?.0);
            it.next();
        }
        it.status().map_err(MetaError::db("reading parts"))?;
        Ok(parts)
    }

    /// Adds the removal of an upload and all its parts to `batch`, queueing the storage of
    /// every part not in `keep` for reclaim.
    pub(crate) fn remove_upload(
        &self,
        batch: &mut WriteBatch,
        upload: &UploadRecord,
        parts: Vec<PartRecord>,
        keep: &[u32],
    ) {
        let inner = &self.inner;
        let (bucket, key, id) = (&upload.bucket, &upload.key, &upload.upload_id);
        batch.delete_cf(
            inner.cf(schema::UPLOADS),
            schema::upload_key(bucket, key, id),
        );
        batch.delete_cf(
            inner.cf(schema::UPLOADS_BY_TIME),
            schema::upload_time_key(upload.initiated, bucket, key, id),
        );
        for part in parts {
            batch.delete_cf(
                inner.cf(schema::PARTS),
                schema::part_key(bucket, key, id, part.number),
            );
            if !keep.contains(&part.number) {
                inner.queue_reclaim_layout(batch, part.storage);
            }
        }
    }

    /// Completes an upload in one batch: the new version (per versioning state, with outbox
    /// entry), removal of the upload and all its part records; parts not in `used_parts` and
    /// replaced storage go to reclaim. `Err(NoSuchUpload)`, `Err(InvalidPart)` when a used
    /// part was never uploaded.
    pub fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        used_parts: &[u32],
        new: NewVersion,
    ) -> Result<PutOutcome, MetaError> {
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_shared(bucket);
        let b = self.require_bucket(bucket)?;
        let _upload = inner.locks.upload(bucket, key, upload_id);
        let upload = self.require_upload(bucket, key, upload_id)?;
        let parts = self.all_parts(bucket, key, upload_id)?;
        if let Some(&missing) = used_parts
            .iter()
            .find(|n| !parts.iter().any(|p| p.number == **n))
        {
            return Err(MetaError::InvalidPart {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                upload_id: upload_id.to_owned(),
                part_number: missing,
            });
        }
        let _key = inner.locks.key(bucket, key);
        let mut batch = WriteBatch::default();
        let etag = new.etag.clone();
        let planned = self.plan_version(&b, key, new, &mut batch)?;
        let completed = CompletedUpload {
            completed: crate::version_id::now_nanos(),
            version_id: match &planned {
                Planned::Commit { record, .. } => record.version_id.clone(),
                Planned::Duplicate(existing) => existing.version_id.clone(),
            },
            etag,
            parts: used_parts
                .iter()
                .filter_map(|n| parts.iter().find(|p| p.number == *n))
                .map(|p| (p.number, p.etag.clone()))
                .collect(),
        };
        batch.put_cf(
            inner.cf(schema::COMPLETED_UPLOADS),
            schema::upload_key(bucket, key, upload_id),
            codec::encode(&completed),
        );
        self.remove_upload(&mut batch, &upload, parts, used_parts);
        let version = match planned {
            Planned::Commit { record, draft, .. } => {
                inner.commit(batch, Some(draft), "completing a multipart upload")?;
                record
            }
            Planned::Duplicate(existing) => {
                inner.commit(batch, None, "completing a duplicate replica upload")?;
                existing
            }
        };
        Ok(PutOutcome { version })
    }

    /// What was kept of a completed upload, `Ok(None)` if it was never completed here or its
    /// record has expired.
    pub fn completed_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<CompletedUpload>, MetaError> {
        Ok(self
            .inner
            .get_record(
                schema::COMPLETED_UPLOADS,
                &schema::upload_key(bucket, key, upload_id),
            )?
            .map(|(c, _)| c))
    }

    /// Forgets completed uploads finished before `older_than`; returns how many.
    pub fn expire_completed_uploads(&self, older_than: Nanos) -> Result<usize, MetaError> {
        let inner = &self.inner;
        let mut it = inner.iter(schema::COMPLETED_UPLOADS, &[], None);
        let mut batch = WriteBatch::default();
        let mut expired = 0;
        while it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            let (c, _): (CompletedUpload, _) = codec::decode(schema::COMPLETED_UPLOADS, k, v)?;
            if c.completed < older_than {
                batch.delete_cf(inner.cf(schema::COMPLETED_UPLOADS), k);
                expired += 1;
            }
            it.next();
        }
        it.status()
            .map_err(MetaError::db("expiring completed uploads"))?;
        if expired > 0 {
            inner.commit(batch, None, "expiring completed uploads")?;
        }
        Ok(expired)
    }

    /// Every upload in progress in a bucket.
    pub(crate) fn bucket_uploads(&self, bucket: &str) -> Result<Vec<UploadRecord>, MetaError> {
        let mut it = self
            .inner
            .iter_prefix(schema::UPLOADS, &keys::bucket_prefix(bucket));
        let mut uploads = Vec::new();
        while it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            uploads.push(codec::decode(schema::UPLOADS, k, v)?.0);
            it.next();
        }
        it.status().map_err(MetaError::db("reading uploads"))?;
        Ok(uploads)
    }

    /// Removes an upload and its parts; their storage goes to the reclaim queue in the same
    /// batch. `Err(NoSuchUpload)`.
    pub fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), MetaError> {
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_shared(bucket);
        let _upload = inner.locks.upload(bucket, key, upload_id);
        let upload = self.require_upload(bucket, key, upload_id)?;
        let parts = self.all_parts(bucket, key, upload_id)?;
        let mut batch = WriteBatch::default();
        self.remove_upload(&mut batch, &upload, parts, &[]);
        inner.commit(batch, None, "aborting a multipart upload")?;
        Ok(())
    }

    /// One page of the bucket's uploads in progress. `Err(NoSuchBucket)`.
    pub fn list_uploads(
        &self,
        bucket: &str,
        q: &ListUploadsQuery,
    ) -> Result<ListUploadsPage, MetaError> {
        self.list_uploads_keeping(bucket, q, None)
    }

    /// [`MetaStore::list_uploads`] of the keys `keep` keeps.
    pub fn list_uploads_keeping(
        &self,
        bucket: &str,
        q: &ListUploadsQuery,
        keep: Option<crate::walk::KeyFilter<'_>>,
    ) -> Result<ListUploadsPage, MetaError> {
        self.require_bucket(bucket)?;
        let mut page = ListUploadsPage::default();
        if q.max_uploads == 0 {
            return Ok(page);
        }
        let start = match (&q.key_marker, &q.upload_id_marker) {
            (Some(km), Some(id)) => Some(keys::just_after(&schema::upload_key(bucket, km, id))),
            (Some(km), None) => keys::successor(&keys::object_prefix(bucket, km)),
            _ => None,
        };
        let mut walk = Walk::new(
            &self.inner,
            schema::UPLOADS,
            bucket,
            &q.prefix,
            q.delimiter.as_deref(),
            start,
            q.key_marker.as_deref(),
        )
        .keeping(keep);
        let mut last_was_prefix = false;
        while let Some(step) = walk.next_step()? {
            if page.uploads.len() + page.common_prefixes.len() == q.max_uploads {
                page.is_truncated = true;
                if last_was_prefix {
                    page.next_key_marker = page.common_prefixes.last().cloned();
                } else if let Some(u) = page.uploads.last() {
                    page.next_key_marker = Some(u.key.clone());
                    page.next_upload_id_marker = Some(u.upload_id.clone());
                }
                break;
            }
            match step {
                Step::Row { key, value, .. } => {
                    page.uploads
                        .push(codec::decode(schema::UPLOADS, key.as_bytes(), &value)?.0);
                    last_was_prefix = false;
                }
                Step::Prefix(p) => {
                    page.common_prefixes.push(p);
                    last_was_prefix = true;
                }
            }
        }
        Ok(page)
    }

    /// Up to `limit` uploads initiated before `older_than`, oldest first, for cleanup.
    pub fn stale_uploads(
        &self,
        older_than: Nanos,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, MetaError> {
        let upper = keys::order_preserving_i64(older_than)
            .to_be_bytes()
            .to_vec();
        let mut it = self.inner.iter(schema::UPLOADS_BY_TIME, &[], Some(upper));
        let mut out = Vec::new();
        while out.len() < limit && it.valid() {
            let k = it.key().unwrap_or_default();
            let ukey = k.get(8..).ok_or_else(|| {
                MetaError::corrupt(schema::UPLOADS_BY_TIME, k, "key shorter than its time")
            })?;
            // Written in the same batch as the upload record: a dangling index entry is damage.
            let (upload, _) = self
                .inner
                .get_record::<UploadRecord>(schema::UPLOADS, ukey)?
                .ok_or_else(|| {
                    MetaError::corrupt(
                        schema::UPLOADS_BY_TIME,
                        k,
                        "no upload record for index entry",
                    )
                })?;
            out.push(upload);
            it.next();
        }
        it.status()
            .map_err(MetaError::db("finding stale uploads"))?;
        Ok(out)
    }
}

impl MetaStore {
    /// The sealed data keys of every upload in progress encrypted with a keyring key: a key
    /// version they use must stay in the keyring.
    pub fn sealed_upload_keys(&self) -> Result<Vec<Vec<u8>>, MetaError> {
        let mut it = self.inner.iter(schema::UPLOADS, &[], None);
        let mut out = Vec::new();
        while it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            let (upload, _): (UploadRecord, u8) = codec::decode(schema::UPLOADS, k, v)?;
            if let Some(e) = upload.encryption.filter(|e| {
                matches!(
                    e.mode,
                    Some(crate::record::EncryptionMode::S3 | crate::record::EncryptionMode::Kms)
                )
            }) {
                out.push(e.sealed_key);
            }
            it.next();
        }
        it.status().map_err(MetaError::db("listing uploads"))?;
        Ok(out)
    }
}
