//! The server's metrics in one Prometheus registry: S3 requests (count and latency by
//! operation and status class, body bytes in and out), disks online, replica conflicts, audit
//! lines dropped; the store's own (heals, scrub findings, orphans collected) and, registered
//! by the replicator, the per-peer replication figures. Served at `GET /_meridian/metrics`.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub disks_online: IntGauge,
    pub disks_total: IntGauge,
    pub replica_conflicts: IntCounter,
    pub audit_dropped: IntCounter,
    pub connections_open: IntGauge,
    pub connections_refused: IntCounterVec,
    pub connections_timed_out: IntCounter,
    pub bodies_cut: IntCounterVec,
    pub requests_refused: IntCounterVec,
    pub requests_in_flight: IntGauge,
    pub uploads_in_flight: IntGauge,
    pub staged_bodies: IntCounterVec,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid counter");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid counter");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid gauge");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("meridian_s3_requests_total", "S3 requests answered"),
            &["operation", "status"],
        )
        .expect("valid counter");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "meridian_s3_request_duration_seconds",
                "Time from receiving an S3 request to sending its response headers",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["operation"],
        )
        .expect("valid histogram");
        registry
            .register(Box::new(request_seconds.clone()))
            .expect("registered once");
        meridian_store::metrics::global()
            .register(&registry)
            .expect("registered once");
        Metrics {
            requests,
            request_seconds,
            bytes_in: counter(&registry, "meridian_s3_bytes_in_total", "Request body bytes received (declared lengths)"),
            bytes_out: counter(&registry, "meridian_s3_bytes_out_total", "Response body bytes sent (declared lengths)"),
            disks_online: gauge(&registry, "meridian_storage_disks_online", "Disks of the set that are usable"),
            disks_total: gauge(&registry, "meridian_storage_disks", "Disks in the set"),
            replica_conflicts: counter(&registry, "meridian_replication_conflicts_total", "Replica writes naming a version id held here with other content (the local one was kept)"),
            audit_dropped: counter(&registry, "meridian_audit_dropped_total", "Audit log lines dropped because the writer fell behind (its queue was full)"),
            connections_open: gauge(&registry, "meridian_connections_open", "Client connections open on the S3 listener"),
            connections_refused: {
                let c = counter_vec(&registry, "meridian_connections_refused_total", "Connections closed at accept: over max_connections (total) or max_connections_per_client (per_client)", "reason");
                for reason in ["total", "per_client"] {
                    c.with_label_values(&[reason]);
                }
                c
            },
            connections_timed_out: counter(&registry, "meridian_connections_timed_out_total", "Connections closed because a request head took longer than header_timeout (or an idle keep-alive outlived it)"),
            requests_in_flight: gauge(&registry, "meridian_requests_in_flight", "S3 requests admitted and not yet answered (bounded by max_requests)"),
            uploads_in_flight: gauge(&registry, "meridian_uploads_in_flight", "Of those, requests carrying a body (bounded by max_uploads)"),
            requests_refused: {
                let c = counter_vec(&registry, "meridian_requests_refused_total", "S3 requests answered 503 SlowDown: over max_requests (requests) or max_uploads (uploads) in flight", "reason");
                for reason in ["requests", "uploads"] {
                    c.with_label_values(&[reason]);
                }
                c
            },
            bodies_cut: {
                let c = counter_vec(&registry, "meridian_request_bodies_cut_total", "Request bodies cut off: no byte for body_idle_timeout (idle), or slower than min_body_rate (too_slow)", "reason");
                for reason in ["idle", "too_slow"] {
                    c.with_label_values(&[reason]);
                }
                c
            },
            staged_bodies: {
                let c = counter_vec(&registry, "meridian_cluster_staged_bodies_total", "Bodies streamed between the nodes of a region while they arrived: on a primary, followers that held the whole body when it was committed (streamed); on a follower, staged bodies a copy took (taken) or that went unused (discarded)", "outcome");
                for outcome in ["streamed", "taken", "discarded"] {
                    c.with_label_values(&[outcome]);
                }
                c
            },
            registry,
        }
    }

    /// Records one answered S3 request.
    pub fn request(
        &self,
        operation: &str,
        status: http::StatusCode,
        seconds: f64,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let class = match status.as_u16() {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests.with_label_values(&[operation, class]).inc();
        self.request_seconds
            .with_label_values(&[operation])
            .observe(seconds);
        self.bytes_in.inc_by(bytes_in);
        self.bytes_out.inc_by(bytes_out);
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding into a Vec");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_operation_and_status_class() {
        let m = Metrics::new();
        m.request("GetObject", http::StatusCode::OK, 0.002, 0, 10);
        m.request("GetObject", http::StatusCode::NOT_FOUND, 0.001, 0, 0);
        let text = m.render();
        assert!(
            text.contains(r#"meridian_s3_requests_total{operation="GetObject",status="2xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"meridian_s3_requests_total{operation="GetObject",status="4xx"} 1"#)
        );
        assert!(text.contains("meridian_s3_bytes_out_total 10"));
    }
}
