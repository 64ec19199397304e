//! Reed-Solomon coding over GF(2^8), one cached codec per `(k, m)`.
//!
//! With `m = 0` there is nothing to compute: encoding is a no-op and reconstruction of a lost
//! shard is impossible (the single-disk store relies on checksums alone).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use reed_solomon_erasure::galois_8::ReedSolomon;

/// An erasure codec for `k` data and `m` parity shards.
pub(crate) struct Codec {
    k: usize,
    m: usize,
    rs: Option<ReedSolomon>,
}

type CodecCache = Mutex<HashMap<(usize, usize), Arc<Codec>>>;

/// The shared codec for `(k, m)`; building the coding matrix once per layout is enough.
pub(crate) fn codec(k: usize, m: usize) -> Arc<Codec> {
    static CACHE: OnceLock<CodecCache> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .expect("codec cache poisoned");
    cache
        .entry((k, m))
        .or_insert_with(|| {
            let rs = (m > 0).then(|| ReedSolomon::new(k, m).expect("layout validated before use"));
            Arc::new(Codec { k, m, rs })
        })
        .clone()
}

impl Codec {
    pub fn parity_shards(&self) -> usize {
        self.m
    }

    /// Computes the `m` parity blocks of `k` equally long data blocks.
    pub fn encode(&self, data: &[&[u8]], parity: &mut [Vec<u8>]) {
        debug_assert_eq!((data.len(), parity.len()), (self.k, self.m));
        if let Some(rs) = &self.rs {
            rs.encode_sep(data, parity)
                .expect("shard counts and lengths checked by caller");
        }
    }

    /// Fills the `None` entries of `shards` (all `k + m` of them, equally long) from at least
    /// `k` present ones. With `data_only`, missing parity blocks stay `None`.
    pub fn reconstruct(
        &self,
        shards: &mut [Option<Vec<u8>>],
        data_only: bool,
    ) -> Result<(), String> {
        debug_assert_eq!(shards.len(), self.k + self.m);
        let present = shards.iter().filter(|s| s.is_some()).count();
        if present == shards.len() {
            return Ok(());
        }
        let Some(rs) = &self.rs else {
            return Err("no parity to reconstruct from".into());
        };
        let result = if data_only {
            rs.reconstruct_data(shards)
        } else {
            rs.reconstruct(shards)
        };
        result.map_err(|e| format!("reconstruction failed: {e:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_m_lost_blocks_are_rebuilt() {
        let codec = codec(4, 2);
        let data: Vec<Vec<u8>> = (0..4u8)
            .map(|i| (0..100u8).map(|b| b.wrapping_mul(i + 3)).collect())
            .collect();
        let mut parity = vec![vec![0u8; 100]; 2];
        let refs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
        codec.encode(&refs, &mut parity);
        let all: Vec<Vec<u8>> = data.iter().chain(parity.iter()).cloned().collect();
        for a in 0..6 {
            for b in a + 1..6 {
                let mut shards: Vec<Option<Vec<u8>>> = all.iter().cloned().map(Some).collect();
                shards[a] = None;
                shards[b] = None;
                codec.reconstruct(&mut shards, false).unwrap();
                assert_eq!(
                    shards.into_iter().map(Option::unwrap).collect::<Vec<_>>(),
                    all
                );
            }
        }
    }

    #[test]
    fn without_parity_nothing_is_rebuilt() {
        let codec = codec(1, 0);
        let mut parity: Vec<Vec<u8>> = Vec::new();
        codec.encode(&[b"abc".as_slice()], &mut parity);
        assert!(codec.reconstruct(&mut [None], true).is_err());
        assert!(codec
            .reconstruct(&mut [Some(b"abc".to_vec())], true)
            .is_ok());
    }
}
