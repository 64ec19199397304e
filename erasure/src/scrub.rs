//! Scrubbing a disk set: verifying every shard file and healing what is damaged.
//!
//! Scrub needs no caller metadata: it finds objects by listing shard files, rebuilds each
//! object's descriptor from the shard headers (placement follows the rule new writes use)
//! and heals it under the object's lock, so it never races a delete.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::sync::Arc;

use crate::descriptor::placement_for;
use crate::disk_layout::data_id_of_shard_file;
use crate::heal::heal_locked;
use crate::set_state::SetInner;
use crate::shard_format::{ShardHeader, SHARD_FORMAT_VERSION};
use crate::{DataId, ErasureError, ObjectDescriptor};

/// What a scrub found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Objects (data ids) whose shards were verified.
    pub objects_checked: u64,
    /// Shards found missing, short, corrupt or with a bad header.
    pub shards_damaged: u64,
    /// Damaged shards rebuilt and written back.
    pub shards_healed: u64,
    /// Objects that cannot be rebuilt (some stripe has fewer than `k` good blocks).
    pub unrecoverable: Vec<DataId>,
    /// Disk slots whose shard files could not be listed (offline or vanished).
    pub disks_skipped: Vec<usize>,
}

pub(crate) async fn scrub_set(set: &Arc<SetInner>) -> Result<ScrubReport, ErasureError> {
    let lister = set.clone();
    let (ids, disks_skipped) = tokio::task::spawn_blocking(move || list_data_ids(&lister))
        .await
        .expect("listing shards panicked");
    let mut report = ScrubReport {
        disks_skipped,
        ..ScrubReport::default()
    };
    for data_id in ids {
        let _guard = set.locks.lock(data_id).await;
        let set = set.clone();
        let outcome =
            tokio::task::spawn_blocking(move || match describe_from_headers(&set, data_id) {
                Described::Gone => None,
                Described::Unreadable => Some(Err(None)),
                Described::Object(desc) => Some(heal_locked(&set, &desc).map_err(Some)),
            })
            .await
            .expect("scrubbing an object panicked");
        match outcome {
            None => {}
            Some(Ok(heal)) => {
                report.objects_checked += 1;
                report.shards_damaged += heal.damaged_shards.len() as u64;
                report.shards_healed += heal.healed_shards.len() as u64;
            }
            Some(Err(error)) => {
                report.objects_checked += 1;
                tracing::error!(%data_id, error = ?error.map(|e| e.to_string()), "object cannot be recovered");
                report.unrecoverable.push(data_id);
            }
        }
    }
    tracing::info!(?report, "scrub done");
    Ok(report)
}

/// Every data id with a shard file on some disk, and the slots that could not be listed.
pub(crate) fn list_data_ids(set: &SetInner) -> (BTreeSet<DataId>, Vec<usize>) {
    let mut ids = BTreeSet::new();
    let mut skipped = Vec::new();
    for disk in &set.disks {
        let listed = disk
            .offline
            .is_none()
            .then(|| fs::read_dir(disk.layout.data_dir()).ok())
            .flatten();
        let Some(fan_out) = listed else {
            skipped.push(disk.slot);
            continue;
        };
        for dir in fan_out.filter_map(Result::ok) {
            let Ok(files) = fs::read_dir(dir.path()) else {
                continue;
            };
            for file in files.filter_map(Result::ok) {
                if let Some(id) = file.file_name().to_str().and_then(data_id_of_shard_file) {
                    ids.insert(id);
                }
            }
        }
    }
    (ids, skipped)
}

enum Described {
    /// No shard file is left (deleted since the listing).
    Gone,
    /// Shard files exist but no header can be trusted.
    Unreadable,
    Object(ObjectDescriptor),
}

/// Rebuilds an object's descriptor from the headers of its shard files: the layout most
/// headers agree on, and the placement new writes use.
fn describe_from_headers(set: &SetInner, data_id: DataId) -> Described {
    let mut any_file = false;
    let mut votes: HashMap<(u8, u8, u32, u32, u64), usize> = HashMap::new();
    for disk in &set.disks {
        let Ok(file) = fs::File::open(disk.layout.shard_file(data_id)) else {
            continue;
        };
        any_file = true;
        if let Ok(h) = ShardHeader::read_from(&file) {
            if h.data_id == data_id {
                *votes
                    .entry((
                        h.data_shards,
                        h.parity_shards,
                        h.block_size,
                        h.stripe_size,
                        h.object_size,
                    ))
                    .or_default() += 1;
            }
        }
    }
    if !any_file {
        return Described::Gone;
    }
    let Some(((k, m, block_size, stripe_size, size), _)) =
        votes.into_iter().max_by_key(|(_, n)| *n)
    else {
        return Described::Unreadable;
    };
    let desc = ObjectDescriptor {
        data_id,
        size,
        data_shards: k,
        parity_shards: m,
        block_size,
        stripe_size,
        placement: placement_for(data_id, (k + m) as usize),
        format_version: SHARD_FORMAT_VERSION,
    };
    match desc.check_for_set(set.disks.len()) {
        Ok(()) => Described::Object(desc),
        Err(_) => Described::Unreadable,
    }
}
