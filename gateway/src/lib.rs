//! The `meridian` server: configuration, the HTTP front, Meridian's S3 API on top of s3s,
//! authentication and access control, and the storage service that joins the erasure-coded
//! disk set (`meridian-erasure`) with the version metadata (`meridian-metadata`).
//!
//! `gateway` is the only crate where S3 semantics meet storage.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod checksum;
pub mod config;
pub mod drill;
pub mod fence;
pub mod host;
pub mod metrics;
pub mod pipeline_bench;
pub mod policy;
pub mod replication_bench;
pub mod replication_cli;
pub mod s3;
pub mod serve;
pub mod server;
pub mod storage;
pub mod tls;
