//! Recycled stripe and block buffers.
//!
//! Every stripe written or read needs a megabyte or so of buffers. Allocating them fresh costs
//! zeroing and page faults on each stripe; recycling keeps them warm. Buffers are kept by size
//! class (four classes per power of two, so a buffer is at most a quarter larger than asked
//! for) rather than by exact length, so the odd lengths of tail stripes share classes with
//! full ones. The pool is global and bounded (a few buffers per class, a cap on total bytes);
//! when it is full, a returned buffer displaces buffers of other classes, so the sizes in use
//! now stay pooled. Recycled buffers hold old bytes: callers overwrite every byte they use.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;

/// Buffers kept per size class.
const PER_CLASS: usize = 16;
/// Bytes kept in total.
const MAX_POOLED_BYTES: usize = 64 * 1024 * 1024;
/// Smaller buffers are not worth pooling: they are allocated and freed as they are.
const MIN_POOLED: usize = 4096;

/// The capacity a buffer of `len` bytes is allocated with: `len` rounded up to a quarter of
/// its power of two.
fn class(len: usize) -> usize {
    if len < MIN_POOLED {
        return len;
    }
    let power = 1usize << (usize::BITS - 1 - len.leading_zeros());
    let step = power / 4;
    len.div_ceil(step) * step
}

#[derive(Default)]
struct Pool {
    free: HashMap<usize, Vec<Vec<u8>>>,
    bytes: usize,
}

impl Pool {
    /// A pooled buffer of capacity `class`, if one is free.
    fn pop(&mut self, class: usize) -> Option<Vec<u8>> {
        let buf = self.free.get_mut(&class).and_then(Vec::pop)?;
        self.bytes -= class;
        Some(buf)
    }

    /// Keeps `buf` (at full length, its capacity a class) if there is room for it, making
    /// room by freeing buffers of other classes.
    fn push(&mut self, buf: Vec<u8>) {
        let class = buf.capacity();
        if self.free.get(&class).is_some_and(|l| l.len() >= PER_CLASS) {
            return;
        }
        while self.bytes + class > MAX_POOLED_BYTES {
            let Some(victim) = self
                .free
                .iter_mut()
                .find(|(c, l)| **c != class && !l.is_empty())
                .map(|(c, l)| (*c, l.pop()))
            else {
                return;
            };
            self.bytes -= victim.0;
        }
        self.free.entry(class).or_default().push(buf);
        self.bytes += class;
    }
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(Default::default)
}

fn lock() -> std::sync::MutexGuard<'static, Pool> {
    // A panic while holding the lock leaves the pool consistent (each step is one move).
    pool().lock().unwrap_or_else(|e| e.into_inner())
}

/// A buffer of exactly `len` bytes with unspecified contents (zeros when freshly allocated).
pub(crate) fn take(len: usize) -> Vec<u8> {
    let class = class(len);
    let mut buf = lock().pop(class).unwrap_or_else(|| vec![0u8; class]);
    buf.truncate(len);
    buf
}

/// An empty buffer with room for `capacity` bytes, for filling with `extend_from_slice`
/// (a fresh one is not zeroed first: every byte will be written).
pub(crate) fn take_empty(capacity: usize) -> Vec<u8> {
    let class = class(capacity);
    let mut buf = lock()
        .pop(class)
        .unwrap_or_else(|| Vec::with_capacity(class));
    buf.clear();
    buf
}

/// Returns a buffer for reuse (or frees it when it is not of a pooled class or the pool is
/// full of buffers of its class).
pub(crate) fn give(mut buf: Vec<u8>) {
    let capacity = buf.capacity();
    if capacity < MIN_POOLED || class(capacity) != capacity {
        return;
    }
    // Pooled buffers are kept at full length; only the unused tail is written.
    buf.resize(capacity, 0);
    lock().push(buf);
}

/// Freezes a pooled buffer into `Bytes` that return it to the pool when the last clone drops.
pub(crate) fn into_bytes(buf: Vec<u8>) -> Bytes {
    Bytes::from_owner(Recycled(buf))
}

struct Recycled(Vec<u8>);

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_with_their_length() {
        let len = 12_345;
        let mut buf = take(len);
        assert_eq!(buf.len(), len);
        buf[0] = 7;
        let bytes = into_bytes(buf);
        let slice = bytes.slice(1..10);
        drop(bytes);
        drop(slice);
        let again = take(len);
        assert_eq!(again.len(), len);
        let empty = take_empty(len);
        assert!(empty.is_empty() && empty.capacity() >= len);
    }

    #[test]
    fn classes_are_at_most_a_quarter_larger() {
        assert_eq!(class(100), 100, "small buffers are exact");
        assert_eq!(class(4096), 4096);
        assert_eq!(class(4097), 5120);
        assert_eq!(class(1 << 20), 1 << 20);
        assert_eq!(class((1 << 20) + 1), (1 << 20) + (1 << 18));
        assert_eq!(class(1_500_000), 1_572_864);
        for len in [5000, 65_537, 262_143, 1_000_001, 5 << 20] {
            let c = class(len);
            assert!(c >= len && c <= len + len / 4 + 1, "{len} -> {c}");
            assert_eq!(class(c), c, "a class is its own class");
        }
    }

    #[test]
    fn odd_lengths_share_a_class_and_do_not_crowd_out_the_sizes_in_use() {
        let mut pool = Pool::default();
        // Tail stripes of many odd lengths, as many objects of odd sizes leave behind.
        for len in (0..2_000).map(|i| 300_000 + i * 97) {
            let c = class(len);
            pool.push(vec![0; c]);
        }
        assert!(pool.free.len() < 10, "{} classes", pool.free.len());
        assert!(pool.bytes <= MAX_POOLED_BYTES);
        // A full-stripe block returned now is kept, displacing others if need be.
        let full = class(1 << 20);
        let block = vec![0; full];
        let ptr = block.as_ptr();
        pool.push(block);
        assert_eq!(pool.pop(full).map(|b| b.as_ptr()), Some(ptr));
        assert!(pool.bytes <= MAX_POOLED_BYTES);
    }
}
