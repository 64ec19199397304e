//! Sync mode: a write to a bucket replicated to a `mode = "sync"` peer is acknowledged only
//! once that peer has the version, verified — or once `sync_timeout` passed, after which the
//! ordinary asynchronous path finishes it. Writers wait on a notification the peer's worker
//! loop sends when it settles the version.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// (peer, bucket, key, version id)
pub(crate) type WaitKey = (String, String, String, String);

#[derive(Default)]
pub(crate) struct Waiters {
    waiting: Mutex<HashMap<WaitKey, Vec<oneshot::Sender<()>>>>,
}

impl Waiters {
    /// A receiver that resolves when `key` is settled as done.
    pub fn register(&self, key: WaitKey) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        // Writers that gave up (timed out) left closed senders behind: drop them now and then.
        if waiting.len() > 4096 {
            waiting.retain(|_, senders| {
                senders.retain(|s| !s.is_closed());
                !senders.is_empty()
            });
        }
        waiting.entry(key).or_default().push(tx);
        rx
    }

    /// Wakes everyone waiting for `key`.
    pub fn done(&self, key: &WaitKey) {
        let senders = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        for s in senders.into_iter().flatten() {
            let _ = s.send(());
        }
    }

    /// Whether anyone waits at all (the worker loop skips building keys otherwise).
    pub fn is_empty(&self) -> bool {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: &str) -> WaitKey {
        ("west".into(), "b".into(), "k".into(), v.into())
    }

    #[tokio::test]
    async fn waiters_wake_when_their_version_is_done() {
        let w = Waiters::default();
        let a = w.register(key("1"));
        let b = w.register(key("1"));
        let other = w.register(key("2"));
        w.done(&key("1"));
        a.await.unwrap();
        b.await.unwrap();
        assert!(!w.is_empty(), "version 2 still awaited");
        drop(other);
        w.done(&key("2"));
        assert!(w.is_empty());
    }
}
