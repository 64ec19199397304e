//! Chaos between regions, with real processes: every link goes through a fault proxy
//! (`meridian_tests::fault_proxy`) that adds latency, caps bandwidth, resets connections and
//! blackholes them; regions are SIGKILLed in a loop under mixed load; a region's disks fill
//! up; a region's clock is wrong. Each scenario ends by checking, in code, that nothing
//! acknowledged was lost, nothing was duplicated and both sides hold the same versions.
//! Every loop and wait is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use md5::Digest;
use meridian_tests::fault_proxy::Faults;
use meridian_tests::load::{
    abort_uploads, kill_and_restart, objects_needed, objects_on_disk, spawn_load, Acked,
};
use meridian_tests::regions::{
    all_versions, checkpoint, put_rules, rule_to, status_json, versioned_bucket, wait_for,
    wait_identical, Listed, Regions, RegionsOptions,
};
use meridian_tests::{
    completed_parts, create_upload, error_code, error_status, pattern, upload_part, ServerOptions,
    TestServer,
};

const MIB: usize = 1 << 20;

/// Regions with the bucket versioned everywhere and the given links' rules in place.
async fn setup(options: RegionsOptions, bucket: &str) -> Regions {
    let links = options.links.clone();
    let regions = Regions::start(options);
    for i in 0..regions.servers.len() {
        versioned_bucket(&regions.client(i), bucket).await;
    }
    for from in 0..regions.servers.len() {
        let rules: Vec<_> = links
            .iter()
            .filter(|l| l.from == from)
            .enumerate()
            .map(|(n, l)| {
                let peer = meridian_tests::regions::NAMES[l.to];
                rule_to(peer, bucket, &format!("to-{peer}"), n as i32 + 1, true)
            })
            .collect();
        if !rules.is_empty() {
            put_rules(&regions.client(from), bucket, rules).await;
        }
    }
    regions
}

/// Uploads `size` bytes of `pattern(.., seed)` as a multipart object with `part` sized parts.
async fn multipart(s3: &Client, bucket: &str, key: &str, size: usize, part: usize, seed: u64) {
    let data = pattern(size, seed);
    let id = create_upload(s3, bucket, key).await;
    let mut etags = Vec::new();
    for (i, chunk) in data.chunks(part).enumerate() {
        etags.push(upload_part(s3, bucket, key, &id, i as i32 + 1, chunk).await);
    }
    let list: Vec<(i32, &str)> = etags
        .iter()
        .enumerate()
        .map(|(i, e)| (i as i32 + 1, e.as_str()))
        .collect();
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(completed_parts(&list))
        .send()
        .await
        .unwrap();
}

/// MD5 of a version's bytes, streamed.
async fn digest(s3: &Client, bucket: &str, key: &str, version_id: &str) -> (u64, [u8; 16]) {
    let mut body = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .version_id(version_id)
        .customize()
        .mutate_request(meridian_tests::regions::own_copy_only)
        .send()
        .await
        .unwrap()
        .body;
    let mut md5 = md5::Md5::new();
    let mut len = 0u64;
    while let Some(chunk) = body.try_next().await.unwrap() {
        len += chunk.len() as u64;
        md5.update(&chunk);
    }
    (len, md5.finalize().into())
}

/// The only version of `key` in a listing.
fn only_version<'a>(listed: &'a [Listed], key: &str) -> &'a Listed {
    let of_key: Vec<_> = listed.iter().filter(|v| v.key == key).collect();
    assert_eq!(of_key.len(), 1, "one version of {key}: {of_key:?}");
    of_key[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wan_link_carries_a_large_object_and_many_small_ones_and_a_reset_costs_at_most_the_parts_in_flight(
) {
    let bucket = "wan";
    let regions = setup(
        RegionsOptions {
            proxied: true,
            ..RegionsOptions::one_way(2)
        },
        bucket,
    )
    .await;
    let (east, west) = (regions.client(0), regions.client(1));
    let link = regions.proxy(0, 1);
    link.set(Faults {
        latency: Duration::from_millis(50),
        jitter: Duration::from_millis(10),
        bandwidth: Some(20_000_000),
        ..Faults::default()
    });

    let big = 512 * MIB;
    multipart(&east, bucket, "weights.bin", big, 16 * MIB, 7).await;
    let mut small_bytes = 0usize;
    let writes = futures::stream::iter(0..2000u64).map(|i| {
        let east = east.clone();
        async move {
            let body = pattern(1000 + (i as usize % 1000), i);
            let len = body.len();
            east.put_object()
                .bucket(bucket)
                .key(format!("small/{i:04}"))
                .body(body.into())
                .send()
                .await
                .unwrap();
            len
        }
    });
    use futures::StreamExt;
    let sizes: Vec<usize> = writes.buffer_unordered(16).collect().await;
    small_bytes += sizes.iter().sum::<usize>();

    // Cut every connection once, a fifth of the way through the large object.
    wait_for(
        Duration::from_secs(120),
        "100 MiB through the link",
        || async { (link.bytes_up() > 100 * MIB as u64).then_some(()) },
    )
    .await;
    link.reset_all();

    checkpoint(
        &regions.servers[0].endpoint,
        "west",
        Duration::from_secs(300),
    );
    let listed = wait_identical(&east, &west, bucket, Duration::from_secs(60)).await;
    assert_eq!(listed.len(), 2001);
    let v = only_version(&listed, "weights.bin");
    assert_eq!(
        digest(&east, bucket, "weights.bin", &v.version_id).await,
        digest(&west, bucket, "weights.bin", &v.version_id).await
    );
    // Finished parts are never sent again: the reset costs at most the parts of the object
    // in flight (4 x 16 MiB), plus request overhead.
    let payload = (big + small_bytes) as u64;
    let sent = link.bytes_up();
    eprintln!(
        "WAN link: {sent} bytes sent for {payload} bytes of objects ({:.3}x), {} resets, {} connections",
        sent as f64 / payload as f64,
        link.resets(),
        link.connections()
    );
    assert!(link.resets() >= 1, "the reset happened");
    assert!(
        sent < payload + 4 * 16 * MIB as u64 + payload / 20,
        "{sent} bytes crossed for {payload} bytes of objects"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_every_few_mib_during_a_1gib_replication_still_deliver_one_identical_version() {
    let bucket = "resets";
    let regions = setup(
        RegionsOptions {
            proxied: true,
            replication: "part_size = \"8MiB\"".into(),
            ..RegionsOptions::one_way(2)
        },
        bucket,
    )
    .await;
    let (east, west) = (regions.client(0), regions.client(1));
    let link = regions.proxy(0, 1);
    link.set(Faults {
        reset_every: Some(20 * MIB as u64),
        ..Faults::default()
    });
    let data = pattern(1 << 30, 11);
    let put = east
        .put_object()
        .bucket(bucket)
        .key("model.safetensors")
        .body(data.into())
        .send()
        .await
        .unwrap();
    let version = put.version_id().unwrap().to_owned();
    checkpoint(
        &regions.servers[0].endpoint,
        "west",
        Duration::from_secs(300),
    );
    assert!(link.resets() >= 10, "resets: {}", link.resets());
    let listed = wait_identical(&east, &west, bucket, Duration::from_secs(60)).await;
    assert_eq!(
        only_version(&listed, "model.safetensors").version_id,
        version
    );
    assert_eq!(
        digest(&east, bucket, "model.safetensors", &version).await,
        digest(&west, bucket, "model.safetensors", &version).await
    );
    let uploads = west
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "no upload left on the target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30s_blackhole_under_steady_load_never_blocks_writes_and_converges_after() {
    let bucket = "hole";
    let regions = setup(
        RegionsOptions {
            proxied: true,
            ..RegionsOptions::one_way(2)
        },
        bucket,
    )
    .await;
    let (east, west) = (regions.client(0), regions.client(1));
    let link = regions.proxy(0, 1);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut written = 0;
    // 20 PUT/s for 40 s; the link is a blackhole from 5 s to 35 s.
    for i in 0..800u64 {
        let due = started + Duration::from_millis(50 * i);
        tokio::time::sleep_until(due.into()).await;
        let t = started.elapsed();
        let hole = t >= Duration::from_secs(5) && t < Duration::from_secs(35);
        if hole != link.faults().blackhole {
            link.update(|f| f.blackhole = hole);
        }
        let begun = Instant::now();
        east.put_object()
            .bucket(bucket)
            .key(format!("k{:03}", i % 200))
            .body(pattern(2048, i).into())
            .send()
            .await
            .expect("client writes succeed whatever the link does");
        slowest = slowest.max(begun.elapsed());
        written += 1;
    }
    link.update(|f| f.blackhole = false);
    assert_eq!(written, 800);
    // Not a speed figure: a write that waited on the peer would take the whole outage.
    assert!(
        slowest < Duration::from_secs(10),
        "a client write took {slowest:?} while the link was down"
    );
    checkpoint(
        &regions.servers[0].endpoint,
        "west",
        Duration::from_secs(180),
    );
    let listed = wait_identical(&east, &west, bucket, Duration::from_secs(60)).await;
    assert_eq!(listed.len(), 800);
    let status = status_json(&regions.servers[0].endpoint);
    let text = status.to_string();
    for peer in status["peers"].as_array().expect("peers") {
        assert_eq!(peer["pending_versions"], 0, "{text}");
        assert_eq!(peer["lag_seconds"].as_f64(), Some(0.0), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kill9_cycles_under_mixed_active_active_load_lose_and_duplicate_nothing() {
    let bucket = "killed";
    let mut regions = setup(
        RegionsOptions {
            // Orphans (shards of writes a kill interrupted) are collected within seconds.
            extra: "scrub_interval = \"2s\"\norphan_grace = \"5s\"".into(),
            ..RegionsOptions::active_active()
        },
        bucket,
    )
    .await;
    let endpoints: Vec<String> = regions.servers.iter().map(|s| s.endpoint.clone()).collect();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(&endpoints, bucket, 2, 1, stop.clone(), acked.clone());

    let mut rng_state = 0x2545_F491u64;
    for cycle in 0..20 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let victim = (rng_state % 2) as usize;
        kill_and_restart(&mut regions, victim).await;
        eprintln!("cycle {cycle}: killed and restarted region {victim}");
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (acked_versions, attempts, failures) = {
        let a = acked.lock().unwrap();
        (a.versions.clone(), a.attempts, a.failures)
    };
    eprintln!(
        "{} versions acknowledged of {attempts} operations ({failures} failed while a region was down)",
        acked_versions.len()
    );
    assert!(acked_versions.len() > 100, "the load ran");

    let (east, west) = (regions.client(0), regions.client(1));
    // Uploads a kill interrupted are abandoned, as a client that died would leave them.
    abort_uploads(&east, bucket).await;
    abort_uploads(&west, bucket).await;
    checkpoint(&endpoints[0], "west", Duration::from_secs(300));
    checkpoint(&endpoints[1], "east", Duration::from_secs(300));
    let listed = wait_identical(&east, &west, bucket, Duration::from_secs(120)).await;

    let present: BTreeSet<(String, String)> = listed
        .iter()
        .map(|v| (v.key.clone(), v.version_id.clone()))
        .collect();
    assert_eq!(present.len(), listed.len(), "no version is listed twice");
    let lost: Vec<_> = acked_versions.difference(&present).collect();
    assert!(lost.is_empty(), "acknowledged but missing: {lost:?}");
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &listed {
        *per_key.entry(v.key.as_str()).or_default() += usize::from(v.is_latest);
    }
    assert!(per_key.values().all(|&n| n == 1), "one latest per key");

    // Once the scrub has collected what the kills orphaned, each side holds exactly the
    // objects its versions need: nothing leaked, nothing missing.
    let needed = objects_needed(&listed);
    for (i, server) in regions.servers.iter().enumerate() {
        wait_for(
            Duration::from_secs(120),
            &format!("region {i} to hold exactly {needed} objects"),
            || async { (objects_on_disk(server) == needed).then_some(()) },
        )
        .await;
    }
}

/// A tmpfs mounted for the life of the value (needs root; `None` where mounting is refused).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("meridian-full-")
            .tempdir()
            .ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(Tmpfs { dir })
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("mount");
        assert!(status.success(), "remounting the tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn full_disks_refuse_writes_with_insufficient_storage_keep_reads_and_recover() {
    let Some(tmpfs) = Tmpfs::mount("48m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let disks: Vec<String> = (1..=6)
        .map(|i| {
            let d = tmpfs.dir.path().join(format!("d{i}"));
            std::fs::create_dir_all(&d).unwrap();
            format!("{:?}", d.display().to_string())
        })
        .collect();
    let server = TestServer::start_with(ServerOptions {
        extra_config: format!("[erasure]\ndisks = [{}]\n", disks.join(", ")),
        ..ServerOptions::default()
    });
    let s3 = server.client();
    s3.create_bucket().bucket("full").send().await.unwrap();

    // 4 MiB objects take 6 MiB of disk at 4+2: the 48 MiB fill up within a dozen.
    let mut stored = Vec::new();
    // The server answers 507 as soon as it cannot write, and closes the connection: a client
    // still sending the rest of a large body may see the reset before the answer. Such a
    // refusal without an answer is tried again (at most three times).
    let mut resets = 0;
    let refused = loop {
        let i = stored.len() as u64;
        assert!(i < 40, "the disks never filled up");
        let data = pattern(4 * MIB, i);
        match s3
            .put_object()
            .bucket("full")
            .key(format!("obj{i}"))
            .body(data.clone().into())
            .send()
            .await
        {
            Ok(_) => stored.push(data),
            Err(e) if error_code(&e).is_none() && resets < 3 => resets += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(error_code(&refused).as_deref(), Some("InsufficientStorage"));
    assert_eq!(error_status(&refused), Some(507));
    let failed_key = format!("obj{}", stored.len());
    let err = s3
        .head_object()
        .bucket("full")
        .key(&failed_key)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_status(&err),
        Some(404),
        "nothing of the refused write is stored (and the connection the refusal closed is not reused): {err:?}"
    );
    // Reads keep working, byte for byte.
    for (i, data) in stored.iter().enumerate() {
        let got = s3
            .get_object()
            .bucket("full")
            .key(format!("obj{i}"))
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert!(got.as_ref() == data.as_slice(), "obj{i} reads back intact");
    }
    // Space returns: writes resume.
    tmpfs.resize("256m");
    s3.put_object()
        .bucket("full")
        .key(&failed_key)
        .body(pattern(4 * MIB, 99).into())
        .send()
        .await
        .unwrap();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_whose_clocks_disagree_converge_on_the_same_latest_versions() {
    let bucket = "skew";
    let started = std::time::SystemTime::now();
    let regions = setup(
        RegionsOptions {
            // West's versions are stamped two minutes in the past.
            env: vec![(1, "MERIDIAN_FAULT_CLOCK_OFFSET_MS".into(), "-120000".into())],
            ..RegionsOptions::active_active()
        },
        bucket,
    )
    .await;
    let (east, west) = (regions.client(0), regions.client(1));
    for round in 0..5u64 {
        let mut writes = Vec::new();
        for key in 0..10u64 {
            for (side, s3) in [(0u64, &east), (1, &west)] {
                let s3 = s3.clone();
                writes.push(tokio::spawn(async move {
                    s3.put_object()
                        .bucket(bucket)
                        .key(format!("k{key}"))
                        .body(pattern(100, round * 100 + key * 2 + side).into())
                        .send()
                        .await
                        .unwrap();
                }));
            }
        }
        for w in writes {
            w.await.unwrap();
        }
    }
    checkpoint(
        &regions.servers[0].endpoint,
        "west",
        Duration::from_secs(120),
    );
    checkpoint(
        &regions.servers[1].endpoint,
        "east",
        Duration::from_secs(120),
    );
    let listed = wait_identical(&east, &west, bucket, Duration::from_secs(60)).await;
    assert_eq!(listed.len(), 100, "every write of both sides, once");
    let skewed_before = started
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 60_000;
    assert!(
        listed
            .iter()
            .any(|v| v.last_modified.is_some_and(|t| t < skewed_before)),
        "west's skewed clock shows in its versions' times"
    );
    for key in 0..10 {
        let latest: Vec<_> = listed
            .iter()
            .filter(|v| v.key == format!("k{key}") && v.is_latest)
            .collect();
        assert_eq!(
            latest.len(),
            1,
            "k{key}: one latest version, the same on both sides"
        );
    }
    let again = all_versions(&west, bucket).await;
    assert_eq!(again, listed);
}
