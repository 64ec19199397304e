//! The request headers a GET/HEAD/copy answers by: `Range`, `x-amz-copy-source-range`,
//! `If-Match`/`If-None-Match` and the
//! HTTP dates of `If-(Un)Modified-Since`, parsed as the server parses them. A range that is
//! accepted for an object of some size lies inside it and is not empty (the first run found
//! s3s accepting `bytes=-500` on an empty object as `0..0`, which made the server compute
//! `end - 1` on 0; `byte_range` now refuses it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3s::dto::{ETagCondition, Range, Timestamp, TimestampFormat};

fuzz_target!(|data: &[u8]| {
    let Some((&size_byte, rest)) = data.split_first() else {
        return;
    };
    // Object sizes around the edges that matter: empty, tiny, and the u64 limit.
    let size = match size_byte {
        0 => 0,
        1 => u64::MAX,
        n => u64::from(n) * 97,
    };
    let text = String::from_utf8_lossy(rest);
    let mut fields = text.split('\n');
    if let Some(range) = fields.next() {
        if let Ok(r) = Range::parse(range) {
            if let Some(span) = meridian_documents::headers::byte_range(&r, size) {
                assert!(span.start < span.end, "{range:?} on {size} gave {span:?}");
                assert!(span.end <= size, "{range:?} on {size} gave {span:?}");
            }
        }
    }
    if let Some(copy) = fields.next() {
        if let Ok(span) = meridian_documents::headers::copy_source_range(copy, size) {
            assert!(span.start < span.end && span.end <= size, "{copy:?} on {size}: {span:?}");
        }
    }
    for field in fields.by_ref().take(2) {
        let _ = ETagCondition::parse_http_header(field.as_bytes());
    }
    for field in fields.take(2) {
        let _ = Timestamp::parse(TimestampFormat::HttpDate, field);
    }
});
