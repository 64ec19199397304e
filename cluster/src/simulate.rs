//! Placement simulation: balance and movement of Meridian's partition layout next to a
//! hash ring (consistent hashing, with and without virtual nodes) and a Garage-style layout
//! (the same kind of assignment over Garage's 256 partitions).
//!
//! Loads are computed exactly rather than by throwing sample keys: a partition's share of
//! the objects is 1/P, and a ring arc's share is its length. With 10⁹ objects the share of
//! a partition (about 10⁶ objects at P = 1,024) differs from 1/P by about 0.1 % (one
//! standard deviation, √n/n), which the figures name but do not add.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::layout::{Layout, Node, NodeId};

/// One placement scheme at one size.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub scheme: String,
    pub nodes: usize,
    /// Largest node load over the mean (1.0 is perfect).
    pub max_over_mean: f64,
    /// Share of all copies that move when one node is added (the ideal is 1/(nodes+1)).
    pub moved_on_add: f64,
    pub ideal_move: f64,
}

/// The schemes compared.
pub fn schemes() -> Vec<Scheme> {
    vec![
        Scheme::Partitions(crate::layout::DEFAULT_PARTITIONS),
        Scheme::Partitions(256),
        Scheme::Ring(1),
        Scheme::Ring(128),
    ]
}

#[derive(Clone, Copy, Debug)]
pub enum Scheme {
    /// Meridian's layout over P partitions (256: as Garage's).
    Partitions(usize),
    /// A hash ring with V virtual nodes per node; an object's copies are the next R
    /// distinct nodes clockwise.
    Ring(usize),
}

impl Scheme {
    pub fn name(&self) -> String {
        match self {
            Scheme::Partitions(1024) => "meridian layout, P=1024".into(),
            Scheme::Partitions(256) => "garage-style layout, P=256".into(),
            Scheme::Partitions(p) => format!("layout, P={p}"),
            Scheme::Ring(1) => "consistent hashing, 1 point per node".into(),
            Scheme::Ring(v) => format!("consistent hashing, {v} points per node"),
        }
    }

    /// Balance at `n` equal nodes and movement when one more joins, with `replicas` copies.
    pub fn row(&self, n: usize, replicas: usize) -> Row {
        let (max_over_mean, moved_on_add) = match *self {
            Scheme::Partitions(p) => {
                let members = |count: usize| -> Vec<Node> {
                    (1..=count as NodeId)
                        .map(|id| Node { id, weight: 1 })
                        .collect()
                };
                let before = Layout::initial(&members(n), p, replicas).expect("enough nodes");
                let after = before.next(&members(n + 1)).expect("enough nodes");
                (
                    before.imbalance(),
                    before.copies_to_fill(&after) as f64 / (p * replicas) as f64,
                )
            }
            Scheme::Ring(v) => {
                let before = Ring::new(n, v);
                let after = Ring::new(n + 1, v);
                let loads = before.loads(replicas);
                let mean = loads.iter().sum::<f64>() / n as f64;
                let max = loads.iter().copied().fold(0.0, f64::max);
                (max / mean, before.moved_to(&after, replicas))
            }
        };
        Row {
            scheme: self.name(),
            nodes: n,
            max_over_mean,
            moved_on_add,
            ideal_move: 1.0 / (n + 1) as f64,
        }
    }
}

/// What the control plane asks of etcd for a region of `nodes` nodes: only small, slowly
/// changing state goes there (object metadata never does).
#[derive(Clone, Debug, Serialize)]
pub struct EtcdLoad {
    pub nodes: usize,
    pub partitions: usize,
    pub replicas: usize,
    /// The layout as stored (JSON): one value, written at each layout change.
    pub layout_bytes: usize,
    /// Lease keep-alives per second (one per node every `ttl / 3`): not raft writes.
    pub keepalives_per_s: f64,
    /// Partitions a failed node was primary of: each gets a new epoch, in one transaction.
    pub epochs_on_failure: usize,
    /// Bytes of that transaction (a key and an 8-byte epoch per partition, with overhead).
    pub failure_txn_bytes: usize,
    /// etcd's limit on one request.
    pub request_limit_bytes: usize,
}

/// The load of a region of `nodes` equal nodes on etcd, with leases of `ttl_s` seconds.
pub fn etcd_load(nodes: usize, partitions: usize, replicas: usize, ttl_s: f64) -> EtcdLoad {
    let members: Vec<Node> = (1..=nodes as NodeId)
        .map(|id| Node { id, weight: 1 })
        .collect();
    let layout = Layout::initial(&members, partitions, replicas).expect("enough nodes");
    let layout_bytes = serde_json::to_vec(&layout).map_or(0, |v| v.len());
    let epochs_on_failure = layout.primaries_per_node().into_iter().max().unwrap_or(0);
    // `/meridian/epoch/<partition>` = u64, plus etcd's per-operation framing (~32 bytes).
    let failure_txn_bytes = epochs_on_failure * ("/meridian/epoch/1023".len() + 8 + 32);
    EtcdLoad {
        nodes,
        partitions,
        replicas,
        layout_bytes,
        keepalives_per_s: nodes as f64 / (ttl_s / 3.0),
        epochs_on_failure,
        failure_txn_bytes,
        request_limit_bytes: 1_572_864,
    }
}

/// Points on a ring of 2⁶⁴, sorted, each naming its node.
struct Ring {
    points: Vec<(u64, usize)>,
}

impl Ring {
    fn new(nodes: usize, per_node: usize) -> Ring {
        let mut points: Vec<(u64, usize)> = (0..nodes)
            .flat_map(|n| (0..per_node).map(move |v| (point(n, v), n)))
            .collect();
        points.sort_unstable();
        Ring { points }
    }

    /// The `replicas` distinct nodes that follow point index `i` (itself first).
    fn owners(&self, i: usize, replicas: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(replicas);
        let mut j = i;
        while out.len() < replicas {
            let node = self.points[j % self.points.len()].1;
            if !out.contains(&node) {
                out.push(node);
            }
            j += 1;
        }
        out
    }

    /// Arcs as (start, end) fractions of the ring, each owned by the owners of the point
    /// that ends it (keys map to the next point clockwise).
    fn arcs(&self) -> Vec<(f64, f64, usize)> {
        let len = self.points.len();
        (0..len)
            .map(|i| {
                let end = self.points[i].0;
                let start = if i == 0 {
                    self.points[len - 1].0
                } else {
                    self.points[i - 1].0
                };
                let (s, e) = (start as f64 / 2f64.powi(64), end as f64 / 2f64.powi(64));
                (s, e, i)
            })
            .collect()
    }

    fn loads(&self, replicas: usize) -> Vec<f64> {
        let nodes = self.points.iter().map(|p| p.1).max().unwrap_or(0) + 1;
        let mut load = vec![0.0; nodes];
        for (s, e, i) in self.arcs() {
            let length = if e >= s { e - s } else { 1.0 - s + e };
            for n in self.owners(i, replicas) {
                load[n] += length;
            }
        }
        load
    }

    /// Share of all copies that land on another node in `next`: over the union of both
    /// rings' points, each piece of the ring counts the copies its new owners did not hold.
    fn moved_to(&self, next: &Ring, replicas: usize) -> f64 {
        let mut cuts: Vec<u64> = self
            .points
            .iter()
            .chain(&next.points)
            .map(|p| p.0)
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let owner_at = |ring: &Ring, x: u64| {
            let i = ring.points.partition_point(|p| p.0 < x) % ring.points.len();
            ring.owners(i, replicas)
        };
        let mut moved = 0.0;
        for w in 0..cuts.len() {
            let end = cuts[w];
            let start = if w == 0 {
                cuts[cuts.len() - 1]
            } else {
                cuts[w - 1]
            };
            let length = end.wrapping_sub(start) as f64 / 2f64.powi(64);
            let (old, new) = (owner_at(self, end), owner_at(next, end));
            moved += length * new.iter().filter(|n| !old.contains(n)).count() as f64;
        }
        moved / replicas as f64
    }
}

fn point(node: usize, v: usize) -> u64 {
    let digest = Sha256::digest(format!("node-{node}#{v}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_moves_near_the_ideal_and_a_bare_ring_is_lopsided() {
        let layout = Scheme::Partitions(1024).row(8, 2);
        assert!(layout.max_over_mean < 1.01, "{layout:?}");
        assert!(
            (layout.moved_on_add - layout.ideal_move).abs() < 0.01,
            "{layout:?}"
        );
        let ring = Scheme::Ring(1).row(8, 2);
        assert!(ring.max_over_mean > 1.2, "{ring:?}");
        let vnodes = Scheme::Ring(128).row(8, 2);
        assert!(vnodes.max_over_mean < ring.max_over_mean, "{vnodes:?}");
        // A ring moves about its ideal too (that is what it is for), only with worse balance.
        assert!(vnodes.moved_on_add < 2.0 * vnodes.ideal_move, "{vnodes:?}");
    }

    #[test]
    fn the_control_plane_stays_far_below_etcds_limits_at_a_hundred_nodes() {
        let load = etcd_load(100, 1024, 2, 10.0);
        assert!(
            load.layout_bytes < load.request_limit_bytes / 10,
            "{load:?}"
        );
        assert!((10..=12).contains(&load.epochs_on_failure), "{load:?}");
        assert!((load.keepalives_per_s - 30.0).abs() < 1e-9);
    }

    #[test]
    fn ring_loads_add_up_to_the_copies() {
        let ring = Ring::new(5, 16);
        let total: f64 = ring.loads(2).iter().sum();
        assert!((total - 2.0).abs() < 1e-9, "{total}");
    }
}
