//! `meridian bench` end to end: the real binary, run as a subprocess with small `--count`s and
//! `--json`, driving a real meridian server. Checks operation counts, the JSON report's shape,
//! exit codes, and that `--verify` catches an object overwritten behind the bench's back.
//! Correctness only: no speed is asserted here (`make bench` measures).

use std::process::{Command, Output};

use meridian_tests::{meridian_binary, pattern, TestServer, ACCESS_KEY, SECRET_KEY};
use serde_json::Value;

/// The result of one `meridian bench` run.
struct BenchRun {
    output: Output,
    report: Option<Value>,
}

impl BenchRun {
    fn succeeded(&self) -> bool {
        self.output.status.success()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The JSON report; panics with the run's output if there is none.
    fn report(&self) -> &Value {
        self.report.as_ref().unwrap_or_else(|| {
            panic!(
                "no JSON report; status {}\nstdout:\n{}\nstderr:\n{}",
                self.output.status,
                String::from_utf8_lossy(&self.output.stdout),
                self.stderr()
            )
        })
    }

    fn u64(&self, pointer: &str) -> u64 {
        self.report()
            .pointer(pointer)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("report lacks {pointer}: {}", self.report()))
    }

    /// Asserts a clean run: exit 0 and no errors.
    fn assert_clean(&self) -> &Self {
        assert!(
            self.succeeded() && self.u64("/errors") == 0,
            "bench failed: {}\n{}",
            self.report(),
            self.stderr()
        );
        self
    }
}

/// Runs `meridian bench <args> --json` against `server` with the root credentials.
fn bench(server: &TestServer, args: &str) -> BenchRun {
    bench_as(server, ACCESS_KEY, SECRET_KEY, args)
}

fn bench_as(server: &TestServer, access_key: &str, secret_key: &str, args: &str) -> BenchRun {
    let output = Command::new(meridian_binary())
        .arg("bench")
        .args(args.split_whitespace())
        .args(["--endpoint", &server.endpoint])
        .args(["--access-key", access_key, "--secret-key", secret_key])
        .arg("--json")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .expect("running meridian bench");
    let report = serde_json::from_slice(&output.stdout).ok();
    BenchRun { output, report }
}

fn key(i: u64) -> String {
    format!("bench/obj-{i:08}")
}

#[test]
fn put_and_get_report_their_counts_in_the_documented_json() {
    let server = TestServer::start();
    let put = bench(
        &server,
        "put --bucket bench-json --size 64KiB --count 12 --concurrency 4",
    );
    put.assert_clean();
    let report = put.report();
    assert_eq!(report["workload"], "put");
    assert_eq!(put.u64("/ops"), 12);
    assert_eq!(put.u64("/bytes"), 12 * 65536);
    for field in ["ops_per_sec", "mb_per_sec", "duration_s"] {
        assert!(report[field].is_number(), "{field} missing: {report}");
    }
    for field in ["p50", "p90", "p99", "max"] {
        assert!(
            report["latency_ms"][field].is_number(),
            "latency_ms.{field} missing: {report}"
        );
    }
    assert!(report["errors_by_code"].as_object().unwrap().is_empty());
    assert_eq!(report["settings"]["size_bytes"], 65536);
    assert_eq!(report["settings"]["concurrency"], 4);
    assert_eq!(report["settings"]["count"], 12);
    assert_eq!(report["operations"]["put"]["ops"], 12);

    let get = bench(
        &server,
        "get --bucket bench-json --size 64KiB --count 12 --verify --no-prepare",
    );
    get.assert_clean();
    assert_eq!(get.u64("/ops"), 12);
    assert_eq!(get.u64("/bytes"), 12 * 65536);
    assert_eq!(get.report()["settings"]["verify"], true);
}

#[tokio::test]
async fn verify_catches_an_object_overwritten_with_other_bytes() {
    let server = TestServer::start();
    // 256 KiB: above the inline threshold, so the objects go through the erasure path.
    let args = "--bucket bench-verify --size 256KiB --count 6";
    bench(&server, &format!("put {args}")).assert_clean();
    bench(&server, &format!("get {args} --verify --no-prepare")).assert_clean();

    server
        .client()
        .put_object()
        .bucket("bench-verify")
        .key(key(2))
        .body(pattern(256 * 1024, 99).into())
        .send()
        .await
        .unwrap();
    let caught = bench(&server, &format!("get {args} --verify --no-prepare"));
    assert!(
        !caught.succeeded(),
        "a content mismatch must fail the run: {}",
        caught.report()
    );
    assert_eq!(caught.u64("/errors_by_code/ContentMismatch"), 1);
    assert_eq!(caught.u64("/ops"), 5);
    let example = caught.report()["error_examples"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        example.contains(&key(2)),
        "the error names the object: {example}"
    );

    let tolerated = bench(
        &server,
        &format!("get {args} --verify --no-prepare --tolerate-errors"),
    );
    assert!(tolerated.succeeded(), "--tolerate-errors exits 0");
    assert_eq!(tolerated.u64("/errors"), 1);
}

#[test]
fn mixed_list_multipart_ranged_get_and_delete_run_cleanly() {
    let server = TestServer::start();
    let mixed = bench(
        &server,
        "mixed --bucket bench-all --prefix mixed/ --size 64KiB --keys 8 --count 40 --get-ratio 0.7 --verify",
    );
    mixed.assert_clean();
    assert_eq!(mixed.u64("/operations/get/ops"), 28);
    assert_eq!(mixed.u64("/operations/put/ops"), 12);

    let list = bench(
        &server,
        "list --bucket bench-list --size 1KiB --keys 30 --max-keys 10 --count 6 --concurrency 1 --verify",
    );
    list.assert_clean();
    assert_eq!(list.u64("/ops"), 6);
    assert_eq!(
        list.u64("/operations/list/objects"),
        60,
        "two walks of 30 keys"
    );

    let parts = "--bucket bench-all --prefix big/ --size 11MiB --part-size 5MiB --keys 2";
    let multipart = bench(
        &server,
        &format!("multipart {parts} --count 2 --part-concurrency 3"),
    );
    multipart.assert_clean();
    assert_eq!(multipart.u64("/ops"), 2);
    assert_eq!(multipart.u64("/operations/upload_part/ops"), 6);
    let ranged = bench(
        &server,
        &format!("get {parts} --count 2 --ranged --verify --no-prepare"),
    );
    ranged.assert_clean();
    assert_eq!(ranged.u64("/operations/get_range/ops"), 6);
    assert_eq!(ranged.u64("/bytes"), 2 * 11 * 1024 * 1024);

    let delete = bench(
        &server,
        "delete --bucket bench-all --prefix del/ --size 4KiB --keys 10",
    );
    delete.assert_clean();
    assert_eq!(delete.u64("/ops"), 10);
}

#[test]
fn wrong_credentials_exit_non_zero_with_the_s3_error() {
    let server = TestServer::start();
    let run = bench_as(
        &server,
        ACCESS_KEY,
        "not-the-secret",
        "put --bucket bench-auth --count 1",
    );
    assert!(!run.succeeded());
    assert!(
        run.stderr().contains("SignatureDoesNotMatch"),
        "stderr: {}",
        run.stderr()
    );
}

#[test]
fn the_bench_drives_an_https_endpoint_trusting_the_ca_it_is_given() {
    let ca = meridian_tests::tls::TestCa::new("bench");
    let server = TestServer::start_with(meridian_tests::ServerOptions {
        tls: Some((ca.issue(), ca.ca_pem().to_owned())),
        ..meridian_tests::ServerOptions::default()
    });
    let ca_file = ca.ca_file();
    let trusted = bench(
        &server,
        &format!(
            "put --bucket bench-tls --size 64KiB --count 8 --ca-file {}",
            ca_file.display()
        ),
    );
    trusted.assert_clean();
    assert_eq!(trusted.u64("/ops"), 8);
    let get = bench(
        &server,
        &format!(
            "get --bucket bench-tls --size 64KiB --count 8 --verify --no-prepare --ca-file {}",
            ca_file.display()
        ),
    );
    get.assert_clean();
    // Without the CA the server's certificate does not verify: nothing is written.
    let untrusted = bench(&server, "put --bucket bench-tls --size 1KiB --count 2");
    assert!(!untrusted.succeeded(), "{}", untrusted.stderr());
}
