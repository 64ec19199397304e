//! Reading verified blocks from one shard file.
//!
//! A [`ShardSource`] opens its file lazily, once, and checks the header against the object's
//! descriptor; every block read afterwards is checked against its frame checksum. Anything
//! wrong is a [`ShardFault`], never an error for the whole object: the caller decides whether
//! parity can make up for it.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::checksum::crc32c;
use crate::geometry::{Geometry, FRAME_CRC_LEN};
use crate::set_state::SetInner;
use crate::shard_format::ShardHeader;
use crate::ObjectDescriptor;

/// Why a shard (or one of its blocks) cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ShardFault {
    /// No shard file (or no disk).
    Missing,
    /// The header is unreadable or does not belong to this object and shard.
    BadHeader(String),
    /// The file ends before the block does.
    Short,
    /// The block does not match its checksum.
    Corrupt,
    /// The disk returned an error.
    Io(String),
}

impl fmt::Display for ShardFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardFault::Missing => write!(f, "missing"),
            ShardFault::BadHeader(why) => write!(f, "bad header ({why})"),
            ShardFault::Short => write!(f, "short"),
            ShardFault::Corrupt => write!(f, "checksum mismatch"),
            ShardFault::Io(e) => write!(f, "i/o error ({e})"),
        }
    }
}

struct OpenShard {
    file: File,
    header: ShardHeader,
}

/// One shard file of one object, opened on first use.
pub(crate) struct ShardSource {
    path: PathBuf,
    shard_index: usize,
    opened: OnceLock<Result<OpenShard, ShardFault>>,
}

impl ShardSource {
    /// One source per shard of `desc`, in shard order, each on the disk the placement names.
    pub fn all_of(set: &SetInner, desc: &ObjectDescriptor) -> Vec<ShardSource> {
        desc.placement
            .iter()
            .enumerate()
            .map(|(shard, &slot)| {
                ShardSource::new(
                    set.disks[slot as usize].layout.shard_file(desc.data_id),
                    shard,
                )
            })
            .collect()
    }

    pub fn new(path: PathBuf, shard_index: usize) -> Self {
        ShardSource {
            path,
            shard_index,
            opened: OnceLock::new(),
        }
    }

    /// The shard's verified header, if its file opens and the header matches `desc`.
    pub fn header(&self, desc: &ObjectDescriptor) -> Result<&ShardHeader, ShardFault> {
        self.open(desc).map(|open| &open.header)
    }

    /// Length of the shard file as it is on disk now.
    pub fn file_len(&self, desc: &ObjectDescriptor) -> Result<u64, ShardFault> {
        let open = self.open(desc)?;
        open.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| ShardFault::Io(e.to_string()))
    }

    /// Reads block `stripe` into `buf` (exactly the stripe's block length) and verifies it.
    pub fn read_block(
        &self,
        desc: &ObjectDescriptor,
        geometry: &Geometry,
        stripe: u64,
        buf: &mut [u8],
    ) -> Result<(), ShardFault> {
        let open = self.open(desc)?;
        debug_assert_eq!(buf.len(), geometry.block_len(stripe));
        let offset = geometry.frame_offset(open.header.encoded_len(), stripe);
        let mut crc = [0u8; FRAME_CRC_LEN as usize];
        read_exact_at(&open.file, &mut crc, offset)?;
        read_exact_at(&open.file, buf, offset + FRAME_CRC_LEN)?;
        if crc32c(buf) != u32::from_le_bytes(crc) {
            return Err(ShardFault::Corrupt);
        }
        Ok(())
    }

    fn open(&self, desc: &ObjectDescriptor) -> Result<&OpenShard, ShardFault> {
        self.opened
            .get_or_init(|| self.open_and_check(desc))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn open_and_check(&self, desc: &ObjectDescriptor) -> Result<OpenShard, ShardFault> {
        let file = File::open(&self.path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ShardFault::Missing,
            _ => ShardFault::Io(e.to_string()),
        })?;
        let header = ShardHeader::read_from(&file).map_err(ShardFault::BadHeader)?;
        let expected = (
            desc.data_id,
            self.shard_index,
            desc.data_shards,
            desc.parity_shards,
            desc.block_size,
            desc.stripe_size,
            desc.size,
        );
        let found = (
            header.data_id,
            header.shard_index as usize,
            header.data_shards,
            header.parity_shards,
            header.block_size,
            header.stripe_size,
            header.object_size,
        );
        if expected != found {
            return Err(ShardFault::BadHeader(format!(
                "header (id, shard, k, m, block, stripe, size) = {found:?}, expected {expected:?}"
            )));
        }
        Ok(OpenShard { file, header })
    }
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> Result<(), ShardFault> {
    file.read_exact_at(buf, offset).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ShardFault::Short,
        _ => ShardFault::Io(e.to_string()),
    })
}
