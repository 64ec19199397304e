//! Orphaned shards: objects on the disks that no version or multipart part references. A crash between the erasure writer's `finish()` and the metadata commit
//! leaves them behind; nothing else would ever delete them.
//!
//! An object is only considered once its shards are older than [`ORPHAN_GRACE`] (a write in
//! flight is committed milliseconds after its shards land), and only when its identity blob
//! names the bucket and key it was written for, so that the references can be looked up;
//! shards we cannot attribute are left alone.

use std::time::{Duration, SystemTime};

use meridian_erasure::DataId;
use meridian_metadata::{ListUploadsQuery, ListVersionsQuery, Storage};
use serde::Deserialize;

use super::layout::Layout;
use super::{Store, StoreError};

/// How old an unreferenced object must be before it is deleted.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

const PAGE: usize = 1000;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OrphanReport {
    /// Objects old enough to be checked.
    pub checked: u64,
    /// Unreferenced objects deleted.
    pub deleted: u64,
    /// Objects whose identity blob names no bucket and key: left alone.
    pub unattributed: u64,
}

/// The identity blob the gateway writes into every shard header.
#[derive(Deserialize)]
struct Identity {
    bucket: String,
    key: String,
}

/// Deletes every object older than `grace` that nothing references.
pub async fn collect_orphans(store: &Store, grace: Duration) -> Result<OrphanReport, StoreError> {
    let cutoff = SystemTime::now() - grace;
    let mut report = OrphanReport::default();
    for object in store.disks.inventory().await {
        if object.modified > cutoff {
            continue;
        }
        report.checked += 1;
        let Ok(identity) = serde_json::from_slice::<Identity>(&object.identity) else {
            report.unattributed += 1;
            continue;
        };
        if referenced(store, &identity.bucket, &identity.key, object.data_id).await? {
            continue;
        }
        tracing::warn!(data_id = %object.data_id, bucket = %identity.bucket, key = %identity.key,
            "deleting orphaned shards (written, never committed)");
        store.disks.delete(object.data_id).await?;
        report.deleted += 1;
    }
    Ok(report)
}

fn layout_holds(blob: &[u8], data_id: DataId) -> bool {
    // An unreadable layout might hold anything: count it as a reference.
    Layout::from_bytes(blob).map_or(true, |l| l.data_ids().any(|id| id == data_id))
}

/// Whether a version of `key` or a part of an upload of `key` holds `data_id`. (Storage in
/// the reclaim queue is unreferenced already: deleting it first is harmless.)
async fn referenced(
    store: &Store,
    bucket: &str,
    key: &str,
    data_id: DataId,
) -> Result<bool, StoreError> {
    let (b, k) = (bucket.to_owned(), key.to_owned());
    let found = store
        .meta(move |m| {
            if m.get_bucket(&b)?.is_none() {
                return Ok(false);
            }
            // Versions of exactly `key`: they come first among the keys it prefixes.
            let mut q = ListVersionsQuery {
                prefix: k.clone(),
                max_keys: PAGE,
                ..Default::default()
            };
            loop {
                let page = m.list_versions(&b, &q)?;
                for v in page
                    .versions
                    .iter()
                    .filter(|v| v.key == k && !v.is_delete_marker)
                {
                    if let Some(record) = m.get_version(&b, &k, Some(&v.version_id))? {
                        if let Storage::Layout(blob) = &record.storage {
                            if layout_holds(blob, data_id) {
                                return Ok(true);
                            }
                        }
                    }
                }
                let past_key = page.versions.last().is_some_and(|v| v.key != k);
                if !page.is_truncated || past_key {
                    break;
                }
                q.key_marker = page.next_key_marker;
                q.version_id_marker = page.next_version_id_marker;
            }
            // Parts of uploads of `key`.
            let mut q = ListUploadsQuery {
                prefix: k.clone(),
                max_uploads: PAGE,
                ..Default::default()
            };
            loop {
                let page = m.list_uploads(&b, &q)?;
                for u in page.uploads.iter().filter(|u| u.key == k) {
                    let mut marker = 0;
                    loop {
                        let parts = m.list_parts(&b, &k, &u.upload_id, marker, PAGE)?;
                        if parts
                            .parts
                            .iter()
                            .any(|p| layout_holds(&p.storage, data_id))
                        {
                            return Ok(true);
                        }
                        match parts.next_part_number_marker {
                            Some(n) if parts.is_truncated => marker = n,
                            _ => break,
                        }
                    }
                }
                if !page.is_truncated {
                    break;
                }
                q.key_marker = page.next_key_marker;
                q.upload_id_marker = page.next_upload_id_marker;
            }
            Ok(false)
        })
        .await?;
    Ok(found)
}
