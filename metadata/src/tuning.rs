//! RocksDB options for this workload, all in one place: small records, point lookups by
//! version id, short range scans for listings, many small synced writes from concurrent
//! writers (group-committed by RocksDB's write thread).

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Options};

use crate::schema;

/// Shared LRU block cache for all column families.
pub const BLOCK_CACHE_BYTES: usize = 256 << 20;
/// Memtable size per column family.
const WRITE_BUFFER_BYTES: usize = 32 << 20;
/// Bound on WAL size: forces flushes of rarely written column families so old WAL files go.
const MAX_TOTAL_WAL_BYTES: u64 = 256 << 20;

/// Options for the database as a whole.
pub fn db_options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_max_background_jobs(2);
    o.set_bytes_per_sync(1 << 20);
    o.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
    o.set_keep_log_file_num(4);
    o
}

/// One descriptor per column family, sharing `cache`.
pub fn column_families(cache: &Cache) -> Vec<ColumnFamilyDescriptor> {
    schema::ALL
        .iter()
        .map(|&name| ColumnFamilyDescriptor::new(name, cf_options(name, cache)))
        .collect()
}

fn cf_options(name: &str, cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_block_size(16 << 10);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_format_version(5);
    if schema::POINT_LOOKUP.contains(&name) {
        // Whole-key bloom filters: a miss (a version id that does not exist, a put of a new
        // key checking for a null version) costs no data-block read.
        table.set_bloom_filter(10.0, false);
    }
    let mut o = Options::default();
    o.set_block_based_table_factory(&table);
    o.set_write_buffer_size(WRITE_BUFFER_BYTES);
    o.set_level_compaction_dynamic_level_bytes(true);
    o.set_compression_type(DBCompressionType::Lz4);
    o.set_bottommost_compression_type(DBCompressionType::Zstd);
    o
}
