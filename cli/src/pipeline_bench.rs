//! `meridian bench pipeline`: the ceiling an S3 server on this machine can reach. It pushes
//! the same bytes through the exact PUT path without HTTP — the hashers (MD5 and the default
//! CRC64NVME), the erasure writer to real disks, the synced metadata commit — and
//! reads them back through the GET path (the erasure reader with checksum verification).
//! HTTP figures from `meridian bench` are quoted as ratios to these.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use http_body_util::BodyDataStream;
use meridian_client::bench::{OpTally, Report, Settings};
use meridian_client::{ByteSize, Payload};
use meridian_metadata::{BucketRecord, ChecksumAlgorithm, NewVersion, Storage, VersioningState};

use meridian_store::config::ErasureSpec;
use meridian_store::ingest::{ingest, BodyError, IngestOptions};
use meridian_store::{Durability, Store, StoreConfig};

const BUCKET: &str = "pipeline";

#[derive(clap::Args, Clone, Debug)]
pub struct PipelineArgs {
    /// Directory for the temporary disks and metadata (removed afterwards).
    #[arg(long, default_value = ".")]
    pub data: PathBuf,
    /// Erasure coding, K+M.
    #[arg(long, default_value = "4+2")]
    pub erasure: ErasureSpec,
    /// Object size.
    #[arg(long, default_value = "64MiB")]
    pub size: ByteSize,
    /// Objects written, then read back.
    #[arg(long, default_value_t = 8)]
    pub count: u64,
    /// Objects in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Fsync shards and metadata as the server does by default (`none` to skip).
    #[arg(long, default_value = "fsync")]
    pub durability: Durability,
    /// Compare every byte read with what was written.
    #[arg(long)]
    pub verify: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the pipeline measurement and prints its report.
pub async fn run(args: PipelineArgs) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&args.data)?;
    let dir = tempfile::Builder::new()
        .prefix("meridian-pipeline-")
        .tempdir_in(&args.data)?;
    let mut config = StoreConfig::in_dir(dir.path(), args.erasure.data, args.erasure.parity);
    config.durability = args.durability;
    let store = Store::open(&config).await?;
    store
        .meta(|m| {
            m.create_bucket(BucketRecord {
                name: BUCKET.into(),
                created: 0,
                owner: "bench".into(),
                region: "local".into(),
                versioning: VersioningState::Unversioned,
                object_lock: false,
            })
        })
        .await?;

    let size = args.size.0;
    let payload = Arc::new(Payload::for_object_size(size));
    let keys: Vec<String> = (0..args.count).map(|i| format!("obj-{i}")).collect();
    let concurrency = args.concurrency.max(1);

    eprintln!(
        "pipeline: writing {} x {} through the PUT path",
        args.count, args.size
    );
    let started = Instant::now();
    let mut put = OpTally::default();
    let mut stored = Vec::new();
    let results = futures::stream::iter(keys.iter().cloned())
        .map(|key| put_one(store.clone(), payload.clone(), key, size))
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let put_elapsed = started.elapsed();
    for r in results {
        match r {
            Ok((key, storage, latency)) => {
                put.record_ok(latency, size, 1);
                stored.push((key, storage));
            }
            Err(e) => {
                eprintln!("pipeline: put failed: {e:#}");
                put.record_error("PutFailed");
            }
        }
    }

    eprintln!("pipeline: reading them back through the GET path");
    let started = Instant::now();
    let mut get = OpTally::default();
    let results = futures::stream::iter(stored)
        .map(|(key, storage)| {
            get_one(
                store.clone(),
                payload.clone(),
                key,
                storage,
                size,
                args.verify,
            )
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let get_elapsed = started.elapsed();
    for r in results {
        match r {
            Ok(latency) => get.record_ok(latency, size, 1),
            Err(e) => {
                eprintln!("pipeline: get failed: {e:#}");
                get.record_error("GetFailed");
            }
        }
    }

    let settings = Settings {
        endpoint: format!("pipeline (no HTTP) on {}", args.data.display()),
        bucket: BUCKET.into(),
        size_bytes: size,
        size: args.size.to_string(),
        concurrency,
        count: Some(args.count),
        keys: args.count,
        verify: args.verify,
        ..Settings::default()
    };
    // Each path is timed on its own; the report's operations carry both.
    let mut tallies = BTreeMap::new();
    tallies.insert("put".to_owned(), put);
    tallies.insert("get".to_owned(), get);
    let mut report = Report::from_tallies(
        "pipeline",
        settings,
        put_elapsed + get_elapsed,
        &tallies,
        &["put", "get"],
        vec![],
    );
    for (name, elapsed) in [("put", put_elapsed), ("get", get_elapsed)] {
        if let Some(op) = report.operations.get_mut(name) {
            let secs = elapsed.as_secs_f64().max(1e-9);
            op.ops_per_sec = op.ops as f64 / secs;
            op.mb_per_sec = op.bytes as f64 / secs / 1e6;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print_table();
    }
    drop(store);
    Ok(report)
}

async fn put_one(
    store: Store,
    payload: Arc<Payload>,
    key: String,
    size: u64,
) -> anyhow::Result<(String, Storage, Duration)> {
    let started = Instant::now();
    let body = BodyDataStream::new(payload.body(&key, 0, size))
        .map(|r| r.map_err(|e| -> BodyError { match e {} }));
    let ingested = ingest(
        &store.disks,
        Box::pin(body),
        IngestOptions {
            identity: key.as_bytes().to_vec(),
            checksum: Some(ChecksumAlgorithm::Crc64Nvme),
            inline_threshold: store.inline_threshold(),
            seal: None,
        },
    )
    .await?;
    let storage = Store::storage_of(&ingested.data);
    let new = NewVersion {
        size: ingested.size,
        etag: hex::encode(ingested.md5),
        content_sha256: ingested.content_sha256(),
        storage: storage.clone(),
        ..NewVersion::default()
    };
    let k = key.clone();
    store.meta(move |m| m.put_version(BUCKET, &k, new)).await?;
    Ok((key, storage, started.elapsed()))
}

async fn get_one(
    store: Store,
    payload: Arc<Payload>,
    key: String,
    storage: Storage,
    size: u64,
    verify: bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut stream = store.read(&storage, 0..size)?;
    let mut check = verify.then(|| payload.checker(&key, 0));
    let mut read = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
        read += chunk.len() as u64;
        if let Some(c) = &mut check {
            c.check(&chunk)
                .map_err(|m| anyhow::anyhow!("{key}: bytes differ at offset {}", m.offset))?;
        }
    }
    anyhow::ensure!(read == size, "{key}: read {read} bytes of {size}");
    Ok(started.elapsed())
}
