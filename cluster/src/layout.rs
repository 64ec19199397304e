//! The partition layout of a region of several nodes.
//!
//! An object version belongs to partition `hash(bucket, key) mod P`; P is fixed for the life
//! of a region (1,024 by default). The layout maps each partition to an ordered list of R
//! nodes: the first is the partition's primary, the others hold exact copies. A new layout
//! is computed from the previous one so that as few copies as possible move:
//!
//! 1. Each node's target is its share of the P × R copies by weight, no more than P (a node
//!    holds at most one copy of a partition), rounded by largest remainder.
//! 2. Every copy a node already holds is kept while the node is under its target; nodes
//!    that shrink (or leave) give up copies spread over the partitions, not a run of them.
//! 3. Missing copies go to the node furthest below its target that does not hold the
//!    partition yet.
//! 4. Primaries are then balanced among each partition's own copies, which moves no data.
//!
//! This is the scheme of Garage's layouts (fixed partitions, an assignment that respects
//! capacities and minimises movement) rather than a hash ring: movement is the minimum the
//! new targets force, and balance is exact to one partition.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A node's id in the region (given once, at join; never reused).
pub type NodeId = u32;

/// The default number of partitions: enough that one partition is under 0.1 % of the data
/// at a few hundred nodes, few enough that the layout stays a small etcd value.
pub const DEFAULT_PARTITIONS: usize = 1024;

/// A member of the layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    /// Relative capacity (for example its usable TiB); copies are shared in proportion.
    pub weight: u32,
}

/// The partitions' nodes, as one versioned value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Raised by one at every change; a replica write names it and a stale one is refused.
    pub version: u64,
    /// Copies of every partition (R).
    pub replicas: usize,
    pub nodes: Vec<Node>,
    /// For each partition, its R nodes in order: the primary first.
    pub partitions: Vec<Vec<NodeId>>,
    /// Nodes whose copies may be behind (marked down when they stopped answering): not
    /// waited for, never made primary, until they have caught up and are marked up again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub down: Vec<NodeId>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("a layout needs at least {replicas} nodes for {replicas} copies, not {nodes}")]
    TooFewNodes { nodes: usize, replicas: usize },
    #[error("node {0} appears twice")]
    DuplicateNode(NodeId),
    #[error("node {0} has weight 0")]
    ZeroWeight(NodeId),
    #[error("the number of partitions is fixed for a region ({was}), not {asked}")]
    PartitionsChanged { was: usize, asked: usize },
    #[error("a layout needs at least one partition and one copy")]
    Empty,
}

/// The partition of an object (`bucket`, `key`) among `partitions`.
pub fn partition_of(bucket: &str, key: &str, partitions: usize) -> usize {
    let mut h = Sha256::new();
    h.update(bucket.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % partitions as u64) as usize
}

/// A stable pseudo-random number for (`a`, `b`): the order partitions are visited in and
/// the tie-break between equally good nodes, so that choices spread evenly.
fn mix(a: u64, b: u64) -> u64 {
    // splitmix64 of the pair: cheap, stable across builds and platforms.
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Integer shares of `total` in proportion to `weights`, none above `cap`, summing to
/// `total` (largest remainder). `total` must be at most `cap × weights.len()`.
fn shares(total: usize, weights: &[u64], cap: usize) -> Vec<usize> {
    let n = weights.len();
    let mut out = vec![0usize; n];
    let mut capped = vec![false; n];
    // Water-filling: a node whose share passes the cap gets the cap, and the rest is
    // shared again among the others.
    loop {
        let left = total
            - out
                .iter()
                .zip(&capped)
                .filter(|(_, c)| **c)
                .map(|(s, _)| s)
                .sum::<usize>();
        let weight: u64 = weights
            .iter()
            .zip(&capped)
            .filter(|(_, c)| !**c)
            .map(|(w, _)| w)
            .sum();
        let mut newly_capped = false;
        for i in 0..n {
            if !capped[i] && (left as u128 * weights[i] as u128) > (cap as u128 * weight as u128) {
                capped[i] = true;
                out[i] = cap;
                newly_capped = true;
            }
        }
        if newly_capped {
            continue;
        }
        let mut given = 0;
        let mut remainders: Vec<(u128, usize)> = Vec::new();
        for i in (0..n).filter(|i| !capped[*i]) {
            let exact = left as u128 * weights[i] as u128;
            out[i] = (exact / weight as u128) as usize;
            given += out[i];
            remainders.push((exact % weight as u128, i));
        }
        remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, i) in remainders.into_iter().take(left - given) {
            out[i] += 1;
        }
        return out;
    }
}

impl Layout {
    /// The first layout of a region.
    pub fn initial(
        nodes: &[Node],
        partitions: usize,
        replicas: usize,
    ) -> Result<Layout, LayoutError> {
        Layout::compute(None, nodes, partitions, replicas)
    }

    /// The next layout for `nodes` (added, removed or reweighted), moving as few copies
    /// from `self` as the new shares allow.
    pub fn next(&self, nodes: &[Node]) -> Result<Layout, LayoutError> {
        Layout::compute(Some(self), nodes, self.partitions.len(), self.replicas)
    }

    fn compute(
        previous: Option<&Layout>,
        nodes: &[Node],
        partitions: usize,
        replicas: usize,
    ) -> Result<Layout, LayoutError> {
        if partitions == 0 || replicas == 0 {
            return Err(LayoutError::Empty);
        }
        if nodes.len() < replicas {
            return Err(LayoutError::TooFewNodes {
                nodes: nodes.len(),
                replicas,
            });
        }
        if let Some(p) = previous {
            if p.partitions.len() != partitions {
                return Err(LayoutError::PartitionsChanged {
                    was: p.partitions.len(),
                    asked: partitions,
                });
            }
        }
        let mut ids: Vec<NodeId> = Vec::with_capacity(nodes.len());
        for n in nodes {
            if n.weight == 0 {
                return Err(LayoutError::ZeroWeight(n.id));
            }
            if ids.contains(&n.id) {
                return Err(LayoutError::DuplicateNode(n.id));
            }
            ids.push(n.id);
        }
        let index = |id: NodeId| ids.iter().position(|i| *i == id);
        let weights: Vec<u64> = nodes.iter().map(|n| u64::from(n.weight)).collect();
        let target = shares(partitions * replicas, &weights, partitions);
        let mut count = vec![0usize; nodes.len()];
        let mut assigned: Vec<Vec<usize>> = vec![Vec::with_capacity(replicas); partitions];

        // Partitions in a scrambled (but fixed) order, so that a node that must give up
        // copies gives up ones spread over the whole range.
        let mut order: Vec<usize> = (0..partitions).collect();
        order.sort_by_key(|p| mix(*p as u64, 0x5eed));

        // 2. Keep what is where it may stay: every copy on a member, less what each node
        // holds above its target. Those are given up from the partitions that have lost
        // the fewest copies so far, so that one partition rarely loses two (a joining node
        // can take only one copy of each).
        if let Some(prev) = previous {
            for &p in &order {
                for &id in &prev.partitions[p] {
                    if let Some(i) = index(id) {
                        if assigned[p].len() < replicas {
                            assigned[p].push(i);
                            count[i] += 1;
                        }
                    }
                }
            }
            let mut lost: Vec<usize> = vec![0; partitions];
            for (p, a) in assigned.iter().enumerate() {
                lost[p] = prev.partitions[p].len().saturating_sub(a.len());
            }
            for i in 0..nodes.len() {
                let mut excess = count[i].saturating_sub(target[i]);
                let mut level = 0;
                while excess > 0 {
                    for &p in &order {
                        if excess == 0 {
                            break;
                        }
                        if lost[p] == level && assigned[p].contains(&i) {
                            assigned[p].retain(|n| *n != i);
                            lost[p] += 1;
                            count[i] -= 1;
                            excess -= 1;
                        }
                    }
                    level += 1;
                }
            }
        }
        // 3. Fill what is missing, from the node furthest below its target.
        for &p in &order {
            while assigned[p].len() < replicas {
                let pick = (0..nodes.len())
                    .filter(|i| !assigned[p].contains(i))
                    .max_by_key(|&i| {
                        (
                            target[i] as i64 - count[i] as i64,
                            mix(p as u64, u64::from(ids[i])),
                        )
                    })
                    .expect("at least `replicas` nodes, checked above");
                assigned[p].push(pick);
                count[pick] += 1;
            }
        }
        // 3b. A greedy fill can leave a node short when the partitions that need a copy
        // are ones it holds already: copies then move from nodes above their target to
        // nodes below it, new copies first (re-placing a copy not yet made costs nothing),
        // an existing one only when no new one will do.
        let was_on =
            |p: usize, i: usize| previous.is_some_and(|prev| prev.partitions[p].contains(&ids[i]));
        loop {
            let mut best: Option<(bool, usize, usize, usize)> = None; // (costs, p, from, to)
            for u in (0..nodes.len()).filter(|&u| count[u] > target[u]) {
                for v in (0..nodes.len()).filter(|&v| count[v] < target[v]) {
                    for &p in &order {
                        if !assigned[p].contains(&u) || assigned[p].contains(&v) {
                            continue;
                        }
                        let costs = was_on(p, u);
                        if best.is_none_or(|b| !costs && b.0) {
                            best = Some((costs, p, u, v));
                        }
                        if !costs {
                            break;
                        }
                    }
                }
            }
            let Some((_, p, u, v)) = best else {
                break;
            };
            let k = assigned[p].iter().position(|n| *n == u).expect("u holds p");
            assigned[p][k] = v;
            count[u] -= 1;
            count[v] += 1;
        }
        // 4. Primaries: balance them among each partition's own copies (no data moves).
        let primary_target = shares(partitions, &weights, partitions);
        let mut primaries = vec![0usize; nodes.len()];
        for a in &assigned {
            primaries[a[0]] += 1;
        }
        // A partition's primary role passes to one of its followers that has fewer
        // primaries (by at least two, or one below its target when the primary is above
        // its own): each swap lowers the sum of squares, so this ends.
        loop {
            let mut changed = false;
            for &p in &order {
                let first = assigned[p][0];
                let better = (1..assigned[p].len())
                    .filter(|&k| {
                        let f = assigned[p][k];
                        primaries[f] + 1 < primaries[first]
                            || (primaries[first] > primary_target[first]
                                && primaries[f] < primary_target[f]
                                && primaries[f] < primaries[first])
                    })
                    .min_by_key(|&k| primaries[assigned[p][k]]);
                if let Some(k) = better {
                    primaries[first] -= 1;
                    primaries[assigned[p][k]] += 1;
                    assigned[p].swap(0, k);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        Ok(Layout {
            down: Vec::new(),
            version: previous.map_or(1, |p| p.version + 1),
            replicas,
            nodes: nodes.to_vec(),
            partitions: assigned
                .into_iter()
                .map(|a| a.into_iter().map(|i| ids[i]).collect())
                .collect(),
        })
    }

    /// The copies `next` has that `self` did not: what must be filled before `next` takes
    /// effect.
    pub fn copies_to_fill(&self, next: &Layout) -> usize {
        self.partitions
            .iter()
            .zip(&next.partitions)
            .map(|(old, new)| new.iter().filter(|n| !old.contains(n)).count())
            .sum()
    }

    /// Copies held by each node, in `nodes` order.
    pub fn copies_per_node(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|n| self.partitions.iter().filter(|p| p.contains(&n.id)).count())
            .collect()
    }

    /// Partitions each node is the primary of, in `nodes` order.
    pub fn primaries_per_node(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|n| self.partitions.iter().filter(|p| p[0] == n.id).count())
            .collect()
    }

    /// The nodes of `partition`, the primary first.
    pub fn nodes_of(&self, partition: usize) -> &[NodeId] {
        &self.partitions[partition]
    }

    /// The partition of (`bucket`, `key`) in this layout.
    pub fn partition(&self, bucket: &str, key: &str) -> usize {
        partition_of(bucket, key, self.partitions.len())
    }

    pub fn is_down(&self, node: NodeId) -> bool {
        self.down.contains(&node)
    }

    /// The next version with `node` marked down: it is no longer waited for, and each
    /// partition it was primary of is led by its first copy that is not down (a follower
    /// promoted). `None` when it is down already. A partition whose every copy is down keeps
    /// its order (it has no primary that can take writes until one comes back).
    pub fn with_down(&self, node: NodeId) -> Option<Layout> {
        if self.is_down(node) || !self.nodes.iter().any(|n| n.id == node) {
            return None;
        }
        let mut next = self.clone();
        next.version += 1;
        next.down.push(node);
        next.down.sort_unstable();
        for copies in &mut next.partitions {
            if copies[0] != node {
                continue;
            }
            if let Some(at) = copies
                .iter()
                .position(|n| !self.down.contains(n) && *n != node)
            {
                let promoted = copies.remove(at);
                copies.insert(0, promoted);
            }
        }
        Some(next)
    }

    /// The next version with `node` up again (caught up): waited for and eligible as
    /// primary. Partitions whose every other copy is down get it back as primary. `None`
    /// when it is not down.
    pub fn with_up(&self, node: NodeId) -> Option<Layout> {
        if !self.is_down(node) {
            return None;
        }
        let mut next = self.clone();
        next.version += 1;
        next.down.retain(|n| *n != node);
        for copies in &mut next.partitions {
            if next.down.contains(&copies[0]) {
                if let Some(at) = copies.iter().position(|n| !next.down.contains(n)) {
                    let promoted = copies.remove(at);
                    copies.insert(0, promoted);
                }
            }
        }
        Some(next)
    }

    /// The largest load over the mean, by weight: 1.0 is perfect balance.
    pub fn imbalance(&self) -> f64 {
        let total_weight: f64 = self.nodes.iter().map(|n| f64::from(n.weight)).sum();
        let copies = (self.partitions.len() * self.replicas) as f64;
        self.copies_per_node()
            .iter()
            .zip(&self.nodes)
            .map(|(c, n)| *c as f64 / (copies * f64::from(n.weight) / total_weight))
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_node_marked_down_hands_its_primaries_to_followers_and_gets_them_back_only_if_needed() {
        let nodes: Vec<Node> = (1..=3).map(|id| Node { id, weight: 1 }).collect();
        let l = Layout::initial(&nodes, 64, 2).unwrap();
        let led_by_2 = l.partitions.iter().filter(|p| p[0] == 2).count();
        assert!(led_by_2 > 0);
        let down = l.with_down(2).unwrap();
        assert_eq!(down.version, l.version + 1);
        assert_eq!(down.down, vec![2]);
        assert!(down.partitions.iter().all(|p| p[0] != 2), "2 leads nothing");
        for (before, after) in l.partitions.iter().zip(&down.partitions) {
            let (mut b, mut a) = (before.clone(), after.clone());
            b.sort_unstable();
            a.sort_unstable();
            assert_eq!(a, b, "the same copies, only their order changes");
        }
        assert!(down.with_down(2).is_none());
        // 3 goes down too: partitions on {2, 3} have no copy up and keep their order.
        let both = down.with_down(3).unwrap();
        for p in &both.partitions {
            if p.contains(&1) {
                assert_eq!(p[0], 1);
            }
        }
        // 2 comes back: it leads the partitions whose other copy (3) is down.
        let back = both.with_up(2).unwrap();
        assert_eq!(back.down, vec![3]);
        for p in &back.partitions {
            assert!(
                p[0] != 3,
                "a down node leads nothing while another copy is up"
            );
        }
        assert!(back.with_up(2).is_none());
    }

    fn nodes(n: u32) -> Vec<Node> {
        (1..=n).map(|id| Node { id, weight: 1 }).collect()
    }

    fn check(layout: &Layout) {
        for (p, copies) in layout.partitions.iter().enumerate() {
            assert_eq!(copies.len(), layout.replicas, "partition {p}");
            let mut distinct = copies.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(
                distinct.len(),
                copies.len(),
                "partition {p} twice on a node"
            );
        }
    }

    #[test]
    fn equal_nodes_hold_equal_shares_and_primaries() {
        let l = Layout::initial(&nodes(3), 1024, 2).unwrap();
        check(&l);
        let copies = l.copies_per_node();
        assert!(copies.iter().all(|c| (682..=683).contains(c)), "{copies:?}");
        let primaries = l.primaries_per_node();
        assert!(
            primaries.iter().all(|c| (341..=342).contains(c)),
            "{primaries:?}"
        );
    }

    #[test]
    fn adding_a_node_moves_only_its_share() {
        let before = Layout::initial(&nodes(4), 1024, 2).unwrap();
        let after = before.next(&nodes(5)).unwrap();
        check(&after);
        assert_eq!(after.version, 2);
        // The new node's share is exactly what moves: 2048 / 5, rounded.
        let moved = before.copies_to_fill(&after);
        assert!((409..=410).contains(&moved), "{moved}");
        assert!(after.imbalance() < 1.01);
    }

    #[test]
    fn removing_a_node_moves_only_its_copies() {
        let before = Layout::initial(&nodes(5), 1024, 2).unwrap();
        let held = before.copies_per_node()[4];
        let after = before.next(&nodes(4)).unwrap();
        check(&after);
        assert_eq!(before.copies_to_fill(&after), held);
        assert!(after.partitions.iter().all(|p| !p.contains(&5)));
    }

    #[test]
    fn weights_share_copies_in_proportion_and_no_node_holds_a_partition_twice() {
        let mut ns = nodes(3);
        ns[0].weight = 10; // would want more than one copy of every partition
        let l = Layout::initial(&ns, 64, 2).unwrap();
        check(&l);
        assert_eq!(l.copies_per_node(), vec![64, 32, 32]);
    }

    #[test]
    fn bad_layouts_are_refused() {
        assert_eq!(
            Layout::initial(&nodes(1), 16, 2),
            Err(LayoutError::TooFewNodes {
                nodes: 1,
                replicas: 2
            })
        );
        let mut dup = nodes(2);
        dup[1].id = 1;
        assert_eq!(
            Layout::initial(&dup, 16, 1),
            Err(LayoutError::DuplicateNode(1))
        );
        let l = Layout::initial(&nodes(2), 16, 1).unwrap();
        assert!(matches!(
            Layout::compute(Some(&l), &nodes(2), 32, 1),
            Err(LayoutError::PartitionsChanged { .. })
        ));
    }

    #[test]
    fn objects_spread_over_partitions() {
        let mut counts = vec![0usize; 64];
        for i in 0..64_000 {
            counts[partition_of("bucket", &format!("key-{i}"), 64)] += 1;
        }
        assert!(
            counts.iter().all(|c| (850..=1150).contains(c)),
            "{counts:?}"
        );
        assert_eq!(partition_of("b", "k", 1024), partition_of("b", "k", 1024));
        assert_ne!(
            (0..32)
                .map(|i| partition_of("a", &i.to_string(), 1024))
                .collect::<Vec<_>>(),
            (0..32)
                .map(|i| partition_of("b", &i.to_string(), 1024))
                .collect::<Vec<_>>()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_change_keeps_layouts_valid_and_moves_little(
            start in 2u32..12,
            change in prop::collection::vec(any::<bool>(), 1..6),
        ) {
            let mut members = nodes(start);
            let mut next_id = start + 1;
            let mut layout = Layout::initial(&members, 256, 2).unwrap();
            for add in change {
                if add || members.len() <= 2 {
                    members.push(Node { id: next_id, weight: 1 });
                    next_id += 1;
                } else {
                    members.remove(0);
                }
                let next = layout.next(&members).unwrap();
                check(&next);
                // No more moves than the copies whose node changed share.
                let moved = layout.copies_to_fill(&next);
                let n = members.len();
                let bound = 2 * 256 * 2 / n + 2 * n;
                prop_assert!(moved <= bound, "moved {} > {}", moved, bound);
                prop_assert!(next.imbalance() < 1.0 + 2.0 * n as f64 / 512.0 + 0.01);
                layout = next;
            }
        }
    }
}
