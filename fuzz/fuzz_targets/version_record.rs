//! A version record as every read path decodes it from RocksDB: Ok or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = meridian_metadata::fuzzing::version_record(data);
});
