//! The checksums S3 clients send and expect back: CRC32, CRC32C, CRC64NVME, SHA1 and SHA256
//! (`x-amz-checksum-*`), MD5 for ETags and `Content-MD5`, and the combinations multipart
//! uploads need (composite "checksum of checksums" and full-object CRC combination).
//!
//! Values travel as base64 of the big-endian digest bytes, exactly as on the wire.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use crc_fast::CrcAlgorithm;
use md5::Digest as _;
use meridian_metadata::ChecksumAlgorithm;

/// An incremental hasher for one of the flexible-checksum algorithms.
pub enum ChecksumHasher {
    /// CRC32, CRC32C or CRC64NVME (`crc-fast`, the crate the erasure layer's bitrot checks
    /// use), and the digest's width in bytes.
    Crc(crc_fast::Digest, usize),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

/// The `crc-fast` algorithm of a CRC checksum; `None` for the SHAs.
fn crc_algorithm(algorithm: &ChecksumAlgorithm) -> Option<CrcAlgorithm> {
    match algorithm {
        ChecksumAlgorithm::Crc32 => Some(CrcAlgorithm::Crc32IsoHdlc),
        ChecksumAlgorithm::Crc32c => Some(CrcAlgorithm::Crc32Iscsi),
        ChecksumAlgorithm::Crc64Nvme => Some(CrcAlgorithm::Crc64Nvme),
        ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256 => None,
    }
}

/// A CRC value as its `width` big-endian bytes.
fn crc_bytes(value: u64, width: usize) -> Vec<u8> {
    value.to_be_bytes()[8 - width..].to_vec()
}

impl ChecksumHasher {
    pub fn new(algorithm: &ChecksumAlgorithm) -> ChecksumHasher {
        match (crc_algorithm(algorithm), algorithm) {
            (Some(crc), _) => {
                ChecksumHasher::Crc(crc_fast::Digest::new(crc), digest_len(algorithm))
            }
            (None, ChecksumAlgorithm::Sha1) => ChecksumHasher::Sha1(sha1::Sha1::new()),
            (None, _) => ChecksumHasher::Sha256(sha2::Sha256::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            ChecksumHasher::Crc(d, _) => d.update(data),
            ChecksumHasher::Sha1(h) => h.update(data),
            ChecksumHasher::Sha256(h) => h.update(data),
        }
    }

    /// The digest as big-endian bytes.
    pub fn finish(self) -> Vec<u8> {
        match self {
            ChecksumHasher::Crc(d, width) => crc_bytes(d.finalize(), width),
            ChecksumHasher::Sha1(h) => h.finalize().to_vec(),
            ChecksumHasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// One-shot digest of `data`.
pub fn digest(algorithm: &ChecksumAlgorithm, data: &[u8]) -> Vec<u8> {
    let mut h = ChecksumHasher::new(algorithm);
    h.update(data);
    h.finish()
}

pub fn to_base64(raw: &[u8]) -> String {
    BASE64.encode(raw)
}

/// Decodes a checksum header value, checking its length for the algorithm.
/// Any base64 value, whatever its length.
pub fn decode_base64(value: &str) -> Option<Vec<u8>> {
    BASE64.decode(value.trim()).ok()
}

pub fn from_base64(algorithm: &ChecksumAlgorithm, value: &str) -> Option<Vec<u8>> {
    let raw = BASE64.decode(value.trim()).ok()?;
    (raw.len() == digest_len(algorithm)).then_some(raw)
}

pub fn digest_len(algorithm: &ChecksumAlgorithm) -> usize {
    match algorithm {
        ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
        ChecksumAlgorithm::Crc64Nvme => 8,
        ChecksumAlgorithm::Sha1 => 20,
        ChecksumAlgorithm::Sha256 => 32,
    }
}

/// The lower-case name used in `x-amz-checksum-<name>` headers.
pub fn header_name(algorithm: &ChecksumAlgorithm) -> &'static str {
    match algorithm {
        ChecksumAlgorithm::Crc32 => "crc32",
        ChecksumAlgorithm::Crc32c => "crc32c",
        ChecksumAlgorithm::Crc64Nvme => "crc64nvme",
        ChecksumAlgorithm::Sha1 => "sha1",
        ChecksumAlgorithm::Sha256 => "sha256",
    }
}

/// Parses an algorithm name as clients send it (`CRC32`, `crc64nvme`, ...).
pub fn parse_algorithm(name: &str) -> Option<ChecksumAlgorithm> {
    match name.to_ascii_lowercase().as_str() {
        "crc32" => Some(ChecksumAlgorithm::Crc32),
        "crc32c" => Some(ChecksumAlgorithm::Crc32c),
        "crc64nvme" => Some(ChecksumAlgorithm::Crc64Nvme),
        "sha1" => Some(ChecksumAlgorithm::Sha1),
        "sha256" => Some(ChecksumAlgorithm::Sha256),
        _ => None,
    }
}

/// The composite checksum of a multipart object: the digest of the concatenated raw part
/// digests, suffixed with the part count (`"<base64>-N"`).
pub fn composite(algorithm: &ChecksumAlgorithm, part_digests: &[Vec<u8>]) -> String {
    let mut h = ChecksumHasher::new(algorithm);
    for d in part_digests {
        h.update(d);
    }
    format!("{}-{}", to_base64(&h.finish()), part_digests.len())
}

/// Whether a full-object checksum of a multipart object can be derived from its parts'
/// checksums (true for the CRCs, which combine; false for the SHAs).
pub fn combinable(algorithm: &ChecksumAlgorithm) -> bool {
    matches!(
        algorithm,
        ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c | ChecksumAlgorithm::Crc64Nvme
    )
}

/// The CRC of the concatenation of several pieces, from each piece's CRC and length.
/// `None` for algorithms that do not combine.
pub fn combine_crcs(algorithm: &ChecksumAlgorithm, parts: &[(Vec<u8>, u64)]) -> Option<Vec<u8>> {
    let crc = crc_algorithm(algorithm)?;
    let mut acc: Option<u64> = None;
    for (raw, len) in parts {
        let value = be_to_u64(raw)?;
        acc = Some(match acc {
            None => value,
            Some(prev) => crc_fast::checksum_combine(crc, prev, value, *len),
        });
    }
    // A zero-length object with no parts has the CRC of the empty string, which is 0.
    Some(crc_bytes(acc.unwrap_or(0), digest_len(algorithm)))
}

fn be_to_u64(raw: &[u8]) -> Option<u64> {
    if raw.len() > 8 {
        return None;
    }
    Some(raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// MD5 of `data`, for ETags and `Content-MD5` checks.
pub fn md5(data: &[u8]) -> [u8; 16] {
    md5::Md5::digest(data).into()
}

/// The multipart ETag: md5 of the concatenated binary part md5s, then `-N`.
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut h = md5::Md5::new();
    for m in part_md5s {
        h.update(m);
    }
    format!("{}-{}", hex::encode(h.finalize()), part_md5s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ChecksumAlgorithm; 5] = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];

    #[test]
    fn known_values_match_aws_examples() {
        // "Hello world" checksums as returned by S3 for a one-object upload.
        let data = b"Hello world";
        assert_eq!(
            to_base64(&digest(&ChecksumAlgorithm::Crc32, data)),
            "i9aeUg=="
        );
        assert_eq!(
            to_base64(&digest(&ChecksumAlgorithm::Crc32c, data)),
            "crUfeA=="
        );
        assert_eq!(
            to_base64(&digest(&ChecksumAlgorithm::Sha1, data)),
            "e1AsOh9IyGCa4hLN+2Od7jlnP14="
        );
        assert_eq!(
            to_base64(&digest(&ChecksumAlgorithm::Sha256, data)),
            "ZOyIygCyaOW6GjVnihtTFtIS9PNmskdyMlNKiuyjfzw="
        );
        // CRC-64/NVME check value for "123456789" (from the CRC catalogue).
        assert_eq!(
            digest(&ChecksumAlgorithm::Crc64Nvme, b"123456789"),
            0xAE8B_1486_0A79_9888u64.to_be_bytes().to_vec()
        );
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for alg in &ALL {
            let mut h = ChecksumHasher::new(alg);
            for chunk in data.chunks(777) {
                h.update(chunk);
            }
            assert_eq!(h.finish(), digest(alg, &data), "{alg:?}");
        }
    }

    #[test]
    fn crcs_combine_to_the_crc_of_the_concatenation() {
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for alg in &ALL[..3] {
            for cuts in [
                vec![1usize],
                vec![5_000, 5_001, 99_999],
                vec![0, 50_000],
                vec![33_333, 66_666],
            ] {
                let mut pieces = Vec::new();
                let mut start = 0;
                for cut in cuts.iter().copied().chain([data.len()]) {
                    let piece = &data[start..cut];
                    pieces.push((digest(alg, piece), piece.len() as u64));
                    start = cut;
                }
                assert_eq!(
                    combine_crcs(alg, &pieces).unwrap(),
                    digest(alg, &data),
                    "{alg:?} {cuts:?}"
                );
            }
        }
        assert!(combine_crcs(&ChecksumAlgorithm::Sha256, &[]).is_none());
    }

    #[test]
    fn base64_values_are_length_checked() {
        assert!(from_base64(&ChecksumAlgorithm::Crc32, "i9aeUg==").is_some());
        assert!(from_base64(&ChecksumAlgorithm::Crc64Nvme, "i9aeUg==").is_none());
        assert!(from_base64(&ChecksumAlgorithm::Crc32, "not base64!").is_none());
    }

    #[test]
    fn multipart_etag_is_md5_of_md5s() {
        let parts = [md5(b"part one"), md5(b"part two")];
        let mut concat = Vec::new();
        concat.extend_from_slice(&parts[0]);
        concat.extend_from_slice(&parts[1]);
        assert_eq!(
            multipart_etag(&parts),
            format!("{}-2", hex::encode(md5(&concat)))
        );
    }
}
