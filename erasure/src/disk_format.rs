//! The per-disk format file, and what a slot's directory looks like at open.
//!
//! `format.json` says which set a disk belongs to and at which position, so a disk plugged
//! into the wrong slot, or one from another set, is recognised and refused instead of being
//! read as if it held this set's shards.

use std::fs;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::disk_layout::DiskLayout;
use crate::durable_fs::sync_dir;

/// Current version of `format.json`.
pub(crate) const DISK_FORMAT_VERSION: u32 = 1;

/// Contents of `format.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DiskFormat {
    pub format_version: u32,
    pub set_id: Uuid,
    pub disk_id: Uuid,
    /// Position of this disk in the set (index into the configured disk list).
    pub slot: usize,
    pub disk_count: usize,
    pub data_shards: usize,
    pub parity_shards: usize,
}

/// What was found in a slot's directory.
#[derive(Debug)]
pub(crate) enum SlotState {
    Formatted(DiskFormat),
    /// The directory exists and is empty (a `lost+found` is ignored): a new or replacement disk.
    Empty,
    /// The directory does not exist.
    Absent,
    /// The directory holds other things but no format file: not ours to take over.
    Occupied,
    /// A format file exists but cannot be used.
    Unreadable(String),
}

/// Looks at a slot's directory without changing anything.
pub(crate) fn inspect_slot(layout: &DiskLayout) -> SlotState {
    match fs::read(layout.format_file()) {
        Ok(bytes) => match serde_json::from_slice::<DiskFormat>(&bytes) {
            Ok(format) if format.format_version == DISK_FORMAT_VERSION => {
                SlotState::Formatted(format)
            }
            Ok(format) => SlotState::Unreadable(format!(
                "unsupported format version {}",
                format.format_version
            )),
            Err(e) => SlotState::Unreadable(format!("invalid format file: {e}")),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::read_dir(layout.root()) {
            Ok(entries) => {
                let occupied = entries
                    .filter_map(Result::ok)
                    .any(|entry| entry.file_name() != "lost+found");
                if occupied {
                    SlotState::Occupied
                } else {
                    SlotState::Empty
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => SlotState::Absent,
            Err(e) => SlotState::Unreadable(format!("cannot list directory: {e}")),
        },
        Err(e) => SlotState::Unreadable(format!("cannot read format file: {e}")),
    }
}

/// Writes `format.json` atomically and durably, and creates the data and staging directories.
pub(crate) fn write_format(layout: &DiskLayout, format: &DiskFormat) -> io::Result<()> {
    fs::create_dir_all(layout.root())?;
    let temp = layout.root().join("format.json.tmp");
    let mut file = fs::File::create(&temp)?;
    file.write_all(&serde_json::to_vec_pretty(format).expect("format serializes"))?;
    file.sync_all()?;
    fs::rename(&temp, layout.format_file())?;
    ensure_dirs(layout)?;
    sync_dir(layout.root())
}

/// Creates the data and staging directories of a formatted disk if they are missing.
pub(crate) fn ensure_dirs(layout: &DiskLayout) -> io::Result<()> {
    for dir in [layout.data_dir(), layout.staging_dir()] {
        match fs::create_dir(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format() -> DiskFormat {
        DiskFormat {
            format_version: DISK_FORMAT_VERSION,
            set_id: Uuid::new_v4(),
            disk_id: Uuid::new_v4(),
            slot: 2,
            disk_count: 6,
            data_shards: 4,
            parity_shards: 2,
        }
    }

    #[test]
    fn slot_states_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let layout = DiskLayout::new(dir.path().join("disk"));
        assert!(matches!(inspect_slot(&layout), SlotState::Absent));
        fs::create_dir(layout.root()).unwrap();
        fs::create_dir(layout.root().join("lost+found")).unwrap();
        assert!(matches!(inspect_slot(&layout), SlotState::Empty));
        fs::write(layout.root().join("notes.txt"), b"hi").unwrap();
        assert!(matches!(inspect_slot(&layout), SlotState::Occupied));
        let format = format();
        write_format(&layout, &format).unwrap();
        assert!(matches!(inspect_slot(&layout), SlotState::Formatted(f) if f == format));
        assert!(layout.data_dir().is_dir() && layout.staging_dir().is_dir());
        fs::write(layout.format_file(), b"{not json").unwrap();
        assert!(matches!(inspect_slot(&layout), SlotState::Unreadable(_)));
    }
}
