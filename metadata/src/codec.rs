//! How records are stored: one format-version byte, then a self-describing MessagePack map
//! (`rmp_serde::to_vec_named`), so fields can be added with `#[serde(default)]` and old records
//! still decode. Byte payloads (inline data, layout blobs) are MessagePack `bin`, not arrays.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::MetaError;

/// Format version written in front of every record by this build.
pub const FORMAT_VERSION: u8 = 1;

/// Encodes a record for storage.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // Serializing plain data structs into a Vec cannot fail.
    rmp_serde::encode::write_named(&mut out, record).expect("records serialize to msgpack");
    out
}

/// Decodes a stored record; `cf` and `key` only give the error its context.
pub fn decode<T: DeserializeOwned>(
    cf: &'static str,
    key: &[u8],
    value: &[u8],
) -> Result<(T, u8), MetaError> {
    let (&version, body) = value
        .split_first()
        .ok_or_else(|| MetaError::corrupt(cf, key, "empty value"))?;
    if version == 0 || version > FORMAT_VERSION {
        return Err(MetaError::corrupt(
            cf,
            key,
            format!("unknown record format version {version}"),
        ));
    }
    let record = rmp_serde::from_slice(body).map_err(|e| MetaError::corrupt(cf, key, e))?;
    Ok((record, version))
}

/// `#[serde(with = "bytes")]` for `Vec<u8>`: stored as MessagePack bin.
pub mod bytes {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    pub(super) struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// `#[serde(with = "opt_bytes")]` for `Option<Vec<u8>>`.
pub mod opt_bytes {
    use serde::de::{Deserializer, Error, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&Bin(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        d.deserialize_option(OptVisitor)
    }

    struct Bin<'a>(&'a [u8]);

    impl serde::Serialize for Bin<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct OptVisitor;

    impl<'de> Visitor<'de> for OptVisitor {
        type Value = Option<Vec<u8>>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("optional bytes")
        }

        fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_byte_buf(super::bytes::BytesVisitor).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::record::{Origin, Storage, VersionRecord};

    /// A version record as an earlier build might have written it: fewer fields.
    #[derive(Serialize)]
    struct VersionRecordV0 {
        bucket: String,
        key: String,
        version_id: String,
        mtime: i64,
        size: u64,
        etag: String,
        storage: Storage,
    }

    #[test]
    fn record_written_with_fewer_fields_decodes_with_defaults() {
        let old = VersionRecordV0 {
            bucket: "b".into(),
            key: "k".into(),
            version_id: "v1".into(),
            mtime: 42,
            size: 3,
            etag: "abc".into(),
            storage: Storage::Inline(b"xyz".to_vec()),
        };
        let (rec, version): (VersionRecord, u8) = decode("versions", b"k", &encode(&old)).unwrap();
        assert_eq!(version, FORMAT_VERSION);
        assert_eq!(
            (
                rec.key.as_str(),
                rec.version_id.as_str(),
                rec.mtime,
                rec.size
            ),
            ("k", "v1", 42, 3)
        );
        assert_eq!(rec.storage, Storage::Inline(b"xyz".to_vec()));
        assert!(!rec.is_delete_marker);
        assert!(rec.tags.is_empty() && rec.checksum.is_none() && rec.content_sha256.is_none());
        assert_eq!(rec.replication.origin, Origin::Local);
    }

    #[test]
    fn record_with_unknown_fields_decodes() {
        #[derive(Serialize)]
        struct Future {
            version_id: String,
            some_future_field: Vec<u32>,
        }
        let bytes = encode(&Future {
            version_id: "v".into(),
            some_future_field: vec![1, 2],
        });
        let (rec, _): (VersionRecord, u8) = decode("versions", b"k", &bytes).unwrap();
        assert_eq!(rec.version_id, "v");
    }

    #[test]
    fn byte_payloads_are_stored_compactly_and_round_trip() {
        let rec = VersionRecord {
            storage: Storage::Layout(vec![0xFF; 1000]),
            content_sha256: Some(vec![0xAB; 32]),
            ..VersionRecord::default()
        };
        let bytes = encode(&rec);
        let empty = encode(&VersionRecord {
            storage: Storage::Layout(Vec::new()),
            ..rec.clone()
        });
        // bin: 1000 bytes plus a length header; an array of 0xFF would take 2000.
        assert!(
            bytes.len() - empty.len() <= 1005,
            "payload took {} bytes",
            bytes.len() - empty.len()
        );
        let (back, _): (VersionRecord, u8) = decode("versions", b"k", &bytes).unwrap();
        assert_eq!(back, rec);
    }

    #[test]
    fn unknown_format_version_is_reported_as_corrupt() {
        #[derive(Serialize, Deserialize, Default)]
        struct R {
            a: u8,
        }
        let mut bytes = encode(&R::default());
        bytes[0] = FORMAT_VERSION + 1;
        assert!(matches!(
            decode::<R>("meta", b"k", &bytes),
            Err(MetaError::Corrupt { .. })
        ));
    }
}
