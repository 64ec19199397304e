//! Committing files durably: the one rename-into-place routine used by writes and heals.
//!
//! With [`Durability::Fsync`] the file itself must already be synced by its writer; committing
//! then also syncs the directory entries it creates, so a finished write survives power loss.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use crate::Durability;

/// fsyncs a directory so that entries created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Renames `staged` to `target` (replacing it if present), creating `target`'s parent
/// directory if needed. The grandparent must exist: a vanished disk is an error, not
/// something to recreate.
pub(crate) fn commit_file(staged: &Path, target: &Path, durability: Durability) -> io::Result<()> {
    let dir = target.parent().expect("shard files live in a directory");
    let created = match fs::create_dir(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(e),
    };
    fs::rename(staged, target)?;
    if durability == Durability::Fsync {
        sync_dir(dir)?;
        if created {
            sync_dir(dir.parent().expect("fan-out directories have a parent"))?;
        }
    }
    Ok(())
}

/// Removes a file; a file that is already gone is fine.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
