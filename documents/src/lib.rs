//! The configuration documents clients put on a bucket, from the S3 XML that s3s parses to the
//! model Meridian stores and acts on, checked as AWS checks them:
//! - [`replication`]: `PutBucketReplication` rules, and which peers take a change;
//! - [`lifecycle`]: `PutBucketLifecycleConfiguration` rules, and when they expire a version;
//! - [`object_lock`]: `PutObjectLockConfiguration`, retention and legal hold documents and
//!   the `x-amz-object-lock-*` headers;
//! - [`cors`]: `PutBucketCors` rules, and which rule lets a browser's origin in;
//! - [`headers`]: request headers whose reading decides what is answered (`Range`).
//!
//! Nothing here does I/O or links RocksDB, so the fuzz targets in `fuzz/` can drive the
//! same code the server runs on every document a client sends.

pub mod acl;
pub mod cors;
pub mod headers;
pub mod lifecycle;
pub mod object_lock;
pub mod replication;

/// A document or header that cannot be accepted, with the S3 error AWS answers for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DocumentError {
    /// The S3 error code (`MalformedXML`, `InvalidArgument`, `InvalidRequest`, ...).
    pub code: &'static str,
    pub message: String,
}

pub(crate) fn error(code: &'static str, message: impl Into<String>) -> DocumentError {
    DocumentError {
        code,
        message: message.into(),
    }
}

pub(crate) fn malformed() -> DocumentError {
    error(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema",
    )
}
