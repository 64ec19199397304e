//! What is stored: every object on the disk set with the identity blob its writer recorded
//! and when its shards last changed, read from shard headers alone. The caller uses it to
//! find shards no metadata references (a crash between `finish()` and the caller's commit
//! leaves such orphans behind).

use std::fs;
use std::sync::Arc;
use std::time::SystemTime;

use crate::scrub::list_data_ids;
use crate::set_state::SetInner;
use crate::shard_format::ShardHeader;
use crate::DataId;

/// One object found on the disks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// The object's data id (its shard file names).
    pub data_id: DataId,
    /// The identity blob given to [`crate::DiskSet::writer`] (from the first readable header).
    pub identity: Vec<u8>,
    /// The newest modification time among its shard files: when it was last written,
    /// renamed into place or healed.
    pub modified: SystemTime,
}

/// Every object with at least one readable shard header. Objects whose headers are all
/// unreadable are left out (scrub reports those).
pub(crate) async fn inventory(set: &Arc<SetInner>) -> Vec<StoredObject> {
    let set = set.clone();
    tokio::task::spawn_blocking(move || {
        let (ids, _skipped) = list_data_ids(&set);
        ids.into_iter()
            .filter_map(|id| describe(&set, id))
            .collect()
    })
    .await
    .expect("listing stored objects panicked")
}

fn describe(set: &SetInner, data_id: DataId) -> Option<StoredObject> {
    let mut identity = None;
    let mut modified = None::<SystemTime>;
    for disk in &set.disks {
        let Ok(file) = fs::File::open(disk.layout.shard_file(data_id)) else {
            continue;
        };
        if let Ok(t) = file.metadata().and_then(|m| m.modified()) {
            modified = Some(modified.map_or(t, |m| m.max(t)));
        }
        if identity.is_none() {
            if let Ok(h) = ShardHeader::read_from(&file) {
                if h.data_id == data_id {
                    identity = Some(h.identity);
                }
            }
        }
    }
    Some(StoredObject {
        data_id,
        identity: identity?,
        modified: modified?,
    })
}
