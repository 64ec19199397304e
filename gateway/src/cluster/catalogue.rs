//! The region's bucket catalogue: every bucket's record and configuration documents, kept in
//! etcd (`catalogue/<bucket>`, see `meridian_cluster::control`) and applied by every node to
//! its own store, where requests read them.
//!
//! - **A change** (CreateBucket, DeleteBucket, versioning, Object Lock, any configuration) is
//!   served by the node the client reached, as on a single node, under this node's catalogue
//!   lock. The node then compares the bucket as it was before with the bucket after and
//!   writes the difference to etcd by compare-and-swap: a bucket is made only if the
//!   catalogue has no bucket of that name (two nodes making one name at once: one wins, the
//!   other answers `BucketAlreadyExists`), and a document changed here replaces that document
//!   only (changes to two documents on two nodes at once both stay). A change etcd does not
//!   take is undone here by applying the catalogue again, and the client gets the error.
//! - **Applying**: each node makes its store equal to the catalogue — buckets made, records
//!   and documents replaced, buckets gone deleted — when the catalogue changed
//!   (`catalogue-changed`, checked every [`CHECK_EVERY`]), and at once when the node that
//!   changed a bucket says so: that node answers its client only after every live node has
//!   applied the change (or did not answer in time; it catches up from etcd).
//! - **A node's own buckets from before it joined** are put in the catalogue the first time
//!   it applies it (unless the catalogue has a bucket of that name); after that, a bucket
//!   the catalogue does not have is deleted here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use http::{Request, Response, StatusCode};
use meridian_metadata::{BucketRecord, MetaError, MetaStore};
use s3s::Body;
use serde::{Deserialize, Serialize};

use meridian_cluster::control::{Catalogue, Table};

use super::{error_response, ClusterNode, HOP, INTERNAL};

/// How often a node checks whether the catalogue changed (a nudge from the node that changed
/// it comes first).
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(2);

/// How long a node that changed a bucket waits for the others to apply it.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// The setting that says this node's own buckets were put in the catalogue.
const ADOPTED: &str = "cluster-catalogue-adopted";

/// A bucket as the catalogue holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketEntry {
    pub record: BucketRecord,
    /// Configuration documents by name, base64 (they are bytes).
    docs: BTreeMap<String, String>,
}

impl BucketEntry {
    fn of(record: BucketRecord, docs: BTreeMap<String, Vec<u8>>) -> BucketEntry {
        let b64 = base64::engine::general_purpose::STANDARD;
        BucketEntry {
            record,
            docs: docs.into_iter().map(|(k, v)| (k, b64.encode(v))).collect(),
        }
    }

    fn docs(&self) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.docs
            .iter()
            .map(|(k, v)| Ok((k.clone(), b64.decode(v).map_err(|e| e.to_string())?)))
            .collect()
    }

    fn decode(value: &[u8]) -> Result<BucketEntry, String> {
        serde_json::from_slice(value).map_err(|e| e.to_string())
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a bucket entry serializes")
    }

    /// `self` with what changed between `before` and `after` (as seen on one node) applied:
    /// the record if it changed, each document that changed.
    fn merged(mut self, before: &BucketEntry, after: &BucketEntry) -> BucketEntry {
        if before.record != after.record {
            self.record = after.record.clone();
        }
        let names: BTreeSet<&String> = before.docs.keys().chain(after.docs.keys()).collect();
        for name in names {
            if before.docs.get(name) == after.docs.get(name) {
                continue;
            }
            match after.docs.get(name) {
                Some(doc) => self.docs.insert(name.clone(), doc.clone()),
                None => self.docs.remove(name),
            };
        }
        self
    }
}

/// What this node applied of the catalogue.
#[derive(Default)]
pub(super) struct Applied {
    /// The etcd revision the catalogue was last applied at (0: not yet).
    revision: i64,
    /// Something could not be applied (a bucket to delete here still holds versions): apply
    /// again at the next check, whole.
    dirty: bool,
    /// Each bucket's entry revision as applied.
    entries: BTreeMap<String, i64>,
}

/// A bucket change being served here: the catalogue lock, and the bucket as it was.
pub struct PendingChange {
    bucket: String,
    before: Option<BucketEntry>,
    _lock: tokio::sync::OwnedMutexGuard<Applied>,
}

/// The bucket as this node's store holds it.
async fn local_entry(meta: &MetaStore, bucket: &str) -> Result<Option<BucketEntry>, String> {
    let (meta, bucket) = (meta.clone(), bucket.to_owned());
    tokio::task::spawn_blocking(move || meta.bucket_state(&bucket))
        .await
        .map_err(|e| e.to_string())?
        .map(|s| s.map(|(record, docs)| BucketEntry::of(record, docs)))
        .map_err(|e| e.to_string())
}

/// What applying the catalogue did to this node's store.
#[derive(Default)]
struct Outcome {
    /// Buckets made or changed, with the names of the documents that changed.
    changed: Vec<(String, Vec<String>)>,
    removed: Vec<String>,
    /// This node's buckets the catalogue does not have (before adoption only).
    unadopted: Vec<BucketEntry>,
    stuck: bool,
}

/// Makes the store hold each bucket of `wanted` as it is there, and deletes the buckets
/// `gone` names — or, when `gone` is `None` (`wanted` is the whole catalogue), every bucket
/// `wanted` lacks (blocking).
fn apply_to_store(
    meta: &MetaStore,
    wanted: &BTreeMap<String, BucketEntry>,
    gone: Option<Vec<String>>,
    adopt: bool,
) -> Result<Outcome, MetaError> {
    let mut out = Outcome::default();
    for (name, entry) in wanted {
        let Ok(docs) = entry.docs() else {
            tracing::warn!(bucket = %name, "the catalogue's entry for a bucket is not readable; left as it is here");
            continue;
        };
        let held = meta.bucket_state(name)?;
        if held.as_ref() == Some(&(entry.record.clone(), docs.clone())) {
            continue;
        }
        let held_docs = held.map(|(_, d)| d).unwrap_or_default();
        let changed_docs = held_docs
            .keys()
            .chain(docs.keys())
            .filter(|d| held_docs.get(*d) != docs.get(*d))
            .cloned()
            .collect::<BTreeSet<_>>();
        meta.set_bucket_state(&entry.record, &docs)?;
        out.changed
            .push((name.clone(), changed_docs.into_iter().collect()));
    }
    let held: Vec<BucketRecord> = match gone {
        None => meta.list_buckets()?,
        Some(names) => names
            .iter()
            .filter(|n| !wanted.contains_key(*n))
            .filter_map(|n| meta.get_bucket(n).transpose())
            .collect::<Result<_, _>>()?,
    };
    for record in held {
        if wanted.contains_key(&record.name) {
            continue;
        }
        if adopt {
            let docs = meta.bucket_state(&record.name)?.map(|(_, d)| d);
            out.unadopted
                .push(BucketEntry::of(record, docs.unwrap_or_default()));
            continue;
        }
        match meta.delete_bucket(&record.name) {
            Ok(()) | Err(MetaError::NoSuchBucket { .. }) => out.removed.push(record.name),
            Err(MetaError::BucketNotEmpty { .. }) => {
                tracing::warn!(bucket = %record.name, "the region deleted a bucket this node still holds versions of; deleting it here once they are gone");
                out.stuck = true;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

impl ClusterNode {
    /// Whether this node has applied the catalogue at least once.
    pub(super) fn catalogue_applied(&self) -> bool {
        self.catalogue_ready.load(Ordering::Acquire)
    }

    /// Applies the catalogue if it changed since it was last applied here, unless a bucket
    /// change holds the lock (it applies it first itself).
    pub(super) async fn check_catalogue(&self) {
        let Ok(mut applied) = self.catalogue.clone().try_lock_owned() else {
            return;
        };
        if let Err(e) = self.apply_catalogue(&mut applied, None).await {
            tracing::warn!(error = %e, "applying the bucket catalogue");
        }
    }

    /// Applies the catalogue as of at least revision `at_least` (or its last change, read
    /// from etcd) if this node has not applied it yet.
    async fn apply_catalogue(
        &self,
        applied: &mut Applied,
        at_least: Option<i64>,
    ) -> Result<(), String> {
        // Twice when this node's own buckets were just put in the catalogue.
        for _ in 0..2 {
            if self.apply_once(applied, at_least).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// [`ClusterNode::apply_catalogue`] once: `Ok(false)` when it adopted this node's buckets
    /// instead (to apply again).
    async fn apply_once(
        &self,
        applied: &mut Applied,
        at_least: Option<i64>,
    ) -> Result<bool, String> {
        let Some(joined) = self.joined.get() else {
            return Err("not joined to the control plane yet".into());
        };
        if applied.revision > 0 && !applied.dirty {
            let wanted = match at_least {
                Some(r) => r,
                None => joined
                    .control
                    .table_changed(Table::Catalogue)
                    .await
                    .map_err(|e| e.to_string())?,
            };
            if applied.revision >= wanted {
                return Ok(true);
            }
        }
        let control = &joined.control;
        // Once applied whole, only what changed since is read: the names and revisions, then
        // the entries written since the oldest change (etcd's load per change stays small
        // however many buckets the region has).
        let (catalogue, names, gone) = if applied.revision > 0 && !applied.dirty {
            let (read_at, names) = control
                .table_revisions(Table::Catalogue)
                .await
                .map_err(|e| e.to_string())?;
            let oldest_change = names
                .iter()
                .filter(|(name, rev)| applied.entries.get(*name) != Some(*rev))
                .map(|(_, rev)| *rev)
                .min();
            let mut catalogue = match oldest_change {
                Some(r) => control
                    .table_since(Table::Catalogue, r)
                    .await
                    .map_err(|e| e.to_string())?,
                None => Catalogue::default(),
            };
            catalogue.revision = read_at;
            let gone: Vec<String> = applied
                .entries
                .keys()
                .filter(|n| !names.contains_key(*n))
                .cloned()
                .collect();
            (catalogue, names, Some(gone))
        } else {
            let catalogue = control
                .table(Table::Catalogue)
                .await
                .map_err(|e| e.to_string())?;
            let names = catalogue
                .entries
                .iter()
                .map(|(name, (_, rev))| (name.clone(), *rev))
                .collect();
            (catalogue, names, None)
        };
        let mut wanted = BTreeMap::new();
        for (name, (value, _)) in &catalogue.entries {
            match BucketEntry::decode(value) {
                Ok(entry) => {
                    wanted.insert(name.clone(), entry);
                }
                Err(e) => {
                    tracing::warn!(bucket = %name, error = %e, "the catalogue's entry for a bucket is not readable; left as it is here")
                }
            }
        }
        let meta = self.parts.meta.clone();
        let adopt = {
            let meta = meta.clone();
            tokio::task::spawn_blocking(move || meta.setting(ADOPTED))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
                .is_none()
        };
        let outcome = {
            let meta = meta.clone();
            tokio::task::spawn_blocking(move || apply_to_store(&meta, &wanted, gone, adopt))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        if let Some(delegate) = self.delegate.get() {
            for (bucket, docs) in &outcome.changed {
                delegate.bucket_applied(bucket, docs).await;
            }
            for bucket in &outcome.removed {
                delegate.bucket_applied(bucket, &[]).await;
            }
        }
        if adopt {
            for entry in &outcome.unadopted {
                let name = entry.record.name.clone();
                match joined
                    .control
                    .put_table_entry(Table::Catalogue, &name, 0, entry.encode())
                    .await
                {
                    Ok(Some(_)) => {
                        tracing::info!(bucket = %name, "put a bucket this node held before it joined in the region's catalogue")
                    }
                    Ok(None) => {
                        tracing::info!(bucket = %name, "the region has a bucket of this node's bucket's name already; the region's stays")
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            tokio::task::spawn_blocking(move || meta.put_setting(ADOPTED, Some(b"1")))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            // The adopted buckets (or the region's of the same names) are applied next.
            applied.dirty = true;
            return Ok(false);
        }
        applied.revision = catalogue.revision;
        applied.entries = names;
        for (name, (_, rev)) in catalogue.entries {
            applied.entries.insert(name, rev);
        }
        applied.dirty = outcome.stuck;
        self.catalogue_ready.store(true, Ordering::Release);
        Ok(true)
    }

    /// Takes the catalogue lock for a change to `bucket` served here, after applying the
    /// catalogue (so the change starts from the region's state of the bucket).
    pub async fn begin_bucket_change(
        &self,
        bucket: String,
    ) -> Result<PendingChange, Response<Body>> {
        let mut lock = self.catalogue.clone().lock_owned().await;
        let unavailable = |e: String| {
            tracing::warn!(bucket = %bucket, error = %e, "a bucket change could not start");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The region's bucket catalogue is not reachable; try again",
            )
        };
        self.apply_catalogue(&mut lock, None)
            .await
            .map_err(unavailable)?;
        let before = local_entry(&self.parts.meta, &bucket)
            .await
            .map_err(unavailable)?;
        Ok(PendingChange {
            bucket,
            before,
            _lock: lock,
        })
    }

    /// Puts the change served here (its answer `resp`) in the catalogue and waits until the
    /// other live nodes applied it; the answer, or the error that replaces it when the
    /// catalogue did not take the change (which is then undone here).
    pub async fn finish_bucket_change(
        &self,
        pending: PendingChange,
        resp: Response<Body>,
    ) -> Response<Body> {
        let PendingChange {
            bucket,
            before,
            _lock: mut lock,
        } = pending;
        let after = match local_entry(&self.parts.meta, &bucket).await {
            Ok(after) => after,
            Err(e) => {
                tracing::warn!(bucket = %bucket, error = %e, "reading a bucket after a change");
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                );
            }
        };
        if after == before {
            return resp;
        }
        let published = if resp.status().is_success() {
            self.publish(&bucket, before.as_ref(), after.as_ref()).await
        } else {
            // A change that failed half-way here (its answer is the error already).
            Err(None)
        };
        match published {
            Ok(revision) => {
                if lock.revision == revision - 1 {
                    // Nothing changed in etcd between this node's last read and its change:
                    // the store is the catalogue as of the change.
                    lock.revision = revision;
                } else if let Err(e) = self.apply_catalogue(&mut lock, Some(revision)).await {
                    // Other changes came first (merged in etcd): this node applies them too
                    // before it answers.
                    tracing::warn!(bucket = %bucket, error = %e, "applying the catalogue after a bucket change");
                    lock.dirty = true;
                }
                drop(lock);
                self.tell_others("catalogue", revision).await;
                resp
            }
            Err(answer) => {
                // Undo here: the store goes back to the catalogue's state of the bucket.
                lock.revision = 0;
                if let Err(e) = self.apply_catalogue(&mut lock, None).await {
                    tracing::warn!(bucket = %bucket, error = %e, "could not undo a bucket change the catalogue did not take; the next check will");
                    lock.dirty = true;
                }
                answer.unwrap_or(resp)
            }
        }
    }

    /// Writes what changed of `bucket` (`before` → `after`) to the catalogue; the revision it
    /// was written at, or the error to answer instead.
    async fn publish(
        &self,
        bucket: &str,
        before: Option<&BucketEntry>,
        after: Option<&BucketEntry>,
    ) -> Result<i64, Option<Response<Body>>> {
        let Some(joined) = self.joined.get() else {
            return Err(Some(catalogue_unreachable()));
        };
        let control = &joined.control;
        let unreachable = |e: meridian_cluster::control::ControlError| {
            tracing::warn!(bucket = %bucket, error = %e, "a bucket change did not reach the catalogue");
            match e {
                meridian_cluster::control::ControlError::TooLarge(_) => Some(error_response(
                    StatusCode::BAD_REQUEST,
                    "EntityTooLarge",
                    "The bucket's configuration documents together are larger than the region's catalogue takes",
                )),
                _ => Some(catalogue_unreachable()),
            }
        };
        match (before, after) {
            (None, None) => Err(None),
            (Some(_), None) => control
                .remove_table_entry(Table::Catalogue, bucket)
                .await
                .map_err(unreachable),
            (None, Some(made)) => {
                match control
                    .put_table_entry(Table::Catalogue, bucket, 0, made.encode())
                    .await
                    .map_err(unreachable)?
                {
                    Some(revision) => Ok(revision),
                    None => {
                        let existing = control
                            .table_entry(Table::Catalogue, bucket)
                            .await
                            .map_err(unreachable)?;
                        let owner = existing
                            .and_then(|(v, _)| BucketEntry::decode(&v).ok())
                            .map(|e| e.record.owner);
                        Err(Some(
                            if owner.as_deref() == Some(made.record.owner.as_str()) {
                                error_response(
                                StatusCode::CONFLICT,
                                "BucketAlreadyOwnedByYou",
                                "Your previous request to create the named bucket succeeded and you already own it.",
                            )
                            } else {
                                error_response(
                                StatusCode::CONFLICT,
                                "BucketAlreadyExists",
                                "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.",
                            )
                            },
                        ))
                    }
                }
            }
            (Some(before), Some(after)) => {
                for _ in 0..16 {
                    let Some((value, revision)) = control
                        .table_entry(Table::Catalogue, bucket)
                        .await
                        .map_err(unreachable)?
                    else {
                        return Err(Some(error_response(
                            StatusCode::NOT_FOUND,
                            "NoSuchBucket",
                            "The specified bucket does not exist",
                        )));
                    };
                    let current = BucketEntry::decode(&value).map_err(|e| {
                        tracing::warn!(bucket = %bucket, error = %e, "the catalogue's entry for a bucket is not readable");
                        Some(catalogue_unreachable())
                    })?;
                    let next = current.merged(before, after);
                    if let Some(written) = control
                        .put_table_entry(Table::Catalogue, bucket, revision, next.encode())
                        .await
                        .map_err(unreachable)?
                    {
                        return Ok(written);
                    }
                }
                Err(Some(catalogue_unreachable()))
            }
        }
    }

    /// Asks every other live node to apply `table` (`catalogue` or `keys`) as of `revision`,
    /// and waits for their answers (at most [`APPLY_WAIT`]; a node that does not answer
    /// applies it at its next check).
    pub(super) async fn tell_others(&self, table: &str, revision: i64) {
        let me = self.id();
        let view = self.view();
        // Who holds a lease now: a node that came back a moment ago is told too.
        let alive = match self.joined.get() {
            Some(j) => j
                .control
                .alive()
                .await
                .unwrap_or_else(|_| view.alive.clone()),
            None => view.alive.clone(),
        };
        let sends = alive
            .iter()
            .filter(|id| Some(**id) != me)
            .filter_map(|id| Some((*id, view.endpoints.get(id)?.clone())))
            .map(|(id, endpoint)| async move {
                let req = Request::post(format!(
                    "{}{INTERNAL}{table}?revision={revision}",
                    endpoint.trim_end_matches('/')
                ))
                .header(HOP, &self.hop)
                .body(Body::empty())
                .expect("a nudge");
                match tokio::time::timeout(APPLY_WAIT, self.http.request(req)).await {
                    Ok(Ok(r)) if r.status().is_success() => {}
                    Ok(Ok(r)) => tracing::warn!(node = id, table, status = r.status().as_u16(), "another node could not apply a change yet"),
                    Ok(Err(e)) => tracing::warn!(node = id, table, error = %e, "another node was not told of a change"),
                    Err(_) => tracing::warn!(node = id, table, "another node did not apply a change in time"),
                }
            });
        futures::future::join_all(sends).await;
    }

    /// `POST /_meridian/cluster/catalogue?revision=R`: apply the catalogue as of `R`.
    pub(super) async fn serve_catalogue_nudge(&self, query: Option<&str>) -> Response<Body> {
        let Some(revision) = nudged_revision(query) else {
            return error_response(StatusCode::BAD_REQUEST, "InvalidArgument", "revision=R");
        };
        let mut applied = self.catalogue.clone().lock_owned().await;
        match self.apply_catalogue(&mut applied, Some(revision)).await {
            Ok(()) => super::json_response(&serde_json::json!({ "applied": applied.revision })),
            Err(e) => super::internal_error(&e),
        }
    }
}

/// The revision a nudge (`?revision=R`) asks to apply.
pub(super) fn nudged_revision(query: Option<&str>) -> Option<i64> {
    query
        .and_then(|q| q.strip_prefix("revision="))
        .and_then(|r| r.parse::<i64>().ok())
}

fn catalogue_unreachable() -> Response<Body> {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "The region's bucket catalogue is not reachable; try again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(versioning: meridian_metadata::VersioningState, docs: &[(&str, &str)]) -> BucketEntry {
        BucketEntry::of(
            BucketRecord {
                name: "b".into(),
                owner: "o".into(),
                versioning,
                ..BucketRecord::default()
            },
            docs.iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn a_change_on_one_node_keeps_what_another_changed_meanwhile() {
        use meridian_metadata::VersioningState::*;
        // This node saw {policy: p1} and set the lifecycle; meanwhile another node set CORS
        // and enabled versioning.
        let before = entry(Unversioned, &[("policy", "p1")]);
        let after = entry(Unversioned, &[("policy", "p1"), ("lifecycle", "l")]);
        let current = entry(Enabled, &[("policy", "p1"), ("cors", "c")]);
        assert_eq!(
            current.clone().merged(&before, &after),
            entry(
                Enabled,
                &[("policy", "p1"), ("cors", "c"), ("lifecycle", "l")]
            )
        );
        // A document removed here goes; the record changed here wins.
        let after = entry(Suspended, &[]);
        assert_eq!(
            current.merged(&before, &after),
            entry(Suspended, &[("cors", "c")])
        );
    }

    #[test]
    fn an_entry_round_trips_with_binary_documents() {
        let mut e = entry(meridian_metadata::VersioningState::Enabled, &[]);
        e.docs.insert(
            "acl".into(),
            base64::engine::general_purpose::STANDARD.encode([0u8, 255, 10]),
        );
        let back = BucketEntry::decode(&e.encode()).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.docs().unwrap()["acl"], vec![0u8, 255, 10]);
    }
}
