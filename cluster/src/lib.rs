//! A Meridian region of several nodes.
//!
//! Built so far: the partition [`layout`] (P fixed partitions, each on an ordered list of R
//! nodes, recomputed to move as few copies as possible when nodes join, leave or change
//! weight), the placement [`simulate`]ion behind `meridian cluster simulate`, and the
//! [`control`] plane in etcd (node registration, leases that gate client writes, current and
//! staged layouts). The design of the rest — replica writes, failover and merged listings —
//! is in `docs/CLUSTER.md`.

pub mod control;
pub mod layout;
pub mod simulate;

pub use layout::{partition_of, Layout, LayoutError, Node, NodeId, DEFAULT_PARTITIONS};
