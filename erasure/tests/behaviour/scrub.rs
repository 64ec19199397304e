use std::fs;

use crate::support::{flip_bytes, header_len, pattern, TestSet, MIB};

#[tokio::test]
async fn scrub_finds_and_heals_damage_without_descriptors() {
    let set = TestSet::new(4, 2).await;
    let a = set.write(&pattern(MIB + 5, 41)).await;
    let b = set.write(&pattern(2 * MIB, 42)).await;
    let c = set.write(&pattern(10, 43)).await;
    let pristine: Vec<_> = [&a, &b, &c].iter().map(|d| set.snapshot(d)).collect();
    fs::remove_file(set.shard_path(&a, 0)).unwrap();
    flip_bytes(&set.shard_path(&b, 5), header_len(), 2, 7);
    flip_bytes(&set.shard_path(&b, 3), 0, 1, 8);

    let report = set.set.scrub().await.unwrap();
    assert_eq!(report.objects_checked, 3);
    assert_eq!(report.shards_damaged, 3);
    assert_eq!(report.shards_healed, 3);
    assert!(report.unrecoverable.is_empty());
    for (desc, pristine) in [&a, &b, &c].iter().zip(&pristine) {
        assert_eq!(&set.snapshot(desc), pristine);
    }
    let again = set.set.scrub().await.unwrap();
    assert_eq!((again.objects_checked, again.shards_damaged), (3, 0));
}

#[tokio::test]
async fn scrub_lists_objects_it_cannot_recover() {
    let set = TestSet::new(2, 1).await;
    let good = set.write(&pattern(MIB, 44)).await;
    let lost = set.write(&pattern(MIB, 45)).await;
    fs::remove_file(set.shard_path(&lost, 0)).unwrap();
    fs::remove_file(set.shard_path(&lost, 1)).unwrap();
    let report = set.set.scrub().await.unwrap();
    assert_eq!(report.unrecoverable, vec![lost.data_id]);
    assert_eq!(report.objects_checked, 2);
    assert!(set.read_all(&good).await.is_ok());
    // Nothing was written for the lost object.
    assert_eq!(
        set.snapshot(&lost).iter().filter(|s| s.is_some()).count(),
        1
    );
}
