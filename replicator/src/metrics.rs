//! Replication metrics, per peer, in Prometheus form: what is pending (versions, bytes, the
//! age of the oldest pending change — the lag), what was sent, why sends failed, and how long
//! a change takes from its commit to being verified on the peer.
//!
//! Pending figures are computed from the outbox and the retry queue when the metrics are
//! read, so they are exact after any restart (never counters that drift).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// The replicator's metrics, registered in the server's registry.
#[derive(Clone)]
pub struct ReplicationMetrics {
    pub pending_versions: IntGaugeVec,
    pub pending_bytes: IntGaugeVec,
    pub lag_seconds: IntGaugeVec,
    pub retrying_versions: IntGaugeVec,
    pub failed_versions: IntGaugeVec,
    pub paused: IntGaugeVec,
    pub paused_since: IntGaugeVec,
    pub sent_versions: IntCounterVec,
    pub sent_bytes: IntCounterVec,
    pub failures: IntCounterVec,
    pub latency: HistogramVec,
}

/// The metrics of one peer, resolved once.
#[derive(Clone)]
pub(crate) struct PeerMetrics {
    pub sent_versions: IntCounter,
    pub sent_bytes: IntCounter,
    pub latency: Histogram,
    pub paused: IntGauge,
    pub paused_since: IntGauge,
    failures: IntCounterVec,
    peer: String,
}

impl PeerMetrics {
    pub fn failure(&self, reason: &str) {
        self.failures.with_label_values(&[&self.peer, reason]).inc();
    }
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), &["peer"]).expect("valid gauge");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

impl ReplicationMetrics {
    pub fn new(registry: &Registry) -> ReplicationMetrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "meridian_replication_latency_seconds",
                "Time from a change's commit to its verified arrival on the peer",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                3600.0,
            ]),
            &["peer"],
        )
        .expect("valid histogram");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        ReplicationMetrics {
            pending_versions: gauge(
                registry,
                "meridian_replication_pending_versions",
                "Changes committed here that the peer does not have yet",
            ),
            pending_bytes: gauge(
                registry,
                "meridian_replication_pending_bytes",
                "Data bytes of the pending changes",
            ),
            lag_seconds: gauge(
                registry,
                "meridian_replication_lag_seconds",
                "Age of the oldest change the peer does not have yet (0 when in sync)",
            ),
            retrying_versions: gauge(
                registry,
                "meridian_replication_retrying_versions",
                "Pending changes that failed at least once and wait for a retry",
            ),
            failed_versions: gauge(
                registry,
                "meridian_replication_failed_versions",
                "Pending changes whose last failure the peer will not fix by itself",
            ),
            paused: gauge(
                registry,
                "meridian_replication_paused",
                "1 while sending to the peer is paused by an operator",
            ),
            paused_since: gauge(
                registry,
                "meridian_replication_paused_since_seconds",
                "When sending to the peer was paused (Unix seconds; who paused it is in the status); 0 while sending",
            ),
            sent_versions: counter(
                "meridian_replication_sent_versions_total",
                "Changes verified on the peer",
                &["peer"],
            ),
            sent_bytes: counter(
                "meridian_replication_sent_bytes_total",
                "Object bytes sent to the peer",
                &["peer"],
            ),
            failures: counter(
                "meridian_replication_failures_total",
                "Failed attempts to send a change, by reason (an S3 error code, unreachable, ...)",
                &["peer", "reason"],
            ),
            latency,
        }
    }

    pub(crate) fn peer(&self, peer: &str) -> PeerMetrics {
        // Series that exist from the start, at zero, so that `increase()` in alert rules
        // sees the first failure.
        for reason in ["unreachable", "transient", "permanent"] {
            self.failures.with_label_values(&[peer, reason]);
        }
        for gauge in [
            &self.pending_versions,
            &self.pending_bytes,
            &self.lag_seconds,
            &self.retrying_versions,
            &self.failed_versions,
        ] {
            gauge.with_label_values(&[peer]);
        }
        PeerMetrics {
            sent_versions: self.sent_versions.with_label_values(&[peer]),
            sent_bytes: self.sent_bytes.with_label_values(&[peer]),
            latency: self.latency.with_label_values(&[peer]),
            paused: self.paused.with_label_values(&[peer]),
            paused_since: self.paused_since.with_label_values(&[peer]),
            failures: self.failures.clone(),
            peer: peer.to_owned(),
        }
    }
}
