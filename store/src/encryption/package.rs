//! The encrypted form of a segment of an object (a single PUT's body, or one part): a small
//! header, then the plaintext cut into 64 KiB packages, each sealed with AES-256-GCM.
//!
//! ```text
//! header  = "MSE" format(1) salt(8)
//! package = ciphertext(<= 64 KiB) tag(16)          nonce = salt || index (u32, big-endian)
//!                                                  aad   = [1 if last package else 0]
//! ```
//!
//! The nonce is positional, so a package moved to another index fails authentication; the
//! salt is random per segment, so no two segments sealed with one data key (the parts of an
//! upload, a part uploaded twice) share a nonce, and a package moved between segments fails
//! too; the last package says it is last, so a segment cut after a package boundary fails.
//! A segment always has at least one package (an empty one for an empty body). A ranged read
//! opens only the packages it overlaps. Sealing happens before erasure coding: shards,
//! bitrot checks, healing and the scrub see ciphertext only.

use std::ops::Range;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use bytes::{Bytes, BytesMut};
use zeroize::Zeroize;

/// Plaintext bytes per package.
pub const PACKAGE: usize = 64 * 1024;
/// The GCM tag after each package's ciphertext.
pub const TAG: usize = 16;
/// A sealed package of full size.
pub const SEALED_PACKAGE: usize = PACKAGE + TAG;
/// The segment header: magic, format, salt.
pub const HEADER: usize = 12;
const MAGIC: &[u8; 3] = b"MSE";
const FORMAT_V1: u8 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("an encrypted package failed authentication (package {0})")]
    Authentication(u64),
    #[error("not an encrypted segment header")]
    Header,
    #[error("an encrypted segment of {0} bytes has an impossible size")]
    Size(u64),
    #[error("a data key must be 32 bytes")]
    KeyLength,
    #[error("no randomness available")]
    Random,
}

/// A version's data key: 256 random bits, wiped from memory when dropped, never printed.
pub struct DataKey([u8; 32]);

impl DataKey {
    pub fn generate() -> Result<DataKey, SealError> {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| SealError::Random)?;
        Ok(DataKey(key))
    }

    pub fn from_slice(bytes: &[u8]) -> Result<DataKey, SealError> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::KeyLength)?;
        Ok(DataKey(key))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("a 32-byte AES-256 key"))
    }
}

impl Clone for DataKey {
    fn clone(&self) -> DataKey {
        DataKey(self.0)
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Packages in a segment of `plain` bytes (at least one).
pub fn packages(plain: u64) -> u64 {
    plain.div_ceil(PACKAGE as u64).max(1)
}

/// The stored size of a segment of `plain` bytes.
pub fn sealed_size(plain: u64) -> u64 {
    HEADER as u64 + plain + TAG as u64 * packages(plain)
}

/// The plaintext size of a stored segment of `sealed` bytes (the inverse of [`sealed_size`]).
pub fn plain_size(sealed: u64) -> Result<u64, SealError> {
    let body = sealed
        .checked_sub(HEADER as u64)
        .ok_or(SealError::Size(sealed))?;
    let (full, tail) = (body / SEALED_PACKAGE as u64, body % SEALED_PACKAGE as u64);
    let plain = match tail {
        0 if full > 0 => full * PACKAGE as u64,
        t if t >= TAG as u64 => full * PACKAGE as u64 + t - TAG as u64,
        _ => return Err(SealError::Size(sealed)),
    };
    Ok(plain)
}

/// Which stored bytes of a segment of `plain` bytes hold the plaintext `range` (non-empty,
/// inside the segment): the index of the first package and the stored byte range of the
/// packages, header excluded.
pub fn stored_range(plain: u64, range: &Range<u64>) -> (u64, Range<u64>) {
    let first = range.start / PACKAGE as u64;
    let last = (range.end.max(range.start + 1) - 1) / PACKAGE as u64;
    let start = HEADER as u64 + first * SEALED_PACKAGE as u64;
    let end = (HEADER as u64 + (last + 1) * SEALED_PACKAGE as u64).min(sealed_size(plain));
    (first, start..end)
}

fn nonce(salt: &[u8; 8], index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(salt);
    // At most 2^32 packages (256 TiB) per segment: S3 parts stop at 5 GiB.
    n[8..].copy_from_slice(&(index as u32).to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(last: bool) -> Aad<[u8; 1]> {
    Aad::from([last as u8])
}

/// Seals one segment as its plaintext streams in: [`Sealer::push`] returns the sealed bytes
/// ready so far (the header first), [`Sealer::finish`] the rest. A full package is held back
/// until more plaintext arrives, because only then is it known not to be the last.
pub struct Sealer {
    cipher: LessSafeKey,
    salt: [u8; 8],
    header: Option<Bytes>,
    index: u64,
    buf: BytesMut,
}

impl Sealer {
    pub fn new(key: &DataKey) -> Result<Sealer, SealError> {
        let mut salt = [0u8; 8];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| SealError::Random)?;
        let mut header = BytesMut::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&[FORMAT_V1]);
        header.extend_from_slice(&salt);
        Ok(Sealer {
            cipher: key.cipher(),
            salt,
            header: Some(header.freeze()),
            index: 0,
            buf: BytesMut::with_capacity(SEALED_PACKAGE),
        })
    }

    pub fn push(&mut self, mut data: &[u8]) -> Vec<Bytes> {
        let mut out: Vec<Bytes> = self.header.take().into_iter().collect();
        while !data.is_empty() {
            if self.buf.len() == PACKAGE {
                out.push(self.seal(false));
            }
            let n = (PACKAGE - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        out
    }

    pub fn finish(mut self) -> Vec<Bytes> {
        let mut out: Vec<Bytes> = self.header.take().into_iter().collect();
        out.push(self.seal(true));
        out
    }

    fn seal(&mut self, last: bool) -> Bytes {
        let mut package = std::mem::replace(&mut self.buf, BytesMut::with_capacity(SEALED_PACKAGE));
        let tag = self
            .cipher
            .seal_in_place_separate_tag(nonce(&self.salt, self.index), aad(last), &mut package)
            .expect("AES-GCM seals any package below its length limit");
        package.extend_from_slice(tag.as_ref());
        self.index += 1;
        package.freeze()
    }
}

/// Opens the packages of one stored segment.
pub struct Opener {
    cipher: LessSafeKey,
    salt: [u8; 8],
    /// Packages in the segment: the last one is sealed as last.
    packages: u64,
}

impl Opener {
    /// For a segment of `plain` bytes whose header is `header`.
    pub fn new(key: &DataKey, header: &[u8], plain: u64) -> Result<Opener, SealError> {
        if header.len() != HEADER || &header[..3] != MAGIC || header[3] != FORMAT_V1 {
            return Err(SealError::Header);
        }
        Ok(Opener {
            cipher: key.cipher(),
            salt: header[4..].try_into().expect("8 bytes"),
            packages: packages(plain),
        })
    }

    /// Opens package `index` in place, returning its plaintext.
    pub fn open<'a>(&self, index: u64, sealed: &'a mut [u8]) -> Result<&'a mut [u8], SealError> {
        let last = index + 1 == self.packages;
        if index >= self.packages || (!last && sealed.len() != SEALED_PACKAGE) {
            return Err(SealError::Authentication(index));
        }
        self.cipher
            .open_in_place(nonce(&self.salt, index), aad(last), sealed)
            .map_err(|_| SealError::Authentication(index))
    }

    /// The stored length of package `index` in a segment of `plain` bytes.
    pub fn sealed_len(&self, index: u64, plain: u64) -> usize {
        if index + 1 < self.packages {
            SEALED_PACKAGE
        } else {
            (plain - index * PACKAGE as u64) as usize + TAG
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal_all(key: &DataKey, data: &[u8], chunk: usize) -> Vec<u8> {
        let mut s = Sealer::new(key).unwrap();
        let mut out = Vec::new();
        for c in data.chunks(chunk.max(1)) {
            s.push(c).iter().for_each(|b| out.extend_from_slice(b));
        }
        s.finish().iter().for_each(|b| out.extend_from_slice(b));
        out
    }

    fn open_range(
        key: &DataKey,
        sealed: &[u8],
        plain: u64,
        range: Range<u64>,
    ) -> Result<Vec<u8>, SealError> {
        let opener = Opener::new(key, &sealed[..HEADER], plain)?;
        let (first, stored) = stored_range(plain, &range);
        let mut bytes = sealed[stored.start as usize..stored.end as usize].to_vec();
        let mut out = Vec::new();
        let mut index = first;
        let mut rest = &mut bytes[..];
        while !rest.is_empty() {
            let n = opener.sealed_len(index, plain).min(rest.len());
            let (pkg, tail) = rest.split_at_mut(n);
            out.extend_from_slice(opener.open(index, pkg)?);
            rest = tail;
            index += 1;
        }
        let skip = (range.start - first * PACKAGE as u64) as usize;
        Ok(out[skip..skip + (range.end - range.start) as usize].to_vec())
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn sizes_round_trip_at_package_boundaries() {
        for plain in [
            0,
            1,
            PACKAGE as u64 - 1,
            PACKAGE as u64,
            PACKAGE as u64 + 1,
            3 * PACKAGE as u64,
            5 << 20,
        ] {
            assert_eq!(plain_size(sealed_size(plain)).unwrap(), plain, "{plain}");
        }
        assert!(plain_size(HEADER as u64 + 3).is_err());
        assert!(plain_size(5).is_err());
    }

    #[test]
    fn every_size_and_range_round_trips() {
        let key = DataKey::generate().unwrap();
        for n in [
            0,
            1,
            PACKAGE - 1,
            PACKAGE,
            PACKAGE + 1,
            2 * PACKAGE,
            3 * PACKAGE + 17,
        ] {
            let data = body(n);
            for chunk in [1000, PACKAGE, 3 * PACKAGE] {
                let sealed = seal_all(&key, &data, chunk);
                assert_eq!(sealed.len() as u64, sealed_size(n as u64));
                let plain = n as u64;
                let all = if n == 0 { 0..0 } else { 0..plain };
                if n == 0 {
                    let opener = Opener::new(&key, &sealed[..HEADER], 0).unwrap();
                    let mut pkg = sealed[HEADER..].to_vec();
                    assert!(opener.open(0, &mut pkg).unwrap().is_empty());
                    continue;
                }
                assert_eq!(open_range(&key, &sealed, plain, all).unwrap(), data);
                for r in [
                    0..1,
                    plain - 1..plain,
                    plain / 2..plain,
                    0..plain.min(PACKAGE as u64 + 1),
                ] {
                    let want = &data[r.start as usize..r.end as usize];
                    assert_eq!(
                        open_range(&key, &sealed, plain, r.clone()).unwrap(),
                        want,
                        "{n} {r:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn tampering_fails_authentication() {
        let key = DataKey::generate().unwrap();
        let n = 3 * PACKAGE + 5;
        let data = body(n);
        let sealed = seal_all(&key, &data, 4096);
        let plain = n as u64;

        let mut flipped = sealed.clone();
        flipped[HEADER + 10] ^= 1;
        assert_eq!(
            open_range(&key, &flipped, plain, 0..10),
            Err(SealError::Authentication(0))
        );

        // Swapping two packages.
        let mut swapped = sealed.clone();
        let (a, b) = (HEADER, HEADER + SEALED_PACKAGE);
        let first = sealed[a..b].to_vec();
        swapped.copy_within(b..b + SEALED_PACKAGE, a);
        swapped[b..b + SEALED_PACKAGE].copy_from_slice(&first);
        assert!(open_range(&key, &swapped, plain, 0..plain).is_err());

        // Cut after a full package: the new last package was not sealed as last.
        let cut = &sealed[..HEADER + 3 * SEALED_PACKAGE];
        assert!(open_range(&key, cut, 3 * PACKAGE as u64, 0..3 * PACKAGE as u64).is_err());

        // Another segment's package (another salt), and another key.
        let other = seal_all(&key, &data, 4096);
        let mut mixed = sealed.clone();
        mixed[HEADER..HEADER + SEALED_PACKAGE]
            .copy_from_slice(&other[HEADER..HEADER + SEALED_PACKAGE]);
        assert!(open_range(&key, &mixed, plain, 0..10).is_err());
        assert!(open_range(&DataKey::generate().unwrap(), &sealed, plain, 0..10).is_err());
        assert_eq!(
            Opener::new(&key, b"not a header", plain).err(),
            Some(SealError::Header)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any body, cut into chunks of any size, reads back by any range; a flipped bit
        /// anywhere in the stored bytes never yields wrong plaintext: the read fails, or (a
        /// bit outside the packages the range reads) returns the right bytes.
        #[test]
        fn any_body_any_range_and_no_undetected_flip(
            len in 0usize..(3 * PACKAGE + 100),
            chunk in 1usize..(2 * PACKAGE),
            a in 0u64..u64::MAX,
            b in 0u64..u64::MAX,
            flip in 0usize..usize::MAX,
            bit in 0u8..8,
        ) {
            let key = DataKey::generate().unwrap();
            let data = body(len);
            let sealed = seal_all(&key, &data, chunk);
            proptest::prop_assert_eq!(sealed.len() as u64, sealed_size(len as u64));
            if len > 0 {
                let plain = len as u64;
                let (x, y) = (a % plain, b % plain);
                let range = x.min(y)..x.max(y) + 1;
                let want = &data[range.start as usize..range.end as usize];
                proptest::prop_assert_eq!(open_range(&key, &sealed, plain, range.clone()).unwrap(), want);
                let mut bad = sealed.clone();
                let at = flip % bad.len();
                bad[at] ^= 1 << bit;
                if let Ok(got) = open_range(&key, &bad, plain, range) {
                    proptest::prop_assert_eq!(got, want);
                }
            }
        }
    }

    #[test]
    fn ciphertext_does_not_contain_the_plaintext() {
        let key = DataKey::generate().unwrap();
        let marker = b"MERIDIAN-PLAINTEXT-MARKER".repeat(4000);
        let sealed = seal_all(&key, &marker, 8192);
        assert!(!sealed
            .windows(25)
            .any(|w| w == b"MERIDIAN-PLAINTEXT-MARKER"));
        assert_eq!(format!("{key:?}"), "DataKey(..)");
    }
}
