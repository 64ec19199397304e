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

/// How a waited-for change was settled with its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The peer has it.
    Done,
    /// The peer, another node of this region, refused it: it does not take this node for the
    /// partition's primary (the change is not queued for it any more).
    Refused,
}

#[derive(Default)]
pub(crate) struct Waiters {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    waiting: HashMap<WaitKey, Vec<oneshot::Sender<Settled>>>,
    /// Removals settled lately, oldest first: a removed version has no record left to say
    /// its removal reached a peer, so a writer that starts waiting only after it settled
    /// learns it here.
    removals: VecDeque<WaitKey>,
    removed: HashMap<WaitKey, Instant>,
}

impl Waiters {
    /// A receiver that resolves when `key` is settled.
    /// (A removal settled before is answered at once, if it is among the last
    /// [`RECENT_REMOVALS`].)
    pub fn register(&self, key: WaitKey) -> oneshot::Receiver<Settled> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner
            .removed
            .get(&key)
            .is_some_and(|at| at.elapsed() < REMEMBERED_FOR)
        {
            let _ = tx.send(Settled::Done);
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
            let _ = s.send(Settled::Done);
        }
    }

    /// Wakes everyone waiting for `key` with the news that the peer refused it (nothing is
    /// remembered: the change may be queued again and then reach it).
    pub fn refused(&self, key: &WaitKey) {
        let senders = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
            .remove(key);
        for s in senders.into_iter().flatten() {
            let _ = s.send(Settled::Refused);
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
        assert_eq!(w.register(removal("1")).await, Ok(Settled::Done));
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
        assert_eq!(a.await, Ok(Settled::Done));
        assert_eq!(b.await, Ok(Settled::Done));
        assert!(!w.is_empty(), "version 2 still awaited");
        drop(other);
        w.done(&key("2"));
        assert!(w.is_empty());
    }

    #[tokio::test]
    async fn a_refusal_wakes_its_waiters_and_is_not_remembered() {
        let w = Waiters::default();
        let write = w.register(key("1"));
        let remove = w.register(removal("1"));
        w.refused(&key("1"));
        w.refused(&removal("1"));
        assert_eq!(write.await, Ok(Settled::Refused));
        assert_eq!(remove.await, Ok(Settled::Refused));
        // The removal queued again and then done is answered as done, not as refused.
        let mut again = w.register(removal("1"));
        assert!(again.try_recv().is_err(), "a refusal is not remembered");
        w.done(&removal("1"));
        assert_eq!(again.await, Ok(Settled::Done));
    }
}
