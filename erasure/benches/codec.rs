//! Encode and reconstruct throughput of one 1 MiB stripe, as the writer and a degraded reader
//! do it: Reed-Solomon parity plus CRC-32C of every block on encode; CRC-32C of the surviving
//! blocks plus rebuilding `m` lost data blocks on reconstruct. Throughput is object bytes.
//! Also: CRC-32C of one 256 KiB block, `crc-fast` (used) against the `crc32c` crate.
//!
//! `cargo bench -p meridian-erasure`

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use reed_solomon_erasure::galois_8::ReedSolomon;

const STRIPE: usize = 1024 * 1024;

/// The block checksum the crate uses (CRC-32C through `crc-fast`).
fn crc(block: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, block) as u32
}

fn stripe_blocks(k: usize, m: usize) -> Vec<Vec<u8>> {
    let block = STRIPE.div_ceil(k);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..k + m)
        .map(|i| {
            (0..block)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    if i < k {
                        state as u8
                    } else {
                        0
                    }
                })
                .collect()
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_stripe");
    group.throughput(Throughput::Bytes(STRIPE as u64));
    for (k, m) in [(4, 2), (8, 4)] {
        let rs = ReedSolomon::new(k, m).unwrap();
        let mut blocks = stripe_blocks(k, m);
        group.bench_function(
            BenchmarkId::new("parity_and_crc32c", format!("{k}+{m}")),
            |b| {
                b.iter(|| {
                    rs.encode(&mut blocks).unwrap();
                    blocks
                        .iter()
                        .map(|blk| crc32c::crc32c(blk))
                        .fold(0u32, |a, c| a ^ c)
                })
            },
        );
        group.bench_function(BenchmarkId::new("parity_only", format!("{k}+{m}")), |b| {
            b.iter(|| rs.encode(&mut blocks).unwrap())
        });
    }
    group.finish();
}

fn reconstruct(c: &mut Criterion) {
    let mut group = c.benchmark_group("reconstruct_stripe");
    group.throughput(Throughput::Bytes(STRIPE as u64));
    for (k, m) in [(4, 2), (8, 4)] {
        let rs = ReedSolomon::new(k, m).unwrap();
        let mut full = stripe_blocks(k, m);
        rs.encode(&mut full).unwrap();
        group.bench_function(
            BenchmarkId::new(format!("{m}_data_blocks_lost"), format!("{k}+{m}")),
            |b| {
                // Survivors are prepared outside the measurement; a reader has them in memory too.
                let survivors = || {
                    let mut shards: Vec<Option<Vec<u8>>> = full.iter().cloned().map(Some).collect();
                    for lost in shards.iter_mut().take(m) {
                        *lost = None;
                    }
                    shards
                };
                b.iter_batched(
                    survivors,
                    |mut shards| {
                        let crc = shards
                            .iter()
                            .flatten()
                            .map(|blk| crc32c::crc32c(blk))
                            .fold(0u32, |a, c| a ^ c);
                        rs.reconstruct_data(&mut shards).unwrap();
                        (crc, shards)
                    },
                    BatchSize::LargeInput,
                )
            },
        );
    }
    group.finish();
}

fn checksum(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32c_block");
    let block = stripe_blocks(1, 0).remove(0)[..256 * 1024].to_vec();
    group.throughput(Throughput::Bytes(block.len() as u64));
    group.bench_function("crc32c_crate", |b| b.iter(|| crc32c::crc32c(&block)));
    group.bench_function("crc_fast", |b| b.iter(|| crc(&block)));
    group.finish();
}

criterion_group!(benches, encode, reconstruct, checksum);
criterion_main!(benches);
