//! The object descriptor: what a caller stores to find an object's shards again, and its
//! compact binary encoding (versioned, checksummed).

use crate::checksum::crc32c;
use crate::config::MAX_DISKS;
use crate::geometry::{block_size_for, Geometry};
use crate::shard_format::SHARD_FORMAT_VERSION;
use crate::{DataId, ErasureError};

/// Version of the [`ObjectDescriptor::to_bytes`] encoding.
const DESCRIPTOR_ENCODING_VERSION: u8 = 1;
/// Encoded length without the placement bytes.
const FIXED_LEN: usize = 1 + 16 + 8 + 1 + 1 + 4 + 4 + 1 + 1 + 4;

/// Where and how an object's shards are stored. Returned by [`crate::ObjectWriter::finish`];
/// the caller stores it (see [`ObjectDescriptor::to_bytes`]) and hands it back to read, heal
/// or delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectDescriptor {
    /// Random id the shard files are named after.
    pub data_id: DataId,
    /// Object size in bytes.
    pub size: u64,
    /// `k`: shards carrying object data.
    pub data_shards: u8,
    /// `m`: parity shards.
    pub parity_shards: u8,
    /// Bytes of one shard block per (full) stripe: `ceil(stripe_size / data_shards)`.
    pub block_size: u32,
    /// Object bytes per stripe.
    pub stripe_size: u32,
    /// `placement[shard_index]` = disk slot index holding that shard.
    pub placement: Vec<u8>,
    /// Version of the shard file format the shards were written with.
    pub format_version: u8,
}

impl ObjectDescriptor {
    /// Compact, versioned binary encoding for the caller to store as an opaque blob:
    /// `[version][data id][size][k][m][block size][stripe size][format version][N][placement]
    /// [crc32c of everything before]`, integers little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + self.placement.len());
        out.push(DESCRIPTOR_ENCODING_VERSION);
        out.extend_from_slice(self.data_id.as_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.push(self.data_shards);
        out.push(self.parity_shards);
        out.extend_from_slice(&self.block_size.to_le_bytes());
        out.extend_from_slice(&self.stripe_size.to_le_bytes());
        out.push(self.format_version);
        out.push(self.placement.len() as u8);
        out.extend_from_slice(&self.placement);
        let crc = crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes [`ObjectDescriptor::to_bytes`] output; refuses truncated, corrupt, unknown-version
    /// or inconsistent input with [`ErasureError::Corrupt`].
    pub fn from_bytes(bytes: &[u8]) -> Result<ObjectDescriptor, ErasureError> {
        let corrupt = |reason: String| ErasureError::Corrupt {
            what: "object descriptor".into(),
            reason,
        };
        if bytes.len() < FIXED_LEN {
            return Err(corrupt(format!("{} bytes is too short", bytes.len())));
        }
        if bytes[0] != DESCRIPTOR_ENCODING_VERSION {
            return Err(corrupt(format!("unknown encoding version {}", bytes[0])));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(corrupt("checksum mismatch".into()));
        }
        let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
        let placement_len = body[36] as usize;
        if body.len() != 37 + placement_len {
            return Err(corrupt(format!(
                "length {} does not match {placement_len} shards",
                bytes.len()
            )));
        }
        let desc = ObjectDescriptor {
            data_id: DataId::from_bytes(body[1..17].try_into().expect("16 bytes")),
            size: u64::from_le_bytes(body[17..25].try_into().expect("8 bytes")),
            data_shards: body[25],
            parity_shards: body[26],
            block_size: u32_at(27),
            stripe_size: u32_at(31),
            format_version: body[35],
            placement: body[37..].to_vec(),
        };
        desc.check_consistency().map_err(corrupt)?;
        Ok(desc)
    }

    /// Checks the fields against each other: shard counts, block size, placement (a
    /// permutation of the slots) and a supported format version.
    pub(crate) fn check_consistency(&self) -> Result<(), String> {
        let (k, m) = (self.data_shards as usize, self.parity_shards as usize);
        if k == 0 || m > k || k + m > MAX_DISKS {
            return Err(format!("impossible layout {k}+{m}"));
        }
        if self.format_version != SHARD_FORMAT_VERSION {
            return Err(format!(
                "unsupported shard format version {}",
                self.format_version
            ));
        }
        if self.stripe_size == 0
            || self.block_size as usize != block_size_for(self.stripe_size as usize, k)
        {
            return Err(format!(
                "block size {} does not fit stripe size {} over {k} data shards",
                self.block_size, self.stripe_size
            ));
        }
        let mut seen = [false; MAX_DISKS];
        if self.placement.len() != k + m
            || self.placement.iter().any(|&slot| {
                let slot = slot as usize;
                slot >= k + m || std::mem::replace(&mut seen[slot], true)
            })
        {
            return Err(format!(
                "placement {:?} is not a permutation of {} slots",
                self.placement,
                k + m
            ));
        }
        Ok(())
    }

    /// [`Self::check_consistency`], plus: the object spans exactly the set's `disks`.
    pub(crate) fn check_for_set(&self, disks: usize) -> Result<(), ErasureError> {
        self.check_consistency()
            .and_then(|()| match self.placement.len() == disks {
                true => Ok(()),
                false => Err(format!(
                    "it spans {} disks, this set has {disks}",
                    self.placement.len()
                )),
            })
            .map_err(|reason| {
                ErasureError::InvalidConfig(format!("descriptor of {}: {reason}", self.data_id))
            })
    }

    pub(crate) fn geometry(&self) -> Geometry {
        Geometry {
            k: self.data_shards as usize,
            m: self.parity_shards as usize,
            stripe_size: self.stripe_size as u64,
            block_size: self.block_size as u64,
            size: self.size,
        }
    }
}

/// Shard-to-slot placement of a new object: shard 0 goes to slot `hash(data_id) % N` and the
/// others follow in slot order, so load spreads across disks. Scrub relies on this rule to
/// place shards that are missing everywhere; changing it needs a new shard format version.
pub(crate) fn placement_for(data_id: DataId, disks: usize) -> Vec<u8> {
    let start = (crc32c(data_id.as_bytes()) as usize) % disks;
    (0..disks).map(|i| ((start + i) % disks) as u8).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn sample() -> ObjectDescriptor {
        descriptor_with_id(DataId::new_v4())
    }

    /// A 4+2 descriptor of a 5 MiB object with this data id.
    pub(crate) fn descriptor_with_id(data_id: DataId) -> ObjectDescriptor {
        ObjectDescriptor {
            data_id,
            size: 5 * 1024 * 1024 + 7,
            data_shards: 4,
            parity_shards: 2,
            block_size: 262_144,
            stripe_size: 1 << 20,
            placement: placement_for(data_id, 6),
            format_version: SHARD_FORMAT_VERSION,
        }
    }

    #[test]
    fn descriptor_survives_encoding() {
        let desc = sample();
        let bytes = desc.to_bytes();
        assert_eq!(bytes.len(), FIXED_LEN + 6);
        assert_eq!(ObjectDescriptor::from_bytes(&bytes).unwrap(), desc);
    }

    /// Descriptors are stored by callers for as long as the object lives: version 1 must keep
    /// decoding exactly like this.
    #[test]
    fn version_one_descriptor_bytes_are_stable() {
        let desc = ObjectDescriptor {
            data_id: DataId::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            size: 3 * 1024 * 1024 + 5,
            data_shards: 4,
            parity_shards: 2,
            block_size: 262_144,
            stripe_size: 1 << 20,
            placement: vec![3, 4, 5, 0, 1, 2],
            format_version: 1,
        };
        let fixture = "01 0123456789abcdef0011223344556677 0500300000000000 04 02 00000400 00001000 01 06 030405000102 fbb876df";
        let fixture = fixture.replace(' ', "");
        assert_eq!(to_hex(&desc.to_bytes()), fixture);
        assert_eq!(
            ObjectDescriptor::from_bytes(&from_hex(&fixture)).unwrap(),
            desc
        );
    }

    fn to_hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn from_hex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn descriptor_decoding_refuses_damage() {
        let bytes = sample().to_bytes();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(
                ObjectDescriptor::from_bytes(&bad).is_err(),
                "flip at {i} accepted"
            );
        }
        assert!(ObjectDescriptor::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(ObjectDescriptor::from_bytes(&[]).is_err());
    }

    #[test]
    fn inconsistent_descriptor_is_refused() {
        let mut desc = sample();
        desc.placement = vec![0, 1, 2, 3, 4, 4];
        assert!(ObjectDescriptor::from_bytes(&desc.to_bytes()).is_err());
        let mut desc = sample();
        desc.block_size += 1;
        assert!(ObjectDescriptor::from_bytes(&desc.to_bytes()).is_err());
    }

    #[test]
    fn placement_rotates_shard_zero_across_disks() {
        let mut starts = [0usize; 6];
        for _ in 0..600 {
            let placement = placement_for(DataId::new_v4(), 6);
            let mut sorted = placement.clone();
            sorted.sort();
            assert_eq!(sorted, vec![0, 1, 2, 3, 4, 5]);
            starts[placement[0] as usize] += 1;
        }
        assert!(starts.iter().all(|&n| n > 0), "{starts:?}");
    }
}
