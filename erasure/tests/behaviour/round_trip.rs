use meridian_erasure::{ObjectDescriptor, SHARD_FORMAT_VERSION};

use crate::support::{pattern, TestSet, MIB};

async fn assert_round_trip(set: &TestSet, size: usize, chunk: usize) -> ObjectDescriptor {
    let data = pattern(size, size as u64);
    let outcome = set.write_chunked(&data, chunk).await;
    assert!(outcome.missing_shards.is_empty());
    let desc = outcome.descriptor;
    assert_eq!(desc.size, size as u64);
    assert_eq!(
        set.read_all(&desc).await.unwrap(),
        data,
        "size {size}, chunk {chunk}"
    );
    desc
}

#[tokio::test]
async fn put_then_get_returns_same_bytes_for_edge_sizes() {
    let set = TestSet::new(4, 2).await;
    let stripe = MIB;
    for size in [0, 1, stripe - 1, stripe, stripe + 1, 3 * MIB + 12_345] {
        for chunk in [MIB, 65_536, 7_777] {
            assert_round_trip(&set, size, chunk).await;
        }
    }
}

#[tokio::test]
async fn chunks_larger_than_a_stripe_are_accepted() {
    let set = TestSet::new(4, 2).await;
    assert_round_trip(&set, 5 * MIB + 3, 3 * MIB + 1).await;
    assert_round_trip(&set, 4 * MIB, 4 * MIB).await;
}

#[tokio::test]
async fn layouts_from_single_disk_to_eight_plus_four_round_trip() {
    for (k, m) in [(1, 0), (1, 1), (2, 1), (3, 2), (6, 3), (8, 4)] {
        let set = TestSet::new(k, m).await;
        for size in [0, 1, MIB - 1, 2 * MIB + 999] {
            assert_round_trip(&set, size, 50_000).await;
        }
    }
}

#[tokio::test]
async fn descriptor_describes_the_stored_object() {
    let set = TestSet::new(4, 2).await;
    let desc = assert_round_trip(&set, MIB + 1, MIB).await;
    assert_eq!((desc.data_shards, desc.parity_shards), (4, 2));
    assert_eq!(
        (desc.stripe_size, desc.block_size),
        (MIB as u32, MIB as u32 / 4)
    );
    assert_eq!(desc.format_version, SHARD_FORMAT_VERSION);
    let mut slots = desc.placement.clone();
    slots.sort();
    assert_eq!(slots, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(
        ObjectDescriptor::from_bytes(&desc.to_bytes()).unwrap(),
        desc
    );
    // One shard file per disk, none left in staging.
    assert_eq!(set.shard_files().len(), 6);
    assert!(set.staging_files().is_empty());
}

#[tokio::test]
async fn empty_object_has_a_descriptor_and_reads_as_nothing() {
    let set = TestSet::new(4, 2).await;
    let desc = assert_round_trip(&set, 0, MIB).await;
    assert_eq!(desc.size, 0);
    assert!(set.read(&desc, 0..0).await.unwrap().is_empty());
}

#[tokio::test]
async fn shard_zero_rotates_across_disks() {
    let set = TestSet::new(2, 1).await;
    let mut first_slots = std::collections::BTreeSet::new();
    for _ in 0..30 {
        first_slots.insert(set.write(b"x").await.placement[0]);
    }
    assert_eq!(first_slots.len(), 3, "{first_slots:?}");
}

#[tokio::test]
async fn objects_survive_reopening_the_set() {
    let mut set = TestSet::new(4, 2).await;
    let data = pattern(2 * MIB + 5, 9);
    let desc = set.write(&data).await;
    set.reopen().await;
    assert_eq!(set.read_all(&desc).await.unwrap(), data);
}

#[tokio::test]
async fn fsync_durability_writes_readable_objects() {
    let mut set = TestSet::new(2, 1).await;
    set.config.durability = meridian_erasure::Durability::Fsync;
    set.reopen().await;
    let data = pattern(MIB + 17, 4);
    let desc = set.write(&data).await;
    assert_eq!(set.read_all(&desc).await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_readers_do_not_mix_objects() {
    let set = std::sync::Arc::new(TestSet::new(4, 2).await);
    let writes = (0..8u64).map(|i| {
        let set = set.clone();
        tokio::spawn(async move {
            let data = pattern(MIB / 2 + 1_000 * i as usize, 100 + i);
            let desc = set
                .write_chunked(&data, 10_000 + i as usize)
                .await
                .descriptor;
            (data, desc)
        })
    });
    let objects: Vec<_> = futures::future::join_all(writes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let reads = objects.into_iter().map(|(data, desc)| {
        let set = set.clone();
        tokio::spawn(async move { assert_eq!(set.read_all(&desc).await.unwrap(), data) })
    });
    for read in futures::future::join_all(reads).await {
        read.unwrap();
    }
}
