//! Request bodies for the peer client: object bytes streamed from the source as an HTTP body
//! of exact length, so nothing is buffered whole whatever the object size.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::source::{BoxError, ObjectBytes};
use crate::throttle::Throttle;

/// A body of exactly `len` bytes taken from `stream`; a stream that ends early or runs long
/// fails the request instead of sending something else. With a throttle, each chunk waits
/// for its share of the peer's bandwidth before it is handed on.
struct ExactBody {
    stream: ObjectBytes,
    remaining: u64,
    throttle: Option<Arc<Throttle>>,
    /// A chunk waiting out its throttle delay.
    held: Option<(Bytes, Pin<Box<tokio::time::Sleep>>)>,
    /// Counts the bytes handed on (the peer's sent-bytes metric).
    sent: Option<prometheus::IntCounter>,
}

impl ExactBody {
    fn hand_on(&self, chunk: Bytes) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(c) = &self.sent {
            c.inc_by(chunk.len() as u64);
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the object stream {0}")]
struct LengthMismatch(&'static str);

impl Body for ExactBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some((_, sleep)) = &mut self.held {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let (chunk, _) = self.held.take().expect("held chunk");
            return self.hand_on(chunk);
        }
        match self.stream.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) if self.remaining == 0 => Poll::Ready(None),
            Poll::Ready(None) => Poll::Ready(Some(Err(Box::new(LengthMismatch("ended early"))))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Some(Ok(chunk))) => {
                let n = chunk.len() as u64;
                if n > self.remaining {
                    return Poll::Ready(Some(Err(Box::new(LengthMismatch("ran long")))));
                }
                self.remaining -= n;
                let wait = self
                    .throttle
                    .as_ref()
                    .map_or(std::time::Duration::ZERO, |t| t.reserve(n));
                if wait.is_zero() {
                    return self.hand_on(chunk);
                }
                self.held = Some((chunk, Box::pin(tokio::time::sleep(wait))));
                self.poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// An SDK body streaming `len` bytes of `stream`, at most at the throttle's rate, counting
/// what it hands on in `sent`.
pub(crate) fn exact_body(
    stream: ObjectBytes,
    len: u64,
    throttle: Option<Arc<Throttle>>,
    sent: Option<prometheus::IntCounter>,
) -> ByteStream {
    ByteStream::from_body_1_x(ExactBody {
        stream,
        remaining: len,
        throttle,
        held: None,
        sent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn stream(chunks: &[&'static [u8]]) -> ObjectBytes {
        let items: Vec<Result<Bytes, BoxError>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Box::pin(futures::stream::iter(items))
    }

    #[tokio::test]
    async fn the_body_is_the_stream_and_its_length_is_exact() {
        let body = ExactBody {
            stream: stream(&[b"abc", b"de"]),
            remaining: 5,
            throttle: None,
            held: None,
            sent: None,
        };
        assert_eq!(body.size_hint().exact(), Some(5));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"abcde");
    }

    #[tokio::test]
    async fn a_throttled_body_takes_its_time() {
        let body = ExactBody {
            stream: stream(&[&[0u8; 150_000], &[0u8; 150_000]]),
            remaining: 300_000,
            throttle: Some(Arc::new(Throttle::new(1_000_000))),
            held: None,
            sent: None,
        };
        let started = tokio::time::Instant::now();
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 300_000);
        // 300 kB at 1 MB/s, less the 100 kB burst: at least 0.2 s.
        let took = started.elapsed();
        assert!(took >= std::time::Duration::from_millis(190), "{took:?}");
    }

    #[tokio::test]
    async fn a_short_or_long_stream_is_an_error() {
        let short: &[&'static [u8]] = &[b"abc"];
        let long: &[&'static [u8]] = &[b"abcdef"];
        for (chunks, len) in [(short, 4u64), (long, 4)] {
            let body = ExactBody {
                stream: stream(chunks),
                remaining: len,
                throttle: None,
                held: None,
                sent: None,
            };
            assert!(body.collect().await.is_err());
        }
    }
}
