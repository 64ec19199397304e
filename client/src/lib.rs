//! The client side of Meridian: everything that talks to a server from outside it, sharing
//! one S3 client ([`s3`], SigV4 via aws-sigv4) and one TLS setup ([`tls`]).
//!
//! - [`bench`]: `meridian bench`, the S3 load generator (any endpoint), and `bench
//!   replication` between two regions.
//! - [`replication`]: `meridian replication`, the admin API's replication calls.
//! - [`drill`]: `meridian drill`, disaster-recovery drills between two regions.
//! - [`certs`]: `meridian tls-certs`, a local CA for trying HTTPS.
//!
//! The server never links this crate; the `meridian` binary composes both.

pub mod admin;
pub mod bench;
pub mod certs;
pub mod drill;
pub mod error;
pub mod lifecycle;
pub mod payload;
pub mod replication;
pub mod s3;
pub mod tls;
pub mod units;
pub mod xml;

pub use bench::{run, Report, Workload};
pub use error::OpError;
pub use payload::{Payload, PayloadBody};
pub use units::{parse_duration, ByteSize, UnitError};
