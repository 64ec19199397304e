//! Access keys managed at run time across two regions: a key made on one region works on
//! the other once replicated, a deletion made during a partition reaches the other side when
//! the link heals, `meridian drill verify` reports keys that differ, and no secret is ever
//! written in clear, in RocksDB's files or in the logs.

use std::time::Duration;

use meridian_tests::fault_proxy::FaultProxy;
use meridian_tests::regions::{admin_cli, replicated_both_ways, wait_for, Regions, RegionsOptions};
use meridian_tests::{error_code, files_under, s3_client};

const LIMIT: Duration = Duration::from_secs(30);

/// `meridian admin ARGS` as root on `endpoint`; its stdout.
fn admin(endpoint: &str, args: &[&str]) -> String {
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    let (ok, out) = admin_cli(endpoint, &all, &[]);
    assert!(ok, "meridian admin {args:?} failed: {out}");
    out
}

/// A new key with read and write on `bucket`: (access key, secret).
fn new_key(endpoint: &str, bucket: &str) -> (String, String) {
    let made: serde_json::Value = serde_json::from_str(&admin(
        endpoint,
        &["key", "create", "--name", "job", "--json"],
    ))
    .unwrap();
    let ak = made["access_key"].as_str().unwrap().to_owned();
    for access in ["read", "write"] {
        admin(
            endpoint,
            &[
                "grant", "add", "--key", &ak, "--bucket", bucket, "--access", access,
            ],
        );
    }
    (ak, made["secret_key"].as_str().unwrap().to_owned())
}

/// Whether `access_key` can list `bucket` on the region at `endpoint`; panics on an answer
/// other than success or a refused key.
async fn accepted(endpoint: &str, access_key: &str, secret: &str, bucket: &str) -> bool {
    match s3_client(endpoint, access_key, secret)
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e) => {
            let code = error_code(&e);
            assert!(
                matches!(code.as_deref(), Some("InvalidAccessKeyId" | "AccessDenied")),
                "unexpected answer {e:?}"
            );
            false
        }
    }
}

fn partition(proxies: &[&FaultProxy], cut: bool) {
    for p in proxies {
        p.update(|f| f.refuse = cut);
        if cut {
            // Pooled connections too, not only new ones.
            p.reset_all();
        }
    }
}

/// `meridian drill verify` between the two regions (as root, straight to each region while
/// their links go through proxies: `--peer` names the target); its report.
fn drill_verify(regions: &Regions) -> String {
    let out = meridian_tests::output_within(
        std::process::Command::new(meridian_tests::meridian_binary())
            .args(["drill", "--source", &regions.servers[0].endpoint])
            .args(["--target", &regions.servers[1].endpoint, "--peer", "west"])
            .args(["--source-access-key", meridian_tests::ACCESS_KEY])
            .args(["--source-secret-key", meridian_tests::SECRET_KEY])
            .args(["--timeout", "30s", "verify"]),
        Duration::from_secs(120),
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_replicate_converge_after_a_partition_and_are_never_stored_in_clear() {
    let regions = Regions::start(RegionsOptions {
        proxied: true,
        ..RegionsOptions::active_active()
    });
    let (east, west) = (&regions.servers[0], &regions.servers[1]);
    let bucket = "keys-shared";
    replicated_both_ways(&regions.client(0), &regions.client(1), bucket).await;

    // Made on east, used on east at once, and on west once replicated.
    let (ak, sk) = new_key(&east.endpoint, bucket);
    assert!(accepted(&east.endpoint, &ak, &sk, bucket).await);
    wait_for(LIMIT, "the key replicated to west", || async {
        accepted(&west.endpoint, &ak, &sk, bucket)
            .await
            .then_some(())
    })
    .await;
    let info = admin(&west.endpoint, &["key", "info", &ak, "--json"]);
    assert!(
        info.contains("\"changed_in\": \"us-east-1\"") || info.contains(&ak),
        "{info}"
    );

    // Disabled on east: refused there at once (the change returns only once it is in the
    // user table), on west within the replication lag.
    admin(&east.endpoint, &["key", "disable", &ak]);
    assert!(!accepted(&east.endpoint, &ak, &sk, bucket).await);
    wait_for(LIMIT, "the disable replicated to west", || async {
        (!accepted(&west.endpoint, &ak, &sk, bucket).await).then_some(())
    })
    .await;
    admin(&east.endpoint, &["key", "enable", &ak]);
    wait_for(LIMIT, "the enable replicated to west", || async {
        accepted(&west.endpoint, &ak, &sk, bucket)
            .await
            .then_some(())
    })
    .await;

    // A partition: the key is deleted on east and another key made on west.
    let links = [regions.proxy(0, 1), regions.proxy(1, 0)];
    partition(&links, true);
    admin(&east.endpoint, &["key", "delete", &ak]);
    let (west_ak, west_sk) = new_key(&west.endpoint, bucket);
    assert!(!accepted(&east.endpoint, &ak, &sk, bucket).await);
    assert!(
        accepted(&west.endpoint, &ak, &sk, bucket).await,
        "west cannot know of the deletion yet"
    );
    let report = drill_verify(&regions);
    assert!(
        report.contains("access keys: 2 differences") && report.contains(&west_ak),
        "the drill reports the keys that differ:\n{report}"
    );

    partition(&links, false);
    wait_for(LIMIT, "the deletion reached west", || async {
        (!accepted(&west.endpoint, &ak, &sk, bucket).await).then_some(())
    })
    .await;
    wait_for(LIMIT, "west's key reached east", || async {
        accepted(&east.endpoint, &west_ak, &west_sk, bucket)
            .await
            .then_some(())
    })
    .await;
    let report = drill_verify(&regions);
    assert!(
        report.contains("access keys: 0 differences"),
        "converged:\n{report}"
    );
    for endpoint in [&east.endpoint, &west.endpoint] {
        let list = admin(endpoint, &["key", "list"]);
        assert!(!list.contains(&ak) && list.contains(&west_ak), "{list}");
    }

    // Rotated on west: the new secret works on east after replication, and neither region
    // ever wrote a secret in clear.
    let rotated: serde_json::Value = serde_json::from_str(&admin(
        &west.endpoint,
        &["key", "rotate", &west_ak, "--json"],
    ))
    .unwrap();
    let new_sk = rotated["secret_key"].as_str().unwrap().to_owned();
    wait_for(LIMIT, "the rotation reached east", || async {
        accepted(&east.endpoint, &west_ak, &new_sk, bucket)
            .await
            .then_some(())
    })
    .await;
    let secrets = [sk.as_str(), west_sk.as_str(), new_sk.as_str()];
    for server in [east, west] {
        for file in files_under(&server.data_dir) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            for secret in secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "a secret in clear in {}",
                    file.display()
                );
            }
        }
        let log = server.log();
        for secret in secrets {
            assert!(!log.contains(secret), "a secret in the log");
        }
    }
}
