//! Opening a disk set: formatting new disks, refusing foreign ones, accepting empty
//! replacements and sweeping what interrupted writes left in staging.
//!
//! Guarantees on success: every online disk carries this set's id and its own slot in its
//! format file, has `data/` and an empty `staging/`, and at least `k` disks are online.
//! Disks that are absent or whose format file is unreadable are kept offline (never written
//! to) and reported by [`crate::DiskSet::disk_health`].

use std::fs;
use std::io;
use std::path::Path;

use uuid::Uuid;

use crate::disk_format::{
    ensure_dirs, inspect_slot, write_format, DiskFormat, SlotState, DISK_FORMAT_VERSION,
};
use crate::disk_layout::DiskLayout;
use crate::{DiskSetConfig, ErasureError};

/// One slot of an open set.
pub(crate) struct Disk {
    pub slot: usize,
    pub layout: DiskLayout,
    /// Why the disk is not used, if it is not.
    pub offline: Option<String>,
}

/// Validates or creates the format of every slot and sweeps staging. Blocking.
pub(crate) fn open_disks(config: &DiskSetConfig) -> Result<(Uuid, Vec<Disk>), ErasureError> {
    config.validate()?;
    let layouts: Vec<DiskLayout> = config.disks.iter().cloned().map(DiskLayout::new).collect();
    let states: Vec<SlotState> = layouts.iter().map(inspect_slot).collect();
    for (slot, state) in states.iter().enumerate() {
        if matches!(state, SlotState::Occupied) {
            return Err(ErasureError::ForeignDisk {
                slot,
                path: config.disks[slot].clone(),
                reason:
                    "the directory is not empty and has no format.json; refusing to take it over"
                        .into(),
            });
        }
    }
    let existing = existing_set_id(&states);
    let set_id = match existing {
        Some(set_id) => set_id,
        None => {
            if let Some((slot, SlotState::Unreadable(reason))) = states
                .iter()
                .enumerate()
                .find(|(_, s)| matches!(s, SlotState::Unreadable(_)))
            {
                return Err(ErasureError::Corrupt {
                    what: format!(
                        "format file of slot {slot} ({})",
                        config.disks[slot].display()
                    ),
                    reason: format!("{reason}; no other disk says which set this is"),
                });
            }
            Uuid::new_v4()
        }
    };
    check_membership(config, set_id, &states)?;

    let mut disks = Vec::with_capacity(layouts.len());
    for (slot, (layout, state)) in layouts.into_iter().zip(states).enumerate() {
        let offline = match state {
            SlotState::Formatted(_) => ensure_dirs(&layout)
                .err()
                .map(|e| format!("cannot create directories: {e}")),
            // An empty slot is a new or replacement disk; an absent directory is created only
            // when the whole set is new, never to stand in for a disk that is not mounted.
            SlotState::Empty | SlotState::Absent
                if matches!(state, SlotState::Empty) || existing.is_none() =>
            {
                let format = DiskFormat {
                    format_version: DISK_FORMAT_VERSION,
                    set_id,
                    disk_id: Uuid::new_v4(),
                    slot,
                    disk_count: config.disks.len(),
                    data_shards: config.data_shards,
                    parity_shards: config.parity_shards,
                };
                write_format(&layout, &format).map_err(|source| io_error(layout.root(), source))?;
                if matches!(state, SlotState::Empty) {
                    tracing::info!(slot, path = %layout.root().display(), "formatted empty disk");
                }
                None
            }
            SlotState::Absent => Some("the directory does not exist".to_string()),
            SlotState::Unreadable(reason) => Some(reason),
            SlotState::Empty | SlotState::Occupied => unreachable!("handled above"),
        };
        if let Some(reason) = &offline {
            tracing::warn!(slot, path = %layout.root().display(), reason, "disk is offline");
        }
        disks.push(Disk {
            slot,
            layout,
            offline,
        });
    }

    let usable = disks.iter().filter(|d| d.offline.is_none()).count();
    if usable < config.data_shards {
        return Err(ErasureError::NotEnoughDisks {
            usable,
            needed: config.data_shards,
            total: disks.len(),
        });
    }
    for disk in disks.iter().filter(|d| d.offline.is_none()) {
        sweep_staging(&disk.layout.staging_dir())
            .map_err(|e| io_error(&disk.layout.staging_dir(), e))?;
    }
    Ok((set_id, disks))
}

/// The set id most formatted disks agree on, if any disk is formatted.
fn existing_set_id(states: &[SlotState]) -> Option<Uuid> {
    let ids: Vec<Uuid> = states
        .iter()
        .filter_map(|s| match s {
            SlotState::Formatted(f) => Some(f.set_id),
            _ => None,
        })
        .collect();
    ids.iter()
        .copied()
        .max_by_key(|id| ids.iter().filter(|other| *other == id).count())
}

/// Refuses disks from another set or another position, and a configuration that does not
/// match the layout the set was formatted with.
fn check_membership(
    config: &DiskSetConfig,
    set_id: Uuid,
    states: &[SlotState],
) -> Result<(), ErasureError> {
    for (slot, state) in states.iter().enumerate() {
        let SlotState::Formatted(format) = state else {
            continue;
        };
        let foreign = |reason: String| {
            Err(ErasureError::ForeignDisk {
                slot,
                path: config.disks[slot].clone(),
                reason,
            })
        };
        if format.set_id != set_id {
            return foreign(format!(
                "it belongs to disk set {}, the other disks to set {set_id}",
                format.set_id
            ));
        }
        if format.slot != slot {
            return foreign(format!(
                "it was formatted for slot {} of this set",
                format.slot
            ));
        }
        let formatted = (format.disk_count, format.data_shards, format.parity_shards);
        let configured = (config.disks.len(), config.data_shards, config.parity_shards);
        if formatted != configured {
            return Err(ErasureError::InvalidConfig(format!(
                "disk set {set_id} was formatted as {}+{} on {} disks, but is configured as {}+{} on {}",
                formatted.1, formatted.2, formatted.0, configured.1, configured.2, configured.0
            )));
        }
    }
    Ok(())
}

/// Removes everything in a staging directory: leftovers of writes and heals that never
/// finished. Nothing there is referenced by any descriptor.
fn sweep_staging(staging: &Path) -> io::Result<()> {
    let mut removed = 0usize;
    for entry in fs::read_dir(staging)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
        removed += 1;
    }
    if removed > 0 {
        tracing::info!(path = %staging.display(), removed, "swept staging leftovers of interrupted writes");
    }
    Ok(())
}

pub(crate) fn io_error(path: &Path, source: io::Error) -> ErasureError {
    ErasureError::Io {
        path: path.to_path_buf(),
        source,
    }
}
