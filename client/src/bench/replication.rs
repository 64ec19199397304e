//! `meridian bench replication`: how fast and how far behind replication runs between two
//! live regions. Three measurements, each printed with the command's settings:
//!
//! - lag: PUTs to the source at a fixed rate; each object is polled on the target (HEAD by
//!   version id, the target's own copy only: `x-meridian-no-proxy`, status REPLICA) from the
//!   moment its PUT was acknowledged until the target holds it, giving commit-to-visible lag
//!   percentiles;
//! - saturation: with sending paused (admin API; needs root credentials of the source),
//!   `--saturate` objects are written, then sending resumes and a checkpoint times how long
//!   the peer takes to have them all: replicated objects per second with replication the
//!   only work. Without admin access, the objects are written and replicated at once, and the
//!   time until the last is on the target is reported instead;
//! - large: one object of `--large-size` written to the source in parts, timed until it is
//!   visible on the target, next to the same upload made directly to the target (the ratio
//!   says what replication costs over a plain upload).
//!
//! The bucket must exist on both sides, versioned, with a rule sending it to the target.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::units::{parse_duration, ByteSize};
use aws_sdk_s3::Client;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

#[derive(clap::Args, Clone, Debug)]
pub struct ReplicationBenchArgs {
    /// Source region endpoint.
    #[arg(long)]
    pub source: String,
    /// Target region endpoint.
    #[arg(long)]
    pub target: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_key: String,
    /// Credentials on the target, when they differ.
    #[arg(long)]
    pub target_access_key: Option<String>,
    #[arg(long)]
    pub target_secret_key: Option<String>,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Replicated bucket (same name on both sides).
    #[arg(long, default_value = "replication-bench")]
    pub bucket: String,
    /// Object size of the lag and saturation runs.
    #[arg(long, default_value = "4KiB")]
    pub size: ByteSize,
    /// PUTs per second of the lag run (0 skips it).
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Length of the lag run.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Objects of the saturation run (0 skips it).
    #[arg(long, default_value_t = 5000)]
    pub saturate: u64,
    /// PUTs in flight during the saturation run.
    #[arg(long, short = 'c', default_value_t = 32)]
    pub concurrency: usize,
    /// Size of the large-object run (0 skips it).
    #[arg(long, default_value = "1GiB")]
    pub large_size: ByteSize,
    /// Part size and parts in flight of the large uploads (the aws CLI's defaults).
    #[arg(long, default_value = "8MiB")]
    pub part_size: ByteSize,
    #[arg(long, default_value_t = 10)]
    pub part_concurrency: usize,
    /// How long to wait for an object to appear on the target before counting it missing.
    #[arg(long, value_parser = parse_duration, default_value = "120s")]
    pub timeout: Duration,
}

fn client(endpoint: &str, key: &str, secret: &str, region: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(aws_credential_types::Credentials::new(
            key, secret, None, None, "bench",
        ))
        .build();
    Client::from_conf(config)
}

/// How the target is polled, as printed with the results.
const POLLING: &str = "polling: HEAD by version id on the target every 5 ms, its own copy only \
(x-meridian-no-proxy, and x-amz-replication-status must be REPLICA: a read the target proxies \
to the source does not count)";

/// Polls the target until it holds the version itself (a replica, not an answer proxied from
/// the source); returns when it was first seen.
async fn visible_at(
    target: &Client,
    bucket: &str,
    key: &str,
    version: &str,
    limit: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        let found = target
            .head_object()
            .bucket(bucket)
            .key(key)
            .version_id(version)
            .customize()
            .mutate_request(crate::s3::own_copy_only)
            .send()
            .await
            .is_ok_and(|h| {
                h.replication_status()
                    .is_some_and(|s| s.as_str() == "REPLICA")
            });
        if found {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(args: ReplicationBenchArgs) -> anyhow::Result<()> {
    let source = client(
        &args.source,
        &args.access_key,
        &args.secret_key,
        &args.region,
    );
    let target = client(
        &args.target,
        args.target_access_key
            .as_deref()
            .unwrap_or(&args.access_key),
        args.target_secret_key
            .as_deref()
            .unwrap_or(&args.secret_key),
        &args.region,
    );
    let body = bytes::Bytes::from(vec![0x5Au8; args.size.0 as usize]);
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    println!(
        "replication bench: {} -> {}, bucket {}, objects of {}",
        args.source, args.target, args.bucket, args.size
    );
    println!("{POLLING}");
    if args.rate > 0 {
        lag_run(&args, &source, &target, &body, &run_id).await?;
    }
    if args.saturate > 0 {
        saturation_run(&args, &source, &target, &body, &run_id).await?;
    }
    if args.large_size.0 > 0 {
        large_run(&args, &source, &target, &run_id).await?;
    }
    Ok(())
}

async fn lag_run(
    args: &ReplicationBenchArgs,
    source: &Client,
    target: &Client,
    body: &bytes::Bytes,
    run_id: &str,
) -> anyhow::Result<()> {
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let count = (args.duration.as_secs_f64() * f64::from(args.rate)) as u64;
    let mut pollers = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..count {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        let (source, target, body) = (source.clone(), target.clone(), body.clone());
        let (bucket, key, limit) = (
            args.bucket.clone(),
            format!("lag-{run_id}/{i:08}"),
            args.timeout,
        );
        pollers.spawn(async move {
            let put = source
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .body(body.into())
                .send()
                .await
                .ok()?;
            let acked = Instant::now();
            let version = put.version_id()?.to_owned();
            let seen = visible_at(&target, &bucket, &key, &version, limit).await?;
            Some(seen - acked)
        });
    }
    let mut lags = Histogram::<u64>::new(3)?;
    let mut missing = 0u64;
    while let Some(done) = pollers.join_next().await {
        match done? {
            Some(lag) => lags.record(lag.as_micros() as u64)?,
            None => missing += 1,
        }
    }
    let q = |p: f64| Duration::from_micros(lags.value_at_quantile(p));
    println!(
        "lag      {count} PUTs at {}/s: visible on the target p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {missing} failed or missing",
        args.rate,
        ms(q(0.5)),
        ms(q(0.99)),
        ms(Duration::from_micros(lags.max())),
    );
    Ok(())
}

async fn saturation_run(
    args: &ReplicationBenchArgs,
    source: &Client,
    target: &Client,
    body: &bytes::Bytes,
    run_id: &str,
) -> anyhow::Result<()> {
    let admin = crate::replication::Endpoint {
        endpoint: args.source.clone(),
        access_key: args.access_key.clone(),
        secret_key: args.secret_key.clone(),
        region: args.region.clone(),
        ca_file: None,
        http: Default::default(),
    };
    let status: Option<meridian_api::ReplicationStatus> =
        crate::replication::call(&admin, "GET", "/_meridian/replication/status")
            .await
            .ok();
    let report = status.and_then(|s| {
        s.peers
            .into_iter()
            .find(|p| p.endpoint.trim_end_matches('/') == args.target.trim_end_matches('/'))
    });
    if let Some(by) = report.as_ref().and_then(|r| r.paused_by.as_ref()) {
        // Resuming it afterwards would undo an operator's pause.
        println!(
            "saturate skipped: sending to {} was paused by {} and stays paused",
            report.as_ref().map_or("", |r| r.peer.as_str()),
            by.principal
        );
        return Ok(());
    }
    let peer = report.map(|r| r.peer);
    if let Some(peer) = &peer {
        crate::replication::call::<meridian_api::PauseState>(
            &admin,
            "POST",
            &format!("/_meridian/replication/pause?peer={peer}"),
        )
        .await?;
    }
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut puts = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..args.saturate {
        let permit = gate.clone().acquire_owned().await?;
        let (source, body, bucket) = (source.clone(), body.clone(), args.bucket.clone());
        let key = format!("sat-{run_id}/{i:08}");
        puts.spawn(async move {
            let _permit = permit;
            let out = source
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .body(body.into())
                .send()
                .await
                .ok()?;
            Some((key, out.version_id()?.to_owned()))
        });
    }
    let mut written = Vec::new();
    while let Some(done) = puts.join_next().await {
        if let Some(w) = done? {
            written.push(w);
        }
    }
    let write_time = started.elapsed();
    let n = written.len() as f64;
    if let Some(peer) = &peer {
        let drain = Instant::now();
        crate::replication::call::<meridian_api::PauseState>(
            &admin,
            "POST",
            &format!("/_meridian/replication/resume?peer={peer}"),
        )
        .await?;
        let c: meridian_api::CheckpointReport = crate::replication::call(
            &admin,
            "POST",
            &format!(
                "/_meridian/replication/checkpoint?peer={peer}&timeout={}",
                args.timeout.as_secs()
            ),
        )
        .await?;
        let took = drain.elapsed();
        println!(
            "saturate {} objects written at {:.0}/s with sending paused, then drained in {:.2} s = {:.0} replicated objects/s ({})",
            written.len(),
            n / write_time.as_secs_f64(),
            took.as_secs_f64(),
            n / took.as_secs_f64(),
            if c.reached { "checkpoint reached" } else { "checkpoint NOT reached" },
        );
        return Ok(());
    }
    // No admin access: the last acknowledged writes are the last to replicate.
    let mut missing = 0;
    for (key, version) in written.iter().rev() {
        if visible_at(target, &args.bucket, key, version, args.timeout)
            .await
            .is_none()
        {
            missing += 1;
        }
    }
    let all = started.elapsed();
    println!(
        "saturate {} objects, {} PUTs in flight: written at {:.0}/s, all on the target after {:.2} s = {:.0} objects/s written and replicated; {missing} missing",
        written.len(),
        args.concurrency,
        n / write_time.as_secs_f64(),
        all.as_secs_f64(),
        n / all.as_secs_f64(),
    );
    Ok(())
}

/// A multipart upload of `size` zero-ish bytes in `part_size` parts, `concurrency` at once.
async fn upload(
    client: &Client,
    bucket: &str,
    key: &str,
    size: u64,
    part_size: u64,
    concurrency: usize,
) -> anyhow::Result<String> {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let id = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await?
        .upload_id()
        .unwrap_or_default()
        .to_owned();
    let part = bytes::Bytes::from(vec![0xA5u8; part_size as usize]);
    let count = size.div_ceil(part_size);
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut parts = tokio::task::JoinSet::new();
    for n in 1..=count {
        let permit = gate.clone().acquire_owned().await?;
        let len = part_size.min(size - (n - 1) * part_size) as usize;
        let (client, bucket, key, id, body) = (
            client.clone(),
            bucket.to_owned(),
            key.to_owned(),
            id.clone(),
            part.slice(..len),
        );
        parts.spawn(async move {
            let _permit = permit;
            let out = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
                .part_number(n as i32)
                .body(body.into())
                .send()
                .await?;
            anyhow::Ok(
                CompletedPart::builder()
                    .part_number(n as i32)
                    .e_tag(out.e_tag().unwrap_or_default())
                    .build(),
            )
        });
    }
    let mut done = Vec::new();
    while let Some(p) = parts.join_next().await {
        done.push(p??);
    }
    done.sort_by_key(|p| p.part_number());
    let out = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await?;
    Ok(out.version_id().unwrap_or("null").to_owned())
}

async fn large_run(
    args: &ReplicationBenchArgs,
    source: &Client,
    target: &Client,
    run_id: &str,
) -> anyhow::Result<()> {
    let (size, part) = (args.large_size.0, args.part_size.0);
    let direct_key = format!("large-{run_id}/direct");
    let started = Instant::now();
    upload(
        target,
        &args.bucket,
        &direct_key,
        size,
        part,
        args.part_concurrency,
    )
    .await?;
    let direct = started.elapsed();

    let key = format!("large-{run_id}/replicated");
    let started = Instant::now();
    let version = upload(
        source,
        &args.bucket,
        &key,
        size,
        part,
        args.part_concurrency,
    )
    .await?;
    let uploaded = started.elapsed();
    let seen = visible_at(target, &args.bucket, &key, &version, args.timeout)
        .await
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the large object did not reach the target within {:?}",
                args.timeout
            )
        })?;
    let replicated = seen - (started + uploaded);
    let mb = size as f64 / 1e6;
    println!(
        "large    {}: direct upload to the target {:.2} s ({:.0} MB/s); replication after the source had it {:.2} s ({:.0} MB/s) = {:.2} of the direct rate",
        args.large_size,
        direct.as_secs_f64(),
        mb / direct.as_secs_f64(),
        replicated.as_secs_f64(),
        mb / replicated.as_secs_f64(),
        direct.as_secs_f64() / replicated.as_secs_f64(),
    );
    Ok(())
}
