use crate::support::{pattern, TestSet, MIB};

#[tokio::test]
async fn delete_removes_every_shard_and_tolerates_missing_ones() {
    let set = TestSet::new(4, 2).await;
    let keep = set.write(&pattern(MIB, 51)).await;
    let gone = set.write(&pattern(MIB + 1, 52)).await;
    std::fs::remove_file(set.shard_path(&gone, 3)).unwrap();
    set.take_away(gone.placement[4] as usize);
    set.set.delete(gone.data_id).await.unwrap();
    set.bring_back(gone.placement[4] as usize);
    // The disk that was away still has its shard; deleting again finishes the job.
    set.set.delete(gone.data_id).await.unwrap();
    assert!(set.snapshot(&gone).iter().all(Option::is_none));
    set.set.delete(gone.data_id).await.unwrap();
    assert_eq!(set.shard_files().len(), 6);
    assert!(set.read_all(&keep).await.is_ok());
    assert!(set.read_all(&gone).await.is_err());
}
