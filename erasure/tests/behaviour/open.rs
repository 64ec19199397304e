use std::fs;

use meridian_erasure::{DiskSet, DiskSetConfig, ErasureError};

use crate::support::{pattern, TestSet, MIB};

#[tokio::test]
async fn new_set_creates_its_directories_and_format_files() {
    let set = TestSet::new(4, 2).await;
    for (slot, disk) in set.config.disks.iter().enumerate() {
        let format: serde_json::Value =
            serde_json::from_slice(&fs::read(disk.join("format.json")).unwrap()).unwrap();
        assert_eq!(format["slot"], slot);
        assert_eq!(format["format_version"], 1);
        assert!(disk.join("data").is_dir() && disk.join("staging").is_dir());
    }
    assert!(set
        .set
        .disk_health()
        .iter()
        .all(|h| h.ok && h.error.is_none()));
    assert_eq!(
        (
            set.set.data_shards(),
            set.set.parity_shards(),
            set.set.stripe_size()
        ),
        (4, 2, MIB)
    );
}

#[tokio::test]
async fn disk_from_another_set_is_refused() {
    let ours = TestSet::new(2, 1).await;
    let theirs = TestSet::new(2, 1).await;
    let mut config = ours.config.clone();
    config.disks[1] = theirs.config.disks[1].clone();
    match DiskSet::open(config).await {
        Err(ErasureError::ForeignDisk { slot, reason, .. }) => {
            assert_eq!(slot, 1);
            assert!(reason.contains("belongs to disk set"), "{reason}");
        }
        other => panic!("expected ForeignDisk, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn disk_in_another_position_is_refused() {
    let set = TestSet::new(2, 1).await;
    let mut config = set.config.clone();
    config.disks.swap(0, 2);
    match DiskSet::open(config).await {
        Err(ErasureError::ForeignDisk { slot, reason, .. }) => {
            assert_eq!(slot, 0);
            assert!(reason.contains("slot 2"), "{reason}");
        }
        other => panic!("expected ForeignDisk, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn non_empty_unformatted_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let disks: Vec<_> = (0..3).map(|i| dir.path().join(format!("d{i}"))).collect();
    fs::create_dir_all(&disks[2]).unwrap();
    fs::write(disks[2].join("precious.txt"), b"not ours").unwrap();
    let err = DiskSet::open(DiskSetConfig::new(disks.clone(), 2, 1))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, ErasureError::ForeignDisk { slot: 2, .. }),
        "{err}"
    );
    assert!(disks[2].join("precious.txt").exists());
}

#[tokio::test]
async fn a_different_layout_on_existing_disks_is_refused() {
    let set = TestSet::new(4, 2).await;
    let mut config = set.config.clone();
    config.data_shards = 3;
    config.parity_shards = 3;
    let err = DiskSet::open(config).await.err().unwrap();
    assert!(
        matches!(err, ErasureError::InvalidConfig(ref m) if m.contains("formatted as 4+2")),
        "{err}"
    );
}

#[tokio::test]
async fn missing_disk_of_an_existing_set_stays_offline_and_is_not_recreated() {
    let mut set = TestSet::new(4, 2).await;
    let data = pattern(MIB + 9, 61);
    let desc = set.write(&data).await;
    fs::remove_dir_all(set.disk(5)).unwrap();
    set.reopen().await;
    assert!(!set.disk(5).exists());
    let health = set.set.disk_health();
    assert!(
        !health[5].ok && health[..5].iter().all(|h| h.ok),
        "{health:?}"
    );
    assert_eq!(set.read_all(&desc).await.unwrap(), data);
    // New writes still meet quorum (5 of 6) and report the shard they could not place.
    let outcome = set.write_chunked(&data, MIB).await;
    let shard = outcome
        .descriptor
        .placement
        .iter()
        .position(|&s| s == 5)
        .unwrap();
    assert_eq!(outcome.missing_shards, vec![shard]);
}

#[tokio::test]
async fn too_few_usable_disks_refuse_to_open() {
    let set = TestSet::new(2, 1).await;
    fs::remove_dir_all(set.disk(0)).unwrap();
    fs::remove_dir_all(set.disk(1)).unwrap();
    let err = DiskSet::open(set.config.clone()).await.err().unwrap();
    assert!(
        matches!(
            err,
            ErasureError::NotEnoughDisks {
                usable: 1,
                needed: 2,
                total: 3
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn invalid_layouts_are_refused_before_touching_disks() {
    let dir = tempfile::tempdir().unwrap();
    let disks: Vec<_> = (0..6).map(|i| dir.path().join(format!("d{i}"))).collect();
    let err = DiskSet::open(DiskSetConfig::new(disks.clone(), 2, 4))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ErasureError::InvalidConfig(_)), "{err}");
    assert!(!disks[0].exists());
}
