//! The configuration documents clients put on a bucket, from the S3 XML that s3s parses to the
//! model Meridian stores and acts on, checked as AWS checks them:
//! - [`replication`]: `PutBucketReplication` rules, and which peers take a change;
//! - [`lifecycle`]: `PutBucketLifecycleConfiguration` rules, and when they expire a version;
//! - [`headers`]: request headers whose reading decides what is answered (`Range`).
//!
//! Nothing here does I/O or links RocksDB, so the fuzz targets in `fuzz/` can drive the
//! same code the server runs on every document a client sends.

pub mod headers;
pub mod lifecycle;
pub mod replication;
