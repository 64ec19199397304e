//! Compression on the wire, for Meridian peers with `compression = "zstd"`: a body (a small
//! object or a part) is compressed when that saves at least an eighth of its bytes, and sent
//! with `x-meridian-replica-encoding: zstd`; the peer decompresses it before hashing, so its
//! checksums are verified against the original bytes as usual. Whether a body is worth it is
//! judged on its first 256 KiB, so data that does not shrink (compressed weights, media) is
//! streamed as it is, never buffered. Bodies above `MAX_COMPRESSED_BODY` (64 MiB; parts of
//! sources uploaded with huge parts) are always sent as they are.

use std::ops::Range;

use bytes::Bytes;
use futures::TryStreamExt;
use meridian_metadata::VersionRecord;

use crate::error::SendError;
use crate::source::ObjectSource;

/// The header naming the body's encoding; only `zstd` exists.
pub use crate::headers::ENCODING;
pub const ZSTD: &str = "zstd";

const SAMPLE: u64 = 256 * 1024;

/// Compressed size over original size below which compression is worth it.
fn worth_it(original: usize, compressed: usize) -> bool {
    compressed * 8 < original * 7
}

/// `data` compressed at zstd's level 1, by the C library (the one RocksDB links already).
fn zstd(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; zstd_safe::compress_bound(data.len())];
    let n = zstd_safe::compress(&mut out[..], data, 1)
        .expect("a buffer of compress_bound bytes holds any compressed frame");
    out.truncate(n);
    out
}

async fn read_all(
    source: &dyn ObjectSource,
    record: &VersionRecord,
    range: Range<u64>,
) -> Result<Bytes, SendError> {
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    let mut stream = source
        .read(record, range)
        .await
        .map_err(|e| SendError::transient(format!("reading the source: {e}")))?;
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| SendError::transient(format!("reading the source: {e}")))?
    {
        out.extend_from_slice(&chunk);
    }
    Ok(out.into())
}

/// A body that is worth sending compressed: the original bytes and their compressed form.
pub(crate) struct Compressed {
    pub original: Bytes,
    pub compressed: Bytes,
}

/// `range` of the object, compressed, if that saves enough; `None` means send it as it is.
pub(crate) async fn compress(
    source: &dyn ObjectSource,
    record: &VersionRecord,
    range: Range<u64>,
) -> Result<Option<Compressed>, SendError> {
    let len = range.end - range.start;
    if !(1024..=crate::headers::MAX_COMPRESSED_BODY).contains(&len) {
        return Ok(None);
    }
    let sample = read_all(source, record, range.start..range.start + len.min(SAMPLE)).await?;
    let promising =
        tokio::task::spawn_blocking(move || worth_it(sample.len(), zstd(&sample).len()))
            .await
            .map_err(|e| SendError::transient(format!("compression task failed: {e}")))?;
    if !promising {
        return Ok(None);
    }
    let original = read_all(source, record, range).await?;
    let data = original.clone();
    let compressed = tokio::task::spawn_blocking(move || zstd(&data))
        .await
        .map_err(|e| SendError::transient(format!("compression task failed: {e}")))?;
    Ok(
        worth_it(original.len(), compressed.len()).then(|| Compressed {
            original,
            compressed: compressed.into(),
        }),
    )
}

/// The base64 checksum of `data` with `algorithm` (as an `x-amz-checksum-*` value).
pub(crate) fn checksum_of(algorithm: &meridian_metadata::ChecksumAlgorithm, data: &[u8]) -> String {
    use meridian_metadata::ChecksumAlgorithm as A;
    let a = match algorithm {
        A::Crc32 => aws_smithy_checksums::ChecksumAlgorithm::Crc32,
        A::Crc32c => aws_smithy_checksums::ChecksumAlgorithm::Crc32c,
        A::Crc64Nvme => aws_smithy_checksums::ChecksumAlgorithm::Crc64Nvme,
        A::Sha1 => aws_smithy_checksums::ChecksumAlgorithm::Sha1,
        A::Sha256 => aws_smithy_checksums::ChecksumAlgorithm::Sha256,
    };
    let mut c = a.into_impl();
    c.update(data);
    c.header_value()
        .to_str()
        .expect("base64 is ASCII")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_shrinks_and_round_trips_random_bytes_do_not() {
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("token {i} of a corpus\n").into_bytes())
            .collect();
        let c = zstd(&text);
        assert!(worth_it(text.len(), c.len()));
        let mut back = vec![0u8; text.len()];
        let n = zstd_safe::decompress(&mut back[..], &c).unwrap();
        assert_eq!(&back[..n], &text[..]);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(!worth_it(noise.len(), zstd(&noise).len()));
    }

    #[test]
    fn checksums_match_the_wire_format() {
        // CRC32 of "hello world", as S3 writes it.
        assert_eq!(
            checksum_of(&meridian_metadata::ChecksumAlgorithm::Crc32, b"hello world"),
            "DUoRhQ=="
        );
    }
}
