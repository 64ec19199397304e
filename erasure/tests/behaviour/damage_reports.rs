use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use crate::support::{flip_bytes, header_len, pattern, TestSet, MIB};

#[tokio::test]
async fn flipped_bytes_in_two_data_shards_are_corrected_and_reported() {
    let set = TestSet::new(4, 2).await;
    let data = pattern(4 * MIB + 999, 21);
    let desc = set.write(&data).await;
    let mut damage = set.set.take_damage_receiver().unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    for round in 0..5u64 {
        let mut shards: Vec<usize> = (0..4).collect();
        shards.shuffle(&mut rng);
        let chosen = &shards[..2];
        let before = set.snapshot(&desc);
        for (i, &shard) in chosen.iter().enumerate() {
            flip_bytes(
                &set.shard_path(&desc, shard),
                header_len(),
                3,
                round * 10 + i as u64,
            );
        }
        assert_eq!(set.read_all(&desc).await.unwrap(), data, "round {round}");
        let report = damage.try_recv().expect("damage is reported");
        let mut expected = chosen.to_vec();
        expected.sort();
        assert_eq!(report.damaged_shards, expected, "round {round}");
        assert_eq!(report.descriptor, desc);
        // Put the original bytes back for the next round.
        for shard in chosen {
            std::fs::write(
                set.shard_path(&desc, *shard),
                before[*shard].as_ref().unwrap(),
            )
            .unwrap();
        }
    }
}

#[tokio::test]
async fn bytes_flipped_anywhere_in_up_to_two_shard_files_never_reach_the_reader() {
    let set = TestSet::new(4, 2).await;
    let data = pattern(3 * MIB + 5, 22);
    let desc = set.write(&data).await;
    let mut damage = set.set.take_damage_receiver().unwrap();
    let mut rng = StdRng::seed_from_u64(6);
    let pristine = set.snapshot(&desc);
    for round in 0..8u64 {
        let mut shards: Vec<usize> = (0..6).collect();
        shards.shuffle(&mut rng);
        let chosen = &shards[..2];
        for &shard in chosen {
            // Anywhere, header included.
            flip_bytes(
                &set.shard_path(&desc, shard),
                0,
                5,
                round * 100 + shard as u64,
            );
        }
        assert_eq!(
            set.read_all(&desc).await.unwrap(),
            data,
            "round {round}, shards {chosen:?}"
        );
        while let Ok(report) = damage.try_recv() {
            assert!(
                report.damaged_shards.iter().all(|s| chosen.contains(s)),
                "{report:?} vs {chosen:?}"
            );
        }
        for &shard in chosen {
            std::fs::write(
                set.shard_path(&desc, shard),
                pristine[shard].as_ref().unwrap(),
            )
            .unwrap();
        }
    }
}

#[tokio::test]
async fn truncated_shard_is_reported_as_damaged() {
    let set = TestSet::new(2, 1).await;
    let data = pattern(2 * MIB + 3, 23);
    let desc = set.write(&data).await;
    let mut damage = set.set.take_damage_receiver().unwrap();
    let path = set.shard_path(&desc, 1);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_eq!(set.read_all(&desc).await.unwrap(), data);
    assert_eq!(damage.try_recv().unwrap().damaged_shards, vec![1]);
}

#[tokio::test]
async fn damage_receiver_is_handed_out_once() {
    let set = TestSet::new(2, 1).await;
    assert!(set.set.take_damage_receiver().is_some());
    assert!(set.set.clone().take_damage_receiver().is_none());
}

#[tokio::test]
async fn reads_do_not_block_when_nobody_listens_for_damage() {
    let set = TestSet::new(2, 1).await;
    let data = pattern(MIB, 24);
    let desc = set.write(&data).await;
    std::fs::remove_file(set.shard_path(&desc, 0)).unwrap();
    for _ in 0..3 {
        assert_eq!(set.read_all(&desc).await.unwrap(), data);
    }
}
