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
                    let data_ids: Vec<_> = layout.data_ids().collect();
                    for data_id in &data_ids {
                        store.disks.delete(*data_id).await?;
                    }
                    store.reclaimed(&data_ids);
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
    let mut dropped = 0;
    loop {
        // Reports are dropped only while the queue is full, that is while this loop heals.
        let now_dropped = reports.dropped();
        crate::metrics::global()
            .damage_dropped
            .inc_by(now_dropped - dropped);
        dropped = now_dropped;
        let report = tokio::select! {
            r = reports.recv() => match r { Some(r) => r, None => return },
            _ = shutdown.changed() => return,
        };
        let data_id = report.descriptor.data_id;
        let heals = &crate::metrics::global().heals;
        match store.disks.heal(&report.descriptor).await {
            Ok(h) => {
                heals.with_label_values(&["healed"]).inc();
                tracing::info!(%data_id, healed = ?h.healed_shards, "healed shards a reader found damaged")
            }
            Err(e) => {
                heals.with_label_values(&["failed"]).inc();
                tracing::warn!(%data_id, error = %e, "healing failed")
            }
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
    let forget_before = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
        - COMPLETED_UPLOAD_MEMORY.as_nanos() as i64;
    let forgotten = store
        .meta(move |m| m.expire_completed_uploads(forget_before))
        .await?;
    if forgotten > 0 {
        tracing::debug!(forgotten, "forgot completed multipart uploads");
    }
    Ok(aborted)
}

/// How long a completed upload is remembered, so that a repeated CompleteMultipartUpload
/// gets its first answer again.
const COMPLETED_UPLOAD_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// Verifies every shard on every disk (and heals what it can), then deletes orphaned shards,
/// once per `interval`, starting one interval after start-up; `interval` zero disables it.
pub async fn run_scrubber(
    store: Store,
    interval: Duration,
    orphan_grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let started = std::time::Instant::now();
        let m = crate::metrics::global();
        let scrubbed = store.disks.scrub().await;
        if let Ok(r) = &scrubbed {
            m.scrub_damaged_shards.inc_by(r.shards_damaged);
            m.scrub_unrecoverable.inc_by(r.unrecoverable.len() as u64);
        }
        match scrubbed {
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
        match super::orphans::collect_orphans(&store, orphan_grace).await {
            Ok(r) if r.deleted > 0 => {
                m.orphans_deleted.inc_by(r.deleted);
                tracing::warn!(?r, "deleted orphaned shards")
            }
            Ok(r) => tracing::debug!(?r, "no orphaned shards"),
            Err(e) => tracing::error!(error = %e, "looking for orphaned shards failed"),
        }
    }
}

/// Outbox entries no peer needs any more are trimmed, so the outbox does not grow with every
/// write forever. With peers configured, everything below the lowest peer cursor goes (a peer
/// that is behind keeps what it still owes, however long that takes); with none, entries
/// older than `retention`. Work is proportional to what is trimmed.
pub async fn run_outbox_trimmer(
    store: Store,
    retention: Duration,
    peers: Vec<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let period = if peers.is_empty() {
        retention.clamp(Duration::from_secs(1), Duration::from_secs(3600))
    } else {
        Duration::from_secs(60)
    };
    // Where the next run starts reading: below it everything is trimmed already (reading from
    // there avoids walking over the deletions until RocksDB compacts them away).
    let mut from = 0;
    loop {
        let result = if peers.is_empty() {
            trim_outbox_once(&store, retention, from).await
        } else {
            trim_outbox_below_cursors(&store, &peers).await
        };
        match result {
            Ok((trimmed, next)) => {
                from = next;
                if trimmed > 0 {
                    tracing::debug!(trimmed, "trimmed the replication outbox");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "trimming the replication outbox failed; will retry")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Trims the outbox below the lowest cursor of `peers`; returns (0 or 1 trims done, the new
/// floor).
pub async fn trim_outbox_below_cursors(
    store: &Store,
    peers: &[String],
) -> Result<(u64, u64), super::StoreError> {
    let peers = peers.to_vec();
    store
        .meta(move |m| {
            let mut below = u64::MAX;
            for p in &peers {
                below = below.min(m.outbox_cursor(p)?);
            }
            if below == 0 || below == u64::MAX {
                return Ok((0, 0));
            }
            m.outbox_trim(below)?;
            Ok((1, below))
        })
        .await
}

/// Trims outbox entries committed more than `retention` ago, reading from sequence `from`;
/// returns how many it trimmed and where the next run may start.
pub async fn trim_outbox_once(
    store: &Store,
    retention: Duration,
    mut from: u64,
) -> Result<(u64, u64), super::StoreError> {
    let cutoff =
        time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 - retention.as_nanos() as i64;
    let mut trimmed = 0u64;
    loop {
        // Entries are in commit order: read from the oldest until the first one to keep.
        let (count, below, done) = store
            .meta(move |m| {
                let page = m.outbox_read(from, 1000)?;
                let old = page.iter().take_while(|e| e.committed < cutoff).count();
                let below = page[..old].last().map(|e| e.seq + 1);
                if let Some(below) = below {
                    m.outbox_trim(below)?;
                }
                Ok((old as u64, below, old < 1000))
            })
            .await?;
        trimmed += count;
        if let Some(b) = below {
            from = b;
        }
        if done {
            return Ok((trimmed, from));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreConfig;
    use meridian_metadata::{BucketRecord, NewVersion, VersioningState};

    async fn store_with_commits(dir: &std::path::Path, commits: usize) -> Store {
        let store = Store::open(&StoreConfig::in_dir(dir, 4, 2)).await.unwrap();
        store
            .meta(|m| {
                m.create_bucket(BucketRecord {
                    name: "b".into(),
                    created: 0,
                    owner: "o".into(),
                    region: "r".into(),
                    versioning: VersioningState::Enabled,
                    object_lock: false,
                })
            })
            .await
            .unwrap();
        for i in 0..commits {
            store
                .meta(move |m| m.put_version("b", &format!("k{i}"), NewVersion::default()))
                .await
                .unwrap();
        }
        store
    }

    #[tokio::test]
    async fn with_peers_only_what_every_peer_took_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_commits(dir.path(), 10).await;
        let peers = vec!["west".to_string(), "south".to_string()];
        let entries = store.meta(|m| m.outbox_read(0, 100)).await.unwrap();
        assert_eq!(
            trim_outbox_below_cursors(&store, &peers).await.unwrap().0,
            0
        );
        let (w, s) = (entries[7].seq, entries[3].seq);
        store.meta(move |m| m.outbox_ack("west", w)).await.unwrap();
        store.meta(move |m| m.outbox_ack("south", s)).await.unwrap();
        trim_outbox_below_cursors(&store, &peers).await.unwrap();
        let left = store.meta(|m| m.outbox_read(0, 100)).await.unwrap();
        assert_eq!(left.len(), 6, "south still needs entries 4..10");
        assert_eq!(left[0].seq, entries[4].seq);
    }

    #[tokio::test]
    async fn outbox_entries_past_retention_are_trimmed_and_recent_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_commits(dir.path(), 2500).await;

        let (trimmed, _) = trim_outbox_once(&store, Duration::from_secs(3600), 0)
            .await
            .unwrap();
        assert_eq!(trimmed, 0, "nothing is an hour old yet");
        assert_eq!(
            store
                .meta(|m| m.outbox_read(0, 10_000))
                .await
                .unwrap()
                .len(),
            2500
        );

        let (trimmed, next) = trim_outbox_once(&store, Duration::ZERO, 0).await.unwrap();
        assert_eq!(trimmed, 2500, "trimmed across several pages");
        assert!(store
            .meta(|m| m.outbox_read(0, 10_000))
            .await
            .unwrap()
            .is_empty());

        store
            .meta(|m| m.put_version("b", "later", NewVersion::default()))
            .await
            .unwrap();
        let kept = store.meta(move |m| m.outbox_read(next, 10)).await.unwrap();
        assert_eq!(
            kept.len(),
            1,
            "new commits still reach the outbox after a trim"
        );
        assert_eq!(kept[0].key, "later");
    }
}
