//! Binary, order-preserving encoding of RocksDB keys.
//!
//! Every variable-length component (bucket, object key, upload id) is escaped so that the
//! encoded form sorts exactly like the raw bytes and no encoded component is a prefix of
//! another: `0x00` becomes `0x00 0xFF` and each component ends with the terminator
//! `0x00 0x01`. A key that is a prefix of another therefore sorts first, and "every key that
//! starts with P" is one contiguous range starting at `escape(P)` (without terminator) and
//! ending before [`successor`] of it — which is what lets listings seek past a whole common
//! prefix instead of iterating under it.

const ESCAPE: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;

/// Appends `raw` escaped, without a terminator (the form used for "starts with" ranges).
pub fn push_escaped(out: &mut Vec<u8>, raw: &[u8]) {
    for &b in raw {
        out.push(b);
        if b == ESCAPE {
            out.push(ESCAPED_ZERO);
        }
    }
}

/// Appends one complete component: escaped bytes plus terminator.
pub fn push_component(out: &mut Vec<u8>, raw: &[u8]) {
    push_escaped(out, raw);
    out.push(ESCAPE);
    out.push(TERMINATOR);
}

/// Reads one complete component from the front of `buf`; returns it and the remaining bytes,
/// or `None` when `buf` holds no complete, well-formed component.
pub fn read_component(buf: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut raw = Vec::with_capacity(buf.len());
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        if b != ESCAPE {
            raw.push(b);
            i += 1;
            continue;
        }
        match *buf.get(i + 1)? {
            ESCAPED_ZERO => raw.push(0),
            TERMINATOR => return Some((raw, &buf[i + 2..])),
            _ => return None,
        }
        i += 2;
    }
    None
}

/// The smallest byte string greater than every string that starts with `prefix`, or `None`
/// when no such string exists (`prefix` is empty or all `0xFF`).
pub fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last != 0xFF {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

/// The smallest byte string strictly greater than `key` itself.
pub fn just_after(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.extend_from_slice(key);
    out.push(0x00);
    out
}

/// `esc(bucket)`: the prefix of everything stored for a bucket in a per-key column family.
pub fn bucket_prefix(bucket: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bucket.len() + 2);
    push_component(&mut out, bucket.as_bytes());
    out
}

/// `esc(bucket) esc(key)`: the prefix of everything stored for one object key.
pub fn object_prefix(bucket: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bucket.len() + key.len() + 4);
    push_component(&mut out, bucket.as_bytes());
    push_component(&mut out, key.as_bytes());
    out
}

/// `esc(bucket) escaped(prefix)`: where keys of `bucket` that start with `prefix` begin.
pub fn key_range_start(bucket: &str, prefix: &str) -> Vec<u8> {
    let mut out = bucket_prefix(bucket);
    push_escaped(&mut out, prefix.as_bytes());
    out
}

/// Appends a sort suffix that orders versions newest first: mtime descending, then version id
/// descending. Version ids are printable ASCII (checked on entry), so complemented bytes never
/// reach `0xFF` and `0xFF` can terminate the id: a shorter id that is a prefix of a longer one
/// is the smaller id and must sort after it.
pub fn push_newest_first(out: &mut Vec<u8>, mtime: i64, version_id: &str) {
    out.extend_from_slice(&(!order_preserving_i64(mtime)).to_be_bytes());
    out.extend(version_id.bytes().map(|b| !b));
    out.push(0xFF);
}

/// Maps an i64 to a u64 with the same order (flips the sign bit).
pub fn order_preserving_i64(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_component(&mut out, raw);
        out
    }

    #[test]
    fn encoding_preserves_order_including_prefixes_and_zero_bytes() {
        let mut raws: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"a\0",
            b"a\0\0",
            b"a\0b",
            b"a\x01",
            b"a/",
            b"ab",
            b"b",
            b"\xff",
            b"\xff\xff",
            b"\0",
        ];
        raws.sort();
        let encoded: Vec<Vec<u8>> = raws.iter().map(|r| enc(r)).collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(encoded, sorted);
        for (raw, e) in raws.iter().zip(&encoded) {
            let (back, rest) = read_component(e).unwrap();
            assert_eq!(&back, raw);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn successor_of_escaped_prefix_bounds_exactly_the_keys_under_it() {
        for prefix in [&b"a/"[..], b"a\0", b"a\xff", b"x"] {
            let mut start = Vec::new();
            push_escaped(&mut start, prefix);
            let end = successor(&start).unwrap();
            for raw in [
                &b"a"[..],
                b"a/",
                b"a/b",
                b"a0",
                b"a\0",
                b"a\0\0",
                b"a\0z",
                b"a\xff",
                b"a\xff\xff",
                b"b",
                b"x",
                b"xa",
                b"y",
            ] {
                let e = enc(raw);
                let inside = e >= start && e < end;
                assert_eq!(
                    inside,
                    raw.starts_with(prefix),
                    "prefix {prefix:?} key {raw:?}"
                );
            }
        }
    }

    #[test]
    fn newest_first_suffix_orders_by_mtime_then_version_id_descending() {
        let mut entries = vec![
            (5, "b"),
            (5, "ab"),
            (5, "a"),
            (7, "a"),
            (-3, "z"),
            (5, "null"),
        ];
        let mut keys: Vec<(Vec<u8>, (i64, &str))> = entries
            .iter()
            .map(|&(m, v)| {
                let mut k = Vec::new();
                push_newest_first(&mut k, m, v);
                (k, (m, v))
            })
            .collect();
        keys.sort();
        entries.sort_by(|a, b| b.cmp(a));
        assert_eq!(
            keys.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
            entries
        );
    }
}
