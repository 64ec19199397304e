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

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use meridian_erasure::{DiskSet, ObjectDescriptor};

use super::encryption::package::{self, Opener, HEADER, PACKAGE};
use super::encryption::DataKey;
use super::layout::{Layout, Segment};
use super::StoreError;

type StdError = Box<dyn std::error::Error + Send + Sync>;
type RawStream = BoxStream<'static, Result<Bytes, StdError>>;

enum Piece {
    Bytes(Bytes),
    Erasure(ObjectDescriptor, Range<u64>),
    /// The plaintext `range` of an encrypted segment of `plain` bytes.
    Sealed {
        source: Source,
        plain: u64,
        range: Range<u64>,
        key: DataKey,
    },
}

/// Where a segment's stored bytes are.
#[derive(Clone)]
enum Source {
    Bytes(Bytes),
    Erasure(ObjectDescriptor),
    /// The bytes from `offset` of a whole layout (a sealed segment that spans or splits the
    /// layout's own segments).
    Stored(std::sync::Arc<Layout>, u64),
}

impl Source {
    fn of(segment: &Segment) -> Source {
        match segment {
            Segment::Erasure(d) => Source::Erasure(d.clone()),
            Segment::Inline(b) => Source::Bytes(Bytes::copy_from_slice(b)),
        }
    }

    fn read(&self, disks: Option<&DiskSet>, range: Range<u64>) -> RawStream {
        match self {
            Source::Bytes(b) => {
                let slice = b.slice(range.start as usize..range.end as usize);
                futures::stream::once(async move { Ok(slice) }).boxed()
            }
            Source::Erasure(desc) => disks
                .expect("erasure pieces come with their disk set")
                .reader(desc, range)
                .map_err(|e| Box::new(e) as StdError)
                .boxed(),
            Source::Stored(layout, offset) => ObjectStream::layout(
                disks.expect("erasure pieces come with their disk set"),
                layout,
                offset + range.start..offset + range.end,
            )
            .boxed(),
        }
    }
}

/// What a sealed segment's stream has left to do.
struct Unsealing {
    raw: RawStream,
    opener: Opener,
    plain: u64,
    index: u64,
    buf: BytesMut,
    /// Plaintext to drop from the first package opened, and to serve in all.
    skip: usize,
    left: u64,
}

/// The plaintext `range` of a sealed segment: its header, then only the packages the range
/// overlaps, each authenticated before a byte of it is served.
fn unsealed(
    disks: Option<DiskSet>,
    source: Source,
    plain: u64,
    range: Range<u64>,
    key: DataKey,
) -> RawStream {
    let start = async move {
        let (first, stored) = package::stored_range(plain, &range);
        // The header is read with the packages when they start the segment.
        let (header, raw) = if first == 0 {
            let mut raw = source.read(disks.as_ref(), 0..stored.end);
            let mut head = BytesMut::new();
            while head.len() < HEADER {
                match raw.try_next().await? {
                    Some(b) => head.extend_from_slice(&b),
                    None => return Err::<_, StdError>("encrypted segment ends early".into()),
                }
            }
            let rest = head.split_off(HEADER);
            let raw = futures::stream::once(async move { Ok(rest.freeze()) })
                .chain(raw)
                .boxed();
            (head.freeze(), raw)
        } else {
            let head: Vec<Bytes> = source
                .read(disks.as_ref(), 0..HEADER as u64)
                .try_collect()
                .await?;
            (head.concat().into(), source.read(disks.as_ref(), stored))
        };
        let opener = Opener::new(&key, &header, plain)?;
        Ok(Unsealing {
            raw,
            opener,
            plain,
            index: first,
            buf: BytesMut::new(),
            skip: (range.start - first * PACKAGE as u64) as usize,
            left: range.end - range.start,
        })
    };
    futures::stream::once(start)
        .map_ok(|state| {
            futures::stream::try_unfold(state, |mut st| async move {
                if st.left == 0 {
                    return Ok(None);
                }
                let need = st.opener.sealed_len(st.index, st.plain);
                while st.buf.len() < need {
                    match st.raw.try_next().await? {
                        Some(b) => st.buf.extend_from_slice(&b),
                        None => return Err::<_, StdError>("encrypted segment ends early".into()),
                    }
                }
                // Opened in place; the plaintext is served without another copy.
                let mut sealed = st.buf.split_to(need);
                let len = st.opener.open(st.index, &mut sealed)?.len();
                sealed.truncate(len);
                let from = st.skip.min(len);
                let to = (from as u64 + st.left).min(len as u64) as usize;
                let out = sealed.freeze().slice(from..to);
                st.skip = 0;
                st.left -= out.len() as u64;
                st.index += 1;
                Ok(Some((out, st)))
            })
        })
        .try_flatten()
        .boxed()
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
    current: Option<RawStream>,
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

    /// The plaintext `range` of a small object sealed with `key` and kept inline.
    pub fn sealed_inline(
        disks: &DiskSet,
        data: &[u8],
        range: Range<u64>,
        key: &DataKey,
    ) -> Result<ObjectStream, StoreError> {
        let plain = package::plain_size(data.len() as u64)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let source = Source::Bytes(Bytes::copy_from_slice(data));
        Ok(Self::from_sealed(disks, [(source, plain)], range, key))
    }

    /// The plaintext `range` of an object sealed with `key` in segments of the given
    /// plaintext sizes laid end to end over the stored bytes of `layout` (inline bytes are a
    /// one-segment layout).
    pub fn sealed_over(
        disks: &DiskSet,
        layout: Layout,
        plain_sizes: &[u64],
        range: Range<u64>,
        key: &DataKey,
    ) -> Result<ObjectStream, StoreError> {
        let layout = std::sync::Arc::new(layout);
        let mut stored = 0u64;
        let mut segments = Vec::with_capacity(plain_sizes.len());
        for &plain in plain_sizes {
            segments.push((Source::Stored(layout.clone(), stored), plain));
            stored += package::sealed_size(plain);
        }
        if stored != layout.size() {
            return Err(StoreError::Internal(format!(
                "sealed segments of {stored} bytes over {} stored bytes",
                layout.size()
            )));
        }
        Ok(Self::from_sealed(disks, segments, range, key))
    }

    /// The plaintext `range` of an object whose segments are sealed with `key`.
    pub fn sealed(
        disks: &DiskSet,
        segments: &[Segment],
        range: Range<u64>,
        key: &DataKey,
    ) -> Result<ObjectStream, StoreError> {
        let segments = segments
            .iter()
            .map(|seg| {
                let plain = package::plain_size(seg.size())
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                Ok((Source::of(seg), plain))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Self::from_sealed(disks, segments, range, key))
    }

    /// The plaintext `range` of sealed segments, given where each is stored and its plaintext
    /// size, in order: only the segments the range overlaps are read.
    fn from_sealed(
        disks: &DiskSet,
        segments: impl IntoIterator<Item = (Source, u64)>,
        range: Range<u64>,
        key: &DataKey,
    ) -> ObjectStream {
        let mut pieces = Vec::new();
        let mut offset = 0u64;
        for (source, plain) in segments {
            let (start, end) = (offset, offset + plain);
            offset = end;
            if end <= range.start || start >= range.end || start == end {
                continue;
            }
            pieces.push(Piece::Sealed {
                source,
                plain,
                range: range.start.max(start) - start..range.end.min(end) - start,
                key: key.clone(),
            });
        }
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
                        return Poll::Ready(Some(Err(e)));
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
                    inner.current = Some(Source::Erasure(desc).read(inner.disks.as_ref(), r));
                }
                Some(Piece::Sealed {
                    source,
                    plain,
                    range,
                    key,
                }) => {
                    inner.current = Some(unsealed(inner.disks.clone(), source, plain, range, key));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, None)
    }
}
