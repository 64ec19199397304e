//! The shard file format (version 1).
//!
//! ```text
//! header: magic "MRDNSHRD" | format version u8 | shard index u8 | k u8 | m u8 | data id [16]
//!         | block size u32 | stripe size u32 | object size u64 | identity length u32
//!         | identity bytes | crc32c of all header bytes before it (u32)
//! frames: [crc32c of block, u32][block], one per stripe (see `geometry`)
//! ```
//!
//! Integers are little-endian. The header is self-describing, so a scrub can rebuild an
//! object from its shard files alone, and carries the caller's identity blob for disaster
//! recovery. The checksum makes any header damage detectable.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;

use crate::checksum::crc32c;
use crate::DataId;

/// Current shard file format version.
pub const SHARD_FORMAT_VERSION: u8 = 1;
/// Largest identity blob a header may carry.
pub const MAX_IDENTITY_LEN: usize = 64 * 1024;

const MAGIC: &[u8; 8] = b"MRDNSHRD";
/// Header bytes before the identity.
const FIXED_PREFIX_LEN: usize = 48;

/// The decoded header of one shard file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShardHeader {
    pub data_id: DataId,
    pub shard_index: u8,
    pub data_shards: u8,
    pub parity_shards: u8,
    pub block_size: u32,
    pub stripe_size: u32,
    pub object_size: u64,
    pub identity: Vec<u8>,
}

impl ShardHeader {
    /// Length of the encoded header; frames start here.
    pub fn encoded_len(&self) -> u64 {
        (FIXED_PREFIX_LEN + self.identity.len() + 4) as u64
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len() as usize);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[
            SHARD_FORMAT_VERSION,
            self.shard_index,
            self.data_shards,
            self.parity_shards,
        ]);
        out.extend_from_slice(self.data_id.as_bytes());
        out.extend_from_slice(&self.block_size.to_le_bytes());
        out.extend_from_slice(&self.stripe_size.to_le_bytes());
        out.extend_from_slice(&self.object_size.to_le_bytes());
        out.extend_from_slice(&(self.identity.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.identity);
        let crc = crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads and verifies the header at the start of `file`. `Err` explains what is wrong.
    pub fn read_from(file: &File) -> Result<ShardHeader, String> {
        Self::parse(|buf, offset| read_exact_at(file, buf, offset))
    }

    /// Decodes and verifies a header from the start of `bytes` (the fuzz target's way in).
    pub fn decode(bytes: &[u8]) -> Result<ShardHeader, String> {
        Self::parse(|buf, offset| {
            let start = usize::try_from(offset).map_err(|_| "offset too large".to_string())?;
            let slice = start
                .checked_add(buf.len())
                .and_then(|end| bytes.get(start..end))
                .ok_or_else(|| "file too short for its header".to_string())?;
            buf.copy_from_slice(slice);
            Ok(())
        })
    }

    /// The header, read through `read_exact_at(buf, offset)`.
    fn parse(
        mut read_exact_at: impl FnMut(&mut [u8], u64) -> Result<(), String>,
    ) -> Result<ShardHeader, String> {
        let mut prefix = [0u8; FIXED_PREFIX_LEN];
        read_exact_at(&mut prefix, 0)?;
        if &prefix[..8] != MAGIC {
            return Err("bad magic".into());
        }
        if prefix[8] != SHARD_FORMAT_VERSION {
            return Err(format!("unsupported format version {}", prefix[8]));
        }
        let u32_at =
            |at: usize| u32::from_le_bytes(prefix[at..at + 4].try_into().expect("4 bytes"));
        let identity_len = u32_at(44) as usize;
        if identity_len > MAX_IDENTITY_LEN {
            return Err(format!("identity length {identity_len} is implausible"));
        }
        let mut rest = vec![0u8; identity_len + 4];
        read_exact_at(&mut rest, FIXED_PREFIX_LEN as u64)?;
        let (identity, crc) = rest.split_at(identity_len);
        let mut hasher_input = prefix.to_vec();
        hasher_input.extend_from_slice(identity);
        if crc32c(&hasher_input) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err("header checksum mismatch".into());
        }
        Ok(ShardHeader {
            shard_index: prefix[9],
            data_shards: prefix[10],
            parity_shards: prefix[11],
            data_id: DataId::from_bytes(prefix[12..28].try_into().expect("16 bytes")),
            block_size: u32_at(28),
            stripe_size: u32_at(32),
            object_size: u64::from_le_bytes(prefix[36..44].try_into().expect("8 bytes")),
            identity: identity.to_vec(),
        })
    }
}

/// `read_exact_at` with a short file reported as such.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> Result<(), String> {
    file.read_exact_at(buf, offset).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => "file too short for its header".to_string(),
        _ => format!("read failed: {e}"),
    })
}

/// Appends one `[crc32c][block]` frame at the file's current position, in one `writev` when
/// the kernel takes it whole.
pub(crate) fn write_frame(file: &mut File, block: &[u8]) -> io::Result<()> {
    let crc = crc32c(block).to_le_bytes();
    let mut bufs = [IoSlice::new(&crc), IoSlice::new(block)];
    let mut remaining: &mut [IoSlice<'_>] = &mut bufs;
    while !remaining.is_empty() {
        match file.write_vectored(remaining) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut remaining, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ShardHeader {
        ShardHeader {
            data_id: DataId::new_v4(),
            shard_index: 3,
            data_shards: 4,
            parity_shards: 2,
            block_size: 262_144,
            stripe_size: 1 << 20,
            object_size: 12_345_678,
            identity: b"bucket/key/version".to_vec(),
        }
    }

    #[test]
    fn header_survives_a_round_trip_through_a_file() {
        let header = header();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&header.encode()).unwrap();
        write_frame(&mut file, b"block").unwrap();
        assert_eq!(ShardHeader::read_from(&file).unwrap(), header);
        assert_eq!(file.metadata().unwrap().len(), header.encoded_len() + 4 + 5);
    }

    #[test]
    fn decoding_from_bytes_agrees_with_the_file_and_refuses_every_prefix() {
        let bytes = header().encode();
        assert_eq!(
            ShardHeader::decode(&bytes).unwrap().identity,
            header().identity
        );
        for cut in 0..bytes.len() {
            assert!(ShardHeader::decode(&bytes[..cut]).is_err(), "{cut}");
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert_eq!(
            ShardHeader::decode(&flipped).unwrap_err(),
            "header checksum mismatch"
        );
    }

    /// Shard files live for years: a version 1 header must keep its exact bytes.
    #[test]
    fn version_one_header_bytes_are_stable() {
        let header = ShardHeader {
            data_id: DataId::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            shard_index: 5,
            data_shards: 4,
            parity_shards: 2,
            block_size: 262_144,
            stripe_size: 1 << 20,
            object_size: 7,
            identity: b"b/k".to_vec(),
        };
        let fixture = concat!(
            "4d52444e53485244", // magic "MRDNSHRD"
            "01050402",         // version, shard index, k, m
            "0123456789abcdef0011223344556677",
            "00000400",         // block size
            "00001000",         // stripe size
            "0700000000000000", // object size
            "03000000",         // identity length
            "622f6b",           // identity
            "152ca0c1",         // header crc32c
        );
        let hex: String = header.encode().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, fixture);
    }

    #[test]
    fn any_flipped_header_byte_is_detected() {
        let encoded = header().encode();
        for i in 0..encoded.len() {
            let mut bad = encoded.clone();
            bad[i] ^= 0x01;
            let file = tempfile::tempfile().unwrap();
            file.write_all_at(&bad, 0).unwrap();
            assert!(
                ShardHeader::read_from(&file).is_err(),
                "flip at {i} accepted"
            );
        }
    }

    #[test]
    fn truncated_header_is_detected() {
        let encoded = header().encode();
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(&encoded[..encoded.len() - 1], 0).unwrap();
        assert!(ShardHeader::read_from(&file)
            .unwrap_err()
            .contains("too short"));
    }
}
