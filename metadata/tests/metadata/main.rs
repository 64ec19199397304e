//! Behaviour of the metadata store through its public API: one test binary (RocksDB links
//! once), one module per area.

mod buckets;
mod crash;
mod faults;
mod listing_model;
mod multipart;
mod object_lock;
mod outbox;
mod preconditions;
mod reclaim;
mod replication;
mod support;
mod versioning;
