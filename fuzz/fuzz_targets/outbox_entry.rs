//! An outbox entry as the replicator reads it back from RocksDB: decoding must answer Ok or an
//! error, never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = meridian_metadata::fuzzing::outbox_entry(data);
});
