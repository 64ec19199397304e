//! Errors of the metadata store. Each variant names the bucket, object, version or upload it
//! is about, so the gateway can map it to one S3 error and an operator can find the record.

/// Everything that can go wrong in [`crate::MetaStore`].
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("bucket {bucket:?} does not exist")]
    NoSuchBucket { bucket: String },
    #[error("bucket {bucket:?} already exists (owner {owner:?})")]
    BucketExists { bucket: String, owner: String },
    #[error("bucket {bucket:?} still holds versions, delete markers or multipart uploads")]
    BucketNotEmpty { bucket: String },
    #[error("no object {key:?} in bucket {bucket:?}")]
    NoSuchKey { bucket: String, key: String },
    #[error("no version {version_id:?} of {key:?} in bucket {bucket:?}")]
    NoSuchVersion {
        bucket: String,
        key: String,
        version_id: String,
    },
    #[error("no multipart upload {upload_id:?} for {key:?} in bucket {bucket:?}")]
    NoSuchUpload {
        bucket: String,
        key: String,
        upload_id: String,
    },
    /// `complete_upload` named a part that was never uploaded.
    #[error("part {part_number} of upload {upload_id:?} ({bucket:?}/{key:?}) was not uploaded")]
    InvalidPart {
        bucket: String,
        key: String,
        upload_id: String,
        part_number: u32,
    },
    /// The operation needs an object version but the addressed version is a delete marker
    /// (S3 answers 405 MethodNotAllowed).
    #[error("version {version_id:?} of {key:?} in bucket {bucket:?} is a delete marker")]
    IsDeleteMarker {
        bucket: String,
        key: String,
        version_id: String,
    },
    /// Object Lock refuses the removal or the retention change (S3 answers 403 AccessDenied).
    #[error("version {version_id:?} of {key:?} in bucket {bucket:?} is locked: {reason}")]
    ObjectLocked {
        bucket: String,
        key: String,
        version_id: String,
        reason: String,
    },
    /// The bucket's state forbids the change (S3 answers 409 InvalidBucketState): suspending
    /// versioning with Object Lock enabled, enabling Object Lock without versioning.
    #[error("bucket {bucket:?}: {reason}")]
    InvalidBucketState { bucket: String, reason: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A write's precondition did not hold (S3 answers 412, or 404 for If-Match on nothing).
    #[error("precondition failed for {key:?} in bucket {bucket:?}")]
    PreconditionFailed {
        bucket: String,
        key: String,
        current_exists: bool,
    },
    /// A stored record could not be decoded: the database is damaged or was written by a
    /// newer, incompatible version.
    #[error("corrupt record in column family {cf} at key {key}: {reason}")]
    Corrupt {
        cf: &'static str,
        key: String,
        reason: String,
    },
    /// The database was written with a schema this build does not understand.
    #[error(
        "the metadata at {path} has schema version {found}, written by a newer Meridian; this \
         binary understands schema versions up to {supported}. Upgrade the binary to the \
         release that wrote it, or restore the data directory from a backup taken before \
         the upgrade"
    )]
    UnsupportedSchema {
        path: String,
        found: u32,
        supported: u32,
    },
    #[cfg(feature = "db")]
    #[error("rocksdb error while {context}: {source}")]
    Db {
        context: String,
        source: rocksdb::Error,
    },
}

impl MetaError {
    /// `map_err` adapter for RocksDB calls; the context is only allocated on error.
    #[cfg(feature = "db")]
    pub(crate) fn db(context: &'static str) -> impl FnOnce(rocksdb::Error) -> MetaError {
        move |source| MetaError::Db {
            context: context.to_owned(),
            source,
        }
    }

    pub(crate) fn corrupt(cf: &'static str, key: &[u8], reason: impl ToString) -> MetaError {
        MetaError::Corrupt {
            cf,
            key: hex::encode(key),
            reason: reason.to_string(),
        }
    }
}
