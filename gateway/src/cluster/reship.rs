//! Geo-replication across a failover: the versions a dead primary had not shipped to the peer
//! regions are shipped by the nodes that took over its partitions.
//!
//! - **Watermarks.** Every [`SHIP_EVERY`], each node records in etcd (`shipped/<id>`), per
//!   peer region, the commit time before which every change it led was shipped there: its
//!   outbox's oldest change still owed to that peer, or the time it looked when none was.
//! - **Taking over.** A node that leads partitions of which a node marked down holds a copy
//!   (it was promoted over that node, or led them already) walks the versions of those
//!   partitions committed since that node's oldest watermark (less [`MARGIN`], for commit
//!   times taken before the version's) and queues for the peer regions their rules send them
//!   to every one that is this region's own write held here as a copy. A version the peer
//!   region holds already is taken again as a no-op there. The watermarks a walk was done
//!   for are remembered (`cluster-reshipped/<id>`), so a restart does not walk again, and a
//!   node that comes back and dies again is walked for once more.
//!
//! Not shipped this way: removals of single versions the dead node made and had not shipped
//! (a removal is not replicated between regions anyway).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_cluster::layout::{Layout, NodeId};
use meridian_metadata::ListVersionsQuery;

use super::ClusterNode;

/// How often a node records its shipping watermarks.
pub(super) const SHIP_EVERY: Duration = Duration::from_secs(5);

/// How often a node marked down is looked at again (a walk done for its watermarks is not
/// done again; this is what reads them).
const LOOK_AGAIN: Duration = Duration::from_secs(30);

/// How much earlier than a watermark a walk starts.
const MARGIN: Duration = Duration::from_secs(60);

/// The setting that remembers the watermarks of node `id` a walk was done for.
fn done_setting(id: NodeId) -> String {
    format!("cluster-reshipped/{id}")
}

/// The partitions `me` leads in `layout` of which `down` holds a copy.
fn taken_over(layout: &Layout, me: NodeId, down: NodeId) -> BTreeSet<usize> {
    (0..layout.partitions.len())
        .filter(|p| {
            let nodes = layout.nodes_of(*p);
            nodes.first() == Some(&me) && nodes.contains(&down)
        })
        .collect()
}

impl ClusterNode {
    /// Records this node's shipping watermarks in etcd (if it has peer regions).
    pub(super) async fn publish_shipped(&self) {
        let (Some(joined), false) = (self.joined.get(), self.parts.geo_peers.is_empty()) else {
            return;
        };
        let looked = meridian_metadata::now_nanos();
        let (meta, peers) = (self.parts.meta.clone(), self.parts.geo_peers.clone());
        let marks = tokio::task::spawn_blocking(move || {
            peers
                .into_iter()
                .map(|peer| {
                    let oldest = meta.peer_oldest_owed(&peer)?;
                    Ok((peer, oldest.unwrap_or(looked)))
                })
                .collect::<Result<BTreeMap<String, i64>, meridian_metadata::MetaError>>()
        })
        .await;
        match marks {
            Ok(Ok(marks)) => {
                if let Err(e) = joined.control.put_shipped(joined.id, &marks).await {
                    tracing::debug!(error = %e, "recording the shipping watermarks");
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the outbox for the shipping watermarks")
            }
            Err(_) => {}
        }
    }

    /// Starts a walk for each node marked down whose partitions this node now leads, unless
    /// one was done for its watermarks already.
    pub(super) async fn reship_for_down(self: &Arc<Self>) {
        let (Some(joined), view) = (self.joined.get(), self.view()) else {
            return;
        };
        let (Some(layout), Some(delegate)) = (view.layout.clone(), self.delegate.get()) else {
            return;
        };
        if self.parts.geo_peers.is_empty() || !joined.gate.may_write() {
            return;
        }
        for down in layout.down.clone() {
            let partitions = taken_over(&layout, joined.id, down);
            if partitions.is_empty() {
                continue;
            }
            {
                let mut walks = self.reshipping.lock().unwrap_or_else(|e| e.into_inner());
                match walks.get(&down) {
                    // A walk for it is under way, or was looked at a moment ago.
                    Some(None) => continue,
                    Some(Some(at)) if at.elapsed() < LOOK_AGAIN => continue,
                    _ => walks.insert(down, None),
                };
            }
            let node = self.clone();
            let (layout, delegate) = (layout.clone(), delegate.clone());
            tokio::spawn(async move {
                if let Err(e) = node.reship(down, layout, &partitions, delegate).await {
                    tracing::warn!(node = down, error = %e, "shipping a dead node's versions to the peer regions; will try again");
                }
                node.reshipping
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(down, Some(Instant::now()));
            });
        }
    }

    /// The walk for node `down` (see the module's comment).
    async fn reship(
        &self,
        down: NodeId,
        layout: Arc<Layout>,
        partitions: &BTreeSet<usize>,
        delegate: Arc<dyn super::Delegated>,
    ) -> Result<(), String> {
        let joined = self.joined.get().ok_or("not joined")?;
        let marks = joined
            .control
            .shipped(down)
            .await
            .map_err(|e| e.to_string())?;
        let Some(oldest) = marks.values().min().copied() else {
            return Ok(()); // it never shipped to a peer region
        };
        let remembered = serde_json::to_vec(&marks).expect("watermarks serialize");
        let meta = self.parts.meta.clone();
        let setting = done_setting(down);
        let done = {
            let (meta, setting) = (meta.clone(), setting.clone());
            tokio::task::spawn_blocking(move || meta.setting(&setting))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        if done.as_deref() == Some(remembered.as_slice()) {
            return Ok(());
        }
        let since = oldest - MARGIN.as_nanos() as i64;
        tracing::info!(
            node = down,
            partitions = partitions.len(),
            "shipping to the peer regions the versions a dead node led and may not have shipped"
        );
        let buckets = self.on_meta(|m| m.list_buckets()).await?;
        let mut queued = 0;
        for bucket in buckets {
            let mut query = ListVersionsQuery {
                max_keys: 500,
                ..ListVersionsQuery::default()
            };
            loop {
                let (meta, name, q) = (meta.clone(), bucket.name.clone(), query.clone());
                let (layout, partitions) = (layout.clone(), partitions.clone());
                let page = tokio::task::spawn_blocking(move || {
                    let keep = |k: &str| partitions.contains(&layout.partition(&name, k));
                    meta.list_versions_keeping(&name, &q, Some(&keep))
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                for v in page.versions.iter().filter(|v| v.mtime >= since) {
                    queued += delegate.reship(&bucket.name, &v.key, &v.version_id).await;
                }
                if !page.is_truncated {
                    break;
                }
                query.key_marker = page.next_key_marker;
                query.version_id_marker = page.next_version_id_marker;
            }
        }
        tracing::info!(
            node = down,
            queued,
            "queued for the peer regions what a dead node led"
        );
        tokio::task::spawn_blocking(move || meta.put_setting(&setting, Some(&remembered)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}
