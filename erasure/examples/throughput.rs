//! Writes then reads one large object through `ObjectWriter`/`ObjectReader` on temporary
//! directories, next to plain buffered writes and reads of the same bytes to the same
//! directories, and prints the ratios.
//!
//! ```text
//! cargo run --release -p meridian-erasure --example throughput -- [--size-mib 1024] [--k 4] [--m 2]
//!     [--chunk-kib 1024] [--fsync] [--cold] [--reps 3] [--dir /path]
//! ```
//!
//! Baselines, each single-threaded std I/O with a 1 MiB `BufWriter`/buffer:
//! - "same disk bytes": the `size * (k+m)/k` bytes the erasure layer puts on disk, as one file
//!   per directory (writes); reading back the `size` bytes of the k files holding data (reads).
//! - "one file": the object as a single file in the first directory.
//!
//! Conditions are identical for both sides: `--fsync` makes both fsync their files before the
//! write is timed as done; otherwise both stop at the page cache. Reads come from the page cache
//! unless `--cold`, which first evicts the files of both sides with `posix_fadvise(DONTNEED)`
//! (after an fsync, so the pages are clean). Rates are medians over `--reps` runs; ratios are
//! computed within each run (both sides back to back) and the median is printed.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use meridian_erasure::{DiskSet, DiskSetConfig, Durability, ObjectDescriptor};

struct Options {
    size: usize,
    k: usize,
    m: usize,
    chunk: usize,
    fsync: bool,
    cold: bool,
    reps: usize,
    dir: Option<PathBuf>,
}

fn options() -> Options {
    let mut o = Options {
        size: 1024 << 20,
        k: 4,
        m: 2,
        chunk: 1 << 20,
        fsync: false,
        cold: false,
        reps: 3,
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("option needs a value");
        match arg.as_str() {
            "--size-mib" => o.size = value().parse::<usize>().unwrap() << 20,
            "--k" => o.k = value().parse().unwrap(),
            "--m" => o.m = value().parse().unwrap(),
            "--chunk-kib" => o.chunk = value().parse::<usize>().unwrap() << 10,
            "--reps" => o.reps = value().parse().unwrap(),
            "--dir" => o.dir = Some(PathBuf::from(value())),
            "--fsync" => o.fsync = true,
            "--cold" => o.cold = true,
            other => panic!("unknown option {other}"),
        }
    }
    o
}

fn main() {
    let o = options();
    let base = tempfile::tempdir_in(o.dir.clone().unwrap_or_else(std::env::temp_dir)).unwrap();
    let disks: Vec<PathBuf> = (0..o.k + o.m)
        .map(|i| base.path().join(format!("disk{i}")))
        .collect();
    // A 64 MiB pool of random bytes, handed out as zero-copy slices.
    let pool = Bytes::from(
        (0..64u64 << 20)
            .map(|i| (i.wrapping_mul(0x9E37_79B9) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config = DiskSetConfig::new(disks.clone(), o.k, o.m);
    config.durability = if o.fsync {
        Durability::Fsync
    } else {
        Durability::NoSync
    };
    let set = runtime.block_on(DiskSet::open(config)).unwrap();

    println!(
        "object {} MiB, {}+{}, chunks of {} KiB, {}, {} reads, {} reps, dirs under {}",
        o.size >> 20,
        o.k,
        o.m,
        o.chunk >> 10,
        if o.fsync {
            "fsync"
        } else {
            "no fsync (page cache)"
        },
        if o.cold {
            "cold (evicted)"
        } else {
            "page-cache"
        },
        o.reps,
        base.path().display()
    );
    let mut results: Vec<[Duration; 6]> = Vec::new();
    for _ in 0..o.reps {
        let (ew, desc) = runtime.block_on(erasure_write(&set, &pool, o.size, o.chunk));
        if o.cold {
            evict_all(&disks);
        }
        let er = runtime.block_on(erasure_read(&set, &desc));
        runtime.block_on(set.delete(desc.data_id)).unwrap();

        let share = (o.size as u64 * (o.k + o.m) as u64 / o.k as u64) as usize / (o.k + o.m);
        let files: Vec<PathBuf> = disks.iter().map(|d| d.join("plain.bin")).collect();
        let pw = plain_write(&files, share, &pool, o.fsync);
        if o.cold {
            evict_all(&disks);
        }
        let pr = plain_read(&files[..o.k]);
        let one = [disks[0].join("one.bin")];
        let ow = plain_write(&one, o.size, &pool, o.fsync);
        if o.cold {
            evict_all(&disks);
        }
        let or = plain_read(&one);
        for f in files.iter().chain(&one) {
            fs::remove_file(f).unwrap();
        }
        results.push([ew, er, pw, pr, ow, or]);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rate = |i: usize| {
        median(
            results
                .iter()
                .map(|r| o.size as f64 / r[i].as_secs_f64() / 1e9)
                .collect(),
        )
    };
    // Ratios are taken within each rep (both sides ran back to back under the same load),
    // then the median over reps.
    let ratio = |plain: usize, erasure: usize| {
        median(
            results
                .iter()
                .map(|r| r[plain].as_secs_f64() / r[erasure].as_secs_f64())
                .collect(),
        )
    };
    println!("                       write GB/s   read GB/s   (object bytes per second, medians)");
    println!(
        "erasure writer/reader  {:>10.2}  {:>10.2}",
        rate(0),
        rate(1)
    );
    println!(
        "plain, same disk bytes {:>10.2}  {:>10.2}",
        rate(2),
        rate(3)
    );
    println!(
        "plain, one file        {:>10.2}  {:>10.2}",
        rate(4),
        rate(5)
    );
    println!(
        "ratio vs same disk bytes: write {:.2}, read {:.2}",
        ratio(2, 0),
        ratio(3, 1)
    );
    println!(
        "ratio vs one file:        write {:.2}, read {:.2}",
        ratio(4, 0),
        ratio(5, 1)
    );
}

fn chunks(pool: &Bytes, size: usize, chunk: usize) -> impl Iterator<Item = Bytes> + '_ {
    (0..size).step_by(chunk).map(move |at| {
        let len = chunk.min(size - at);
        let start = at % (pool.len() - chunk);
        pool.slice(start..start + len)
    })
}

async fn erasure_write(
    set: &DiskSet,
    pool: &Bytes,
    size: usize,
    chunk: usize,
) -> (Duration, ObjectDescriptor) {
    let started = Instant::now();
    let mut writer = set.writer(b"bench/object".to_vec());
    for piece in chunks(pool, size, chunk) {
        writer.write(piece).await.unwrap();
    }
    let outcome = writer.finish().await.unwrap();
    (started.elapsed(), outcome.descriptor)
}

async fn erasure_read(set: &DiskSet, desc: &ObjectDescriptor) -> Duration {
    let started = Instant::now();
    let mut reader = set.reader(desc, 0..desc.size);
    let mut total = 0u64;
    while let Some(chunk) = reader.next().await {
        total += chunk.unwrap().len() as u64;
    }
    assert_eq!(total, desc.size);
    started.elapsed()
}

fn plain_write(files: &[PathBuf], each: usize, pool: &Bytes, fsync: bool) -> Duration {
    let started = Instant::now();
    for path in files {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
        for piece in chunks(pool, each, 1 << 20) {
            out.write_all(&piece).unwrap();
        }
        let file = out.into_inner().unwrap();
        if fsync {
            file.sync_data().unwrap();
        }
    }
    started.elapsed()
}

fn plain_read(files: &[PathBuf]) -> Duration {
    let started = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let mut file = File::open(path).unwrap();
        while file.read(&mut buf).unwrap() > 0 {}
    }
    started.elapsed()
}

/// Syncs and drops from the page cache every file under the disk directories.
fn evict_all(disks: &[PathBuf]) {
    fn walk(dir: &Path) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path());
            } else if let Ok(file) = File::open(entry.path()) {
                file.sync_all().unwrap();
                // SAFETY: plain syscall on a valid open descriptor.
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            }
        }
    }
    disks.iter().for_each(|d| walk(d));
}
