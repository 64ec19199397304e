//! Damage reports from readers to whoever heals in the background.
//!
//! Reporting never blocks and never grows without bound before anyone listens: until the
//! receiver is taken (and after it is dropped) reports are discarded.

use std::sync::Mutex;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::ObjectDescriptor;

/// Damage found by a reader: shards of an object that were missing, short or corrupt.
/// Handing `descriptor` to [`crate::DiskSet::heal`] repairs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamageReport {
    /// The object read.
    pub descriptor: ObjectDescriptor,
    /// Shard indexes (not disk slots), ascending.
    pub damaged_shards: Vec<usize>,
}

/// The sending side, shared by every reader of a disk set.
#[derive(Default)]
pub(crate) struct DamageHub {
    /// `None` before the receiver is taken; `Some(None)` once it has been.
    sender: Mutex<Option<Option<UnboundedSender<DamageReport>>>>,
}

impl DamageHub {
    /// The receiver, the first time only.
    pub fn take_receiver(&self) -> Option<UnboundedReceiver<DamageReport>> {
        let mut sender = self.sender.lock().expect("damage hub poisoned");
        if sender.is_some() {
            return None;
        }
        let (tx, rx) = unbounded_channel();
        *sender = Some(Some(tx));
        Some(rx)
    }

    pub fn report(&self, report: DamageReport) {
        tracing::warn!(
            data_id = %report.descriptor.data_id,
            shards = ?report.damaged_shards,
            "damaged shards found while reading"
        );
        if let Some(Some(tx)) = &*self.sender.lock().expect("damage hub poisoned") {
            let _ = tx.send(report);
        }
    }
}
