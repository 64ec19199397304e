//! The drill's marked workload: writes under a key prefix of its own (new objects, some
//! overwrites, some deletes) at a fixed rate, every acknowledgement recorded with its time;
//! which of those acknowledged changes a region holds; and removing the workload afterwards.

use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use futures::StreamExt;
use serde::Serialize;

/// An acknowledged change: a version or a delete marker.
#[derive(Debug, Clone)]
pub struct Acked {
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub bytes: u64,
    pub marker: bool,
    pub at: Instant,
}

/// What was written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkloadReport {
    pub prefix: String,
    pub acknowledged: u64,
    pub bytes: u64,
    pub failed: u64,
    pub seconds: f64,
}

/// Writes to `bucket` under `prefix` at `rate` changes per second for `duration`: mostly new
/// objects of `size` bytes, every 10th an overwrite and every 25th a delete of an earlier key.
pub async fn write(
    client: &Client,
    bucket: &str,
    prefix: &str,
    rate: f64,
    duration: Duration,
    size: usize,
    progress: &dyn Fn(u64),
) -> (Vec<Acked>, WorkloadReport) {
    let count = (rate * duration.as_secs_f64()).max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let body = bytes::Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let started = Instant::now();
    let writes = futures::stream::iter(0..count)
        .map(|i| {
            let body = body.clone();
            async move {
                tokio::time::sleep_until((started + interval * i as u32).into()).await;
                let key = if i % 10 == 9 {
                    format!("{prefix}obj-{:06}", i / 2)
                } else {
                    format!("{prefix}obj-{i:06}")
                };
                if i % 25 == 24 {
                    let out = client
                        .delete_object()
                        .bucket(bucket)
                        .key(format!("{prefix}obj-{:06}", i - 1))
                        .send()
                        .await;
                    return out.ok().and_then(|o| {
                        Some(Acked {
                            bucket: bucket.to_owned(),
                            key: format!("{prefix}obj-{:06}", i - 1),
                            version_id: o.version_id()?.to_owned(),
                            bytes: 0,
                            marker: true,
                            at: Instant::now(),
                        })
                    });
                }
                let out = client
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .body(body.into())
                    .send()
                    .await;
                out.ok().and_then(|o| {
                    Some(Acked {
                        bucket: bucket.to_owned(),
                        key,
                        version_id: o.version_id()?.to_owned(),
                        bytes: size as u64,
                        marker: false,
                        at: Instant::now(),
                    })
                })
            }
        })
        .buffer_unordered(64);
    let mut acked = Vec::new();
    let mut failed = 0;
    futures::pin_mut!(writes);
    while let Some(w) = writes.next().await {
        match w {
            Some(a) => acked.push(a),
            None => failed += 1,
        }
        progress(acked.len() as u64 + failed);
    }
    let report = WorkloadReport {
        prefix: prefix.to_owned(),
        acknowledged: acked.len() as u64,
        bytes: acked.iter().map(|a| a.bytes).sum(),
        failed,
        seconds: started.elapsed().as_secs_f64(),
    };
    (acked, report)
}

/// Whether `client`'s region holds this acknowledged change itself — not through a read it
/// proxies to its peer (a delete marker answers HEAD by version id with 405).
async fn holds(client: &Client, target_bucket: &str, a: &Acked) -> bool {
    match client
        .head_object()
        .bucket(target_bucket)
        .key(&a.key)
        .version_id(&a.version_id)
        .customize()
        .mutate_request(crate::s3::own_copy_only)
        .send()
        .await
    {
        Ok(_) => !a.marker,
        Err(e) => a.marker && e.raw_response().map(|r| r.status().as_u16()) == Some(405),
    }
}

/// The acknowledged changes the target does not hold.
pub async fn missing_on(client: &Client, target_bucket: &str, acked: &[Acked]) -> Vec<Acked> {
    futures::stream::iter(acked)
        .map(|a| async move { (!holds(client, target_bucket, a).await).then(|| a.clone()) })
        .buffer_unordered(32)
        .filter_map(|x| async move { x })
        .collect()
        .await
}

/// Deletes every version and marker under `prefix` in `bucket` (deleting by version id is
/// not replicated, so each region is cleaned on its own); returns how many.
pub async fn remove(client: &Client, bucket: &str, prefix: &str) -> anyhow::Result<u64> {
    let mut removed = 0;
    loop {
        let page = client
            .list_object_versions()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await?;
        let all: Vec<(String, String)> = page
            .versions()
            .iter()
            .filter_map(|v| Some((v.key()?.to_owned(), v.version_id()?.to_owned())))
            .chain(
                page.delete_markers()
                    .iter()
                    .filter_map(|m| Some((m.key()?.to_owned(), m.version_id()?.to_owned()))),
            )
            .collect();
        if all.is_empty() {
            return Ok(removed);
        }
        for chunk in all.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|(k, v)| {
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key(k)
                        .version_id(v)
                        .build()
                        .expect("key is set")
                })
                .collect();
            client
                .delete_objects()
                .bucket(bucket)
                .delete(
                    aws_sdk_s3::types::Delete::builder()
                        .set_objects(Some(objects))
                        .quiet(true)
                        .build()?,
                )
                .send()
                .await?;
            removed += chunk.len() as u64;
        }
    }
}
