use std::fs;

use crate::support::{flip_bytes, header_len, pattern, TestSet, MIB};

#[tokio::test]
async fn heal_restores_every_shard_byte_identical() {
    let set = TestSet::new(4, 2).await;
    let data = pattern(3 * MIB + 111, 31);
    let desc = set.write(&data).await;
    let pristine = set.snapshot(&desc);
    fs::remove_file(set.shard_path(&desc, 1)).unwrap();
    flip_bytes(&set.shard_path(&desc, 4), header_len(), 4, 1);
    let report = set.set.heal(&desc).await.unwrap();
    assert_eq!(report.damaged_shards, vec![1, 4]);
    assert_eq!(report.healed_shards, vec![1, 4]);
    assert!(report.failed_shards.is_empty());
    assert_eq!(set.snapshot(&desc), pristine);
    assert!(set.staging_files().is_empty());
}

#[tokio::test]
async fn heal_of_a_healthy_object_changes_nothing() {
    let set = TestSet::new(4, 2).await;
    let desc = set.write(&pattern(MIB + 1, 32)).await;
    let pristine = set.snapshot(&desc);
    let report = set.set.heal(&desc).await.unwrap();
    assert!(report.damaged_shards.is_empty() && report.healed_shards.is_empty());
    assert_eq!(set.snapshot(&desc), pristine);
}

#[tokio::test]
async fn heal_rebuilds_when_every_shard_has_a_different_bad_stripe() {
    // 6 shards, 6 stripes: shard i is corrupt in stripe i only. Every stripe still has 5 good
    // blocks, so everything can be rebuilt although no shard is intact.
    let set = TestSet::with_stripe(4, 2, 4096).await;
    let data = pattern(6 * 4096, 33);
    let desc = set.write(&data).await;
    let pristine = set.snapshot(&desc);
    let frame = 4 + desc.block_size as u64;
    for shard in 0..6 {
        let path = set.shard_path(&desc, shard);
        let mut bytes = fs::read(&path).unwrap();
        bytes[(header_len() + shard as u64 * frame + 10) as usize] ^= 0xff;
        fs::write(&path, bytes).unwrap();
    }
    assert_eq!(set.read_all(&desc).await.unwrap(), data);
    let report = set.set.heal(&desc).await.unwrap();
    assert_eq!(report.healed_shards, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(set.snapshot(&desc), pristine);
}

#[tokio::test]
async fn heal_fixes_truncated_and_overlong_shard_files() {
    let set = TestSet::new(2, 1).await;
    let desc = set.write(&pattern(2 * MIB, 34)).await;
    let pristine = set.snapshot(&desc);
    let truncated = set.shard_path(&desc, 0);
    let len = fs::metadata(&truncated).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let overlong = set.shard_path(&desc, 2);
    fs::OpenOptions::new()
        .append(true)
        .open(&overlong)
        .unwrap()
        .set_len(len + 10)
        .unwrap();
    let report = set.set.heal(&desc).await.unwrap();
    assert_eq!(report.healed_shards, vec![0, 2]);
    assert_eq!(set.snapshot(&desc), pristine);
}

#[tokio::test]
async fn replaced_empty_disk_is_filled_by_heal() {
    let mut set = TestSet::new(4, 2).await;
    let objects: Vec<_> = [0usize, 1, MIB + 3, 3 * MIB]
        .iter()
        .map(|&n| pattern(n, n as u64))
        .collect();
    let mut descs = Vec::new();
    for data in &objects {
        descs.push(set.write(data).await);
    }
    let pristine: Vec<_> = descs.iter().map(|d| set.snapshot(d)).collect();
    // The disk in slot 3 is replaced by a new, empty one.
    fs::remove_dir_all(set.disk(3)).unwrap();
    fs::create_dir(set.disk(3)).unwrap();
    set.reopen().await;
    assert!(
        set.set.disk_health().iter().all(|h| h.ok),
        "{:?}",
        set.set.disk_health()
    );
    for (desc, data) in descs.iter().zip(&objects) {
        assert_eq!(&set.read_all(desc).await.unwrap(), data);
        let shard = desc.placement.iter().position(|&slot| slot == 3).unwrap();
        let report = set.set.heal(desc).await.unwrap();
        assert_eq!(report.healed_shards, vec![shard]);
    }
    for (desc, pristine) in descs.iter().zip(&pristine) {
        assert_eq!(&set.snapshot(desc), pristine);
    }
}

#[tokio::test]
async fn heal_reports_shards_it_cannot_rewrite() {
    let set = TestSet::new(4, 2).await;
    let data = pattern(MIB, 35);
    let desc = set.write(&data).await;
    let slot = desc.placement[2] as usize;
    set.take_away(slot);
    let report = set.set.heal(&desc).await.unwrap();
    assert_eq!(report.damaged_shards, vec![2]);
    assert!(report.healed_shards.is_empty());
    assert_eq!(report.failed_shards.len(), 1);
    assert_eq!(report.failed_shards[0].0, 2);
    set.bring_back(slot);
}
