//! Object contents without per-request allocation.
//!
//! One pseudo-random buffer is generated per run (deterministically, from a fixed seed and the
//! object size), and every object's bytes are a window onto it: byte `i` of key `K` is
//! `pattern[(offset(K) + i) % period]`, where `offset(K)` is a hash of the key. A request body
//! is therefore a sequence of zero-copy `Bytes` slices of the buffer, of any length (multi-GB
//! objects are streamed), and a GET body can be verified chunk by chunk against the same
//! window without remembering what was written. Two processes given the same size produce the
//! same content, so `--verify` works across runs.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Largest frame a body yields; also how far the buffer extends past `period`, so that any
/// frame starting inside the period is one contiguous slice.
const MAX_FRAME: usize = 1 << 20;
/// The period is at least this, so small objects of different keys rarely overlap...
const MIN_PERIOD: u64 = 1 << 20;
/// ...and at most this, so a multi-GB object needs no multi-GB buffer.
const MAX_PERIOD: u64 = 64 << 20;
/// Added to the period so that it is never a multiple of a power-of-two part size: parts of
/// one large object then start at different places of the pattern.
const PERIOD_SKEW: u64 = 4099;
const SEED: u64 = 0x6d65_7269_6469_616e; // "meridian"

/// The shared content source of one run.
#[derive(Clone)]
pub struct Payload {
    /// `period + MAX_FRAME` bytes; `buf[period + j] == buf[j]`.
    buf: Bytes,
    period: usize,
}

/// Where verification found a difference.
#[derive(Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Offset in the object of the first chunk that differed.
    pub offset: u64,
}

impl Payload {
    /// The content source for objects of `object_size` bytes.
    pub fn for_object_size(object_size: u64) -> Payload {
        let period = (object_size.clamp(MIN_PERIOD, MAX_PERIOD) + PERIOD_SKEW) as usize;
        let mut buf = vec![0u8; period + MAX_FRAME];
        fill_pseudo_random(&mut buf[..period], SEED ^ object_size);
        buf.copy_within(..MAX_FRAME, period);
        Payload {
            buf: Bytes::from(buf),
            period,
        }
    }

    /// Where in the pattern byte 0 of `key` is.
    fn offset(&self, key: &str) -> usize {
        (fnv1a(key.as_bytes()) % self.period as u64) as usize
    }

    fn position(&self, key: &str, start: u64) -> usize {
        ((self.offset(key) as u64 + start % self.period as u64) % self.period as u64) as usize
    }

    /// A request body carrying bytes `start..start + len` of `key`'s content.
    pub fn body(&self, key: &str, start: u64, len: u64) -> PayloadBody {
        PayloadBody {
            source: self.buf.clone(),
            period: self.period,
            next: self.position(key, start),
            remaining: len,
        }
    }

    /// A checker for a response carrying `key`'s content from byte `start` on.
    pub fn checker(&self, key: &str, start: u64) -> ContentCheck {
        ContentCheck {
            source: self.buf.clone(),
            period: self.period,
            next: self.position(key, start),
            offset: start,
        }
    }

    /// `key`'s full content as one owned buffer; for tests and small objects only.
    pub fn content(&self, key: &str, len: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len as usize);
        let mut body = self.body(key, 0, len);
        while let Some(chunk) = body.next_slice() {
            out.extend_from_slice(&chunk);
        }
        out
    }
}

/// SplitMix64: fast, and fixed forever, so content is stable across versions of this crate.
fn fill_pseudo_random(buf: &mut [u8], seed: u64) {
    let mut state = seed;
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b = (state >> (8 * i)) as u8;
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A streamed request body: a run of zero-copy slices of the payload buffer, or one plain
/// `Bytes` (XML documents), with an exact size hint so hyper sends `Content-Length`.
pub struct PayloadBody {
    source: Bytes,
    period: usize,
    next: usize,
    remaining: u64,
}

impl PayloadBody {
    /// A body of exactly these bytes.
    pub fn from_bytes(bytes: Bytes) -> PayloadBody {
        let len = bytes.len();
        PayloadBody {
            source: bytes,
            period: len.max(1),
            next: 0,
            remaining: len as u64,
        }
    }

    /// A body of no bytes.
    pub fn empty() -> PayloadBody {
        PayloadBody::from_bytes(Bytes::new())
    }

    /// Bytes still to be sent.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    /// Whether the body has nothing (left) to send.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    fn next_slice(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let n = (self.remaining.min(MAX_FRAME as u64) as usize).min(self.source.len() - self.next);
        let slice = self.source.slice(self.next..self.next + n);
        self.next = (self.next + n) % self.period;
        self.remaining -= n as u64;
        Some(slice)
    }
}

impl Body for PayloadBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.next_slice().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Compares a streamed response body with the expected content, chunk by chunk.
pub struct ContentCheck {
    source: Bytes,
    period: usize,
    next: usize,
    /// Object offset of the next byte to check.
    offset: u64,
}

impl ContentCheck {
    /// Checks the next `chunk` of the body; on the first difference reports where it is.
    pub fn check(&mut self, mut chunk: &[u8]) -> Result<(), Mismatch> {
        while !chunk.is_empty() {
            let n = chunk.len().min(self.source.len() - self.next);
            if chunk[..n] != self.source[self.next..self.next + n] {
                return Err(Mismatch {
                    offset: self.offset,
                });
            }
            self.next = (self.next + n) % self.period;
            self.offset += n as u64;
            chunk = &chunk[n..];
        }
        Ok(())
    }

    /// Bytes checked so far plus the starting offset.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(mut body: PayloadBody) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut frames = 0;
        while let Some(slice) = body.next_slice() {
            assert!(slice.len() <= MAX_FRAME);
            out.extend_from_slice(&slice);
            frames += 1;
        }
        (out, frames)
    }

    #[test]
    fn the_same_size_and_key_give_the_same_content_in_every_run() {
        let a = Payload::for_object_size(64 << 10).content("bench/obj-00000001", 64 << 10);
        let b = Payload::for_object_size(64 << 10).content("bench/obj-00000001", 64 << 10);
        assert_eq!(a, b);
        assert_eq!(a.len(), 64 << 10);
    }

    #[test]
    fn different_keys_get_different_content() {
        let p = Payload::for_object_size(4096);
        assert_ne!(p.content("k1", 4096), p.content("k2", 4096));
    }

    #[test]
    fn a_small_object_is_one_zero_copy_frame() {
        let p = Payload::for_object_size(64 << 10);
        let (bytes, frames) = collect(p.body("key", 0, 64 << 10));
        assert_eq!(frames, 1);
        assert_eq!(bytes.len(), 64 << 10);
    }

    #[test]
    fn a_body_larger_than_the_period_wraps_around_the_pattern() {
        let p = Payload::for_object_size(1 << 20);
        let len = 3 * p.period as u64 + 12345;
        let (bytes, _) = collect(p.body("key", 0, len));
        assert_eq!(bytes.len() as u64, len);
        let period = p.period;
        assert_eq!(bytes[..1000], bytes[period..period + 1000]);
        let mut check = p.checker("key", 0);
        assert_eq!(check.check(&bytes), Ok(()));
        assert_eq!(check.offset(), len);
    }

    #[test]
    fn a_body_from_an_offset_is_that_part_of_the_object() {
        let p = Payload::for_object_size(5 << 20);
        let whole = p.content("big", 5 << 20);
        let (part, _) = collect(p.body("big", 3 << 20, 1 << 20));
        assert_eq!(part, whole[3 << 20..4 << 20]);
    }

    #[test]
    fn verification_accepts_the_written_content_in_any_chunking() {
        let p = Payload::for_object_size(3 << 20);
        let whole = p.content("obj", 3 << 20);
        for chunk_size in [1, 7, 4096, 65536, 1 << 20, 3 << 20] {
            let mut check = p.checker("obj", 0);
            for chunk in whole.chunks(chunk_size).take(64) {
                assert_eq!(check.check(chunk), Ok(()), "chunk size {chunk_size}");
            }
        }
        let mut ranged = p.checker("obj", 1 << 20);
        assert_eq!(ranged.check(&whole[1 << 20..2 << 20]), Ok(()));
    }

    #[test]
    fn verification_reports_the_chunk_where_content_differs() {
        let p = Payload::for_object_size(256 << 10);
        let mut corrupted = p.content("obj", 256 << 10);
        corrupted[200_000] ^= 0x01;
        let mut check = p.checker("obj", 0);
        let mut result = Ok(());
        for chunk in corrupted.chunks(65536) {
            result = check.check(chunk);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(Mismatch { offset: 196_608 }));
    }

    #[test]
    fn another_keys_content_does_not_verify() {
        let p = Payload::for_object_size(4096);
        let other = p.content("other", 4096);
        assert!(p.checker("obj", 0).check(&other).is_err());
    }

    #[test]
    fn size_hint_is_exact_so_requests_carry_content_length() {
        let p = Payload::for_object_size(4096);
        let body = p.body("k", 0, 4096);
        assert_eq!(body.size_hint().exact(), Some(4096));
        assert_eq!(
            PayloadBody::from_bytes(Bytes::from_static(b"<x/>"))
                .size_hint()
                .exact(),
            Some(4)
        );
        assert!(PayloadBody::empty().is_end_stream());
    }
}
