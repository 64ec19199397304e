//! Version ids: time-ordered, unique across regions, opaque to clients.
//!
//! An id is 29 characters of Crockford base32 (whose alphabet is in ASCII order, so string
//! order equals numeric order): 13 characters of the timestamp in microseconds, then 16
//! characters (80 bits) of randomness. Ids made by one process strictly increase even when the
//! clock stands still or steps back; ids made in different regions at the same microsecond
//! differ by their random bits. Upload ids use the same generator.

use std::sync::atomic::{AtomicI64, Ordering};

use rand::RngCore;

use crate::record::{Nanos, NULL_VERSION_ID};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const TIME_CHARS: usize = 13;
const RANDOM_CHARS: usize = 16;

/// Length of a generated id.
pub const VERSION_ID_LEN: usize = TIME_CHARS + RANDOM_CHARS;

/// Longest version id accepted from a caller (replicas, markers).
pub const MAX_VERSION_ID_LEN: usize = 1024;

static LAST_MICROS: AtomicI64 = AtomicI64::new(0);

/// Added to the system clock by [`now_nanos`]: zero unless a fault-injection test skews this
/// process's clock ([`set_clock_offset`]).
static CLOCK_OFFSET_NANOS: AtomicI64 = AtomicI64::new(0);

/// Skews the clock this process stamps versions with, by `nanos` (negative: behind). For
/// fault-injection tests of regions whose clocks disagree; nothing else should call it.
pub fn set_clock_offset(nanos: i64) {
    CLOCK_OFFSET_NANOS.store(nanos, Ordering::Relaxed);
}

/// The current time in nanoseconds since the Unix epoch (plus any injected clock offset).
pub fn now_nanos() -> Nanos {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_nanos() as Nanos + CLOCK_OFFSET_NANOS.load(Ordering::Relaxed)
}

/// A new version id whose timestamp is at least `at` (nanoseconds) and greater than that of
/// every id this process generated before.
pub fn new_version_id(at: Nanos) -> String {
    let wanted = at.max(0) / 1000;
    let mut last = LAST_MICROS.load(Ordering::Relaxed);
    let micros = loop {
        let next = wanted.max(last + 1);
        match LAST_MICROS.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(seen) => last = seen,
        }
    };
    let mut random = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut random);
    let mut id = String::with_capacity(VERSION_ID_LEN);
    push_base32(&mut id, micros as u128, TIME_CHARS);
    let mut r = 0u128;
    for b in random {
        r = (r << 8) | b as u128;
    }
    push_base32(&mut id, r, RANDOM_CHARS);
    id
}

/// A version id every node computes alike: timestamp `at`, and for the random part the
/// first 80 bits of SHA-256 of `seed`. The delete marker a lifecycle rule puts on a version
/// is made so, so that every node holding the version makes the same marker by itself.
pub fn derived_version_id(at: Nanos, seed: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(seed);
    let mut id = String::with_capacity(VERSION_ID_LEN);
    push_base32(&mut id, (at.max(0) / 1000) as u128, TIME_CHARS);
    let r = digest[..10]
        .iter()
        .fold(0u128, |r, b| (r << 8) | *b as u128);
    push_base32(&mut id, r, RANDOM_CHARS);
    id
}

/// A new multipart upload id: time-ordered like version ids, so uploads of one key list in
/// initiation order.
pub fn new_upload_id() -> String {
    new_version_id(now_nanos())
}

fn push_base32(out: &mut String, value: u128, chars: usize) {
    for i in (0..chars).rev() {
        let digit = (value >> (5 * i)) & 31;
        out.push(ALPHABET[digit as usize] as char);
    }
}

/// Checks a caller-supplied version id: non-empty, printable ASCII without spaces, bounded.
/// "null" is valid. The key encoding relies on the absence of control bytes.
pub fn validate(version_id: &str) -> Result<(), String> {
    if version_id.is_empty() || version_id.len() > MAX_VERSION_ID_LEN {
        return Err(format!("version id must be 1..={MAX_VERSION_ID_LEN} bytes"));
    }
    if !version_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("version id {version_id:?} must be printable ASCII"));
    }
    Ok(())
}

/// True for the version id of unversioned and suspended writes.
pub fn is_null(version_id: &str) -> bool {
    version_id == NULL_VERSION_ID
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_and_increase_even_at_the_same_instant() {
        let ids: Vec<String> = (0..10_000).map(|_| new_version_id(1_000)).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
        }
        assert!(ids
            .iter()
            .all(|id| id.len() == VERSION_ID_LEN && validate(id).is_ok()));
    }

    #[test]
    fn derived_ids_are_the_same_for_the_same_seed_and_ordered_by_time() {
        let a = derived_version_id(5_000_000, b"lifecycle\0b\0k\0v1");
        assert_eq!(a, derived_version_id(5_000_000, b"lifecycle\0b\0k\0v1"));
        assert_ne!(a, derived_version_id(5_000_000, b"lifecycle\0b\0k\0v2"));
        assert!(a < derived_version_id(6_000_000, b"lifecycle\0b\0k\0v1"));
        assert!(a.len() == VERSION_ID_LEN && validate(&a).is_ok());
    }

    #[test]
    fn id_order_follows_time_order() {
        let early = new_version_id(now_nanos());
        let late = new_version_id(now_nanos() + 3_600_000_000_000);
        assert!(early < late);
    }

    #[test]
    fn caller_ids_with_control_bytes_are_rejected() {
        assert!(validate("null").is_ok());
        assert!(validate("abc\0").is_err());
        assert!(validate("").is_err());
        assert!(validate("a b").is_err());
    }
}
