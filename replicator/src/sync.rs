//! Sync mode: a write to a bucket replicated to a `mode = "sync"` peer is acknowledged only
//! once that peer has the version, verified — or once `sync_timeout` passed, after which the
//! ordinary asynchronous path finishes it. Writers wait on a notification the peer's worker
//! loop sends when it settles the version.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// (peer, bucket, key, version id, whether it is the version's removal)
pub(crate) type WaitKey = (String, String, String, String, bool);

/// How many settled removals are remembered (see [`Waiters::register`]), and for how long: a
/// writer starts waiting a moment after its commit, and a later removal of the same version
/// id (a `null` version written again) must not be taken for the earlier one.
const RECENT_REMOVALS: usize = 4096;
const REMEMBERED_FOR: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(crate) struct Waiters {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    waiting: HashMap<WaitKey, Vec<oneshot::Sender<()>>>,
    /// Removals settled lately, oldest first: a removed version has no record left to say
    /// its removal reached a peer, so a writer that starts waiting only after it settled
    /// learns it here.
    removals: VecDeque<WaitKey>,
    removed: HashMap<WaitKey, Instant>,
}

impl Waiters {
    /// A receiver that resolves when `key` is settled as done.
    /// (A removal settled before is answered at once, if it is among the last
    /// [`RECENT_REMOVALS`].)
    pub fn register(&self, key: WaitKey) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner
            .removed
            .get(&key)
            .is_some_and(|at| at.elapsed() < REMEMBERED_FOR)
        {
            let _ = tx.send(());
            return rx;
        }
        // Writers that gave up (timed out) left closed senders behind: drop them now and then.
        if inner.waiting.len() > 4096 {
            inner.waiting.retain(|_, senders| {
                senders.retain(|s| !s.is_closed());
                !senders.is_empty()
            });
        }
        inner.waiting.entry(key).or_default().push(tx);
        rx
    }

    /// Wakes everyone waiting for `key` (and remembers it, if it is a removal).
    pub fn done(&self, key: &WaitKey) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if key.4 && inner.removed.insert(key.clone(), Instant::now()).is_none() {
            inner.removals.push_back(key.clone());
            if inner.removals.len() > RECENT_REMOVALS {
                if let Some(old) = inner.removals.pop_front() {
                    inner.removed.remove(&old);
                }
            }
        }
        let senders = inner.waiting.remove(key);
        drop(inner);
        for s in senders.into_iter().flatten() {
            let _ = s.send(());
        }
    }

    /// Whether anyone waits at all (the worker loop skips building keys otherwise).
    pub fn is_empty(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: &str) -> WaitKey {
        ("west".into(), "b".into(), "k".into(), v.into(), false)
    }

    fn removal(v: &str) -> WaitKey {
        ("west".into(), "b".into(), "k".into(), v.into(), true)
    }

    #[tokio::test]
    async fn a_removal_settled_before_its_waiter_came_is_answered_at_once() {
        let w = Waiters::default();
        w.done(&removal("1"));
        w.done(&key("2"));
        // The removal is remembered; the version's own write (same id) is not a removal.
        w.register(removal("1")).await.unwrap();
        let mut write = w.register(key("1"));
        assert!(write.try_recv().is_err());
        let mut other = w.register(key("2"));
        assert!(other.try_recv().is_err(), "only removals are remembered");
        // Only the last RECENT_REMOVALS are.
        for i in 0..RECENT_REMOVALS {
            w.done(&removal(&format!("r{i}")));
        }
        let mut old = w.register(removal("1"));
        assert!(old.try_recv().is_err());
        w.register(removal(&format!("r{}", RECENT_REMOVALS - 1)))
            .await
            .unwrap();
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
