//! The header of a shard file as read back from a disk (damaged, truncated, foreign):
//! decoding must answer Ok or a reason, never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = meridian_erasure::fuzzing::shard_header(data);
});
