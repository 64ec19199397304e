//! Where things live inside one disk directory.
//!
//! ```text
//! <disk>/format.json                          which set and slot this disk belongs to
//! <disk>/data/<first 2 hex of id>/<id>.shard  one shard of one object (never named after a key)
//! <disk>/staging/                             files being written; swept at open
//! ```

use std::path::{Path, PathBuf};

use crate::DataId;

/// Paths inside one disk directory.
#[derive(Clone, Debug)]
pub(crate) struct DiskLayout {
    root: PathBuf,
}

impl DiskLayout {
    pub fn new(root: PathBuf) -> Self {
        DiskLayout { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn format_file(&self) -> PathBuf {
        self.root.join("format.json")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// The fan-out directory holding `data_id`'s shard.
    pub fn shard_dir(&self, data_id: DataId) -> PathBuf {
        let id = data_id.simple().to_string();
        self.data_dir().join(&id[..2])
    }

    /// The committed shard file of `data_id` on this disk.
    pub fn shard_file(&self, data_id: DataId) -> PathBuf {
        self.shard_dir(data_id)
            .join(format!("{}.shard", data_id.hyphenated()))
    }

    /// A staging file for `data_id`; `purpose` keeps concurrent writers (a write, a heal)
    /// of the same id apart.
    pub fn staging_file(&self, data_id: DataId, purpose: &str) -> PathBuf {
        self.staging_dir()
            .join(format!("{}.{purpose}", data_id.hyphenated()))
    }
}

/// Parses a committed shard file name back into its data id.
pub(crate) fn data_id_of_shard_file(name: &str) -> Option<DataId> {
    DataId::parse_str(name.strip_suffix(".shard")?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_files_fan_out_by_id_prefix() {
        let layout = DiskLayout::new(PathBuf::from("/disk"));
        let id = DataId::parse_str("ab3e4567-e89b-12d3-a456-426614174000").unwrap();
        assert_eq!(
            layout.shard_file(id),
            PathBuf::from("/disk/data/ab/ab3e4567-e89b-12d3-a456-426614174000.shard")
        );
        assert_eq!(
            data_id_of_shard_file("ab3e4567-e89b-12d3-a456-426614174000.shard"),
            Some(id)
        );
        assert_eq!(
            data_id_of_shard_file("ab3e4567-e89b-12d3-a456-426614174000.write"),
            None
        );
    }
}
