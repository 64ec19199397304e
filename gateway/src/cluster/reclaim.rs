//! Copies a layout change left behind: once a layout is in force (nothing staged, no node
//! down) and has been for [`SETTLE`], a node removes the versions of the partitions it no
//! longer holds — each only after every node that holds its partition now has answered that
//! it holds that exact version (same version id, ETag and kind, in its own store), and only
//! once the peer regions have it, when this node still owed it to them. A layout change
//! thereby frees the disk it moved from, and no version is ever removed on the word of the
//! layout alone.
//!
//! The holders are asked in batches, a page of versions per holder, through the internal
//! `holds` endpoint (reads between nodes, no S3 request, no fencing involved). A removal here
//! is this node's own: it queues nothing for anyone. A version that cannot be confirmed yet
//! stays, and the walk runs again ([`LOOK_AGAIN`]) until none is left; the layout version a
//! walk finished for is remembered (`cluster-reclaimed`). A layout in which this node holds
//! every partition it held when a walk last finished (a node marked down or up) needs none.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use meridian_cluster::layout::{Layout, NodeId};
use meridian_metadata::{DeleteOptions, ListVersionsQuery, PeerStatus, VersionRecord};
use s3s::Body;
use serde::{Deserialize, Serialize};

use super::{copy_peer_id, error_response, internal_error, json_response, ClusterNode, VIEW_TTL};

/// How long after a walk that left versions (or could not run) the next one starts; doubled
/// after each such walk up to [`LOOK_AGAIN_AT_MOST`] (a version that no holder will ever
/// confirm — a write that raced the switch and was not acknowledged — would otherwise have
/// the walk read every moved version every few seconds).
const LOOK_AGAIN: Duration = Duration::from_secs(10);
const LOOK_AGAIN_AT_MOST: Duration = Duration::from_secs(600);

/// How long a layout is in force here before its left-behind copies go: every live node
/// reads the layout every `REFRESH`, so by then none still sends reads to the old holders.
const SETTLE: Duration = Duration::from_secs(10);

/// Versions listed (and confirmed with each holder) at a time.
const PAGE: usize = 500;

/// The setting that remembers the layout version a walk finished for.
const DONE: &str = "cluster-reclaimed";

/// A version a node is asked whether it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Held {
    bucket: String,
    key: String,
    version_id: String,
    etag: String,
    delete_marker: bool,
}

impl Held {
    fn of(record: &VersionRecord) -> Held {
        Held {
            bucket: record.bucket.clone(),
            key: record.key.clone(),
            version_id: record.version_id.clone(),
            etag: record.etag.clone(),
            delete_marker: record.is_delete_marker,
        }
    }
}

/// The walks of one node.
#[derive(Default)]
pub(super) struct Walks {
    /// `None`: no walk ran yet; `Some(None)`: one is under way; `Some(Some(t))`: the next
    /// may start at `t`.
    next: Option<Option<Instant>>,
    /// The wait after the last walk.
    wait: Duration,
    /// The partitions this node held when a walk last finished: a layout in which it holds
    /// at least those (a node marked down or up changes the version, not the copies) leaves
    /// nothing new behind, and needs no walk.
    held: Option<Vec<bool>>,
}

/// Which partitions `me` holds a copy of in `layout`.
fn held_by(layout: &Layout, me: NodeId) -> Vec<bool> {
    layout.partitions.iter().map(|p| p.contains(&me)).collect()
}

/// Whether `now` holds every partition `before` held.
fn holds_all_of(now: &[bool], before: &[bool]) -> bool {
    now.len() == before.len() && before.iter().zip(now).all(|(b, n)| !b || *n)
}

/// How a walk ended.
struct Walked {
    removed: u64,
    /// Versions that could not be confirmed on their holders yet.
    kept: u64,
}

impl ClusterNode {
    /// Starts a walk when the layout in force has copies this node no longer holds, has been
    /// in force for [`SETTLE`], and no walk finished for it (nor runs, nor ran a moment ago).
    pub(super) fn reclaim_moved(self: &Arc<Self>) {
        let (Some(joined), view) = (self.joined.get(), self.view()) else {
            return;
        };
        let Some(layout) = view.layout.clone() else {
            return;
        };
        let in_force_since = {
            let mut seen = self.layout_seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.0 != layout.version {
                *seen = (layout.version, Instant::now());
            }
            seen.1
        };
        if view.staged.is_some()
            || !layout.down.is_empty()
            || !joined.gate.may_write()
            || in_force_since.elapsed() < SETTLE
            || self.reclaimed.load(Ordering::Acquire) == layout.version
        {
            return;
        }
        let held = held_by(&layout, joined.id);
        {
            let mut walk = self.reclaiming.lock().unwrap_or_else(|e| e.into_inner());
            if walk
                .held
                .as_ref()
                .is_some_and(|before| holds_all_of(&held, before))
            {
                self.reclaimed.store(layout.version, Ordering::Release);
                return;
            }
            match walk.next {
                Some(None) => return,
                Some(Some(not_before)) if Instant::now() < not_before => return,
                _ => walk.next = Some(None),
            }
        }
        let (node, me) = (self.clone(), joined.id);
        tokio::spawn(async move {
            let walked = node.reclaim(me, layout.clone()).await;
            let complete = matches!(walked, Ok(Walked { kept: 0, .. }));
            match walked {
                Ok(w) if w.kept == 0 => {
                    if w.removed > 0 {
                        tracing::info!(
                            layout = layout.version,
                            removed = w.removed,
                            "removed the copies this node no longer holds"
                        );
                    }
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
                    tracing::info!(error = %e, "removing the copies this node no longer holds: will look again")
                }
            }
            let mut walk = node.reclaiming.lock().unwrap_or_else(|e| e.into_inner());
            if complete {
                walk.held = Some(held);
            }
            walk.wait = if complete {
                LOOK_AGAIN
            } else {
                (walk.wait.max(LOOK_AGAIN / 2) * 2).min(LOOK_AGAIN_AT_MOST)
            };
            walk.next = Some(Some(Instant::now() + walk.wait));
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
        let buckets = self.on_meta(|m| m.list_buckets()).await?;
        let mut walked = Walked {
            removed: 0,
            kept: 0,
        };
        for bucket in buckets {
            let mut query = ListVersionsQuery {
                max_keys: PAGE,
                ..ListVersionsQuery::default()
            };
            loop {
                if self.view().layout.as_ref().map(|l| l.version) != Some(layout.version) {
                    return Err("the layout changed; the next walk takes the new one".into());
                }
                let (name, q, l) = (bucket.name.clone(), query.clone(), layout.clone());
                // The versions of the partitions this node no longer holds, as records.
                let (records, page) = self
                    .on_meta(move |m| {
                        let moved = |k: &str| !l.nodes_of(l.partition(&name, k)).contains(&me);
                        let page = m.list_versions_keeping(&name, &q, Some(&moved))?;
                        let mut records = Vec::new();
                        for v in &page.versions {
                            if let Some(r) = m.get_version(&name, &v.key, Some(&v.version_id))? {
                                records.push(r);
                            }
                        }
                        Ok((records, page))
                    })
                    .await?;
                let confirmed = self.confirmed(&layout, &records).await;
                for (record, confirmed) in records.iter().zip(confirmed) {
                    if confirmed && self.remove_copy(record, layout.version).await? {
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

    /// For each of `records`: whether no peer region is still owed it from here and every
    /// node of its partition in `layout` holds it.
    async fn confirmed(&self, layout: &Layout, records: &[VersionRecord]) -> Vec<bool> {
        let mut confirmed: Vec<bool> = records
            .iter()
            .map(|r| {
                // Still owed to a peer region from here: it stays until sent.
                !r.replication.peers.iter().any(|(peer, status)| {
                    *status != PeerStatus::Completed && copy_peer_id(peer).is_none()
                })
            })
            .collect();
        let mut asks: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            if confirmed[i] {
                for holder in layout.nodes_of(layout.partition(&r.bucket, &r.key)) {
                    asks.entry(*holder).or_default().push(i);
                }
            }
        }
        for (holder, indexes) in asks {
            let ask: Vec<Held> = indexes.iter().map(|i| Held::of(&records[*i])).collect();
            let answers = self.ask_holds(holder, &ask).await;
            for (n, i) in indexes.into_iter().enumerate() {
                confirmed[i] &= answers.as_ref().is_some_and(|a| a.get(n) == Some(&true));
            }
        }
        confirmed
    }

    /// Node `id`'s answer to which of `ask` it holds (`None` when it does not answer).
    async fn ask_holds(&self, id: NodeId, ask: &[Held]) -> Option<Vec<bool>> {
        let resp = self.send(id, "holds", &ask).await.ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        let answers: Vec<bool> = serde_json::from_slice(&body).ok()?;
        (answers.len() == ask.len()).then_some(answers)
    }

    /// Removes this node's copy of `record`, unless the layout is changing: whether it did.
    async fn remove_copy(&self, record: &VersionRecord, version: u64) -> Result<bool, String> {
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
        let (b, k, v) = (
            record.bucket.clone(),
            record.key.clone(),
            record.version_id.clone(),
        );
        self.on_meta(move |meta| {
            // This node's copy only: no Object Lock check (the holders keep the version and
            // its lock) and nothing queued for anyone.
            let opts = DeleteOptions {
                unlocked: true,
                ..DeleteOptions::default()
            };
            meta.delete_object(&b, &k, Some(&v), opts)
        })
        .await?;
        Ok(true)
    }

    /// Serves `holds`: which of the versions asked this node holds in its own store, with
    /// the same ETag and kind.
    pub(super) async fn serve_holds(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return internal_error("reading the request"),
        };
        let Ok(ask) = serde_json::from_slice::<Vec<Held>>(&body) else {
            return error_response(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "bad holds request",
            );
        };
        let meta = self.parts.meta.clone();
        let answers = tokio::task::spawn_blocking(move || {
            ask.iter()
                .map(|h| {
                    // Anything but the same version here (no such bucket, a read that
                    // failed) is "not held": the asker keeps its copy.
                    meta.get_version(&h.bucket, &h.key, Some(&h.version_id))
                        .ok()
                        .flatten()
                        .is_some_and(|r| r.etag == h.etag && r.is_delete_marker == h.delete_marker)
                })
                .collect::<Vec<bool>>()
        })
        .await;
        match answers {
            Ok(answers) => json_response(&answers),
            Err(e) => internal_error(&e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_cluster::layout::Node;

    fn nodes(ids: &[NodeId]) -> Vec<Node> {
        ids.iter().map(|&id| Node { id, weight: 1 }).collect()
    }

    #[test]
    fn only_a_layout_that_moves_copies_away_needs_a_walk() {
        let three = Layout::initial(&nodes(&[1, 2, 3]), 64, 2).unwrap();
        let before = held_by(&three, 1);
        // Marked down, then up: primaries move, copies do not.
        let down = three.with_down(1).unwrap();
        assert!(holds_all_of(&held_by(&down, 1), &before));
        let up = down.with_up(1).unwrap();
        assert!(holds_all_of(&held_by(&up, 1), &before));
        // A fourth node takes copies from every node: node 1 gives some away.
        let four = three.next(&nodes(&[1, 2, 3, 4])).unwrap();
        assert!(!holds_all_of(&held_by(&four, 1), &before));
        // Node 4 gained copies and lost none.
        assert!(holds_all_of(&held_by(&four, 4), &held_by(&three, 4)));
    }
}
