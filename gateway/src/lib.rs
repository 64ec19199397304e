//! The S3 front end of a node: the HTTP server (TLS, the health listener), Meridian's S3 API
//! on top of s3s, authentication, bucket policies, the fence, the admin API, the audit log and
//! the metrics endpoint, composed by [`node::run`] with the store (`meridian-store`) and the
//! replicator (`meridian-replicator`).
//!
//! `gateway` is the only crate where S3 semantics meet the wire; storage semantics live in the
//! store below it. It never links the client tools (`meridian-client`).

pub mod admin;
pub mod audit;
pub mod auth;
pub mod cluster;
pub use meridian_policy as bucket_policy;
pub mod config;
pub mod cors;
pub mod fence;
pub mod grace;
pub mod host;
pub mod http_server;
pub mod key_sync;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod post_form;
pub mod query;
pub mod replication_source;
pub mod request;
pub mod s3;
pub mod tls;
