//! Stripe geometry: how an object of a given size is cut into stripes, blocks and frames.
//!
//! Stripe `s` carries object bytes `[s * stripe_size, min((s + 1) * stripe_size, size))`. Its
//! block length is `ceil(stripe_len / k)`: `block_size` for every stripe but the last, which
//! may be shorter. Data shard `i` holds stripe bytes `[i * b, (i + 1) * b)`, zero-padded at the
//! end of the stripe. In a shard file, frame `s` is `[crc32c (4 bytes LE)][block]` and starts at
//! `header_len + s * (4 + block_size)`.

/// Bytes of the checksum in front of every block.
pub(crate) const FRAME_CRC_LEN: u64 = 4;

/// The geometry of one object's shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub k: usize,
    pub m: usize,
    pub stripe_size: u64,
    pub block_size: u64,
    pub size: u64,
}

impl Geometry {
    pub fn total_shards(&self) -> usize {
        self.k + self.m
    }

    pub fn stripe_count(&self) -> u64 {
        self.size.div_ceil(self.stripe_size)
    }

    /// Object bytes carried by stripe `s` (`s < stripe_count()`).
    pub fn stripe_len(&self, s: u64) -> u64 {
        (self.size - s * self.stripe_size).min(self.stripe_size)
    }

    /// Length of every shard's block in stripe `s`.
    pub fn block_len(&self, s: u64) -> usize {
        self.stripe_len(s).div_ceil(self.k as u64) as usize
    }

    /// File offset of frame `s` (its checksum) in a shard file whose header is `header_len` long.
    pub fn frame_offset(&self, header_len: u64, s: u64) -> u64 {
        header_len + s * (FRAME_CRC_LEN + self.block_size)
    }

    /// Exact length of a complete shard file.
    pub fn shard_file_len(&self, header_len: u64) -> u64 {
        match self.stripe_count() {
            0 => header_len,
            n => {
                self.frame_offset(header_len, n - 1) + FRAME_CRC_LEN + self.block_len(n - 1) as u64
            }
        }
    }
}

/// `ceil(stripe_size / k)`: the block length of a full stripe.
pub(crate) fn block_size_for(stripe_size: usize, k: usize) -> usize {
    stripe_size.div_ceil(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(size: u64) -> Geometry {
        Geometry {
            k: 4,
            m: 2,
            stripe_size: 1000,
            block_size: 250,
            size,
        }
    }

    #[test]
    fn last_stripe_has_shorter_blocks() {
        let g = geometry(2_001);
        assert_eq!(g.stripe_count(), 3);
        assert_eq!(g.stripe_len(2), 1);
        assert_eq!(g.block_len(0), 250);
        assert_eq!(g.block_len(2), 1);
        assert_eq!(g.frame_offset(10, 2), 10 + 2 * 254);
        assert_eq!(g.shard_file_len(10), 10 + 2 * 254 + 5);
    }

    #[test]
    fn empty_object_has_only_a_header() {
        let g = geometry(0);
        assert_eq!(g.stripe_count(), 0);
        assert_eq!(g.shard_file_len(52), 52);
    }

    #[test]
    fn block_size_rounds_up() {
        assert_eq!(block_size_for(1 << 20, 4), 1 << 18);
        assert_eq!(block_size_for(1 << 20, 6), 174_763);
        assert_eq!(block_size_for(3, 4), 1);
    }
}
