//! Scrubbing a disk set: verifying every shard file and healing damage.

use crate::DataId;

/// What a scrub found and did.
#[derive(Clone, Debug, Default)]
pub struct ScrubReport {
    pub objects_checked: u64,
    pub shards_damaged: u64,
    pub shards_healed: u64,
    pub unrecoverable: Vec<DataId>,
}
