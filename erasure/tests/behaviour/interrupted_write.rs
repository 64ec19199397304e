//! A writer process killed with SIGKILL before `finish()` leaves only staging files, and the
//! next open sweeps them. The child is this test binary, re-executed to run
//! `interrupted_write_child`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use meridian_erasure::{DiskSet, DiskSetConfig, Durability};

use crate::support::{pattern, MIB};

const CHILD_ENV: &str = "MERIDIAN_ERASURE_KILL_TEST_DIR";

fn config(root: &std::path::Path) -> DiskSetConfig {
    let disks: Vec<PathBuf> = (0..6).map(|i| root.join(format!("disk{i}"))).collect();
    let mut config = DiskSetConfig::new(disks, 4, 2);
    config.durability = Durability::NoSync;
    config
}

#[test]
fn interrupted_write_leaves_nothing_after_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "interrupted_write::interrupted_write_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let staged = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.starts_with("STAGED"));
    assert!(
        staged.is_some(),
        "the child never reported its write in progress"
    );

    child.kill().unwrap(); // SIGKILL: no destructor, no cleanup runs.
    child.wait().unwrap();
    let config = config(dir.path());
    let leftovers = files_in_staging(&config);
    assert_eq!(
        leftovers.len(),
        6,
        "the killed write left its staging files: {leftovers:?}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let set = DiskSet::open(config.clone()).await.unwrap();
        assert!(
            files_in_staging(&config).is_empty(),
            "sweep left {:?}",
            files_in_staging(&config)
        );
        for disk in &config.disks {
            let data_entries = std::fs::read_dir(disk.join("data")).unwrap().count();
            assert_eq!(data_entries, 0, "no shard was committed");
        }
        assert!(set.disk_health().iter().all(|h| h.ok));
    });
}

/// Child process: starts a write, makes sure every shard has staged data, reports, and then
/// waits to be killed.
#[test]
#[ignore = "run as a child process by interrupted_write_leaves_nothing_after_the_sweep"]
fn interrupted_write_child() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let config = config(std::path::Path::new(&root));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let set = DiskSet::open(config.clone()).await.unwrap();
        let mut writer = set.writer(b"bucket/key".to_vec());
        writer
            .write(Bytes::from(pattern(5 * MIB + 3, 81)))
            .await
            .unwrap();
        // The pipeline writes in the background; wait until every disk has staged bytes (give
        // up eventually so a broken pipeline fails the parent instead of hanging it).
        let staged = |config: &DiskSetConfig| {
            let big = |p: &PathBuf| p.metadata().map_or(0, |m| m.len()) > MIB as u64 / 4;
            files_in_staging(config).iter().filter(|p| big(p)).count() == 6
        };
        for _ in 0..12_000 {
            if staged(&config) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(staged(&config), "the write never reached every disk");
        println!("STAGED {}", writer.data_id());
        std::future::pending::<()>().await;
    });
}

fn files_in_staging(config: &DiskSetConfig) -> Vec<PathBuf> {
    config
        .disks
        .iter()
        .flat_map(|d| std::fs::read_dir(d.join("staging")).into_iter().flatten())
        .map(|e| e.unwrap().path())
        .collect()
}
