//! Damage reports from readers to whoever heals in the background.
//!
//! Reporting never blocks and never grows without bound: until the receiver is taken (and
//! after it is dropped) reports are discarded; an object already waiting to be healed is not
//! queued twice (a heal inspects every shard, so one report per object is enough); and when
//! [`DAMAGE_QUEUE`] objects wait, further reports are dropped and counted — the scrub finds
//! what was dropped. With a disk offline every read reports damage, so this is the case that
//! matters.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::mpsc::{channel, Receiver, Sender};

use crate::{DataId, ObjectDescriptor};

/// Objects that may wait to be healed.
pub const DAMAGE_QUEUE: usize = 1024;

/// Damage found by a reader: shards of an object that were missing, short or corrupt.
/// Handing `descriptor` to [`crate::DiskSet::heal`] repairs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamageReport {
    /// The object read.
    pub descriptor: ObjectDescriptor,
    /// Shard indexes (not disk slots), ascending.
    pub damaged_shards: Vec<usize>,
}

/// What the hub and its receiver share: the objects queued, and the reports dropped.
#[derive(Default)]
struct Queued {
    objects: Mutex<HashSet<DataId>>,
    dropped: AtomicU64,
}

impl Queued {
    fn objects(&self) -> std::sync::MutexGuard<'_, HashSet<DataId>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side, shared by every reader of a disk set.
#[derive(Default)]
pub(crate) struct DamageHub {
    /// `None` before the receiver is taken; `Some(None)` once it has been.
    sender: Mutex<Option<Option<Sender<DamageReport>>>>,
    queued: Arc<Queued>,
}

/// The receiving side: reports in the order they were found, one per object at a time.
pub struct DamageReceiver {
    rx: Receiver<DamageReport>,
    queued: Arc<Queued>,
}

impl DamageReceiver {
    /// The next report; `None` once the disk set is gone.
    pub async fn recv(&mut self) -> Option<DamageReport> {
        let report = self.rx.recv().await?;
        self.queued.objects().remove(&report.descriptor.data_id);
        Some(report)
    }

    /// The next report if one waits.
    pub fn try_recv(&mut self) -> Result<DamageReport, TryRecvError> {
        let report = self.rx.try_recv()?;
        self.queued.objects().remove(&report.descriptor.data_id);
        Ok(report)
    }

    /// Reports dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.queued.dropped.load(Ordering::Relaxed)
    }
}

impl DamageHub {
    /// The receiver, the first time only.
    pub fn take_receiver(&self) -> Option<DamageReceiver> {
        let mut sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        if sender.is_some() {
            return None;
        }
        let (tx, rx) = channel(DAMAGE_QUEUE);
        *sender = Some(Some(tx));
        Some(DamageReceiver {
            rx,
            queued: self.queued.clone(),
        })
    }

    pub fn report(&self, report: DamageReport) {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let Some(Some(tx)) = &*sender else {
            return;
        };
        let data_id = report.descriptor.data_id;
        if !self.queued.objects().insert(data_id) {
            return;
        }
        tracing::warn!(%data_id, shards = ?report.damaged_shards, "damaged shards found while reading");
        match tx.try_send(report) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.queued.objects().remove(&data_id);
                let dropped = self.queued.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(%data_id, dropped, "damage queue full: report dropped (the scrub will find it)");
            }
            Err(TrySendError::Closed(_)) => {
                self.queued.objects().remove(&data_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(n: u8) -> DamageReport {
        DamageReport {
            descriptor: crate::descriptor::tests::descriptor_with_id(DataId::from_bytes([n; 16])),
            damaged_shards: vec![0],
        }
    }

    #[test]
    fn an_object_is_queued_once_until_taken_and_a_full_queue_drops_and_counts() {
        let hub = DamageHub::default();
        hub.report(report(1)); // nobody listens yet: discarded
        let mut rx = hub.take_receiver().unwrap();
        assert!(rx.try_recv().is_err());
        hub.report(report(1));
        hub.report(report(1));
        assert_eq!(
            rx.try_recv().unwrap().descriptor.data_id,
            DataId::from_bytes([1; 16])
        );
        assert!(
            rx.try_recv().is_err(),
            "the second report of a queued object is not queued"
        );
        hub.report(report(1));
        assert!(rx.try_recv().is_ok(), "taken, so it may be reported again");

        for i in 0..DAMAGE_QUEUE + 10 {
            let mut r = report(0);
            r.descriptor.data_id = DataId::from_u128(1000 + i as u128);
            hub.report(r);
        }
        assert_eq!(rx.dropped(), 10);
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, DAMAGE_QUEUE);
    }
}
