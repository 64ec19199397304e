//! Backfill and resync: walks over a bucket's existing versions that queue them for one peer
//! through the ordinary outbox, so they go out through the same workers, checks and statuses
//! as new writes.
//!
//! - Backfill (a rule with `ExistingObjectReplication` Enabled): every version committed
//!   before the rule, oldest first within each key.
//! - Resync (`meridian replication resync`, after a peer lost data): every version the peer
//!   does not hold with the same ETag, found by HEAD; versions it has are marked COMPLETED
//!   and skipped, so a second resync sends nothing.
//!
//! Replicas are never queued (they belong to their origin region). The job's position is
//! stored after each page, so a restarted server continues it; it waits while the peer owes
//! more than [`MAX_OWED`] changes, so the outbox never balloons.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use meridian_metadata::{
    now_nanos, BacklogFilter, JobKind, ListVersionsQuery, ObjectSummary, Origin, PeerStatus,
    ReplicationJob, Requeued,
};
use tokio::sync::{watch, Notify};

use crate::peer::{control_call, Peer};
use crate::transfer::{metadata, Shared};

/// Versions read per step.
const PAGE: usize = 500;
/// A job waits while the peer owes more than this many changes.
const MAX_OWED: u64 = 10_000;
/// HEADs in flight while a resync checks what the peer has, and versions being queued.
const CHECKS_IN_FLIGHT: usize = 16;
const REQUEUES_IN_FLIGHT: usize = 16;

/// Whether the peer already holds this version of `source_bucket` as it is here: same
/// ETag, or a delete marker under the same id. Foreign peers are asked for the id they gave
/// the version.
async fn peer_has(
    shared: &Shared,
    peer: &Peer,
    source_bucket: &str,
    target_bucket: &str,
    v: &ObjectSummary,
) -> bool {
    let version_id = if peer.is_meridian() {
        v.version_id.clone()
    } else {
        let (b, k, id, p) = (
            source_bucket.to_owned(),
            v.key.clone(),
            v.version_id.clone(),
            peer.name().to_owned(),
        );
        let mapped = metadata(&shared.meta, move |m| m.get_version(&b, &k, Some(&id)))
            .await
            .ok()
            .flatten()
            .and_then(|r| r.replication.target_versions.get(&p).cloned());
        match mapped {
            Some(id) => id,
            None => return false,
        }
    };
    let head = peer
        .client
        .head_object()
        .bucket(target_bucket)
        .key(crate::sdk_key(&v.key))
        .version_id(version_id)
        .customize()
        .config_override(control_call())
        .send()
        .await;
    match head {
        Ok(h) => {
            !v.is_delete_marker && h.e_tag().map(|e| e.trim_matches('"')) == Some(v.etag.as_str())
        }
        // HEAD of a delete marker by version id answers 405 (MethodNotAllowed).
        Err(e) => v.is_delete_marker && e.raw_response().map(|r| r.status().as_u16()) == Some(405),
    }
}

/// Runs `job` until it finishes, is cancelled, or the server stops.
pub(crate) async fn run_job(
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    mut job: ReplicationJob,
    wakeup: Arc<Notify>,
    mut cancel: watch::Receiver<bool>,
) {
    tracing::info!(peer = %job.peer, bucket = %job.bucket, kind = ?job.kind, scanned = job.scanned, "replication job running");
    loop {
        if *cancel.borrow() {
            job.cancelled = true;
            save(&shared, &job).await;
            tracing::info!(peer = %job.peer, bucket = %job.bucket, "replication job cancelled");
            return;
        }
        if !wait_for_room(&shared, &job, &mut cancel).await {
            continue;
        }
        match step(&shared, &peer, &mut job).await {
            Ok(more) => {
                save(&shared, &job).await;
                wakeup.notify_one();
                if !more {
                    job.finished = Some(now_nanos());
                    save(&shared, &job).await;
                    tracing::info!(
                        peer = %job.peer, bucket = %job.bucket, kind = ?job.kind,
                        scanned = job.scanned, queued = job.queued, skipped = job.skipped,
                        "replication job finished"
                    );
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(peer = %job.peer, bucket = %job.bucket, error = %e, "replication job step failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = cancel.changed() => {}
                }
            }
        }
    }
}

/// Waits while the peer owes too much; false when woken by a cancellation instead.
async fn wait_for_room(
    shared: &Shared,
    job: &ReplicationJob,
    cancel: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        let p = job.peer.clone();
        let owed = metadata(&shared.meta, move |m| {
            m.peer_backlog(&p, &BacklogFilter::default())
                .map(|(b, _)| b.changes)
        })
        .await
        .unwrap_or(0);
        if owed <= MAX_OWED {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = cancel.changed() => return false,
        }
    }
}

async fn save(shared: &Shared, job: &ReplicationJob) {
    let j = job.clone();
    if let Err(e) = metadata(&shared.meta, move |m| m.put_replication_job(&j)).await {
        tracing::warn!(peer = %job.peer, bucket = %job.bucket, error = %e, "saving replication job progress failed");
    }
}

/// One page of the walk; returns whether there is more.
async fn step(
    shared: &Shared,
    peer: &Peer,
    job: &mut ReplicationJob,
) -> Result<bool, crate::SendError> {
    let (bucket, key_marker, version_marker) = (
        job.bucket.clone(),
        job.key_marker.clone(),
        job.version_marker.clone(),
    );
    let page = metadata(&shared.meta, move |m| {
        m.list_versions(
            &bucket,
            &ListVersionsQuery {
                key_marker,
                version_id_marker: version_marker,
                max_keys: PAGE,
                ..ListVersionsQuery::default()
            },
        )
    })
    .await?;
    // Newest first per key in the listing: queue each key's run oldest first.
    let mut versions = page.versions.clone();
    let mut i = 0;
    while i < versions.len() {
        let j = (i..versions.len())
            .find(|&j| versions[j].key != versions[i].key)
            .unwrap_or(versions.len());
        versions[i..j].reverse();
        i = j;
    }
    job.scanned += versions.len() as u64;
    let candidates: Vec<ObjectSummary> = match job.kind {
        JobKind::Backfill => {
            let cutoff = job.cutoff.unwrap_or(i64::MAX);
            let (old, new): (Vec<_>, Vec<_>) = versions.into_iter().partition(|v| v.mtime < cutoff);
            job.skipped += new.len() as u64;
            old
        }
        JobKind::Resync => {
            let target_bucket = destination_bucket(shared, job).await?;
            let source_bucket = job.bucket.clone();
            let checks = futures::stream::iter(versions)
                .map(|v| {
                    let (target_bucket, source_bucket) =
                        (target_bucket.clone(), source_bucket.clone());
                    async move {
                        let has = match &target_bucket {
                            Some(tb) => peer_has(shared, peer, &source_bucket, tb, &v).await,
                            None => false,
                        };
                        (v, has)
                    }
                })
                .buffered(CHECKS_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await;
            let mut send = Vec::new();
            for (v, has) in checks {
                if has {
                    job.skipped += 1;
                    mark_completed(shared, &job.peer, &job.bucket, &v).await?;
                } else {
                    send.push(v);
                }
            }
            send
        }
    };
    // Several at once: their synced commits share RocksDB's WAL syncs. The order does not
    // matter to the peer (versions keep their mtimes and ids).
    let (peer_name, bucket) = (job.peer.clone(), job.bucket.clone());
    let requeued: Vec<Result<Requeued, crate::SendError>> = futures::stream::iter(candidates)
        .map(|v| {
            let (p, b, k, id) = (
                peer_name.clone(),
                bucket.clone(),
                v.key.clone(),
                v.version_id.clone(),
            );
            async move { metadata(&shared.meta, move |m| m.requeue_version(&p, &b, &k, &id)).await }
        })
        .buffered(REQUEUES_IN_FLIGHT)
        .collect()
        .await;
    for r in requeued {
        match r? {
            Requeued::Queued(size) => {
                job.queued += 1;
                job.queued_bytes += size;
            }
            Requeued::Replica | Requeued::Gone => job.skipped += 1,
        }
    }
    job.key_marker = page.next_key_marker.clone();
    job.version_marker = page.next_version_id_marker.clone();
    Ok(page.is_truncated)
}

/// The bucket on the peer that this bucket's rules send versions to (the first enabled rule
/// for the peer), if any.
async fn destination_bucket(
    shared: &Shared,
    job: &ReplicationJob,
) -> Result<Option<String>, crate::SendError> {
    let (rules, bucket, peer) = (shared.rules.clone(), job.bucket.clone(), job.peer.clone());
    let config = tokio::task::spawn_blocking(move || rules.get(&bucket))
        .await
        .map_err(|e| crate::SendError::transient(format!("rules task failed: {e}")))?
        .map_err(|e| crate::SendError::transient(format!("reading replication rules: {e}")))?;
    Ok(config.and_then(|c| {
        c.rules
            .iter()
            .find(|r| r.enabled && r.destination.peer == peer)
            .map(|r| r.destination.bucket.clone())
    }))
}

/// A version the peer already holds counts as COMPLETED for it (local versions only).
async fn mark_completed(
    shared: &Shared,
    peer: &str,
    bucket: &str,
    v: &ObjectSummary,
) -> Result<(), crate::SendError> {
    let (p, b, k, id) = (
        peer.to_owned(),
        bucket.to_owned(),
        v.key.clone(),
        v.version_id.clone(),
    );
    metadata(&shared.meta, move |m| {
        let Some(record) = m.get_version(&b, &k, Some(&id))? else {
            return Ok(());
        };
        if matches!(record.replication.origin, Origin::Replica { .. })
            || record.replication.peers.get(&p) == Some(&PeerStatus::Completed)
        {
            return Ok(());
        }
        m.set_replication_status(&b, &k, &id, &p, Some(PeerStatus::Completed))
    })
    .await
}
