//! Streaming reads of a byte range.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use crate::ErasureError;

/// A stream of the requested bytes, in order, in chunks of at most one stripe.
pub struct ObjectReader {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, ErasureError>> + Send>>,
}

impl Stream for ObjectReader {
    type Item = Result<Bytes, ErasureError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
