//! The fence of a planned failover: while it is up, clients may not write to this region
//! (they get 503 SlowDown and should write to its peer), but reads go on, and replicas from
//! peers still land — so replication keeps draining out of this node and a failback resync
//! can fill it. It is stored in the metadata, so a restarted node stays fenced.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use meridian_metadata::{MetaError, MetaStore};

const SETTING: &str = "fence";

#[derive(Clone)]
pub struct Fence {
    up: Arc<AtomicBool>,
    meta: MetaStore,
}

impl Fence {
    /// The fence as it was left by the last run.
    pub fn load(meta: MetaStore) -> Result<Fence, MetaError> {
        let up = meta.setting(SETTING)?.is_some();
        if up {
            tracing::warn!("this region is fenced: client writes are refused until it is unfenced");
        }
        Ok(Fence {
            up: Arc::new(AtomicBool::new(up)),
            meta,
        })
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Puts the fence up (with a note saying why) or takes it down, durably. Blocking.
    pub fn set(&self, up: bool, note: &str) -> Result<(), MetaError> {
        self.meta
            .put_setting(SETTING, up.then_some(note.as_bytes()))?;
        self.up.store(up, Ordering::Release);
        tracing::warn!(fenced = up, %note, "fence changed");
        Ok(())
    }
}
