//! Replication through faults, for real: a peer stopped while versions are written, either
//! side SIGKILLed in the middle of a large multipart transfer, a destination that refuses
//! (FAILED, then healed by fixing the peer with no restart). Nothing acknowledged is lost,
//! nothing is duplicated, and large objects resume instead of starting over.

use std::time::Duration;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use meridian_tests::pattern;
use meridian_tests::regions::{
    all_versions, put_rules, replication_status, rule_to, versioned_bucket, wait_completed,
    wait_for, wait_identical, Regions, RegionsOptions,
};

const MIB: usize = 1 << 20;

async fn east_to_west(options: RegionsOptions, bucket: &str) -> Regions {
    let regions = Regions::start(options);
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, bucket).await;
    versioned_bucket(&west, bucket).await;
    put_rules(&east, bucket, vec![rule_to("west", bucket, "all", 1, true)]).await;
    regions
}

#[tokio::test]
async fn versions_written_while_the_peer_is_down_all_arrive_once() {
    let mut regions = east_to_west(RegionsOptions::one_way(2), "data").await;
    let east = regions.client(0);
    regions.servers[1].stop();
    let mut written = Vec::new();
    for i in 0..200u64 {
        let key = format!("k{}", i % 40);
        let v = east
            .put_object()
            .bucket("data")
            .key(&key)
            .body(pattern(200 + i as usize, i).into())
            .send()
            .await
            .unwrap()
            .version_id()
            .unwrap()
            .to_owned();
        written.push((key, v));
    }
    assert_eq!(
        replication_status(&east, "data", &written[0].0, &written[0].1)
            .await
            .as_deref(),
        Some("PENDING"),
        "an outage keeps versions PENDING, as on AWS"
    );
    regions.servers[1].restart();
    let west = regions.client(1);
    for (key, v) in &written {
        wait_completed(&east, "data", key, v).await;
    }
    let listed = wait_identical(&east, &west, "data", Duration::from_secs(60)).await;
    assert_eq!(listed.len(), 200, "every version once");
}

/// A 256 MiB object uploaded in 32 parts of 8 MiB.
async fn upload_256_mib(client: &Client, bucket: &str, key: &str) -> (String, Vec<u8>) {
    let data = pattern(256 * MIB, 42);
    let id = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let mut parts = Vec::new();
    for (i, chunk) in data.chunks(8 * MIB).enumerate() {
        let n = i as i32 + 1;
        let out = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .body(chunk.to_vec().into())
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    let v = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    (v, data)
}

/// Waits until the target holds an upload of `key` with at least `min_parts` parts: the
/// replication is in the middle of the object.
async fn wait_mid_transfer(target: &Client, bucket: &str, key: &str, min_parts: usize) {
    wait_for(
        Duration::from_secs(60),
        "the transfer to be under way",
        || async {
            let uploads = target
                .list_multipart_uploads()
                .bucket(bucket)
                .send()
                .await
                .ok()?;
            let upload = uploads.uploads().iter().find(|u| u.key() == Some(key))?;
            let parts = target
                .list_parts()
                .bucket(bucket)
                .key(key)
                .upload_id(upload.upload_id()?)
                .send()
                .await
                .ok()?;
            (parts.parts().len() >= min_parts).then_some(())
        },
    )
    .await
}

async fn assert_one_identical_version(
    east: &Client,
    west: &Client,
    key: &str,
    v: &str,
    data: &[u8],
) {
    let versions: Vec<_> = all_versions(west, "big")
        .await
        .into_iter()
        .filter(|x| x.key == key)
        .collect();
    assert_eq!(
        versions.len(),
        1,
        "exactly one version on the target: {versions:?}"
    );
    assert_eq!(versions[0].version_id, v);
    let got = west
        .get_object()
        .bucket("big")
        .key(key)
        .version_id(v)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(got.as_ref() == data, "bytes identical");
    let uploads = west
        .list_multipart_uploads()
        .bucket("big")
        .send()
        .await
        .unwrap();
    assert!(
        uploads.uploads().is_empty(),
        "no upload left behind on the target"
    );
    let _ = east;
}

/// A link slow enough (32 MB/s: about 8 s for 256 MiB) to be caught in the middle.
fn slow_parts() -> RegionsOptions {
    RegionsOptions {
        peer_extra: "bandwidth = \"32MB/s\"".into(),
        ..RegionsOptions::one_way(2)
    }
}

#[tokio::test]
async fn a_source_killed_mid_transfer_resumes_where_it_stopped() {
    let mut regions = east_to_west(slow_parts(), "big").await;
    let (east, west) = (regions.client(0), regions.client(1));
    let (v, data) = upload_256_mib(&east, "big", "weights.bin").await;
    wait_mid_transfer(&west, "big", "weights.bin", 2).await;
    regions.servers[0].kill9();
    regions.servers[0].restart();
    wait_for(
        Duration::from_secs(120),
        "the object to finish after the restart",
        || async {
            (replication_status(&east, "big", "weights.bin", &v)
                .await
                .as_deref()
                == Some("COMPLETED"))
            .then_some(())
        },
    )
    .await;
    assert_one_identical_version(&east, &west, "weights.bin", &v, &data).await;
    let log = regions.servers[0].log();
    let resumed = log
        .lines()
        .find(|l| l.contains("resuming a multipart replication"))
        .unwrap_or_else(|| panic!("the restarted source resumes the upload; log:\n{log}"));
    assert!(
        !resumed.contains("parts_done=0"),
        "parts already sent are not sent again: {resumed}"
    );
}

#[tokio::test]
async fn a_target_killed_mid_transfer_gets_the_object_after_its_restart() {
    let mut regions = east_to_west(slow_parts(), "big").await;
    let (east, west) = (regions.client(0), regions.client(1));
    let (v, data) = upload_256_mib(&east, "big", "weights.bin").await;
    wait_mid_transfer(&west, "big", "weights.bin", 2).await;
    regions.servers[1].kill9();
    assert_ne!(
        replication_status(&east, "big", "weights.bin", &v)
            .await
            .as_deref(),
        Some("COMPLETED")
    );
    regions.servers[1].restart();
    wait_completed(&east, "big", "weights.bin", &v).await;
    assert_one_identical_version(&east, &west, "weights.bin", &v, &data).await;
}

#[tokio::test]
async fn a_refusing_destination_shows_failed_and_heals_once_fixed() {
    let regions = Regions::start(RegionsOptions::one_way(2));
    let (east, west) = (regions.client(0), regions.client(1));
    versioned_bucket(&east, "data").await;
    versioned_bucket(&west, "data").await;
    put_rules(&east, "data", vec![rule_to("west", "data", "all", 1, true)]).await;
    // The destination bucket goes away after the rule was accepted.
    west.delete_bucket().bucket("data").send().await.unwrap();
    let v = east
        .put_object()
        .bucket("data")
        .key("k")
        .body(b"payload".to_vec().into())
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    wait_for(
        Duration::from_secs(30),
        "the version to show FAILED",
        || async {
            (replication_status(&east, "data", "k", &v).await.as_deref() == Some("FAILED"))
                .then_some(())
        },
    )
    .await;
    // Fixing the peer is enough: the capped backoff retries it, no restart, no re-drive.
    versioned_bucket(&west, "data").await;
    wait_completed(&east, "data", "k", &v).await;
    let listed = all_versions(&west, "data").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version_id, v);
}
