//! Request and response bodies between s3s and the store: a client's body as the stream of
//! chunks the store ingests (with s3s's body errors told apart), a replica body sent
//! compressed, and a stored object's bytes as an s3s response body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
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
/// the stream of its original bytes. The compressed body is read whole — it is one part or a
/// small object, compressed by a peer that held it whole too — then decoded on the blocking
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
        compressed.extend_from_slice(&chunk.map_err(StoreError::Body)?);
    }
    let compressed = compressed.freeze();
    let (tx, rx) = mpsc::channel::<Result<Bytes, BodyError>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let fail = |e: String| BodyError::Incomplete(format!("zstd body: {e}"));
        let mut decoder = match ruzstd::decoding::StreamingDecoder::new(&compressed[..]) {
            Ok(d) => d,
            Err(e) => {
                let _ = tx.blocking_send(Err(fail(e.to_string())));
                return;
            }
        };
        let mut buf = vec![0u8; DECODED_CHUNK];
        let mut decoded = 0u64;
        loop {
            let item = match decoder.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    decoded += n as u64;
                    if decoded > MAX_DECODED {
                        Err(fail(format!("decodes to more than {MAX_DECODED} bytes")))
                    } else {
                        Ok(Bytes::copy_from_slice(&buf[..n]))
                    }
                }
                Err(e) => Err(fail(e.to_string())),
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
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
    async fn truncated_and_malformed_bodies_never_pass_for_the_original() {
        let original = vec![7u8; 100_000];
        let compressed = compress(&original);
        let truncated = compressed[..compressed.len() - 3].to_vec();
        // Either the decoder notices, or the bytes come out short and the body's checksum
        // refuses them: never the original bytes.
        assert!(!matches!(decode(truncated, 4096).await, Ok(d) if d == original));
        assert!(matches!(
            decode(b"not zstd at all".to_vec(), 4096).await,
            Err(StoreError::Body(BodyError::Incomplete(_)))
        ));
    }
}
