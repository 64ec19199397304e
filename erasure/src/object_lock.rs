//! Per-object mutual exclusion between heal, scrub and delete, so a heal never resurrects
//! shards of an object that is being deleted. Reads and writes do not take it: a write owns a
//! fresh data id, and readers keep reading the file they opened when a heal replaces it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::DataId;

type LockMap = HashMap<DataId, Arc<tokio::sync::Mutex<()>>>;

/// A set of per-data-id locks; entries exist only while someone holds or waits for them.
#[derive(Default)]
pub(crate) struct ObjectLocks {
    map: Arc<Mutex<LockMap>>,
}

/// Holds the lock of one data id until dropped.
pub(crate) struct ObjectGuard {
    map: Arc<Mutex<LockMap>>,
    data_id: DataId,
    guard: Option<OwnedMutexGuard<()>>,
}

impl ObjectLocks {
    pub async fn lock(&self, data_id: DataId) -> ObjectGuard {
        let mutex = self
            .map
            .lock()
            .expect("lock map poisoned")
            .entry(data_id)
            .or_default()
            .clone();
        let guard = mutex.lock_owned().await;
        ObjectGuard {
            map: self.map.clone(),
            data_id,
            guard: Some(guard),
        }
    }
}

impl Drop for ObjectGuard {
    fn drop(&mut self) {
        let mut map = self.map.lock().expect("lock map poisoned");
        drop(self.guard.take());
        // Waiters clone the Arc under the map lock, so a count of one means nobody waits.
        if map
            .get(&self.data_id)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.data_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lock_entries_disappear_when_released() {
        let locks = ObjectLocks::default();
        let id = DataId::new_v4();
        let first = locks.lock(id).await;
        let waiter = {
            let map = locks.map.clone();
            let locks = ObjectLocks { map };
            tokio::spawn(async move { drop(locks.lock(id).await) })
        };
        tokio::task::yield_now().await;
        drop(first);
        waiter.await.unwrap();
        assert!(locks.map.lock().unwrap().is_empty());
    }
}
