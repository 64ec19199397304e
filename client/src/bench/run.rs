//! One bench run from start to finish: validate the options, connect, make sure the bucket
//! exists, pre-populate (untimed) what reading workloads read, drive the workload, and print
//! the report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::bench::args::{CommonArgs, Plan, Stop};
use crate::bench::driver::{drive, Outcome};
use crate::bench::objects::Ctx;
use crate::bench::report::Report;
use crate::bench::stats::OpKind;
use crate::bench::workloads::{Delete, Get, List, Mixed, Multipart, Populate, Put};
use crate::bench::Workload;
use crate::payload::Payload;
use crate::s3::{ClientConfig, S3Client};

/// The workload-specific part of a run, once its common options are planned.
enum Spec {
    Put,
    Get { ranged: bool },
    Mixed { get_ratio: f64 },
    List { max_keys: u32 },
    Multipart,
    Delete,
}

impl Spec {
    fn name(&self) -> &'static str {
        match self {
            Spec::Put => "put",
            Spec::Get { .. } => "get",
            Spec::Mixed { .. } => "mixed",
            Spec::List { .. } => "list",
            Spec::Multipart => "multipart",
            Spec::Delete => "delete",
        }
    }
}

fn plan(workload: Workload) -> anyhow::Result<(Spec, Plan)> {
    let prepared = |common: &CommonArgs, no_prepare: bool| common.plan(!no_prepare);
    Ok(match workload {
        Workload::Put(a) => (Spec::Put, a.common.plan(false)?),
        Workload::Get(a) => {
            let mut plan = prepared(&a.common, a.prepare.no_prepare)?;
            plan.settings.ranged = Some(a.ranged);
            (Spec::Get { ranged: a.ranged }, plan)
        }
        Workload::Mixed(a) => (
            Spec::Mixed {
                get_ratio: a.get_ratio,
            },
            a.plan()?,
        ),
        Workload::List(a) => {
            if a.max_keys == 0 {
                bail!("--max-keys must be at least 1");
            }
            let mut plan = prepared(&a.common, a.prepare.no_prepare)?;
            plan.settings.max_keys = Some(a.max_keys);
            (
                Spec::List {
                    max_keys: a.max_keys,
                },
                plan,
            )
        }
        Workload::Multipart(a) => (Spec::Multipart, a.common.plan(false)?),
        Workload::Delete(a) => (Spec::Delete, prepared(&a.common, a.prepare.no_prepare)?),
    })
}

/// Runs `workload` to completion; see [`crate::bench::run`].
pub async fn run(workload: Workload) -> anyhow::Result<Report> {
    let (spec, plan) = plan(workload)?;
    let s = &plan.settings;
    let client = S3Client::new(&ClientConfig {
        endpoint: s.endpoint.clone(),
        ca_file: s.ca_file.clone(),
        access_key: plan.access_key.clone(),
        secret_key: plan.secret_key.clone(),
        region: s.region.clone(),
        bucket: s.bucket.clone(),
        max_idle_connections: s.concurrency * s.part_concurrency + 4,
    })?;
    let ctx = Arc::new(Ctx {
        client,
        payload: Payload::for_object_size(s.size_bytes),
        prefix: s.prefix.clone(),
        size: s.size_bytes,
        keys: s.keys,
        part_size: s.part_size_bytes,
        part_concurrency: s.part_concurrency,
        verify: s.verify,
        op_timeout: Duration::from_secs_f64(s.op_timeout_s),
    });
    ensure_bucket(&ctx.client).await?;
    if let Some(algorithm) = &s.bucket_encryption {
        ctx.client
            .put_bucket_encryption(algorithm)
            .await
            .with_context(|| format!("setting the default encryption of {}", s.bucket))?;
    }
    if s.prepared {
        populate(&ctx, &plan).await?;
    }
    let (concurrency, stop) = (s.concurrency, plan.stop);
    let cpu_before = process_cpu_seconds();
    let (outcome, primary) = match spec {
        Spec::Put => (
            drive(
                Arc::new(Put(ctx.clone())),
                concurrency,
                stop,
                Put::PRIMARY,
                "put",
            )
            .await,
            Put::PRIMARY,
        ),
        Spec::Get { ranged } => {
            let op = Arc::new(Get {
                ctx: ctx.clone(),
                ranged,
            });
            (
                drive(op, concurrency, stop, Get::PRIMARY, "get").await,
                Get::PRIMARY,
            )
        }
        Spec::Mixed { get_ratio } => {
            let op = Arc::new(Mixed::new(ctx.clone(), get_ratio));
            (
                drive(op, concurrency, stop, Mixed::PRIMARY, "mixed").await,
                Mixed::PRIMARY,
            )
        }
        Spec::List { max_keys } => {
            let op = Arc::new(List {
                ctx: ctx.clone(),
                max_keys,
            });
            (
                drive(op, concurrency, stop, List::PRIMARY, "list").await,
                List::PRIMARY,
            )
        }
        Spec::Multipart => {
            let op = Arc::new(Multipart(ctx.clone()));
            (
                drive(op, concurrency, stop, Multipart::PRIMARY, "multipart").await,
                Multipart::PRIMARY,
            )
        }
        Spec::Delete => {
            // Each key is deleted once: a second delete of the same key measures nothing.
            let stop = Stop {
                count: Some(stop.count.unwrap_or(ctx.keys).min(ctx.keys)),
                ..stop
            };
            (
                drive(
                    Arc::new(Delete(ctx.clone())),
                    concurrency,
                    stop,
                    Delete::PRIMARY,
                    "delete",
                )
                .await,
                Delete::PRIMARY,
            )
        }
    };
    let mut report = build_report(spec.name(), plan.settings.clone(), outcome, primary);
    report.client_cpu_s = process_cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    if plan.json {
        println!("{}", report.to_json());
    } else {
        report.print_table();
    }
    Ok(report)
}

fn build_report(
    workload: &str,
    settings: crate::bench::report::Settings,
    outcome: Outcome,
    primary: &[OpKind],
) -> Report {
    let tallies: BTreeMap<String, _> = outcome
        .recorder
        .tallies
        .iter()
        .map(|(kind, tally)| (kind.name().to_string(), tally.clone()))
        .collect();
    let primary: Vec<&str> = primary.iter().map(|k| k.name()).collect();
    Report::from_tallies(
        workload,
        settings,
        outcome.elapsed,
        &tallies,
        &primary,
        outcome.recorder.error_examples,
    )
}

/// User plus system CPU time this process has used so far.
fn process_cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes the struct it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: getrusage succeeded, so the struct is initialised.
    let usage = unsafe { usage.assume_init() };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

async fn ensure_bucket(client: &S3Client) -> anyhow::Result<()> {
    let exists = client
        .bucket_exists()
        .await
        .with_context(|| format!("checking bucket {}", client.bucket()))?;
    if !exists {
        client
            .create_bucket()
            .await
            .with_context(|| format!("creating bucket {}", client.bucket()))?;
    }
    Ok(())
}

/// Writes objects `0..keys` before a reading workload; any failure aborts the run, since a
/// measurement over missing objects would be meaningless.
async fn populate(ctx: &Arc<Ctx>, plan: &Plan) -> anyhow::Result<()> {
    let s = &plan.settings;
    eprintln!(
        "writing {} objects of {} under {}/{} (untimed)",
        ctx.keys, s.size, s.bucket, s.prefix
    );
    let op = Arc::new(Populate {
        ctx: ctx.clone(),
        multipart_threshold: s.multipart_threshold_bytes,
    });
    let stop = Stop {
        count: Some(ctx.keys),
        duration: None,
    };
    let outcome = drive(op, s.concurrency, stop, &[OpKind::Put], "prepare").await;
    let failed = outcome
        .recorder
        .tallies
        .get(&OpKind::Put)
        .map_or(0, |t| t.error_count());
    if failed > 0 {
        let first = outcome
            .recorder
            .error_examples
            .first()
            .cloned()
            .unwrap_or_default();
        bail!("pre-population failed: {failed} of {} objects could not be written; first error: {first}", ctx.keys);
    }
    Ok(())
}

/// A context on an unreachable endpoint, for unit tests of the workloads' arithmetic.
#[cfg(test)]
pub(crate) fn test_ctx() -> Ctx {
    let client = S3Client::new(&ClientConfig {
        endpoint: "http://127.0.0.1:1".into(),
        ca_file: None,
        access_key: "ak".into(),
        secret_key: "sk".into(),
        region: "us-east-1".into(),
        bucket: "bench".into(),
        max_idle_connections: 1,
    })
    .expect("static endpoint is valid");
    Ctx {
        client,
        payload: Payload::for_object_size(4096),
        prefix: "bench/".into(),
        size: 4096,
        keys: 10,
        part_size: 1024,
        part_concurrency: 2,
        verify: true,
        op_timeout: Duration::from_secs(1),
    }
}
