//! Benchmarks of the metadata store (`cargo bench -p meridian-metadata`), printed as figures:
//!
//! 1. durable version commits per second (synced WAL) with 1 and 32 concurrent writers —
//!    concurrent writers share WAL syncs (group commit), so 32 must be far faster than 1;
//! 2. the time to list one 1,000-key page, with and without a delimiter, in a bucket holding
//!    1,000,000 keys (`dirNNNN/objNNNN`: 1,000 common prefixes of 1,000 keys each).
//!
//! Environment: `MERIDIAN_BENCH_SECS` (per commit run, default 5), `MERIDIAN_BENCH_KEYS`
//! (default 1,000,000), `MERIDIAN_BENCH_DIR` (where the databases go; default the system
//! temporary directory — put it on the disk you want measured).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_metadata::{
    BucketRecord, ListObjectsQuery, ListVersionsQuery, MetaOptions, MetaStore, NewVersion,
    ObjectHeaders, Storage, VersioningState,
};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var("MERIDIAN_BENCH_DIR") {
        Ok(dir) => tempfile::tempdir_in(dir).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    }
}

fn open(path: &Path, sync_writes: bool) -> MetaStore {
    let store = MetaStore::open(path, MetaOptions { sync_writes }).unwrap();
    let bucket = BucketRecord {
        name: "bench".into(),
        created: 0,
        owner: "bench".into(),
        region: "local".into(),
        versioning: VersioningState::Enabled,
        object_lock: false,
    };
    let _ = store.create_bucket(bucket);
    store
}

/// A version as the gateway would commit it for an erasure-coded object.
fn version() -> NewVersion {
    NewVersion {
        size: 1 << 20,
        etag: "9e107d9d372bb6826bd81d3542a419d6".into(),
        content_sha256: Some(vec![7; 32]),
        headers: ObjectHeaders {
            content_type: Some("application/octet-stream".into()),
            ..Default::default()
        },
        storage: Storage::Layout(vec![0xAB; 160]),
        ..NewVersion::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `writers` threads commit versions of distinct keys for `secs` seconds.
fn commits(writers: usize, sync_writes: bool, secs: f64) {
    let dir = bench_dir();
    let store = open(dir.path(), sync_writes);
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (store, stop, total) = (store.clone(), stop.clone(), total.clone());
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    store
                        .put_version("bench", &format!("w{w:02}/obj{i:08}"), version())
                        .unwrap();
                    latencies.push(t.elapsed());
                    total.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let n = total.load(Ordering::Relaxed);
    // Every commit also wrote its outbox entry in the same batch.
    assert_eq!(store.outbox_read(0, usize::MAX).unwrap().len() as u64, n);
    println!(
        "commit  {:>8} {writers:>2} writers: {:>8.0} commits/s   latency p50 {:>6.2} ms  p99 {:>6.2} ms  ({n} commits in {elapsed:.1} s)",
        if sync_writes { "durable" } else { "unsynced" },
        n as f64 / elapsed,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
    );
}

/// Fills `keys` keys with unsynced commits (two threads), the way a bulk import would.
fn fill(store: &MetaStore, keys: usize) {
    let dirs = keys.div_ceil(1000);
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for d in (t..dirs).step_by(2) {
                    for f in 0..1000 {
                        if d * 1000 + f < keys {
                            store
                                .put_version("bench", &format!("dir{d:04}/obj{f:04}"), version())
                                .unwrap();
                        }
                    }
                    if t == 0 && d % 100 == 0 {
                        eprintln!(
                            "  filled {} keys ({:.0} s)",
                            d * 1000,
                            start.elapsed().as_secs_f64()
                        );
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    eprintln!(
        "  filled {keys} keys in {:.0} s",
        start.elapsed().as_secs_f64()
    );
}

fn time_page(label: &str, mut list: impl FnMut() -> usize) {
    for _ in 0..5 {
        list();
    }
    let mut times = Vec::new();
    let mut entries = 0;
    for _ in 0..50 {
        let t = Instant::now();
        entries = list();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "list    {label:<46} {entries:>5} entries: p50 {:>6.2} ms  p99 {:>6.2} ms  min {:>6.2} ms",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times[0]),
    );
}

fn listing(keys: usize) {
    let dir = bench_dir();
    let store = open(dir.path(), false);
    fill(&store, keys);
    let objects = |prefix: &str, delimiter: Option<&str>, start_after: Option<&str>| {
        let q = ListObjectsQuery {
            prefix: prefix.into(),
            delimiter: delimiter.map(Into::into),
            start_after: start_after.map(Into::into),
            max_keys: 1000,
        };
        let store = store.clone();
        move || {
            let page = store.list_objects("bench", &q).unwrap();
            page.objects.len() + page.common_prefixes.len()
        }
    };
    time_page(
        "objects, no delimiter, from the start",
        objects("", None, None),
    );
    time_page(
        "objects, no delimiter, from the middle",
        objects("", None, Some("dir0500/obj0500")),
    );
    time_page(
        "objects, delimiter '/', 1,000 common prefixes",
        objects("", Some("/"), None),
    );
    time_page(
        "objects, delimiter '/', prefix 'dir0500/'",
        objects("dir0500/", Some("/"), None),
    );
    let versions = {
        let store = store.clone();
        move || {
            let q = ListVersionsQuery {
                key_marker: Some("dir0500/obj0500".into()),
                max_keys: 1000,
                ..Default::default()
            };
            store.list_versions("bench", &q).unwrap().versions.len()
        }
    };
    time_page("versions, no delimiter, from the middle", versions);
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects "commits" or "listing".
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let secs: f64 = env_or("MERIDIAN_BENCH_SECS", 5.0);
    let keys: usize = env_or("MERIDIAN_BENCH_KEYS", 1_000_000);
    if "commits".contains(filter.as_str()) {
        commits(1, true, secs);
        commits(32, true, secs);
        commits(32, false, secs);
    }
    if "listing".contains(filter.as_str()) {
        listing(keys);
    }
}
