//! The store's own metrics: heals, scrub findings and orphans collected. They live in the
//! process from its start; the server registers them in the registry it serves.

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub struct StoreMetrics {
    pub heals: IntCounterVec,
    pub scrub_damaged_shards: IntCounter,
    pub scrub_unrecoverable: IntCounter,
    pub orphans_deleted: IntCounter,
    pub damage_dropped: IntCounter,
    pub lifecycle_actions: IntCounterVec,
    pub lifecycle_bytes_freed: IntCounter,
    pub lifecycle_backlog: IntGauge,
    pub lifecycle_oldest_due_age: IntGauge,
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
        let lifecycle_actions = IntCounterVec::new(
            Opts::new(
                "meridian_lifecycle_actions_total",
                "Lifecycle actions taken, by kind",
            ),
            &["action"],
        )
        .expect("valid counter");
        for kind in [
            "expire_current",
            "expire_noncurrent",
            "remove_lone_marker",
            "abort_upload",
        ] {
            lifecycle_actions.with_label_values(&[kind]);
        }
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid gauge");
        StoreMetrics {
            lifecycle_actions,
            lifecycle_bytes_freed: counter(
                "meridian_lifecycle_bytes_freed_total",
                "Bytes of object versions removed by lifecycle rules",
            ),
            lifecycle_backlog: gauge(
                "meridian_lifecycle_backlog",
                "Lifecycle actions due now and not yet taken (counted up to 100,000)",
            ),
            lifecycle_oldest_due_age: gauge(
                "meridian_lifecycle_oldest_due_age_seconds",
                "How long the oldest lifecycle action that is due has waited",
            ),
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
        registry.register(Box::new(self.damage_dropped.clone()))?;
        registry.register(Box::new(self.lifecycle_actions.clone()))?;
        registry.register(Box::new(self.lifecycle_bytes_freed.clone()))?;
        registry.register(Box::new(self.lifecycle_backlog.clone()))?;
        registry.register(Box::new(self.lifecycle_oldest_due_age.clone()))
    }
}

/// The process's store metrics.
pub fn global() -> &'static StoreMetrics {
    static METRICS: LazyLock<StoreMetrics> = LazyLock::new(StoreMetrics::new);
    &METRICS
}
