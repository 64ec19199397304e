use std::fs;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::support::{pattern, TestSet, MIB};

#[tokio::test]
async fn inventory_lists_every_object_with_its_identity_and_age() {
    let set = TestSet::new(4, 2).await;
    let before = SystemTime::now() - Duration::from_secs(1);
    let mut written = Vec::new();
    for (i, size) in [10usize, MIB + 3].into_iter().enumerate() {
        let mut w = set.set.writer(format!("identity-{i}").into_bytes());
        w.write(Bytes::from(pattern(size, i as u64))).await.unwrap();
        written.push(w.finish().await.unwrap().descriptor);
    }
    // Only one shard of the first object survives: it is still listed.
    for shard in 1..6 {
        fs::remove_file(set.shard_path(&written[0], shard)).unwrap();
    }

    let mut found = set.set.inventory().await;
    found.sort_by_key(|o| o.identity.clone());
    assert_eq!(found.len(), 2);
    for (i, (o, d)) in found.iter().zip(&written).enumerate() {
        assert_eq!(o.data_id, d.data_id);
        assert_eq!(o.identity, format!("identity-{i}").into_bytes());
        assert!(
            o.modified >= before,
            "modified is when the shards were written"
        );
    }

    set.set.delete(written[1].data_id).await.unwrap();
    assert_eq!(
        set.set.inventory().await.len(),
        1,
        "deleted objects are gone from the inventory"
    );
}
