//! The region's run-time access keys and grants, kept in etcd (`keys/<access key>`, see
//! `meridian_cluster::control`) and applied by every node to its own store, where the
//! signature check reads them.
//!
//! - **What etcd holds**: each key as its last change made it (record, grants, secrets),
//!   sealed whole with a key every node derives from the region's root secret
//!   ([`SharedSeal`]): etcd, its backups and its operators never see a secret. Deleted keys
//!   stay as tombstones, so a deletion wins over an older change wherever it arrives.
//! - **Newest change wins**, as between regions: a record carries when and where it last
//!   changed, and a node takes an entry only when it is newer than what it holds.
//! - **A change** (`meridian admin key ...`, or a change a peer region sent) is made on the
//!   node that got it, then written to etcd by compare-and-swap unless etcd holds a newer
//!   change; the node answers once every live node has applied it (or did not answer in
//!   time: it catches up from etcd), so a key made works, and a key disabled is refused, on
//!   every node at once.
//! - **Applying**: when `keys-changed` moved (checked with the bucket catalogue), a node
//!   reads the table (keys are few and small: a few hundred bytes each) and makes its store
//!   and etcd agree, both ways: etcd's newer entries applied here, this node's newer records
//!   (a change made while etcd was unreachable, or keys from before the node joined) written
//!   there.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{Response, StatusCode};
use meridian_cluster::control::Table;
use meridian_metadata::AccessKeyRecord;
use meridian_store::access_keys::{AccessKeys, SharedSeal, WireKey};
use s3s::Body;

use super::catalogue::nudged_revision;
use super::{error_response, ClusterNode};

/// What a node needs to keep its access keys and etcd's agreeing.
pub(super) struct KeyParts {
    pub(super) users: crate::auth::Users,
    pub(super) sync: crate::key_sync::KeySync,
    pub(super) seal: Arc<SharedSeal>,
}

/// What this node applied of the keys in etcd.
#[derive(Default)]
pub(super) struct KeysApplied {
    /// The etcd revision the keys were last read at (0: not yet).
    revision: i64,
    /// This node may hold changes etcd lacks: read and compare at the next check, whatever
    /// `keys-changed` says.
    dirty: bool,
}

/// What one comparison of this node's keys with etcd's found.
struct Compared {
    /// Access keys whose entry in etcd was applied here.
    applied: Vec<String>,
    /// This node's newer changes, and the revision of etcd's entry each replaces (0: none).
    newer_here: Vec<(String, Vec<u8>, i64)>,
}

/// Applies etcd's newer entries to this node's store and collects this node's newer records,
/// sealed for etcd (blocking).
fn compare(
    keys: &AccessKeys,
    users: &crate::auth::Users,
    seal: &SharedSeal,
    theirs: BTreeMap<String, (WireKey, i64)>,
) -> Result<Compared, String> {
    let mut out = Compared {
        applied: Vec::new(),
        newer_here: Vec::new(),
    };
    let mut held: BTreeMap<String, (AccessKeyRecord, i64)> = BTreeMap::new();
    for (access_key, (wire, revision)) in theirs {
        if users.is_bootstrap(&access_key) {
            continue;
        }
        held.insert(access_key.clone(), (wire.record.clone(), revision));
        if keys.apply(wire).map_err(|e| e.to_string())?.is_some() {
            if let Err(e) = users.reload(&access_key) {
                tracing::error!(%access_key, error = %e, "a key from the region could not be loaded");
            }
            out.applied.push(access_key);
        }
    }
    for record in keys.records().map_err(|e| e.to_string())? {
        if users.is_bootstrap(&record.access_key) {
            continue;
        }
        let revision = match held.get(&record.access_key) {
            Some((there, _)) if !record.supersedes(there) => continue,
            Some((_, revision)) => *revision,
            None => 0,
        };
        let access_key = record.access_key.clone();
        let wire = keys.wire(record).map_err(|e| e.to_string())?;
        out.newer_here
            .push((access_key, seal.seal(&wire), revision));
    }
    Ok(out)
}

impl ClusterNode {
    /// This node's run-time access keys, kept in etcd with the region's (`root_secret` seals
    /// them there).
    pub fn set_keys(
        &self,
        users: crate::auth::Users,
        sync: crate::key_sync::KeySync,
        root_secret: &str,
    ) {
        if users.keys().is_some() {
            let seal = Arc::new(SharedSeal::derive(&self.region, root_secret));
            let _ = self.keys.set(KeyParts { users, sync, seal });
        }
    }

    /// Whether this node has compared its keys with etcd's at least once (or has no
    /// run-time keys).
    pub(super) fn keys_applied(&self) -> bool {
        self.keys.get().is_none() || self.keys_ready.load(Ordering::Acquire)
    }

    /// Compares this node's keys with etcd's if they changed since, unless a key change
    /// holds the lock (it compares them itself).
    pub(super) async fn check_keys(&self) {
        let Ok(mut applied) = self.keys_applied.clone().try_lock_owned() else {
            return;
        };
        if let Err(e) = self.sync_keys(&mut applied, None).await {
            tracing::warn!(error = %e, "comparing the access keys with the region's");
        }
    }

    /// A key changed here (by the admin API, or from a peer region): written to etcd and
    /// applied by every live node before this returns. `false` when etcd did not take it
    /// (the change stays here and is written at a later check).
    pub async fn key_changed(&self) -> bool {
        let mut applied = self.keys_applied.clone().lock_owned().await;
        applied.dirty = true;
        match self.sync_keys(&mut applied, None).await {
            Ok(Some(revision)) => {
                drop(applied);
                self.tell_others("keys", revision).await;
                true
            }
            Ok(None) => true,
            Err(e) => {
                tracing::warn!(error = %e, "an access key change did not reach the region's control plane; it stays on this node and is written there when etcd answers");
                false
            }
        }
    }

    /// Makes this node's keys and etcd's agree (see the module's comment) if etcd changed
    /// after revision `applied` (or at least `at_least`), or this node is dirty: the revision
    /// of the last write to etcd, if this node wrote any.
    async fn sync_keys(
        &self,
        applied: &mut KeysApplied,
        at_least: Option<i64>,
    ) -> Result<Option<i64>, String> {
        let (Some(parts), Some(joined)) = (self.keys.get(), self.joined.get()) else {
            return Ok(None);
        };
        let control = &joined.control;
        if applied.revision > 0 && !applied.dirty {
            let wanted = match at_least {
                Some(r) => r,
                None => control
                    .table_changed(Table::Keys)
                    .await
                    .map_err(|e| e.to_string())?,
            };
            if applied.revision >= wanted {
                return Ok(None);
            }
        }
        let table = control
            .table(Table::Keys)
            .await
            .map_err(|e| e.to_string())?;
        let mut theirs = BTreeMap::new();
        for (access_key, (value, revision)) in table.entries {
            match parts.seal.open(&access_key, &value) {
                Ok(wire) => {
                    theirs.insert(access_key, (wire, revision));
                }
                Err(_) => {
                    tracing::warn!(%access_key, "an access key in etcd does not open with this node's root secret; left alone (do the region's nodes share one root secret?)")
                }
            }
        }
        let Some(keys) = parts.users.keys().cloned() else {
            return Ok(None);
        };
        let (users, seal) = (parts.users.clone(), parts.seal.clone());
        let compared = tokio::task::spawn_blocking(move || compare(&keys, &users, &seal, theirs))
            .await
            .map_err(|e| e.to_string())??;
        if !compared.applied.is_empty() {
            tracing::info!(keys = ?compared.applied, "applied access key changes from the region");
            // Peer regions hear of them from this node too (a resend is harmless there).
            parts.sync.wake();
        }
        let mut written = None;
        let mut conflicted = false;
        for (access_key, sealed, revision) in compared.newer_here {
            match control
                .put_table_entry(Table::Keys, &access_key, revision, sealed)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(at) => written = Some(at),
                // Changed in etcd meanwhile: compared again at the next check.
                None => conflicted = true,
            }
        }
        applied.revision = table.revision;
        applied.dirty = conflicted;
        self.keys_ready.store(true, Ordering::Release);
        Ok(written)
    }

    /// `POST /_meridian/cluster/keys?revision=R`: apply the keys as of `R`.
    pub(super) async fn serve_keys_nudge(&self, query: Option<&str>) -> Response<Body> {
        let Some(revision) = nudged_revision(query) else {
            return error_response(StatusCode::BAD_REQUEST, "InvalidArgument", "revision=R");
        };
        let mut applied = self.keys_applied.clone().lock_owned().await;
        match self.sync_keys(&mut applied, Some(revision)).await {
            Ok(_) => super::json_response(&serde_json::json!({ "applied": applied.revision })),
            Err(e) => super::internal_error(&e),
        }
    }
}
