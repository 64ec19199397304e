//! The `x-meridian-replica-*` request headers: how a Meridian region tells a Meridian peer
//! that a write is a replica, and what identity it must keep (version id, mtime, ETag,
//! checksum, delete-marker flag, origin region). The sender writes them here and the
//! receiving gateway parses them here, so both sides agree by construction.
//!
//! A receiver honours them only for root or a principal with the `replicate` grant; anyone
//! else sending one is refused (and nothing is stored).

use base64::Engine as _;
use http::HeaderMap;
use meridian_metadata::{Checksum, ChecksumAlgorithm, ChecksumType, Encryption, Nanos};

/// Every replica header starts with this.
pub const PREFIX: &str = "x-meridian-replica-";
pub const VERSION_ID: &str = "x-meridian-replica-version-id";
pub const MTIME: &str = "x-meridian-replica-mtime";
pub const ETAG: &str = "x-meridian-replica-etag";
pub const CHECKSUM: &str = "x-meridian-replica-checksum";
pub const DELETE_MARKER: &str = "x-meridian-replica-delete-marker";
pub const REGION: &str = "x-meridian-replica-region";
/// The version travels sealed (SSE-C): base64 of the JSON [`Sealed`].
pub const SEALED: &str = "x-meridian-replica-sealed";
/// The body is compressed (`zstd`); the receiver decompresses it before anything else.
pub const ENCODING: &str = "x-meridian-replica-encoding";
/// The version's ACL (base64 of its stored JSON), where the source bucket has ACLs.
pub const ACL: &str = "x-meridian-replica-acl";
/// On a copy between the nodes of a region, instead of a body: the name of the body the
/// node already holds, streamed to it while it arrived at the primary.
pub const STAGED: &str = "x-meridian-replica-staged";
/// The error code of a copy whose staged body the node does not hold (expired, or the node
/// restarted): the sender sends the body.
pub const NO_SUCH_STAGED_BODY: &str = "NoSuchStagedBody";

/// Largest body sent compressed (and taken compressed): a compressed body is held whole in
/// memory on both sides, so larger parts go as they are.
pub const MAX_COMPRESSED_BODY: u64 = 64 << 20;

/// The encoding of a replica body, if it has one: `Ok(true)` for zstd; an unknown encoding
/// is refused.
pub fn body_is_zstd(headers: &HeaderMap) -> Result<bool, String> {
    match headers.get(ENCODING).map(|v| v.to_str()) {
        None => Ok(false),
        Some(Ok("zstd")) => Ok(true),
        Some(_) => Err(format!("{ENCODING} must be zstd")),
    }
}

/// What travels with a version that only its customer can decrypt (SSE-C): the body is its
/// stored ciphertext, and the receiver stores it as it comes, with this record.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sealed {
    /// The version's encryption record, without its segment sizes (in `runs`).
    pub encryption: Encryption,
    /// The plaintext sizes of the sealed segments, which the receiver's cuts of the
    /// ciphertext need not follow, as (size, count) runs: an upload of 10,000 equal parts is
    /// two runs, and the header stays small.
    pub runs: Vec<(u64, u64)>,
    /// The plaintext size.
    pub size: u64,
    /// The plaintext checksum the version keeps (the body's is of the ciphertext).
    pub checksum: Option<Checksum>,
}

impl Sealed {
    pub fn new(
        mut encryption: Encryption,
        segments: &[u64],
        size: u64,
        checksum: Option<Checksum>,
    ) -> Sealed {
        encryption.segments.clear();
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &s in segments {
            match runs.last_mut() {
                Some((size, count)) if *size == s => *count += 1,
                _ => runs.push((s, 1)),
            }
        }
        Sealed {
            encryption,
            runs,
            size,
            checksum,
        }
    }

    /// The encryption record the receiver stores, segment sizes included.
    pub fn record(&self) -> Encryption {
        let mut e = self.encryption.clone();
        e.segments = self
            .runs
            .iter()
            .flat_map(|&(size, count)| std::iter::repeat_n(size, count.min(10_000) as usize))
            .collect();
        e
    }
}

/// What a replica write carries about the source version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaHeaders {
    /// The region the change comes from (always present).
    pub region: String,
    /// Version id and mtime to keep (absent on tag changes).
    pub version_id: Option<String>,
    pub mtime: Option<Nanos>,
    /// The source's ETag, without quotes.
    pub etag: Option<String>,
    /// The source's stored checksum, as the target must store it.
    pub checksum: Option<Checksum>,
    pub delete_marker: bool,
    /// The body is the version's ciphertext (SSE-C).
    pub sealed: Option<Sealed>,
    /// The version's ACL as stored at the source (absent where its bucket has no ACLs).
    pub acl: Option<Vec<u8>>,
    /// A copy from another node of this region, not a change from a peer region (never read
    /// from the replica headers: the receiver sets it from its cluster's checked headers).
    pub copy: bool,
}

/// Whether a request carries any replica header (and so needs the replicate grant).
pub fn is_replica_request(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| name.as_str().starts_with(PREFIX))
}

pub(crate) fn algorithm_name(a: &ChecksumAlgorithm) -> &'static str {
    match a {
        ChecksumAlgorithm::Crc32 => "CRC32",
        ChecksumAlgorithm::Crc32c => "CRC32C",
        ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
        ChecksumAlgorithm::Sha1 => "SHA1",
        ChecksumAlgorithm::Sha256 => "SHA256",
    }
}

fn parse_algorithm(s: &str) -> Option<ChecksumAlgorithm> {
    Some(match s {
        "CRC32" => ChecksumAlgorithm::Crc32,
        "CRC32C" => ChecksumAlgorithm::Crc32c,
        "CRC64NVME" => ChecksumAlgorithm::Crc64Nvme,
        "SHA1" => ChecksumAlgorithm::Sha1,
        "SHA256" => ChecksumAlgorithm::Sha256,
        _ => return None,
    })
}

impl ReplicaHeaders {
    /// The headers as (name, value) pairs, for the sender.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![(REGION, self.region.clone())];
        if let Some(v) = &self.version_id {
            out.push((VERSION_ID, v.clone()));
        }
        if let Some(m) = self.mtime {
            out.push((MTIME, m.to_string()));
        }
        if let Some(e) = &self.etag {
            out.push((ETAG, e.clone()));
        }
        if let Some(c) = &self.checksum {
            let kind = match c.kind {
                ChecksumType::FullObject => "FULL_OBJECT",
                ChecksumType::Composite => "COMPOSITE",
            };
            out.push((
                CHECKSUM,
                format!("{}:{kind}:{}", algorithm_name(&c.algorithm), c.value),
            ));
        }
        if self.delete_marker {
            out.push((DELETE_MARKER, "true".into()));
        }
        if let Some(sealed) = &self.sealed {
            let json = serde_json::to_vec(sealed).expect("a sealed record serializes");
            out.push((
                SEALED,
                base64::engine::general_purpose::STANDARD.encode(json),
            ));
        }
        if let Some(acl) = &self.acl {
            out.push((ACL, base64::engine::general_purpose::STANDARD.encode(acl)));
        }
        out
    }

    /// Parses the replica headers of a request: `Ok(None)` when there are none, `Err` with the
    /// reason when they are malformed (the receiver answers InvalidArgument).
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<ReplicaHeaders>, String> {
        // The encoding header alone (on parts) describes a body, not a replica write.
        let identity = headers
            .keys()
            .any(|name| name.as_str().starts_with(PREFIX) && name.as_str() != ENCODING);
        if !identity {
            return Ok(None);
        }
        let get = |name: &str| -> Result<Option<String>, String> {
            headers
                .get(name)
                .map(|v| {
                    v.to_str()
                        .map(str::to_owned)
                        .map_err(|_| format!("{name} is not valid text"))
                })
                .transpose()
        };
        let region = get(REGION)?
            .filter(|r| !r.is_empty())
            .ok_or_else(|| format!("{REGION} is required on a replica write"))?;
        let mtime = get(MTIME)?
            .map(|m| {
                m.parse::<Nanos>()
                    .map_err(|_| format!("{MTIME} must be nanoseconds"))
            })
            .transpose()?;
        let checksum = get(CHECKSUM)?
            .map(|c| {
                let mut it = c.splitn(3, ':');
                let (a, t, v) = (it.next(), it.next(), it.next());
                let algorithm = a.and_then(parse_algorithm);
                let kind = match t {
                    Some("FULL_OBJECT") => Some(ChecksumType::FullObject),
                    Some("COMPOSITE") => Some(ChecksumType::Composite),
                    _ => None,
                };
                match (algorithm, kind, v) {
                    (Some(algorithm), Some(kind), Some(value)) if !value.is_empty() => {
                        Ok(Checksum {
                            algorithm,
                            value: value.to_owned(),
                            kind,
                        })
                    }
                    _ => Err(format!("{CHECKSUM} must be ALGORITHM:TYPE:VALUE")),
                }
            })
            .transpose()?;
        let delete_marker = match get(DELETE_MARKER)?.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(format!("{DELETE_MARKER} must be true or false")),
        };
        let version_id = get(VERSION_ID)?;
        if version_id.is_some() != mtime.is_some() {
            return Err(format!("{VERSION_ID} and {MTIME} go together"));
        }
        let sealed = get(SEALED)?
            .map(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .ok()
                    .and_then(|json| serde_json::from_slice::<Sealed>(&json).ok())
                    .ok_or_else(|| format!("{SEALED} must be base64 of a sealed version record"))
            })
            .transpose()?;
        let acl = get(ACL)?
            .map(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|_| format!("{ACL} must be base64"))
            })
            .transpose()?;
        Ok(Some(ReplicaHeaders {
            region,
            version_id,
            mtime,
            etag: get(ETAG)?.map(|e| e.trim_matches('"').to_owned()),
            checksum,
            delete_marker,
            sealed,
            acl,
            copy: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn headers_round_trip() {
        let r = ReplicaHeaders {
            region: "eu-west-1".into(),
            version_id: Some("0000018C2F3A4B5C6D7E8F90A1B2C3D4".into()),
            mtime: Some(1_700_000_000_123_456_789),
            etag: Some("9b2cf535f27731c974343645a3985328-3".into()),
            checksum: Some(Checksum {
                algorithm: ChecksumAlgorithm::Crc64Nvme,
                value: "AAAAAAAAAAA=".into(),
                kind: ChecksumType::FullObject,
            }),
            delete_marker: true,
            sealed: Some(Sealed::new(
                Encryption {
                    mode: Some(meridian_metadata::EncryptionMode::Customer),
                    sealed_key: vec![2, 9, 9],
                    customer_key_md5: Some("md5==".into()),
                    ..Encryption::default()
                },
                &[8 << 20, 8 << 20, 8 << 20, 3],
                (24 << 20) + 3,
                None,
            )),
            acl: Some(br#"{"owner":"alice","grants":[]}"#.to_vec()),
            copy: false,
        };
        let sealed = r.sealed.as_ref().unwrap();
        assert_eq!(sealed.runs, vec![(8 << 20, 3), (3, 1)]);
        assert_eq!(sealed.record().segments, vec![8 << 20, 8 << 20, 8 << 20, 3]);
        let h = map(&r.to_pairs());
        assert!(is_replica_request(&h));
        assert_eq!(ReplicaHeaders::from_headers(&h).unwrap(), Some(r));
        assert_eq!(
            ReplicaHeaders::from_headers(&HeaderMap::new()).unwrap(),
            None
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        for pairs in [
            vec![(VERSION_ID, "v".to_string())],
            vec![
                (REGION, "r".into()),
                (MTIME, "soon".into()),
                (VERSION_ID, "v".into()),
            ],
            vec![(REGION, "r".into()), (VERSION_ID, "v".into())],
            vec![(REGION, "r".into()), (CHECKSUM, "MD5:FULL_OBJECT:x".into())],
            vec![(REGION, "r".into()), (DELETE_MARKER, "yes".into())],
        ] {
            assert!(
                ReplicaHeaders::from_headers(&map(&pairs)).is_err(),
                "{pairs:?}"
            );
        }
    }
}
