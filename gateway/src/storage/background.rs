//! Background work of a running node: deleting the shards of versions nobody references any
//! more (the reclaim queue the metadata store fills in the same batch as the change that
//! orphaned them), and healing objects in which a reader found damaged shards.

use std::time::Duration;

use meridian_metadata::Storage;
use tokio::sync::watch;

use super::layout::Layout;
use super::Store;

const RECLAIM_BATCH: usize = 256;
const RECLAIM_IDLE_POLL: Duration = Duration::from_secs(30);

/// Deletes reclaimable shards until `shutdown` flips; woken early by commits that queue work.
pub async fn run_reclaimer(store: Store, mut shutdown: watch::Receiver<bool>) {
    let wakeup = store.reclaim_wakeup();
    loop {
        match reclaim_once(&store).await {
            Ok(n) if n == RECLAIM_BATCH => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reclaiming shards failed; will retry"),
        }
        tokio::select! {
            _ = wakeup.notified() => {}
            _ = tokio::time::sleep(RECLAIM_IDLE_POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass over the reclaim queue; returns how many entries it finished.
pub async fn reclaim_once(store: &Store) -> Result<usize, super::StoreError> {
    let entries = store.meta(|m| m.reclaim_pending(RECLAIM_BATCH)).await?;
    let n = entries.len();
    for entry in entries {
        if let Storage::Layout(blob) = &entry.storage {
            match Layout::from_bytes(blob) {
                Ok(layout) => {
                    for data_id in layout.data_ids() {
                        store.disks.delete(data_id).await?;
                    }
                }
                // Nothing sensible can be deleted for a record we cannot read; keep the
                // queue moving and say so.
                Err(e) => {
                    tracing::error!(seq = entry.seq, error = %e, "unreadable layout in reclaim queue; skipping")
                }
            }
        }
        let seq = entry.seq;
        store.meta(move |m| m.reclaim_done(seq)).await?;
    }
    Ok(n)
}

/// Heals objects reported damaged by readers, one at a time, until the channel closes or
/// `shutdown` flips.
pub async fn run_healer(store: Store, mut shutdown: watch::Receiver<bool>) {
    let Some(mut reports) = store.disks.take_damage_receiver() else {
        return;
    };
    loop {
        let report = tokio::select! {
            r = reports.recv() => match r { Some(r) => r, None => return },
            _ = shutdown.changed() => return,
        };
        let data_id = report.descriptor.data_id;
        match store.disks.heal(&report.descriptor).await {
            Ok(h) => {
                tracing::info!(%data_id, healed = ?h.healed_shards, "healed shards a reader found damaged")
            }
            Err(e) => tracing::warn!(%data_id, error = %e, "healing failed"),
        }
    }
}

/// Aborts multipart uploads initiated more than `max_age` ago (their parts go to the reclaim
/// queue with the abort), checking every `max_age / 4`, at most hourly.
pub async fn run_upload_expiry(
    store: Store,
    max_age: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let period = (max_age / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        match expire_uploads_once(&store, max_age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(aborted = n, ?max_age, "aborted stale multipart uploads"),
            Err(e) => tracing::warn!(error = %e, "expiring multipart uploads failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Aborts every upload older than `max_age`; returns how many.
pub async fn expire_uploads_once(
    store: &Store,
    max_age: Duration,
) -> Result<usize, super::StoreError> {
    let cutoff =
        time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 - max_age.as_nanos() as i64;
    let mut aborted = 0;
    loop {
        let stale = store.meta(move |m| m.stale_uploads(cutoff, 100)).await?;
        if stale.is_empty() {
            break;
        }
        for upload in stale {
            let result = store
                .meta(move |m| m.abort_upload(&upload.bucket, &upload.key, &upload.upload_id))
                .await;
            match result {
                Ok(())
                | Err(super::StoreError::Meta(meridian_metadata::MetaError::NoSuchUpload {
                    ..
                })) => aborted += 1,
                Err(e) => return Err(e),
            }
        }
        store.wake_reclaimer();
    }
    Ok(aborted)
}

/// Verifies every shard on every disk (and heals what it can), then deletes orphaned shards,
/// once per `interval`, starting one interval after start-up; `interval` zero disables it.
pub async fn run_scrubber(store: Store, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let started = std::time::Instant::now();
        match store.disks.scrub().await {
            Ok(r) if r.shards_damaged == 0 && r.unrecoverable.is_empty() => tracing::info!(
                objects = r.objects_checked,
                elapsed = ?started.elapsed(),
                "scrub found no damage"
            ),
            Ok(r) => tracing::warn!(
                objects = r.objects_checked,
                damaged = r.shards_damaged,
                healed = r.shards_healed,
                unrecoverable = ?r.unrecoverable,
                skipped_disks = ?r.disks_skipped,
                "scrub found damage"
            ),
            Err(e) => tracing::error!(error = %e, "scrub failed"),
        }
        match super::orphans::collect_orphans(&store, super::orphans::ORPHAN_GRACE).await {
            Ok(r) if r.deleted > 0 => tracing::warn!(?r, "deleted orphaned shards"),
            Ok(r) => tracing::debug!(?r, "no orphaned shards"),
            Err(e) => tracing::error!(error = %e, "looking for orphaned shards failed"),
        }
    }
}
