//! `meridian bench lifecycle`: what lifecycle costs, on the real store (RocksDB and the due
//! index) without HTTP, in a temporary directory:
//!
//! - the time to index a rule over `--versions` versions stored before it (the pass a
//!   `PutBucketLifecycleConfiguration` starts);
//! - the worker's cost when none of them is due: the time of one wake-up (one seek of the
//!   index) and the process CPU over a few seconds of the real worker loop;
//! - expiry throughput: `--due` versions whose rule makes them due at once, expired by the
//!   worker's batches, in versions/s.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use meridian_documents::lifecycle::{
    Expiration, Filter, FilterShape, LifecycleConfig, Rule, CONFIG_DOCUMENT,
};
use meridian_metadata::{now_nanos, BucketRecord, NewVersion, Storage, VersioningState};
use meridian_store::lifecycle::{index_bucket_now, run_due_batch};
use meridian_store::{Durability, Store, StoreConfig};
use tokio::sync::watch;

#[derive(clap::Args, Clone, Debug)]
pub struct LifecycleBenchArgs {
    /// Directory for the temporary store (removed afterwards).
    #[arg(long, default_value = ".")]
    pub data: PathBuf,
    /// Versions stored before a rule is put (none of them due).
    #[arg(long, default_value_t = 1_000_000)]
    pub versions: u64,
    /// Versions made due at once and expired.
    #[arg(long, default_value_t = 100_000)]
    pub due: u64,
    /// How long to watch the idle worker's CPU.
    #[arg(long, default_value = "5s", value_parser = meridian_client::units::parse_duration)]
    pub idle: Duration,
}

/// User and system CPU of this process so far, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn rule(id: &str, expiration: Expiration) -> Rule {
    Rule {
        id: id.into(),
        enabled: true,
        filter: Filter {
            shape: FilterShape::Empty,
            prefix: None,
            tags: Vec::new(),
            size_greater_than: None,
            size_less_than: None,
        },
        expiration: Some(expiration),
        noncurrent: None,
        abort_upload_days: None,
    }
}

fn fill(store: &Store, bucket: &str, n: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for i in 0..n {
        store.meta.put_version(
            bucket,
            &format!("data/{:02}/{i:010}", i % 97),
            NewVersion {
                size: 16,
                etag: "0".repeat(32),
                storage: Storage::Inline(vec![7; 16]),
                ..NewVersion::default()
            },
        )?;
    }
    Ok(started.elapsed())
}

/// One wake-up of the worker with nothing due (the batch and the next-due seek), in µs.
fn idle_wake_up_micros(store: &Store) -> anyhow::Result<f64> {
    let rounds = 1000;
    let started = Instant::now();
    for _ in 0..rounds {
        assert_eq!(run_due_batch(store, now_nanos(), &mut None)?, 0);
        store.meta.next_due()?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds))
}

fn set_rules(store: &Store, bucket: &str, config: &LifecycleConfig) -> anyhow::Result<()> {
    store
        .meta
        .put_bucket_config(bucket, CONFIG_DOCUMENT, config.to_json())?;
    store.lifecycle.invalidate(bucket);
    Ok(())
}

pub async fn run(args: LifecycleBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("meridian-lifecycle-bench-")
        .tempdir_in(&args.data)?;
    let mut config = StoreConfig::in_dir(dir.path(), 1, 0);
    config.durability = Durability::NoSync;
    // A day of a millisecond: a rule of "1 day" makes every version due at once.
    config.lifecycle_day = Some(Duration::from_millis(1));
    let store = Store::open(&config).await?;
    let s = store.clone();
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let mut lines = Vec::new();
        for (name, versioning) in [
            ("idle", VersioningState::Unversioned),
            ("due", VersioningState::Unversioned),
            ("foreground-alone", VersioningState::Enabled),
            ("foreground-beside", VersioningState::Enabled),
        ] {
            s.meta.create_bucket(BucketRecord {
                name: name.into(),
                created: 0,
                owner: "bench".into(),
                region: "local".into(),
                versioning,
                object_lock: false,
            })?;
        }
        let took = fill(&s, "idle", args.versions)?;
        lines.push(format!(
            "stored {} versions in {:.1} s (no rules: {:.0} versions/s)",
            args.versions,
            took.as_secs_f64(),
            args.versions as f64 / took.as_secs_f64()
        ));
        // A rule that matches every version but is due in 2100 (a date: days here are 1 ms).
        set_rules(&s, "idle", &LifecycleConfig {
            rules: vec![rule("2100", Expiration::Date(4_102_444_800))],
        })?;
        let started = Instant::now();
        index_bucket_now(&s, "idle")?;
        let took = started.elapsed();
        lines.push(format!(
            "indexed a rule over {} existing versions in {:.1} s ({:.0} versions/s)",
            args.versions,
            took.as_secs_f64(),
            args.versions as f64 / took.as_secs_f64()
        ));
        lines.push(format!(
            "idle wake-up with {} versions indexed and none due: {:.1} µs",
            args.versions,
            idle_wake_up_micros(&s)?
        ));
        // Versions that are due at once: a rule of one (1 ms) day, then written.
        set_rules(&s, "due", &LifecycleConfig {
            rules: vec![rule("now", Expiration::Days(1))],
        })?;
        fill(&s, "due", args.due)?;
        std::thread::sleep(Duration::from_millis(5));
        // Foreground writes alone, then while the worker expires the due versions.
        let foreground = (args.due / 5).max(1);
        // Two fresh buckets, so both runs write new keys into the same shape of store.
        let alone = fill(&s, "foreground-alone", foreground)?;
        let worker = {
            let s = s.clone();
            std::thread::spawn(move || -> anyhow::Result<(usize, Duration)> {
                // Paced as the worker paces itself.
                let started = Instant::now();
                let mut expired = 0;
                let mut cursor = None;
                loop {
                    let batch = Instant::now();
                    let n = run_due_batch(&s, now_nanos(), &mut cursor)?;
                    if n == 0 {
                        s.meta.compact_due_index(now_nanos())?;
                        return Ok((expired, started.elapsed()));
                    }
                    expired += n;
                    std::thread::sleep(batch.elapsed().mul_f64(meridian_store::lifecycle::PACE));
                }
            })
        };
        let beside = fill(&s, "foreground-beside", foreground)?;
        let (expired, took) = worker
            .join()
            .map_err(|_| anyhow::anyhow!("the expiry thread panicked"))??;
        lines.push(format!(
            "expired {expired} due versions in {:.1} s ({:.0} versions/s)",
            took.as_secs_f64(),
            expired as f64 / took.as_secs_f64()
        ));
        lines.push(format!(
            "idle wake-up after expiring {expired}: {:.1} µs",
            idle_wake_up_micros(&s)?
        ));
        lines.push(format!(
            "{foreground} foreground PUTs (metadata commits): {:.2} s alone, {:.2} s beside the expiry ({:.0} % slower; the expiry ran {:.0} % of that time)",
            alone.as_secs_f64(),
            beside.as_secs_f64(),
            (beside.as_secs_f64() / alone.as_secs_f64() - 1.0) * 100.0,
            (took.as_secs_f64() / beside.as_secs_f64()).min(1.0) * 100.0
        ));
        Ok(lines)
    })
    .await??;
    for line in &report {
        println!("{line}");
    }
    // The process with nothing due, first without the worker (RocksDB's own background
    // work after the writes above), then with the real worker loop: its CPU over `--idle`.
    let (cpu, started) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(args.idle).await;
    let baseline = cpu_seconds() - cpu;
    println!(
        "idle process without the worker over {:.0} s: {:.3} s CPU ({:.2} % of a core)",
        started.elapsed().as_secs_f64(),
        baseline,
        baseline * 100.0 / started.elapsed().as_secs_f64()
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = tokio::spawn(meridian_store::lifecycle::run_worker(
        store.clone(),
        stop_rx,
    ));
    let (cpu, started) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(args.idle).await;
    let used = cpu_seconds() - cpu;
    let _ = stop_tx.send(true);
    let _ = worker.await;
    println!(
        "idle worker over {:.0} s with {} versions indexed: {:.3} s CPU ({:.2} % of a core)",
        started.elapsed().as_secs_f64(),
        args.versions,
        used,
        used * 100.0 / started.elapsed().as_secs_f64()
    );
    Ok(())
}
