//! The read path: a byte range of a stored object as a stream of verified bytes.
//!
//! Inline objects are sliced from the version record; erasure-coded segments are read through
//! the disk set's reader, which checks every block and reconstructs from parity. Segments are
//! opened lazily, one after the other, so memory stays at the reader's prefetch window.

use std::collections::VecDeque;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use meridian_erasure::{DiskSet, ObjectDescriptor, ObjectReader};

use super::layout::{Layout, Segment};
use super::StoreError;

type StdError = Box<dyn std::error::Error + Send + Sync>;

enum Piece {
    Bytes(Bytes),
    Erasure(ObjectDescriptor, Range<u64>),
}

/// A stream of an object's bytes in `[start, end)`. `Sync` because HTTP response bodies must
/// be; the lock is never contended (one consumer polls it).
pub struct ObjectStream {
    inner: Mutex<Inner>,
    remaining: usize,
}

struct Inner {
    /// `None` for inline objects, which have no erasure pieces.
    disks: Option<DiskSet>,
    pending: VecDeque<Piece>,
    current: Option<ObjectReader>,
    /// A chunk read ahead by [`ObjectStream::first_chunk`], served before anything else.
    peeked: Option<Bytes>,
}

impl ObjectStream {
    pub fn inline(data: Bytes, range: Range<u64>) -> ObjectStream {
        let slice = data.slice(range.start as usize..range.end as usize);
        Self::from_pieces(
            None,
            vec![Piece::Bytes(slice)],
            (range.end - range.start) as usize,
        )
    }

    pub fn layout(disks: &DiskSet, layout: &Layout, range: Range<u64>) -> ObjectStream {
        let pieces = layout
            .pieces(range.clone())
            .into_iter()
            .map(|(seg, r)| match seg {
                Segment::Inline(b) => {
                    Piece::Bytes(Bytes::copy_from_slice(&b[r.start as usize..r.end as usize]))
                }
                Segment::Erasure(d) => Piece::Erasure(d.clone(), r),
            })
            .collect();
        Self::from_pieces(
            Some(disks.clone()),
            pieces,
            (range.end - range.start) as usize,
        )
    }

    fn from_pieces(disks: Option<DiskSet>, pieces: Vec<Piece>, len: usize) -> ObjectStream {
        ObjectStream {
            inner: Mutex::new(Inner {
                disks,
                pending: pieces.into(),
                current: None,
                peeked: None,
            }),
            remaining: len,
        }
    }
}

impl ObjectStream {
    /// Bytes still to come.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Reads the first chunk ahead, so that an object that cannot be read at all (too few
    /// good shards) is answered with an error status instead of a response that breaks off
    /// after its headers. The chunk is served first when the stream is polled.
    pub async fn first_chunk(&mut self) -> Result<(), StoreError> {
        match futures::StreamExt::next(self).await {
            Some(Ok(b)) => {
                // Undo the accounting of poll_next: the chunk is still to be served.
                self.remaining += b.len();
                self.inner
                    .get_mut()
                    .unwrap_or_else(|p| p.into_inner())
                    .peeked = Some(b);
                Ok(())
            }
            Some(Err(e)) => Err(match e.downcast::<meridian_erasure::ErasureError>() {
                Ok(e) => StoreError::Erasure(*e),
                Err(e) => StoreError::Internal(e.to_string()),
            }),
            None => Ok(()),
        }
    }
}

impl Stream for ObjectStream {
    type Item = Result<Bytes, StdError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let inner = this.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = inner.peeked.take() {
            return Poll::Ready(Some(Ok(b)));
        }
        loop {
            if let Some(reader) = &mut inner.current {
                match Pin::new(reader).poll_next(cx) {
                    Poll::Ready(Some(Ok(b))) => {
                        this.remaining = this.remaining.saturating_sub(b.len());
                        return Poll::Ready(Some(Ok(b)));
                    }
                    Poll::Ready(Some(Err(e))) => {
                        inner.pending.clear();
                        inner.current = None;
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                    Poll::Ready(None) => inner.current = None,
                    Poll::Pending => return Poll::Pending,
                }
            }
            match inner.pending.pop_front() {
                None => return Poll::Ready(None),
                Some(Piece::Bytes(b)) if b.is_empty() => continue,
                Some(Piece::Bytes(b)) => {
                    this.remaining = this.remaining.saturating_sub(b.len());
                    return Poll::Ready(Some(Ok(b)));
                }
                Some(Piece::Erasure(desc, r)) => {
                    let disks = inner
                        .disks
                        .as_ref()
                        .expect("erasure pieces come with their disk set");
                    inner.current = Some(disks.reader(&desc, r));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, None)
    }
}
