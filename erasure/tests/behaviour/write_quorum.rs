use bytes::Bytes;
use meridian_erasure::ErasureError;

use crate::support::{pattern, TestSet, MIB};

#[tokio::test]
async fn write_with_one_disk_gone_meets_quorum_and_reports_the_missing_shard() {
    let set = TestSet::new(4, 2).await;
    set.take_away(2);
    let data = pattern(2 * MIB + 7, 71);
    let outcome = set.write_chunked(&data, 65_536).await;
    let shard = outcome
        .descriptor
        .placement
        .iter()
        .position(|&s| s == 2)
        .unwrap();
    assert_eq!(outcome.missing_shards, vec![shard]);
    assert_eq!(set.read_all(&outcome.descriptor).await.unwrap(), data);
    set.bring_back(2);
    let report = set.set.heal(&outcome.descriptor).await.unwrap();
    assert_eq!(report.healed_shards, vec![shard]);
}

#[tokio::test]
async fn write_below_quorum_fails_and_leaves_nothing_behind() {
    let set = TestSet::new(4, 2).await;
    set.take_away(0);
    set.take_away(3);
    let mut writer = set.set.writer(b"id".to_vec());
    let data = Bytes::from(pattern(3 * MIB, 72));
    let mut result = Ok(());
    for chunk in data.chunks(MIB / 2) {
        result = writer.write(Bytes::copy_from_slice(chunk)).await;
        if result.is_err() {
            break;
        }
    }
    let err = match result {
        Err(e) => {
            writer.abort().await;
            e
        }
        Ok(()) => writer.finish().await.unwrap_err(),
    };
    match err {
        ErasureError::WriteQuorum {
            needed,
            succeeded,
            details,
            ..
        } => {
            assert_eq!((needed, succeeded), (5, 4));
            assert!(details.contains("shard"), "{details}");
        }
        other => panic!("expected WriteQuorum, got {other}"),
    }
    set.bring_back(0);
    set.bring_back(3);
    assert!(set.staging_files().is_empty(), "{:?}", set.staging_files());
    assert!(set.shard_files().is_empty(), "{:?}", set.shard_files());
}

#[tokio::test]
async fn finish_below_quorum_fails_for_small_objects_too() {
    let set = TestSet::new(2, 1).await;
    set.take_away(1);
    let mut writer = set.set.writer(Vec::new());
    writer.write(Bytes::from_static(b"tiny")).await.ok();
    let err = writer.finish().await.unwrap_err();
    assert!(
        matches!(
            err,
            ErasureError::WriteQuorum {
                needed: 3,
                succeeded: 2,
                ..
            }
        ),
        "{err}"
    );
    set.bring_back(1);
    assert!(set.staging_files().is_empty() && set.shard_files().is_empty());
}

#[tokio::test]
async fn aborted_write_leaves_nothing_behind() {
    let set = TestSet::new(4, 2).await;
    let mut writer = set.set.writer(b"id".to_vec());
    writer
        .write(Bytes::from(pattern(3 * MIB + 5, 73)))
        .await
        .unwrap();
    writer.abort().await;
    assert!(set.staging_files().is_empty());
    assert!(set.shard_files().is_empty());
}

#[tokio::test]
async fn dropped_writer_cleans_up_in_the_background() {
    let set = TestSet::new(4, 2).await;
    let mut writer = set.set.writer(b"id".to_vec());
    writer
        .write(Bytes::from(pattern(2 * MIB, 74)))
        .await
        .unwrap();
    drop(writer);
    // Cleanup happens on the writer's own threads; wait for it without asserting on time.
    for _ in 0..6_000 {
        if set.staging_files().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(set.staging_files().is_empty());
    assert!(set.shard_files().is_empty());
}

#[tokio::test]
async fn oversized_identity_is_refused() {
    let set = TestSet::new(2, 1).await;
    let mut writer = set
        .set
        .writer(vec![0; meridian_erasure::MAX_IDENTITY_LEN + 1]);
    assert!(matches!(
        writer.write(Bytes::from_static(b"x")).await,
        Err(ErasureError::InvalidConfig(_))
    ));
    assert!(writer.finish().await.is_err());
    assert!(set.staging_files().is_empty() && set.shard_files().is_empty());
}

#[tokio::test]
async fn each_writer_gets_a_fresh_data_id() {
    let set = TestSet::new(2, 1).await;
    let a = set.set.writer(Vec::new());
    let b = set.set.writer(Vec::new());
    assert_ne!(a.data_id(), b.data_id());
    let id = a.data_id();
    let outcome = a.finish().await.unwrap();
    assert_eq!(outcome.descriptor.data_id, id);
    b.abort().await;
}

#[tokio::test]
async fn writes_in_flight_are_bounded_and_a_freed_place_is_taken_again() {
    use futures::FutureExt;
    let set = TestSet::new(2, 1).await;
    let held: Vec<_> = (0..meridian_erasure::MAX_CONCURRENT_WRITES)
        .map(|_| set.set.write_slot().now_or_never().expect("a free place"))
        .collect();
    let mut waiting = Box::pin(set.set.write_slot());
    assert!(
        (&mut waiting).now_or_never().is_none(),
        "no place beyond the bound"
    );
    drop(held);
    assert!(waiting.now_or_never().is_some(), "a freed place is taken");
}
