//! The one checksum of this crate: CRC-32C (Castagnoli), used for every block frame, shard
//! header and encoded descriptor.
//!
//! Computed with `crc-fast`, which picks the fastest kernel the CPU offers at run time
//! (VPCLMULQDQ/AVX-512 here: ~60 GiB/s on a 256 KiB block against ~13 GiB/s for the SSE4.2
//! `crc32` instruction), so verifying every block costs little next to copying it.

use crc_fast::{checksum, CrcAlgorithm};

/// CRC-32C of `data`.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    checksum(CrcAlgorithm::Crc32Iscsi, data) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_crc32c() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        let mut state = 7u64;
        for len in [1usize, 3, 15, 16, 63, 64, 255, 4096, 65_537, 262_144] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    (state >> 33) as u8
                })
                .collect();
            assert_eq!(crc32c(&data), ::crc32c::crc32c(&data), "length {len}");
        }
    }
}
