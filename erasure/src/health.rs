//! Per-disk health for readiness probes: is the directory there, is its format file still
//! this set's, and can we write to it.

use std::fs;
use std::path::PathBuf;

use uuid::Uuid;

use crate::disk_format::{inspect_slot, SlotState};
use crate::open::Disk;

/// Health of one disk slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskHealth {
    /// Position in the configured disk list.
    pub slot: usize,
    /// The disk directory.
    pub path: PathBuf,
    /// Directory present, format file valid and this set's, staging writable.
    pub ok: bool,
    /// Why the disk is not usable, when it is not.
    pub error: Option<String>,
}

/// Checks one disk now (small blocking filesystem operations).
pub(crate) fn check_disk(set_id: Uuid, disk: &Disk) -> DiskHealth {
    let error = problem(set_id, disk);
    DiskHealth {
        slot: disk.slot,
        path: disk.layout.root().to_path_buf(),
        ok: error.is_none(),
        error,
    }
}

fn problem(set_id: Uuid, disk: &Disk) -> Option<String> {
    if let Some(reason) = &disk.offline {
        return Some(format!("offline since the set was opened: {reason}"));
    }
    match inspect_slot(&disk.layout) {
        SlotState::Formatted(f) if f.set_id == set_id && f.slot == disk.slot => {}
        SlotState::Formatted(f) => {
            return Some(format!(
                "format file now says set {} slot {}",
                f.set_id, f.slot
            ))
        }
        SlotState::Absent => return Some("the directory is gone".into()),
        SlotState::Empty | SlotState::Occupied => return Some("the format file is gone".into()),
        SlotState::Unreadable(reason) => return Some(reason),
    }
    let probe = disk
        .layout
        .staging_dir()
        .join(format!(".health-{}", Uuid::new_v4().simple()));
    let result = fs::write(&probe, b"ok").and_then(|()| fs::remove_file(&probe));
    result.err().map(|e| format!("not writable: {e}"))
}
