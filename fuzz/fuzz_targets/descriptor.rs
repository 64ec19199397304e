//! An object descriptor (the layout blob in a version record) as read back from RocksDB:
//! decoding must answer Ok or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = meridian_erasure::fuzzing::descriptor(data);
});
