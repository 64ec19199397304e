use std::collections::BTreeSet;

use meridian_erasure::ErasureError;

use crate::support::{pattern, TestSet, MIB};

#[tokio::test]
async fn read_survives_any_two_lost_disks() {
    let set = TestSet::new(4, 2).await;
    let data = pattern(3 * MIB + 4_321, 11);
    let desc = set.write(&data).await;
    let mut damage = set.set.take_damage_receiver().unwrap();
    for a in 0..6 {
        for b in a + 1..6 {
            set.take_away(a);
            set.take_away(b);
            assert_eq!(
                set.read_all(&desc).await.unwrap(),
                data,
                "disks {a} and {b} lost"
            );
            set.bring_back(a);
            set.bring_back(b);
            // Shards on lost disks that the read needed are reported.
            let report = damage.try_recv();
            let lost: BTreeSet<usize> = [a, b]
                .into_iter()
                .map(|slot| shard_on(&desc.placement, slot))
                .collect();
            let data_lost: Vec<usize> = lost.iter().copied().filter(|&s| s < 4).collect();
            match report {
                Ok(report) => {
                    assert_eq!(report.descriptor, desc);
                    assert!(
                        report.damaged_shards.iter().all(|s| lost.contains(s)),
                        "{report:?}"
                    );
                    assert!(
                        data_lost.iter().all(|s| report.damaged_shards.contains(s)),
                        "{report:?}"
                    );
                }
                Err(_) => assert!(
                    data_lost.is_empty(),
                    "no report although data shards {data_lost:?} were lost"
                ),
            }
        }
    }
}

#[tokio::test]
async fn read_survives_four_lost_disks_of_eight_plus_four() {
    let set = TestSet::new(8, 4).await;
    let data = pattern(2 * MIB + 77, 12);
    let desc = set.write(&data).await;
    for lost in [[0, 1, 2, 3], [8, 9, 10, 11], [0, 5, 7, 11], [2, 3, 9, 10]] {
        lost.iter().for_each(|&slot| set.take_away(slot));
        assert_eq!(set.read_all(&desc).await.unwrap(), data, "lost {lost:?}");
        assert_eq!(
            set.read(&desc, 1_000..MIB as u64 + 5).await.unwrap(),
            &data[1_000..MIB + 5]
        );
        lost.iter().for_each(|&slot| set.bring_back(slot));
    }
}

#[tokio::test]
async fn three_lost_disks_of_four_plus_two_give_a_clear_error() {
    let set = TestSet::new(4, 2).await;
    let data = pattern(2 * MIB, 13);
    let desc = set.write(&data).await;
    for slot in [0, 2, 4] {
        set.take_away(slot);
    }
    match set.read_all(&desc).await {
        Err(ErasureError::NotEnoughShards {
            data_id,
            needed,
            available,
            details,
        }) => {
            assert_eq!((data_id, needed, available), (desc.data_id, 4, 3));
            assert!(details.contains("missing"), "{details}");
        }
        other => panic!("expected NotEnoughShards, got {other:?}"),
    }
    let err = set.set.heal(&desc).await.unwrap_err();
    assert!(matches!(err, ErasureError::NotEnoughShards { .. }), "{err}");
}

#[tokio::test]
async fn single_disk_store_detects_bitrot_without_returning_it() {
    let set = TestSet::new(1, 0).await;
    let data = pattern(MIB + 10, 14);
    let desc = set.write(&data).await;
    assert_eq!(set.read_all(&desc).await.unwrap(), data);
    crate::support::flip_bytes(
        &set.shard_path(&desc, 0),
        crate::support::header_len() + 4 + 100,
        1,
        1,
    );
    let err = set.read_all(&desc).await.unwrap_err();
    assert!(
        matches!(
            err,
            ErasureError::NotEnoughShards {
                needed: 1,
                available: 0,
                ..
            }
        ),
        "{err}"
    );
    // The second stripe is intact and still readable on its own.
    assert_eq!(
        set.read(&desc, MIB as u64..desc.size).await.unwrap(),
        &data[MIB..]
    );
}

#[tokio::test]
async fn disk_deleted_while_running_counts_as_missing() {
    let set = TestSet::new(4, 2).await;
    let data = pattern(MIB + 1, 15);
    let desc = set.write(&data).await;
    std::fs::remove_dir_all(set.disk(desc.placement[0] as usize)).unwrap();
    assert_eq!(set.read_all(&desc).await.unwrap(), data);
    let health = set.set.disk_health();
    assert_eq!(health.iter().filter(|h| !h.ok).count(), 1);
    let unhealthy = health.iter().find(|h| !h.ok).unwrap();
    assert_eq!(unhealthy.slot, desc.placement[0] as usize);
    assert!(
        unhealthy.error.as_deref().unwrap().contains("gone"),
        "{unhealthy:?}"
    );
}

fn shard_on(placement: &[u8], slot: usize) -> usize {
    placement.iter().position(|&s| s as usize == slot).unwrap()
}
