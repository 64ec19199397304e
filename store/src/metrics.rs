//! The store's own metrics: heals, scrub findings and orphans collected. They live in the
//! process from its start; the server registers them in the registry it serves.

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

pub struct StoreMetrics {
    pub heals: IntCounterVec,
    pub scrub_damaged_shards: IntCounter,
    pub scrub_unrecoverable: IntCounter,
    pub orphans_deleted: IntCounter,
    pub damage_dropped: IntCounter,
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid counter")
}

impl StoreMetrics {
    fn new() -> StoreMetrics {
        let heals = IntCounterVec::new(
            Opts::new("meridian_storage_heals_total", "Objects healed, by outcome"),
            &["outcome"],
        )
        .expect("valid counter");
        for outcome in ["healed", "failed"] {
            heals.with_label_values(&[outcome]);
        }
        StoreMetrics {
            heals,
            scrub_damaged_shards: counter(
                "meridian_scrub_damaged_shards_total",
                "Damaged shards found by scrubs",
            ),
            scrub_unrecoverable: counter(
                "meridian_scrub_unrecoverable_objects_total",
                "Objects scrubs found with too few good shards to repair",
            ),
            orphans_deleted: counter(
                "meridian_storage_orphans_deleted_total",
                "Orphaned shard sets deleted by the collector",
            ),
            damage_dropped: counter(
                "meridian_storage_damage_reports_dropped_total",
                "Damage reports from reads dropped because the heal queue was full (the scrub finds them)",
            ),
        }
    }

    /// Adds these metrics to `registry` (once per registry).
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.heals.clone()))?;
        registry.register(Box::new(self.scrub_damaged_shards.clone()))?;
        registry.register(Box::new(self.scrub_unrecoverable.clone()))?;
        registry.register(Box::new(self.orphans_deleted.clone()))?;
        registry.register(Box::new(self.damage_dropped.clone()))
    }
}

/// The process's store metrics.
pub fn global() -> &'static StoreMetrics {
    static METRICS: LazyLock<StoreMetrics> = LazyLock::new(StoreMetrics::new);
    &METRICS
}
