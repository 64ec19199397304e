//! Request and response bodies between s3s and the store: a client's body as the stream of
//! chunks the store ingests (with s3s's body errors told apart), a replica body sent
//! compressed, and a stored object's bytes as an s3s response body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use meridian_replicator::headers::MAX_COMPRESSED_BODY;
use meridian_store::ingest::BodyError;
use meridian_store::read::ObjectStream;
use meridian_store::StoreError;
use s3s::dto::StreamingBlob;
use s3s::stream::{ByteStream, RemainingLength};
use tokio::sync::mpsc;

type StdError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong in a body stream s3s hands us. s3s keeps its body-stream error types
/// private; their messages are stable and named.
fn classify(e: &(dyn std::error::Error + Send + Sync)) -> BodyError {
    let text = e.to_string();
    if text.contains("SignatureMismatch") {
        BodyError::SignatureMismatch
    } else if text.contains("Sha256Mismatch") {
        BodyError::ContentSha256Mismatch
    } else {
        BodyError::Incomplete(text)
    }
}

/// A client's request body (none is an empty one) as the store ingests it.
pub fn client_body(body: Option<StreamingBlob>) -> BoxStream<'static, Result<Bytes, BodyError>> {
    match body {
        Some(body) => body.map(|r| r.map_err(|e| classify(e.as_ref()))).boxed(),
        None => futures::stream::empty().boxed(),
    }
}

/// A stored object's bytes as a response body: s3s needs their exact length.
pub struct ObjectBody(pub ObjectStream);

impl Stream for ObjectBody {
    type Item = Result<Bytes, StdError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().0).poll_next(cx)
    }
}

impl ByteStream for ObjectBody {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(self.0.remaining())
    }
}

/// S3's largest single PUT or part: a compressed replica body never decodes to more.
const MAX_DECODED: u64 = 5 << 30;
/// Decoded bytes handed on per chunk.
const DECODED_CHUNK: usize = 1 << 20;

/// A zstd-compressed body (a replica part sent with `x-meridian-replica-encoding: zstd`) as
/// the stream of its original bytes. The compressed body is read whole (at most
/// [`MAX_COMPRESSED_BODY`]: one part or a small object, compressed by a peer that held it
/// whole too) then decoded on the blocking
/// pool in 1 MiB chunks through a short queue, so the decoded bytes are never all in memory.
/// Malformed input, and a body that would decode to more than S3's largest part (a
/// decompression bomb), end the stream with an error, which fails the write like any broken
/// body.
pub async fn zstd_decoded<S>(
    mut body: S,
) -> Result<BoxStream<'static, Result<Bytes, BodyError>>, StoreError>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    let mut compressed = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StoreError::Body)?;
        if (compressed.len() + chunk.len()) as u64 > MAX_COMPRESSED_BODY {
            return Err(StoreError::Body(BodyError::Incomplete(format!(
                "a compressed replica body is at most {MAX_COMPRESSED_BODY} bytes"
            ))));
        }
        compressed.extend_from_slice(&chunk);
    }
    let compressed = compressed.freeze();
    let (tx, rx) = mpsc::channel::<Result<Bytes, BodyError>>(4);
    tokio::task::spawn_blocking(move || {
        for item in ZstdChunks::new(&compressed, MAX_DECODED) {
            let last = item.is_err();
            if tx.blocking_send(item).is_err() || last {
                return;
            }
        }
    });
    Ok(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed())
}

/// The decoded chunks of one compressed body, by the C zstd library's streaming decoder. The
/// body must be whole frames: one that ends inside a frame is an error, not short data.
struct ZstdChunks<'a> {
    decoder: zstd_safe::DCtx<'static>,
    input: zstd_safe::InBuffer<'a>,
    buf: Vec<u8>,
    decoded: u64,
    limit: u64,
    /// Inside a frame: the decoder has taken input it has not finished decoding.
    in_frame: bool,
    done: bool,
}

impl<'a> ZstdChunks<'a> {
    /// Decodes `compressed`, failing once it would decode to more than `limit` bytes.
    fn new(compressed: &'a [u8], limit: u64) -> Self {
        ZstdChunks {
            decoder: zstd_safe::DCtx::create(),
            input: zstd_safe::InBuffer::around(compressed),
            buf: vec![0u8; DECODED_CHUNK],
            decoded: 0,
            limit,
            in_frame: false,
            done: false,
        }
    }

    fn fail(&mut self, e: String) -> Option<Result<Bytes, BodyError>> {
        self.done = true;
        Some(Err(BodyError::Incomplete(format!("zstd body: {e}"))))
    }
}

impl Iterator for ZstdChunks<'_> {
    type Item = Result<Bytes, BodyError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let at_end = self.input.pos() == self.input.src.len();
            if at_end && !self.in_frame {
                self.done = true;
                return None;
            }
            let before = self.input.pos();
            let mut output = zstd_safe::OutBuffer::around(&mut self.buf[..]);
            let hint = match self.decoder.decompress_stream(&mut output, &mut self.input) {
                Ok(hint) => hint,
                Err(code) => return self.fail(zstd_safe::get_error_name(code).to_owned()),
            };
            let n = output.pos();
            self.in_frame = hint != 0;
            if n == 0 && self.input.pos() == before && self.in_frame {
                // No progress and no more input: the body stops inside a frame.
                return self.fail("the body ends inside a frame".to_owned());
            }
            if n == 0 {
                continue;
            }
            self.decoded += n as u64;
            if self.decoded > self.limit {
                let limit = self.limit;
                return self.fail(format!("decodes to more than {limit} bytes"));
            }
            return Some(Ok(Bytes::copy_from_slice(&self.buf[..n])));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; zstd_safe::compress_bound(data.len())];
        let n = zstd_safe::compress(&mut out[..], data, 1).unwrap();
        out.truncate(n);
        out
    }

    async fn decode(compressed: Vec<u8>, chunk: usize) -> Result<Vec<u8>, StoreError> {
        let pieces: Vec<Result<Bytes, BodyError>> = compressed
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut out = Vec::new();
        let mut stream = zstd_decoded(futures::stream::iter(pieces)).await?;
        while let Some(item) = stream.next().await {
            out.extend_from_slice(&item.map_err(StoreError::Body)?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_compressed_body_decodes_to_its_bytes_whatever_the_chunking() {
        let text: Vec<u8> = (0..200_000)
            .flat_map(|i| format!("line {i} of a training corpus\n").into_bytes())
            .collect();
        let compressed = compress(&text);
        for chunk in [1 << 20, 4096, 7] {
            assert_eq!(
                decode(compressed.clone(), chunk).await.unwrap(),
                text,
                "{chunk}"
            );
        }
    }

    #[tokio::test]
    async fn truncated_and_malformed_bodies_are_errors() {
        let original = vec![7u8; 100_000];
        let compressed = compress(&original);
        let truncated = compressed[..compressed.len() - 3].to_vec();
        for bad in [
            truncated,
            b"not zstd at all".to_vec(),
            Vec::from(&compressed[..4]),
        ] {
            assert!(matches!(
                decode(bad, 4096).await,
                Err(StoreError::Body(BodyError::Incomplete(_)))
            ));
        }
    }

    #[test]
    fn frames_follow_one_another_and_a_bomb_stops_at_the_limit() {
        let mut two = compress(b"first frame, ");
        two.extend(compress(b"second frame"));
        let out: Vec<u8> = ZstdChunks::new(&two, 1 << 20)
            .map(|c| c.unwrap())
            .flat_map(|c| c.to_vec())
            .collect();
        assert_eq!(out, b"first frame, second frame");

        // 64 MiB of zeros compress to a few KiB; decoding stops just past the limit.
        let bomb = compress(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 64 << 10);
        let mut decoded = 0u64;
        let mut failed = false;
        for chunk in ZstdChunks::new(&bomb, 3 << 20) {
            match chunk {
                Ok(c) => decoded += c.len() as u64,
                Err(e) => {
                    assert!(e.to_string().contains("more than"), "{e}");
                    failed = true;
                }
            }
        }
        assert!(failed);
        assert!(decoded <= 3 << 20);
    }
}
