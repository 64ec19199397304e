//! Recycled stripe and block buffers.
//!
//! Every stripe written or read needs a megabyte or so of buffers. Allocating them fresh costs
//! zeroing and page faults on each stripe; recycling keeps them warm. The pool is global and
//! bounded (a few buffers per length, a cap on total bytes), so it never holds more than a
//! few tens of MiB. Recycled buffers hold old bytes: callers overwrite every byte they use.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;

/// Buffers kept per length.
const PER_LENGTH: usize = 16;
/// Bytes kept in total.
const MAX_POOLED_BYTES: usize = 64 * 1024 * 1024;

#[derive(Default)]
struct Pool {
    free: HashMap<usize, Vec<Vec<u8>>>,
    bytes: usize,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(Default::default)
}

/// A buffer of exactly `len` bytes with unspecified contents (zeros when freshly allocated).
pub(crate) fn take(len: usize) -> Vec<u8> {
    let recycled = {
        let mut pool = pool().lock().expect("buffer pool poisoned");
        let buf = pool.free.get_mut(&len).and_then(Vec::pop);
        if buf.is_some() {
            pool.bytes -= len;
        }
        buf
    };
    recycled.unwrap_or_else(|| vec![0u8; len])
}

/// An empty buffer with room for `capacity` bytes, for filling with `extend_from_slice`
/// (a fresh one is not zeroed first: every byte will be written).
pub(crate) fn take_empty(capacity: usize) -> Vec<u8> {
    let recycled = {
        let mut pool = pool().lock().expect("buffer pool poisoned");
        let buf = pool.free.get_mut(&capacity).and_then(Vec::pop);
        if buf.is_some() {
            pool.bytes -= capacity;
        }
        buf
    };
    let mut buf = recycled.unwrap_or_else(|| Vec::with_capacity(capacity));
    buf.clear();
    buf
}

/// Returns a buffer for reuse (or frees it when the pool is full).
pub(crate) fn give(mut buf: Vec<u8>) {
    let len = buf.capacity();
    if len == 0 {
        return;
    }
    // Pooled buffers are kept at full length; a partly used one is padded (rarely needed:
    // stripes fill their buffers).
    if buf.len() != len {
        buf.resize(len, 0);
    }
    let mut pool = pool().lock().expect("buffer pool poisoned");
    if pool.bytes + len > MAX_POOLED_BYTES {
        return;
    }
    let list = pool.free.entry(len).or_default();
    if list.len() < PER_LENGTH {
        list.push(buf);
        pool.bytes += len;
    }
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
}
