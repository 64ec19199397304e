//! Object versions with S3's versioning semantics.
//!
//! - unversioned buckets: a PUT replaces the "null" version, a DELETE removes it;
//! - enabled buckets: every PUT adds a version, a DELETE without version id adds a marker;
//! - suspended buckets: PUT and DELETE replace the "null" version (the DELETE with a null
//!   marker) and keep every other version;
//! - a DELETE with a version id removes exactly that version or marker, and the latest falls
//!   back to the next newest.
//!
//! The latest version is the one with the newest (mtime, version id). Local writes get an
//! mtime after the current latest's, so they always become latest; a replica keeps its own
//! mtime and version id and only becomes latest if it is newer. Every change is one
//! WriteBatch: version record, history entry, listing entry, outbox entry and reclaim entries
//! for storage it orphaned.

use rocksdb::WriteBatch;

use crate::bucket::{BucketRecord, VersioningState};
use crate::codec;
use crate::error::MetaError;
use crate::keys;
use crate::object_lock::LockChange;
use crate::outbox_entry::{OutboxDraft, OutboxKind};
use crate::record::{
    ChangeSource, DeleteOptions, DeleteOutcome, Encryption, EncryptionMode, NewVersion, PeerStatus,
    Precondition, PutOutcome, VersionRecord, NULL_VERSION_ID,
};
use crate::schema::{self, VersionSummary};
use crate::store::MetaStore;
use crate::version_id::{self, new_version_id, now_nanos};

/// Longest object key accepted (S3's limit).
pub const MAX_KEY_LEN: usize = 1024;

/// What committing a new version will do, once its batch is written.
pub(crate) enum Planned {
    Commit {
        record: VersionRecord,
        replaced: Option<Box<VersionRecord>>,
        draft: OutboxDraft,
    },
    /// A replica supplied a version id that already exists: applying it again changes nothing.
    Duplicate(VersionRecord),
}

pub(crate) fn validate_key(key: &str) -> Result<(), MetaError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(MetaError::InvalidArgument(format!(
            "object key must be 1..={MAX_KEY_LEN} bytes"
        )));
    }
    Ok(())
}

fn validate_version_id(version_id: &str) -> Result<(), MetaError> {
    version_id::validate(version_id).map_err(MetaError::InvalidArgument)
}

/// Newest of two candidates by (mtime, version id).
pub(crate) fn newest<'a>(
    a: Option<&'a VersionSummary>,
    b: Option<&'a VersionSummary>,
) -> Option<&'a VersionSummary> {
    match (a, b) {
        (Some(x), Some(y)) => Some(
            if (x.mtime, x.version_id.as_str()) >= (y.mtime, y.version_id.as_str()) {
                x
            } else {
                y
            },
        ),
        (x, None) => x,
        (None, y) => y,
    }
}

/// `Err(ObjectLocked)` when Object Lock protects `record` from removal now.
pub(crate) fn check_removable(
    record: &VersionRecord,
    bypass_governance: bool,
) -> Result<(), MetaError> {
    match record.lock.blocks_removal(now_nanos(), bypass_governance) {
        None => Ok(()),
        Some(reason) => Err(MetaError::ObjectLocked {
            bucket: record.bucket.clone(),
            key: record.key.clone(),
            version_id: record.version_id.clone(),
            reason: reason.to_owned(),
        }),
    }
}

/// `Err(current_exists)` when `pre` does not hold for the key's current version.
fn check_precondition(pre: &Precondition, current: Option<&VersionSummary>) -> Result<(), bool> {
    match (pre, current) {
        (Precondition::NoneMatch, None) => Ok(()),
        (Precondition::IfMatch(etag), Some(c)) if &c.etag == etag => Ok(()),
        (Precondition::NoneMatchEtag(_), None) => Ok(()),
        (Precondition::NoneMatchEtag(etag), Some(c)) if &c.etag != etag => Ok(()),
        (_, c) => Err(c.is_some()),
    }
}

impl MetaStore {
    /// Commits a new version per the bucket's versioning state, in one WriteBatch with its
    /// outbox entry (and reclaim entries for storage it replaced, e.g. the old null version).
    /// A replica whose version id already exists is a no-op returning the stored version (its
    /// new storage is queued for reclaim).
    pub fn put_version(
        &self,
        bucket: &str,
        key: &str,
        new: NewVersion,
    ) -> Result<PutOutcome, MetaError> {
        validate_key(key)?;
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_shared(bucket);
        let b = self.require_bucket(bucket)?;
        let _key = inner.locks.key(bucket, key);
        let mut batch = WriteBatch::default();
        let version = match self.plan_version(&b, key, new, &mut batch)? {
            Planned::Commit { record, draft, .. } => {
                inner.commit(batch, Some(draft), "committing a version")?;
                record
            }
            Planned::Duplicate(existing) => {
                if !batch.is_empty() {
                    inner.commit(
                        batch,
                        None,
                        "queueing a duplicate replica's storage for reclaim",
                    )?;
                }
                existing
            }
        };
        Ok(PutOutcome { version })
    }

    /// Adds the writes of a new version to `batch`. The caller holds the bucket (shared) and
    /// key locks and commits the batch with the returned outbox draft.
    pub(crate) fn plan_version(
        &self,
        bucket: &BucketRecord,
        key: &str,
        mut new: NewVersion,
        batch: &mut WriteBatch,
    ) -> Result<Planned, MetaError> {
        let inner = &self.inner;
        if let Some(v) = &new.version_id {
            validate_version_id(v)?;
        }
        let top = inner.newest_versions(&bucket.name, key, 2)?;
        if let Some(pre) = new.precondition.take() {
            check_precondition(&pre, top.first().filter(|v| !v.delete_marker)).map_err(
                |current_exists| MetaError::PreconditionFailed {
                    bucket: bucket.name.clone(),
                    key: key.to_owned(),
                    current_exists,
                },
            )?;
        }
        let mtime = match new.mtime {
            Some(m) => m,
            None => top
                .first()
                .map_or(i64::MIN, |l| l.mtime.saturating_add(1))
                .max(now_nanos()),
        };
        let (version_id, fresh) = match new.version_id.take() {
            Some(v) => (v, false),
            None if bucket.versioning == VersioningState::Enabled => (new_version_id(mtime), true),
            None => (NULL_VERSION_ID.to_owned(), false),
        };
        let vkey = schema::version_key(&bucket.name, key, &version_id);
        let mut replaced = None;
        // A version id generated just now cannot exist yet: skip the lookup.
        let existing = if fresh {
            None
        } else {
            self.read_version(&vkey)?
        };
        if let Some(old) = existing {
            if !version_id::is_null(&version_id) {
                if old.storage != new.storage {
                    inner.queue_reclaim(batch, &new.storage);
                }
                return Ok(Planned::Duplicate(old));
            }
            check_removable(&old, false)?;
            // The null version is replaced: its record is overwritten below, its history entry
            // (keyed by its own mtime) and its data go.
            batch.delete_cf(
                inner.cf(schema::HISTORY),
                schema::history_key(&bucket.name, key, old.mtime, &old.version_id),
            );
            inner.queue_reclaim(batch, &old.storage);
            replaced = Some(Box::new(old));
        }
        let record = VersionRecord::from_new(&bucket.name, key, version_id, mtime, new);
        let summary = VersionSummary::of(&record);
        batch.put_cf(inner.cf(schema::VERSIONS), &vkey, codec::encode(&record));
        batch.put_cf(
            inner.cf(schema::HISTORY),
            schema::history_key(&bucket.name, key, mtime, &record.version_id),
            codec::encode(&summary),
        );
        let remaining = top.iter().find(|s| {
            replaced
                .as_ref()
                .is_none_or(|r| r.version_id != s.version_id)
        });
        let latest = newest(remaining, Some(&summary));
        self.put_listing(batch, &bucket.name, key, latest);
        let newer = remaining
            .filter(|r| latest.is_some_and(|l| l.version_id == r.version_id))
            .map(|r| r.mtime);
        inner.plan_due(batch, &record, newer, || match remaining {
            Some(r) => self.read_version(&schema::version_key(&bucket.name, key, &r.version_id)),
            None => Ok(None),
        })?;
        let draft = OutboxDraft {
            bucket: bucket.name.clone(),
            key: key.to_owned(),
            version_id: record.version_id.clone(),
            kind: if record.is_delete_marker {
                OutboxKind::DeleteMarker
            } else {
                OutboxKind::Put
            },
            origin: record.replication.origin.clone(),
            peers: record.replication.peers.keys().cloned().collect(),
            size: record.size,
        };
        Ok(Planned::Commit {
            record,
            replaced,
            draft,
        })
    }

    /// Makes `listing` reflect the key's latest version after the batch.
    pub(crate) fn put_listing(
        &self,
        batch: &mut WriteBatch,
        bucket: &str,
        key: &str,
        latest: Option<&VersionSummary>,
    ) {
        let cf = self.inner.cf(schema::LISTING);
        let lkey = keys::object_prefix(bucket, key);
        match latest {
            Some(s) if !s.delete_marker => batch.put_cf(cf, lkey, codec::encode(s)),
            _ => batch.delete_cf(cf, lkey),
        }
    }

    /// S3 DeleteObject. Without `version_id`: a delete marker in enabled buckets, a null marker
    /// (replacing the null version) in suspended ones, removal of the null version in
    /// unversioned ones; a replica supplies the marker's id and mtime in `opts`. With
    /// `version_id`: removes that version or marker and the latest falls back. Deleting what
    /// does not exist succeeds and changes nothing (`removed` is `None`).
    pub fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        opts: DeleteOptions,
    ) -> Result<DeleteOutcome, MetaError> {
        validate_key(key)?;
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_shared(bucket);
        let b = self.require_bucket(bucket)?;
        let _key = inner.locks.key(bucket, key);
        if let Some(v) = version_id {
            validate_version_id(v)?;
        }
        if let Some(condition) = &opts.condition {
            let target = self.get_version(bucket, key, version_id)?;
            let target = target.filter(|t| !t.is_delete_marker);
            if !target.as_ref().is_some_and(|t| condition.holds_for(t)) {
                return Err(MetaError::PreconditionFailed {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    current_exists: target.is_some(),
                });
            }
        }
        if let Some(v) = version_id {
            return self.remove_version(bucket, key, v, &opts);
        }
        if opts.version_id.is_none() && b.versioning == VersioningState::Unversioned {
            let outcome = self.remove_version(bucket, key, NULL_VERSION_ID, &opts)?;
            return Ok(DeleteOutcome {
                version_id: None,
                delete_marker: false,
                removed: outcome.removed,
            });
        }
        let marker = NewVersion {
            version_id: opts.version_id,
            mtime: opts.mtime,
            replication: opts.replication,
            delete_marker: true,
            ..NewVersion::default()
        };
        let mut batch = WriteBatch::default();
        match self.plan_version(&b, key, marker, &mut batch)? {
            Planned::Commit {
                record,
                replaced,
                draft,
            } => {
                inner.commit(batch, Some(draft), "committing a delete marker")?;
                Ok(DeleteOutcome {
                    version_id: Some(record.version_id),
                    delete_marker: true,
                    removed: replaced.map(|r| *r),
                })
            }
            Planned::Duplicate(existing) => Ok(DeleteOutcome {
                version_id: Some(existing.version_id),
                delete_marker: existing.is_delete_marker,
                removed: None,
            }),
        }
    }

    /// Removes one version or marker, unless Object Lock protects it. The caller holds the
    /// bucket and key locks.
    fn remove_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        opts: &DeleteOptions,
    ) -> Result<DeleteOutcome, MetaError> {
        let inner = &self.inner;
        let vkey = schema::version_key(bucket, key, version_id);
        let Some(old) = self.read_version(&vkey)? else {
            return Ok(DeleteOutcome {
                version_id: Some(version_id.to_owned()),
                delete_marker: false,
                removed: None,
            });
        };
        if !opts.unlocked {
            check_removable(&old, opts.bypass_governance)?;
        }
        let top = inner.newest_versions(bucket, key, 2)?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(inner.cf(schema::VERSIONS), &vkey);
        batch.delete_cf(
            inner.cf(schema::HISTORY),
            schema::history_key(bucket, key, old.mtime, version_id),
        );
        inner.queue_reclaim(&mut batch, &old.storage);
        self.put_listing(
            &mut batch,
            bucket,
            key,
            top.iter().find(|s| s.version_id != version_id),
        );
        let draft = OutboxDraft {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: version_id.to_owned(),
            kind: OutboxKind::DeleteVersion,
            origin: opts.replication.origin.clone(),
            // Removing one version is not replicated (as on S3): only the copies between the
            // nodes of a region, which the caller names, take it.
            peers: opts.replication.peers.keys().cloned().collect(),
            size: 0,
        };
        inner.commit(batch, Some(draft), "removing a version")?;
        Ok(DeleteOutcome {
            version_id: Some(version_id.to_owned()),
            delete_marker: old.is_delete_marker,
            removed: Some(old),
        })
    }

    /// One version (`version_id`), or the latest when `None` — which may be a delete marker,
    /// returned as such. `Ok(None)` when the key or version does not exist,
    /// `Err(NoSuchBucket)` when the bucket does not.
    pub fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<VersionRecord>, MetaError> {
        let inner = &self.inner;
        let found = match version_id {
            Some(v) => self.read_version(&schema::version_key(bucket, key, v))?,
            None => match inner.newest_versions(bucket, key, 1)?.pop() {
                Some(latest) => {
                    let vkey = schema::version_key(bucket, key, &latest.version_id);
                    let found = self.read_version(&vkey)?;
                    // history and versions are written in one batch: a gap is damage.
                    Some(found.ok_or_else(|| {
                        MetaError::corrupt(schema::VERSIONS, &vkey, "in history but no record")
                    })?)
                }
                None => None,
            },
        };
        match found {
            Some(record) => Ok(Some(record)),
            None => {
                self.require_bucket(bucket)?;
                Ok(None)
            }
        }
    }

    /// The stored version record at `vkey`, with its format version filled in.
    pub(crate) fn read_version(&self, vkey: &[u8]) -> Result<Option<VersionRecord>, MetaError> {
        Ok(self
            .inner
            .get_record::<VersionRecord>(schema::VERSIONS, vkey)?
            .map(|(mut record, format)| {
                record.format_version = format;
                record
            }))
    }

    /// The version a tagging or status change addresses, or the matching S3 error.
    fn require_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<VersionRecord, MetaError> {
        let found = self.get_version(bucket, key, version_id)?;
        match (found, version_id) {
            (Some(r), Some(_)) => Ok(r),
            (Some(r), None) if !r.is_delete_marker => Ok(r),
            (_, None) => Err(MetaError::NoSuchKey {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }),
            (None, Some(v)) => Err(MetaError::NoSuchVersion {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                version_id: v.to_owned(),
            }),
        }
    }

    /// Replaces the tags of one version (the latest when `None`) and writes an outbox entry
    /// naming `change.peers`. `Err(NoSuchKey)` when the latest is a delete marker,
    /// `Err(IsDeleteMarker)` when the addressed version is one.
    pub fn set_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        tags: Vec<(String, String)>,
        change: ChangeSource,
    ) -> Result<VersionRecord, MetaError> {
        self.update_version(
            bucket,
            key,
            version_id,
            OutboxKind::Tags,
            change,
            |record| {
                record.tags = tags;
                Ok(())
            },
        )
    }

    /// Changes the retention or legal hold of one version (the latest when `None`) under
    /// the rules of `object_lock`, and writes an outbox entry naming `change.peers` (a
    /// metadata-only change the peers apply to their copy). `Err(ObjectLocked)` when the
    /// rules refuse the change; delete markers as in `set_tags`.
    pub fn set_object_lock(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        lock: LockChange,
        bypass_governance: bool,
        change: ChangeSource,
    ) -> Result<VersionRecord, MetaError> {
        self.update_version(
            bucket,
            key,
            version_id,
            OutboxKind::Lock,
            change,
            |record| {
                record.lock = record
                    .lock
                    .changed(lock, now_nanos(), bypass_governance)
                    .map_err(|reason| MetaError::ObjectLocked {
                        bucket: bucket.to_owned(),
                        key: key.to_owned(),
                        version_id: record.version_id.clone(),
                        reason: reason.to_owned(),
                    })?;
                Ok(())
            },
        )
    }

    /// Applies `update` to one version that is not a delete marker and commits it with an
    /// outbox entry of `kind` naming `change.peers`.
    fn update_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        kind: OutboxKind,
        change: ChangeSource,
        update: impl FnOnce(&mut VersionRecord) -> Result<(), MetaError>,
    ) -> Result<VersionRecord, MetaError> {
        self.rewrite_version(bucket, key, version_id, Some((kind, change)), update)
    }

    /// Applies `update` to one version that is not a delete marker and commits it, with an
    /// outbox entry when `outbox` says of what kind and for which peers.
    fn rewrite_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        outbox: Option<(OutboxKind, ChangeSource)>,
        update: impl FnOnce(&mut VersionRecord) -> Result<(), MetaError>,
    ) -> Result<VersionRecord, MetaError> {
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_shared(bucket);
        let _key = inner.locks.key(bucket, key);
        let mut record = self.require_version(bucket, key, version_id)?;
        if record.is_delete_marker {
            return Err(MetaError::IsDeleteMarker {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                version_id: record.version_id,
            });
        }
        update(&mut record)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            inner.cf(schema::VERSIONS),
            schema::version_key(bucket, key, &record.version_id),
            codec::encode(&record),
        );
        let draft = outbox.map(|(kind, change)| OutboxDraft {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: record.version_id.clone(),
            kind,
            origin: change.origin,
            peers: change.peers,
            size: 0,
        });
        inner.commit(batch, draft, "changing a version's tags, lock or ACL")?;
        Ok(record)
    }

    /// Replaces the ACL of one version (the latest when `None`; not a delete marker). ACLs
    /// are this region's: no outbox entry.
    pub fn set_acl(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        acl: Vec<u8>,
    ) -> Result<VersionRecord, MetaError> {
        self.rewrite_version(bucket, key, version_id, None, |record| {
            record.acl = Some(acl);
            Ok(())
        })
    }

    /// Records the replication status of one version towards `peer` (`None` removes it: no
    /// rule sends the version there any more). Not a replicated change: no outbox entry.
    pub fn set_replication_status(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        peer: &str,
        status: Option<PeerStatus>,
    ) -> Result<(), MetaError> {
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_shared(bucket);
        let _key = inner.locks.key(bucket, key);
        let mut record = self.require_version(bucket, key, Some(version_id))?;
        match status {
            Some(s) => record.replication.peers.insert(peer.to_owned(), s),
            None => record.replication.peers.remove(peer),
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(
            inner.cf(schema::VERSIONS),
            schema::version_key(bucket, key, version_id),
            codec::encode(&record),
        );
        inner.commit(batch, None, "recording replication status")?;
        Ok(())
    }
}

/// One page of a bucket's versions encrypted with a keyring key (SSE-S3, SSE-KMS), for
/// re-sealing their data keys after a key rotation.
#[derive(Debug, Default)]
pub struct SealedPage {
    /// (key, version id, encryption) in row order.
    pub versions: Vec<(String, String, Encryption)>,
    /// Where the next page starts; `None` at the end of the bucket.
    pub next: Option<Vec<u8>>,
}

impl MetaStore {
    /// Up to `limit` of the bucket's versions sealed by a keyring key, from the row `from`
    /// (the start of the bucket when `None`).
    pub fn sealed_versions(
        &self,
        bucket: &str,
        from: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<SealedPage, MetaError> {
        let prefix = keys::bucket_prefix(bucket);
        let lower = from
            .filter(|f| f > &prefix)
            .unwrap_or_else(|| prefix.clone());
        let mut it = self
            .inner
            .iter(schema::VERSIONS, &lower, keys::successor(&prefix));
        let mut page = SealedPage::default();
        let mut rows = 0usize;
        while it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            if rows == limit {
                page.next = Some(k.to_vec());
                break;
            }
            rows += 1;
            let (record, _): (VersionRecord, u8) = codec::decode(schema::VERSIONS, k, v)?;
            if let Some(e) = record
                .encryption
                .filter(|e| matches!(e.mode, Some(EncryptionMode::S3 | EncryptionMode::Kms)))
            {
                page.versions.push((record.key, record.version_id, e));
            }
            it.next();
        }
        it.status()
            .map_err(MetaError::db("listing sealed versions"))?;
        Ok(page)
    }

    /// Replaces a version's sealed data key with `resealed` (the same data key sealed by a
    /// newer key version), if it is still sealed as `previous`. Local bookkeeping: not a
    /// replicated change (each region seals with its own keys), no outbox entry. Returns
    /// whether the record changed.
    pub fn reseal_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        previous: &[u8],
        resealed: Encryption,
    ) -> Result<bool, MetaError> {
        let inner = &self.inner;
        let _bucket = inner.locks.bucket_shared(bucket);
        let _key = inner.locks.key(bucket, key);
        let Some(mut record) = self.get_version(bucket, key, Some(version_id))? else {
            return Ok(false);
        };
        if record.encryption.as_ref().map(|e| e.sealed_key.as_slice()) != Some(previous) {
            return Ok(false);
        }
        record.encryption = Some(resealed);
        let mut batch = WriteBatch::default();
        batch.put_cf(
            inner.cf(schema::VERSIONS),
            schema::version_key(bucket, key, version_id),
            codec::encode(&record),
        );
        inner.commit(batch, None, "re-sealing a data key")?;
        Ok(true)
    }
}
