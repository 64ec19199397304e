//! A Meridian region of several nodes.
//!
//! Built so far: the partition [`layout`] (P fixed partitions, each on an ordered list of R
//! nodes, recomputed to move as few copies as possible when nodes join, leave or change
//! weight) and the placement [`simulate`]ion behind `meridian cluster simulate`. The design
//! of the rest — etcd as the control plane, replica writes, failover and merged listings —
//! is in `docs/CLUSTER.md`.

pub mod layout;
pub mod simulate;

pub use layout::{partition_of, Layout, LayoutError, Node, NodeId, DEFAULT_PARTITIONS};
