//! Copies a layout change left behind: once a layout is in force (nothing staged, no node
//! down), a node removes the versions of the partitions it no longer holds — each only after
//! every node that holds its partition now has answered that it holds that exact version, and
//! only once the peer regions have it, when this node still owed it to them. A layout change
//! thereby frees the disk it moved from, and no version is ever removed on the word of the
//! layout alone.
//!
//! A removal here is this node's own: it queues nothing for anyone. A version that cannot be
//! confirmed yet stays, and the walk runs again ([`LOOK_AGAIN`]) until none is left; the
//! layout version a walk finished for is remembered (`cluster-reclaimed`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_cluster::layout::{Layout, NodeId};
use meridian_metadata::{DeleteOptions, ListVersionsQuery, PeerStatus};

use super::{copy_peer, copy_peer_id, ClusterNode, VIEW_TTL};

/// How long after a walk that left versions (or could not run) the next one starts.
const LOOK_AGAIN: Duration = Duration::from_secs(10);

/// The setting that remembers the layout version a walk finished for.
const DONE: &str = "cluster-reclaimed";

/// How a walk ended.
struct Walked {
    removed: u64,
    /// Versions that could not be confirmed on their holders yet.
    kept: u64,
}

impl ClusterNode {
    /// Starts a walk when the layout in force has copies this node no longer holds and no
    /// walk finished for it (nor runs, nor ran a moment ago).
    pub(super) fn reclaim_moved(self: &Arc<Self>) {
        let (Some(joined), view) = (self.joined.get(), self.view()) else {
            return;
        };
        let Some(layout) = view.layout.clone() else {
            return;
        };
        if view.staged.is_some() || !layout.down.is_empty() || !joined.gate.may_write() {
            return;
        }
        if self.reclaimed.load(Ordering::Acquire) == layout.version {
            return;
        }
        {
            let mut walk = self.reclaiming.lock().unwrap_or_else(|e| e.into_inner());
            match *walk {
                Some(None) => return,
                Some(Some(at)) if at.elapsed() < LOOK_AGAIN => return,
                _ => *walk = Some(None),
            }
        }
        let (node, me) = (self.clone(), joined.id);
        tokio::spawn(async move {
            match node.reclaim(me, layout.clone()).await {
                Ok(w) if w.kept == 0 => {
                    tracing::info!(
                        layout = layout.version,
                        removed = w.removed,
                        "removed the copies this node no longer holds"
                    );
                    node.reclaimed.store(layout.version, Ordering::Release);
                    let meta = node.parts.meta.clone();
                    let version = layout.version.to_string();
                    let _ = tokio::task::spawn_blocking(move || {
                        meta.put_setting(DONE, Some(version.as_bytes()))
                    })
                    .await;
                }
                Ok(w) => tracing::info!(
                    layout = layout.version,
                    removed = w.removed,
                    kept = w.kept,
                    "removed copies this node no longer holds; the others are not confirmed on their holders yet"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "removing the copies this node no longer holds")
                }
            }
            *node.reclaiming.lock().unwrap_or_else(|e| e.into_inner()) = Some(Some(Instant::now()));
        });
    }

    /// The layout version a walk finished for, as remembered (blocking).
    pub(super) fn reclaimed_setting(meta: &meridian_metadata::MetaStore) -> u64 {
        meta.setting(DONE)
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    async fn reclaim(&self, me: NodeId, layout: Arc<Layout>) -> Result<Walked, String> {
        let meta = self.parts.meta.clone();
        let buckets = {
            let meta = meta.clone();
            tokio::task::spawn_blocking(move || meta.list_buckets())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        let mut walked = Walked {
            removed: 0,
            kept: 0,
        };
        for bucket in buckets {
            let mut query = ListVersionsQuery {
                max_keys: 500,
                ..ListVersionsQuery::default()
            };
            loop {
                if self.view().layout.as_ref().map(|l| l.version) != Some(layout.version) {
                    return Err("the layout changed; the next walk takes the new one".into());
                }
                let (meta2, name, q, l) = (
                    meta.clone(),
                    bucket.name.clone(),
                    query.clone(),
                    layout.clone(),
                );
                let page = tokio::task::spawn_blocking(move || {
                    let moved = |k: &str| !l.nodes_of(l.partition(&name, k)).contains(&me);
                    meta2.list_versions_keeping(&name, &q, Some(&moved))
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                for v in &page.versions {
                    let holders = layout.nodes_of(layout.partition(&bucket.name, &v.key));
                    if self
                        .reclaim_one(&bucket.name, &v.key, &v.version_id, holders, layout.version)
                        .await?
                    {
                        walked.removed += 1;
                    } else {
                        walked.kept += 1;
                    }
                }
                if !page.is_truncated {
                    break;
                }
                query.key_marker = page.next_key_marker;
                query.version_id_marker = page.next_version_id_marker;
            }
        }
        Ok(walked)
    }

    /// Removes this node's copy of one version if every one of `holders` has it and no peer
    /// region is still owed it from here: whether it was removed.
    async fn reclaim_one(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        holders: &[NodeId],
        version: u64,
    ) -> Result<bool, String> {
        let meta = self.parts.meta.clone();
        let (m, b, k, v) = (
            meta.clone(),
            bucket.to_owned(),
            key.to_owned(),
            version_id.to_owned(),
        );
        let Some(record) = tokio::task::spawn_blocking(move || m.get_version(&b, &k, Some(&v)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
        else {
            return Ok(true); // gone meanwhile
        };
        // Still owed to a peer region (or to another node) from here: it stays until sent.
        let owed =
            record.replication.peers.iter().any(|(peer, status)| {
                *status != PeerStatus::Completed && copy_peer_id(peer).is_none()
            });
        if owed {
            return Ok(false);
        }
        for holder in holders {
            if !self.holds(*holder, &record).await {
                return Ok(false);
            }
        }
        // A staged layout may give the partition back to this node, and its fill would find
        // the copy here and send nothing: remove only on a view of the layout read less than
        // half of VIEW_TTL ago with nothing staged and the walk's layout in force (a fill's
        // walk starts VIEW_TTL after its leader saw the staged layout, so what it sends
        // arrives after this removal).
        if self
            .view()
            .read_at
            .is_none_or(|at| at.elapsed() > VIEW_TTL / 2)
        {
            self.refresh().await.map_err(|e| e.to_string())?;
        }
        let view = self.view();
        if view.staged.is_some() || view.layout.as_ref().map(|l| l.version) != Some(version) {
            return Err("the layout is changing; the next walk takes the new one".into());
        }
        let (b, k, v) = (bucket.to_owned(), key.to_owned(), version_id.to_owned());
        tokio::task::spawn_blocking(move || {
            // This node's copy only: no Object Lock check (the holders keep the version and
            // its lock) and nothing queued for anyone.
            let opts = DeleteOptions {
                unlocked: true,
                ..DeleteOptions::default()
            };
            meta.delete_object(&b, &k, Some(&v), opts)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// Whether node `id` answers that it holds `record` itself (a HEAD of that version sent
    /// as from another node, which it answers from its own store), with the same ETag.
    async fn holds(&self, id: NodeId, record: &meridian_metadata::VersionRecord) -> bool {
        let client = match &*self.copies.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(c) => c.replicator.peer_client(&copy_peer(id)),
            None => None,
        };
        let Some(client) = client else {
            return false;
        };
        let head = client
            .head_object()
            .bucket(&record.bucket)
            .key(meridian_replicator::sdk_key(&record.key))
            .version_id(&record.version_id)
            .send()
            .await;
        match head {
            Ok(out) => {
                !record.is_delete_marker
                    && out.e_tag().map(|e| e.trim_matches('"')) == Some(record.etag.as_str())
            }
            // A delete marker's version answers 405 with `x-amz-delete-marker: true`.
            Err(e) => {
                record.is_delete_marker
                    && e.raw_response().is_some_and(|r| {
                        r.status().as_u16() == 405
                            && r.headers().get("x-amz-delete-marker") == Some("true")
                    })
            }
        }
    }
}
