//! Every workload run for real against an S3 endpoint (s3s verifying SigV4, over an in-memory
//! store): operation counts, what ends up stored, and that `--verify` catches damage done to
//! stored objects. Correctness only: no speed is asserted.

mod support;

use bytes::Bytes;
use clap::Parser;
use meridian_client::{Payload, Report, Workload};
use support::{TestS3, ACCESS_KEY, SECRET_KEY};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

async fn bench(server: &TestS3, args: &str) -> Report {
    try_bench(server, args)
        .await
        .unwrap_or_else(|e| panic!("bench {args}: {e:#}"))
}

async fn try_bench(server: &TestS3, args: &str) -> anyhow::Result<Report> {
    let common = format!(
        "--endpoint {} --access-key {ACCESS_KEY} --secret-key {SECRET_KEY} --json",
        server.endpoint
    );
    let argv: Vec<String> = ["bench"]
        .into_iter()
        .chain(args.split_whitespace())
        .chain(common.split_whitespace())
        .map(String::from)
        .collect();
    let cli = Cli::try_parse_from(argv)?;
    meridian_client::run(cli.workload).await
}

fn key(i: u64) -> String {
    format!("bench/obj-{i:08}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_a_count_writes_every_key_once_with_its_payload() {
    let server = TestS3::start().await;
    let report = bench(
        &server,
        "put --bucket bucket-1 --size 4KiB --count 20 --concurrency 4",
    )
    .await;
    assert_eq!((report.ops, report.errors), (20, 0));
    assert_eq!(report.bytes, 20 * 4096);
    assert!(report.exit_ok());
    assert!(
        report.client_cpu_s.is_some_and(|cpu| cpu >= 0.0),
        "the client measures its own CPU"
    );
    let keys = server.store.keys("bucket-1");
    assert_eq!(
        keys,
        (0..20).map(key).collect::<Vec<_>>(),
        "the bucket was created and holds exactly the 20 keys"
    );
    let payload = Payload::for_object_size(4096);
    for k in &keys {
        assert_eq!(
            server.store.object("bucket-1", k).unwrap(),
            payload.content(k, 4096),
            "{k}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_verify_passes_on_intact_objects_and_catches_a_corrupted_one() {
    let server = TestS3::start().await;
    let clean = bench(
        &server,
        "get --bucket bucket-2 --size 40KiB --count 10 --verify",
    )
    .await;
    assert_eq!((clean.ops, clean.errors), (10, 0));
    assert!(clean.settings.prepared);
    assert_eq!(clean.bytes, 10 * 40 * 1024);

    let mut damaged = server.store.object("bucket-2", &key(3)).unwrap().to_vec();
    damaged[30_000] ^= 0x80;
    server
        .store
        .replace("bucket-2", &key(3), Bytes::from(damaged));
    let caught = bench(
        &server,
        "get --bucket bucket-2 --size 40KiB --count 10 --verify --no-prepare",
    )
    .await;
    assert_eq!(caught.ops, 9);
    assert_eq!(caught.errors_by_code.get("ContentMismatch"), Some(&1));
    assert!(!caught.exit_ok());
    assert!(
        caught.error_examples[0].contains(&key(3)),
        "{:?}",
        caught.error_examples
    );

    let unverified = bench(
        &server,
        "get --bucket bucket-2 --size 40KiB --count 10 --no-prepare",
    )
    .await;
    assert_eq!(
        (unverified.ops, unverified.errors),
        (10, 0),
        "without --verify content is not compared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_object_fails_with_size_mismatch_even_without_verify() {
    let server = TestS3::start().await;
    bench(&server, "put --bucket bucket-3 --size 8KiB --count 4").await;
    server
        .store
        .replace("bucket-3", &key(2), Bytes::from_static(b"short"));
    let report = bench(
        &server,
        "get --bucket bucket-3 --size 8KiB --count 4 --no-prepare",
    )
    .await;
    assert_eq!(report.errors_by_code.get("SizeMismatch"), Some(&1));
    assert_eq!(report.ops, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_objects_are_counted_by_s3_code_and_tolerated_on_request() {
    let server = TestS3::start().await;
    let report = bench(
        &server,
        "get --bucket bucket-4 --size 4KiB --count 5 --no-prepare --tolerate-errors",
    )
    .await;
    assert_eq!(report.ops, 0);
    assert_eq!(report.errors_by_code.get("NoSuchKey"), Some(&5));
    assert!(
        report.exit_ok(),
        "--tolerate-errors makes errors acceptable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_get_reads_and_verifies_every_range() {
    let server = TestS3::start().await;
    let args = "get --bucket bucket-5 --size 1MiB --part-size 256KiB --part-concurrency 3 --ranged --count 4 --keys 2 --verify";
    let report = bench(&server, args).await;
    assert_eq!((report.ops, report.errors), (4, 0));
    assert_eq!(report.operations["get_range"].ops, 16);
    assert_eq!(report.bytes, 4 << 20);

    let mut damaged = server.store.object("bucket-5", &key(1)).unwrap().to_vec();
    damaged[(1 << 20) - 1] ^= 1;
    server
        .store
        .replace("bucket-5", &key(1), Bytes::from(damaged));
    let report = bench(&server, &format!("{args} --no-prepare")).await;
    assert_eq!(
        report.errors_by_code.get("ContentMismatch"),
        Some(&2),
        "key 1 is read twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_objects_in_parts_that_reassemble_to_the_payload() {
    let server = TestS3::start().await;
    let report = bench(
        &server,
        "multipart --bucket bucket-6 --size 600KiB --part-size 256KiB --part-concurrency 2 --count 3",
    )
    .await;
    assert_eq!((report.ops, report.errors), (3, 0));
    assert_eq!(report.operations["upload_part"].ops, 9);
    let payload = Payload::for_object_size(600 << 10);
    for i in 0..3 {
        assert_eq!(
            server.store.object("bucket-6", &key(i)).unwrap(),
            payload.content(&key(i), 600 << 10)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_are_prepopulated_by_multipart_and_read_back_verified() {
    let server = TestS3::start().await;
    let args = "get --bucket bucket-7 --size 700KiB --multipart-threshold 512KiB --part-size 256KiB --count 2 --verify";
    let report = bench(&server, args).await;
    assert_eq!((report.ops, report.errors), (2, 0));
    assert_eq!(
        server.store.object("bucket-7", &key(0)).unwrap().len(),
        700 << 10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_runs_the_requested_share_of_gets() {
    let server = TestS3::start().await;
    let report = bench(
        &server,
        "mixed --bucket bucket-8 --size 4KiB --count 100 --keys 10 --get-ratio 0.7 --verify",
    )
    .await;
    assert_eq!(report.operations["get"].ops, 70);
    assert_eq!(report.operations["put"].ops, 30);
    assert_eq!((report.ops, report.errors), (100, 0));
    assert_eq!(report.settings.get_ratio, Some(0.7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_through_all_keys_and_verifies_the_count() {
    let server = TestS3::start().await;
    let args =
        "list --bucket bucket-9 --size 0 --keys 250 --max-keys 100 --count 9 --concurrency 1 --verify";
    let report = bench(&server, args).await;
    assert_eq!((report.ops, report.errors), (9, 0));
    assert_eq!(
        report.operations["list"].objects, 750,
        "three complete walks of 250 keys"
    );

    server
        .store
        .replace("bucket-9", "bench/obj-extra", Bytes::new());
    let report = bench(&server, &format!("{args} --no-prepare")).await;
    assert_eq!(report.errors_by_code.get("ListCountMismatch"), Some(&3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_each_prepopulated_key_once() {
    let server = TestS3::start().await;
    let report = bench(
        &server,
        "delete --bucket bucket-10 --size 1KiB --keys 30 --count 1000",
    )
    .await;
    assert_eq!(
        (report.ops, report.errors),
        (30, 0),
        "stops after the last key"
    );
    assert!(server.store.keys("bucket-10").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_key_fails_the_run_with_the_s3_error() {
    let server = TestS3::start().await;
    let argv = format!(
        "bench put --endpoint {} --access-key {ACCESS_KEY} --secret-key wrong --bucket bucket-11 --count 1",
        server.endpoint
    );
    let cli = Cli::try_parse_from(argv.split_whitespace()).unwrap();
    let err = meridian_client::run(cli.workload).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("SignatureDoesNotMatch"),
        "{err:#}"
    );
}
