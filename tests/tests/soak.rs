//! The soak (not in CI; `scripts/soak.sh DURATION`): two active-active regions behind a
//! WAN-like fault proxy take the chaos suite's mixed load while one of them is SIGKILLed and
//! restarted every 10-30 s, for `MERIDIAN_SOAK_SECS` seconds. A probe measures
//! commit-to-visible lag across the link throughout. At the end both sides must converge to
//! the same versions with every acknowledged one present and none twice; the report says so
//! in numbers.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meridian_tests::fault_proxy::Faults;
use meridian_tests::load::{abort_uploads, kill_and_restart, spawn_load, Acked};
use meridian_tests::regions::{
    checkpoint, put_rules, rule_to, versioned_bucket, wait_identical, Regions, RegionsOptions,
};

const BUCKET: &str = "soak";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Writes a probe object to one region and times how long until the other region serves
/// it, alternating directions, until `stop`. Probes whose write fails (region down) are
/// skipped; a probe gives up after 10 minutes.
fn spawn_probe(
    endpoints: Vec<String>,
    stop: Arc<AtomicBool>,
    lags: Arc<Mutex<Vec<f64>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let clients: Vec<_> = endpoints
            .iter()
            .map(|e| {
                meridian_tests::s3_client(e, meridian_tests::ACCESS_KEY, meridian_tests::SECRET_KEY)
            })
            .collect();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let (from, to) = ((n % 2) as usize, ((n + 1) % 2) as usize);
            let key = format!("probe/{n}");
            let put = clients[from]
                .put_object()
                .bucket(BUCKET)
                .key(&key)
                .body(b"probe".to_vec().into())
                .send()
                .await;
            let written = Instant::now();
            if let Ok(out) = put {
                let version = out.version_id().unwrap_or_default().to_owned();
                while written.elapsed() < Duration::from_secs(600) {
                    let seen = clients[to]
                        .head_object()
                        .bucket(BUCKET)
                        .key(&key)
                        .version_id(&version)
                        .customize()
                        .mutate_request(meridian_tests::regions::own_copy_only)
                        .send()
                        .await
                        .is_ok();
                    if seen {
                        lags.lock()
                            .unwrap()
                            .push(written.elapsed().as_secs_f64() * 1000.0);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long-running: scripts/soak.sh DURATION"]
async fn soak() {
    let secs: u64 = std::env::var("MERIDIAN_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut regions = Regions::start(RegionsOptions {
        proxied: true,
        extra: "scrub_interval = \"1m\"\norphan_grace = \"2m\"".into(),
        ..RegionsOptions::active_active()
    });
    for i in 0..2 {
        versioned_bucket(&regions.client(i), BUCKET).await;
    }
    put_rules(
        &regions.client(0),
        BUCKET,
        vec![rule_to("west", BUCKET, "to-west", 1, true)],
    )
    .await;
    put_rules(
        &regions.client(1),
        BUCKET,
        vec![rule_to("east", BUCKET, "to-east", 1, true)],
    )
    .await;
    let wan = Faults {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        bandwidth: Some(50_000_000),
        ..Faults::default()
    };
    regions.proxy(0, 1).set(wan.clone());
    regions.proxy(1, 0).set(wan);

    let endpoints: Vec<String> = regions.servers.iter().map(|s| s.endpoint.clone()).collect();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let lags = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    // Multipart uploads a tenth as often as in the chaos suite: every version is
    // kept, and at the full mix two regions fill about 4 GB of disk a minute.
    let load = spawn_load(&endpoints, BUCKET, 2, 10, stop.clone(), acked.clone());
    let probe = spawn_probe(endpoints.clone(), stop.clone(), lags.clone());

    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut restarts = 0u64;
    let mut rng = 0x9E37_79B9u64;
    loop {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let pause = Duration::from_secs(10 + rng % 21);
        if Instant::now() + pause >= deadline {
            break;
        }
        tokio::time::sleep(pause).await;
        let victim = ((rng >> 8) % 2) as usize;
        kill_and_restart(&mut regions, victim).await;
        restarts += 1;
        let a = acked.lock().unwrap();
        eprintln!(
            "[{:>5.0}s] restart {restarts}: region {victim}; {} acknowledged so far",
            started.elapsed().as_secs_f64(),
            a.versions.len()
        );
    }
    tokio::time::sleep_until(deadline.into()).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    probe.await.unwrap();

    let (east, west) = (regions.client(0), regions.client(1));
    abort_uploads(&east, BUCKET).await;
    abort_uploads(&west, BUCKET).await;
    checkpoint(&endpoints[0], "west", Duration::from_secs(600));
    checkpoint(&endpoints[1], "east", Duration::from_secs(600));
    let listed = wait_identical(&east, &west, BUCKET, Duration::from_secs(300)).await;
    let present: BTreeSet<(String, String)> = listed
        .iter()
        .map(|v| (v.key.clone(), v.version_id.clone()))
        .collect();
    let (acked_versions, attempts, failures) = {
        let a = acked.lock().unwrap();
        (a.versions.clone(), a.attempts, a.failures)
    };
    let lost = acked_versions.difference(&present).count();
    let duplicated = listed.len() - present.len();
    let mut lags = lags.lock().unwrap().clone();
    lags.sort_by(f64::total_cmp);

    println!("Meridian soak: {secs} s, 2 active-active regions, WAN link 20±5 ms at 50 MB/s");
    println!("  operations attempted       {attempts} ({failures} failed: region down)");
    println!(
        "  versions acknowledged      {} (+ {} probes)",
        acked_versions.len(),
        lags.len()
    );
    println!(
        "  versions on both regions   {} (identical listings)",
        listed.len()
    );
    println!("  lost                       {lost}");
    println!("  duplicated                 {duplicated}");
    println!(
        "  lag ms (commit -> visible on the peer, {} probes): p50 {:.0}, p99 {:.0}, max {:.0}",
        lags.len(),
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN)
    );
    println!("  restarts (kill -9)         {restarts}");
    assert_eq!(lost, 0, "acknowledged versions missing");
    assert_eq!(duplicated, 0, "versions listed twice");
}
