//! The mixed load of the chaos scenarios and the soak: small, erasure-coded and multipart
//! writes and delete markers on a handful of keys (so versions pile up), what of it was
//! acknowledged, and how many erasure-coded objects a set of versions needs on disk.

use std::collections::BTreeSet;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;

use crate::regions::Listed;
use crate::{pattern, TestServer};

const MIB: usize = 1 << 20;

/// What the load generator of the kill loop had acknowledged.
#[derive(Default)]
pub struct Acked {
    pub versions: BTreeSet<(String, String)>,
    pub attempts: u64,
    pub failures: u64,
}

pub const SMALL: usize = 1000;
pub const MEDIUM: usize = 300 * 1024;
pub const PART1: usize = 5 * MIB;
pub const PART2: usize = 200 * 1024;

/// One operation of the mixed load on a region: small or erasure-coded PUTs, a two-part
/// multipart upload, or a delete marker, on a handful of keys so versions pile up. One
/// operation in 20 would be a multipart upload; only one in `20 * multipart_one_in` is (the
/// others are erasure-coded PUTs), which bounds the disk a long run fills.
pub async fn one_op(
    s3: &Client,
    bucket: &str,
    n: u64,
    multipart_one_in: u64,
) -> Result<Option<(String, String)>, String> {
    let key = format!("k{}", n % 12);
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let slot = match n % 20 {
        15 if !(n / 20).is_multiple_of(multipart_one_in.max(1)) => 10,
        slot => slot,
    };
    match slot {
        0..=9 => s3
            .put_object()
            .bucket(bucket)
            .key(&key)
            .body(pattern(SMALL, n).into())
            .send()
            .await
            .map(|o| o.version_id().map(|v| (key.clone(), v.to_owned())))
            .map_err(|e| err(&e)),
        10..=14 => s3
            .put_object()
            .bucket(bucket)
            .key(&key)
            .body(pattern(MEDIUM, n).into())
            .send()
            .await
            .map(|o| o.version_id().map(|v| (key.clone(), v.to_owned())))
            .map_err(|e| err(&e)),
        15 => {
            let id = s3
                .create_multipart_upload()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| err(&e))?
                .upload_id()
                .unwrap_or_default()
                .to_owned();
            let mut parts = Vec::new();
            for (i, size) in [PART1, PART2].into_iter().enumerate() {
                let etag = s3
                    .upload_part()
                    .bucket(bucket)
                    .key(&key)
                    .upload_id(&id)
                    .part_number(i as i32 + 1)
                    .body(pattern(size, n + i as u64).into())
                    .send()
                    .await
                    .map_err(|e| err(&e))?
                    .e_tag()
                    .unwrap_or_default()
                    .to_owned();
                parts.push(
                    CompletedPart::builder()
                        .part_number(i as i32 + 1)
                        .e_tag(etag)
                        .build(),
                );
            }
            s3.complete_multipart_upload()
                .bucket(bucket)
                .key(&key)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|o| o.version_id().map(|v| (key.clone(), v.to_owned())))
                .map_err(|e| err(&e))
        }
        _ => s3
            .delete_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map(|o| o.version_id().map(|v| (key.clone(), v.to_owned())))
            .map_err(|e| err(&e)),
    }
}

/// Committed shard files (`.shard`) on the region's first disk: one per erasure-coded
/// object, since a 4+2 object has a shard on every disk.
pub fn objects_on_disk(server: &TestServer) -> usize {
    let data = server.disk_dir(0).join("data");
    let Ok(dirs) = std::fs::read_dir(&data) else {
        return 0;
    };
    dirs.flatten()
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".shard"))
        .count()
}

/// Erasure-coded objects a listing's versions need: a SMALL body is inline, a MEDIUM one is
/// one object, a two-part upload is one object per part; markers need none.
pub fn objects_needed(listed: &[Listed]) -> usize {
    listed
        .iter()
        .map(|v| match v.size.map(|s| s as usize) {
            Some(MEDIUM) => 1,
            Some(s) if s == PART1 + PART2 => 2,
            _ => 0,
        })
        .sum()
}

/// Runs [`one_op`] in a loop, `per_region` workers on each endpoint, until `stop` is set,
/// recording what was acknowledged in `acked`. A failed operation (its region down) waits
/// 100 ms before the next.
pub fn spawn_load(
    endpoints: &[String],
    bucket: &'static str,
    per_region: u64,
    multipart_one_in: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Acked>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (r, endpoint) in endpoints.iter().enumerate() {
        for worker in 0..per_region {
            let s3 = crate::s3_client(endpoint, crate::ACCESS_KEY, crate::SECRET_KEY);
            let (acked, stop) = (acked.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = (r as u64) * 1_000_000_000 + worker * 100_000_000;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let outcome = one_op(&s3, bucket, n, multipart_one_in).await;
                    let failed = {
                        let mut a = acked.lock().unwrap();
                        a.attempts += 1;
                        match outcome {
                            Ok(Some(v)) => {
                                a.versions.insert(v);
                                false
                            }
                            Ok(None) => false,
                            Err(_) => {
                                a.failures += 1;
                                true
                            }
                        }
                    };
                    if failed {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }));
        }
    }
    tasks
}

/// SIGKILLs region `victim` and starts it again on the same data and port (off the async
/// threads: starting waits for the server to listen).
pub async fn kill_and_restart(regions: &mut crate::regions::Regions, victim: usize) {
    let mut server = regions.servers.remove(victim);
    let server = tokio::task::spawn_blocking(move || {
        server.kill9();
        std::thread::sleep(std::time::Duration::from_millis(200));
        server.restart();
        server
    })
    .await
    .expect("restart task");
    regions.servers.insert(victim, server);
}

/// Aborts every multipart upload in progress in `bucket` (those a kill interrupted).
pub async fn abort_uploads(s3: &Client, bucket: &str) {
    let uploads = s3
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .expect("ListMultipartUploads");
    for u in uploads.uploads() {
        let _ = s3
            .abort_multipart_upload()
            .bucket(bucket)
            .key(u.key().unwrap_or_default())
            .upload_id(u.upload_id().unwrap_or_default())
            .send()
            .await;
    }
}
