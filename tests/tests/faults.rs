//! Faults for real: disks removed from under a running server, shard files corrupted on disk,
//! and the server killed with SIGKILL in the middle of concurrent writes and deletes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use meridian_tests::{error_status, files_under, pattern, TestServer};

async fn read(s3: &Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

/// Shard files (not format files) on one disk.
fn shard_files(disk: &Path) -> Vec<PathBuf> {
    files_under(disk)
        .into_iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            !s.contains("staging")
                && !p
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("format")
        })
        .collect()
}

#[tokio::test]
async fn reads_survive_two_disks_removed_from_a_running_server() {
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("drill").send().await.unwrap();
    let sizes = [
        10usize,
        200_000,
        1 << 20,
        3 * (1 << 20) + 5,
        9 * (1 << 20) + 1,
    ];
    for (i, size) in sizes.iter().enumerate() {
        s3.put_object()
            .bucket("drill")
            .key(format!("o{i}"))
            .body(pattern(*size, i as u64).into())
            .send()
            .await
            .unwrap();
    }
    std::fs::remove_dir_all(server.disk_dir(1)).unwrap();
    std::fs::remove_dir_all(server.disk_dir(4)).unwrap();
    for (i, size) in sizes.iter().enumerate() {
        assert_eq!(
            read(&s3, "drill", &format!("o{i}")).await,
            pattern(*size, i as u64),
            "object {i} after losing 2 disks"
        );
    }
    let out = s3
        .get_object()
        .bucket("drill")
        .key("o3")
        .range("bytes=1000000-2100000")
        .send()
        .await
        .unwrap();
    let body = out.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], &pattern(sizes[3], 3)[1_000_000..=2_100_000]);
}

#[tokio::test]
async fn corrupted_shards_are_served_correctly_and_healed() {
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("rot").send().await.unwrap();
    let data = pattern(4 * (1 << 20) + 77, 42);
    s3.put_object()
        .bucket("rot")
        .key("weights")
        .body(data.clone().into())
        .send()
        .await
        .unwrap();

    // Corrupt the shard of this object on two disks (m = 2), remembering the good bytes.
    let mut originals = Vec::new();
    for slot in [0usize, 3] {
        let files = shard_files(&server.disk_dir(slot));
        assert_eq!(files.len(), 1, "one object, one shard per disk: {files:?}");
        let good = std::fs::read(&files[0]).unwrap();
        let mut bad = good.clone();
        for i in (good.len() / 3..good.len()).step_by(65_537) {
            bad[i] ^= 0x5A;
        }
        std::fs::write(&files[0], &bad).unwrap();
        originals.push((files[0].clone(), good));
    }
    assert_eq!(
        read(&s3, "rot", "weights").await,
        data,
        "never serve a corrupted byte"
    );

    // The reader reported the damage; the background healer rewrites the shards.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let healed = originals
            .iter()
            .all(|(path, good)| std::fs::read(path).ok().as_ref() == Some(good));
        if healed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shards were not healed within 30 s; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn three_lost_disks_of_four_plus_two_fail_cleanly() {
    let server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("lost").send().await.unwrap();
    s3.put_object()
        .bucket("lost")
        .key("big")
        .body(pattern(3 << 20, 1).into())
        .send()
        .await
        .unwrap();
    for slot in [0, 2, 5] {
        std::fs::remove_dir_all(server.disk_dir(slot)).unwrap();
    }
    // The status line may already be sent when the loss is found; either way no wrong bytes.
    match s3.get_object().bucket("lost").key("big").send().await {
        Err(e) => assert_eq!(error_status(&e).map(|s| s >= 500), Some(true)),
        Ok(out) => assert!(
            out.body.collect().await.is_err(),
            "a body that cannot be verified must not complete"
        ),
    }
}

/// What each writer did, so the survivors can be checked after the crash.
#[derive(Default)]
struct Ledger {
    /// key -> (seed, size) of PUTs the server acknowledged.
    acked_puts: HashMap<String, (u64, usize)>,
    /// every PUT attempted, acknowledged or not.
    attempted_puts: HashMap<String, (u64, usize)>,
    acked_deletes: Vec<String>,
    attempted_deletes: Vec<String>,
}

#[tokio::test]
async fn sigkill_during_concurrent_writes_loses_no_acknowledged_put() {
    let mut server = TestServer::start();
    let s3 = server.client();
    s3.create_bucket().bucket("crash").send().await.unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    let mut workers = Vec::new();
    for w in 0..6u64 {
        let s3 = s3.clone();
        let ledger = ledger.clone();
        workers.push(tokio::spawn(async move {
            // Bounded: at most 10,000 operations per worker, and it stops at the first failure
            // (which the kill causes).
            for i in 0..10_000u64 {
                let key = format!("w{w}/k{i}");
                let seed = w * 1_000_000 + i;
                // Mix inline-sized and erasure-coded objects.
                let size = if i % 3 == 0 {
                    1_500_000 + (i as usize % 7) * 1000
                } else {
                    1000 + (i as usize * 37) % 100_000
                };
                ledger
                    .lock()
                    .unwrap()
                    .attempted_puts
                    .insert(key.clone(), (seed, size));
                let put = s3
                    .put_object()
                    .bucket("crash")
                    .key(&key)
                    .body(pattern(size, seed).into())
                    .send()
                    .await;
                if put.is_err() {
                    return;
                }
                ledger
                    .lock()
                    .unwrap()
                    .acked_puts
                    .insert(key.clone(), (seed, size));
                if i % 4 == 1 {
                    let victim = format!("w{w}/k{}", i - 1);
                    ledger
                        .lock()
                        .unwrap()
                        .attempted_deletes
                        .push(victim.clone());
                    if s3
                        .delete_object()
                        .bucket("crash")
                        .key(&victim)
                        .send()
                        .await
                        .is_err()
                    {
                        return;
                    }
                    ledger.lock().unwrap().acked_deletes.push(victim);
                }
            }
        }));
    }
    // Let the writers get going, then pull the plug.
    let start = Instant::now();
    while ledger.lock().unwrap().acked_puts.len() < 60 && start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill9();
    for w in workers {
        w.await.unwrap();
    }
    server.restart();
    let s3 = server.client();

    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(
        ledger.acked_puts.len() >= 60,
        "the workload ran before the kill"
    );
    for (key, (seed, size)) in &ledger.acked_puts {
        let deleted_for_sure = ledger.acked_deletes.contains(key);
        let maybe_deleted = ledger.attempted_deletes.contains(key);
        match s3.get_object().bucket("crash").key(key).send().await {
            Ok(out) => {
                assert!(!deleted_for_sure, "{key}: acknowledged delete came back");
                let body = out.body.collect().await.unwrap().into_bytes();
                assert!(
                    body.as_ref() == pattern(*size, *seed).as_slice(),
                    "{key}: bytes differ after the crash"
                );
            }
            Err(e) => {
                assert_eq!(error_status(&e), Some(404));
                assert!(maybe_deleted, "{key}: acknowledged PUT lost in the crash");
            }
        }
    }
    // Unacknowledged PUTs may or may not have landed, but never partially.
    for (key, (seed, size)) in ledger
        .attempted_puts
        .iter()
        .filter(|(k, _)| !ledger.acked_puts.contains_key(*k))
    {
        if let Ok(out) = s3.get_object().bucket("crash").key(key).send().await {
            let body = out.body.collect().await.unwrap().into_bytes();
            assert!(
                body.as_ref() == pattern(*size, *seed).as_slice(),
                "{key}: a partial object is visible"
            );
        }
    }
    // Listing agrees with GET: everything listed reads back whole.
    let listed = s3
        .list_objects_v2()
        .bucket("crash")
        .max_keys(1000)
        .send()
        .await
        .unwrap();
    for o in listed.contents() {
        let key = o.key().unwrap();
        let (seed, size) = ledger.attempted_puts[key];
        assert_eq!(o.size(), Some(size as i64), "{key}");
        assert_eq!(read(&s3, "crash", key).await, pattern(size, seed));
    }
    // The sweep at start-up removed staging leftovers of the interrupted writes.
    for slot in 0..6 {
        let leftovers: Vec<_> = files_under(&server.disk_dir(slot))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("staging"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "staging leftovers on disk {slot}: {leftovers:?}"
        );
    }
}

#[tokio::test]
async fn background_scrub_heals_damage_nobody_has_read() {
    let server = meridian_tests::TestServer::start_with(meridian_tests::ServerOptions {
        extra_config: "scrub_interval = \"1s\"\n".into(),
        ..Default::default()
    });
    let s3 = server.client();
    s3.create_bucket().bucket("scrub").send().await.unwrap();
    let data = pattern(2 * (1 << 20) + 3, 21);
    s3.put_object()
        .bucket("scrub")
        .key("cold")
        .body(data.clone().into())
        .send()
        .await
        .unwrap();

    let files = shard_files(&server.disk_dir(2));
    assert_eq!(files.len(), 1);
    let good = std::fs::read(&files[0]).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xFF;
    std::fs::write(&files[0], &bad).unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read(&files[0]).unwrap() != good {
        assert!(
            Instant::now() < deadline,
            "scrub did not heal the shard; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        server.log().contains("scrub found damage"),
        "{}",
        server.log()
    );
    assert_eq!(read(&s3, "scrub", "cold").await, data);
}

/// Writes an object straight onto a stopped server's disks, as a PUT that crashed between
/// writing its shards and committing its version would leave it, and backdates its shards.
async fn plant_orphan(server: &TestServer, identity: &[u8], age: Duration) -> Vec<PathBuf> {
    let disks: Vec<PathBuf> = (0..6).map(|s| server.disk_dir(s)).collect();
    let set =
        meridian_erasure::DiskSet::open(meridian_erasure::DiskSetConfig::new(disks.clone(), 4, 2))
            .await
            .unwrap();
    let mut w = set.writer(identity.to_vec());
    w.write(bytes::Bytes::from(pattern(1 << 20, 99)))
        .await
        .unwrap();
    let id = w
        .finish()
        .await
        .unwrap()
        .descriptor
        .data_id
        .hyphenated()
        .to_string();
    let files: Vec<PathBuf> = disks
        .iter()
        .flat_map(|d| files_under(d))
        .filter(|p| p.to_string_lossy().contains(&id))
        .collect();
    assert_eq!(files.len(), 6);
    let then = std::time::SystemTime::now() - age;
    for f in &files {
        std::fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(then)
            .unwrap();
    }
    files
}

#[tokio::test]
async fn orphaned_shards_of_an_uncommitted_write_are_collected() {
    let mut server = meridian_tests::TestServer::start_with(meridian_tests::ServerOptions {
        extra_config: "scrub_interval = \"1s\"\n".into(),
        ..Default::default()
    });
    let s3 = server.client();
    s3.create_bucket().bucket("ghosts").send().await.unwrap();
    let kept = pattern(3 << 20, 5);
    s3.put_object()
        .bucket("ghosts")
        .key("kept")
        .body(kept.clone().into())
        .send()
        .await
        .unwrap();
    // A completed multipart object and an upload still in progress: their parts are referenced.
    let parts = [pattern(5 << 20, 6), pattern(1 << 20, 7)];
    let mp = s3
        .create_multipart_upload()
        .bucket("ghosts")
        .key("mp")
        .send()
        .await
        .unwrap();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let out = s3
            .upload_part()
            .bucket("ghosts")
            .key("mp")
            .upload_id(mp.upload_id().unwrap())
            .part_number(i as i32 + 1)
            .body(p.clone().into())
            .send()
            .await
            .unwrap();
        done.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(i as i32 + 1)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket("ghosts")
        .key("mp")
        .upload_id(mp.upload_id().unwrap())
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let open = s3
        .create_multipart_upload()
        .bucket("ghosts")
        .key("open")
        .send()
        .await
        .unwrap();
    s3.upload_part()
        .bucket("ghosts")
        .key("open")
        .upload_id(open.upload_id().unwrap())
        .part_number(1)
        .body(pattern(1 << 20, 8).into())
        .send()
        .await
        .unwrap();
    assert!(server.stop().success());
    // Everything committed looks old too, so the collector must find each one referenced.
    let committed: Vec<PathBuf> = (0..6)
        .flat_map(|s| shard_files(&server.disk_dir(s)))
        .collect();
    assert_eq!(committed.len(), 4 * 6);
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    for f in &committed {
        std::fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }

    let two_hours = Duration::from_secs(7200);
    let same_key = plant_orphan(
        &server,
        br#"{"bucket":"ghosts","key":"kept","written":0}"#,
        two_hours,
    )
    .await;
    let other_key = plant_orphan(
        &server,
        br#"{"bucket":"ghosts","key":"never-committed","written":0}"#,
        two_hours,
    )
    .await;
    let fresh = plant_orphan(
        &server,
        br#"{"bucket":"ghosts","key":"in-flight","written":0}"#,
        Duration::ZERO,
    )
    .await;
    let unattributed = plant_orphan(&server, b"not json", two_hours).await;

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while same_key.iter().chain(&other_key).any(|f| f.exists()) {
        assert!(
            Instant::now() < deadline,
            "orphans were not collected; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        fresh.iter().all(|f| f.exists()),
        "shards younger than the grace period are left alone"
    );
    assert!(
        unattributed.iter().all(|f| f.exists()),
        "shards that name no bucket and key are left alone"
    );
    let s3 = server.client();
    assert_eq!(
        read(&s3, "ghosts", "kept").await,
        kept,
        "the committed object is untouched"
    );
}
