//! Measurement: per-operation-type latency histograms, counters and error codes.
//!
//! Each worker records into its own [`Recorder`] (no locks on the hot path) and the driver
//! merges them at the end; a few shared atomics feed the once-a-second progress line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::error::OpError;

/// Highest latency the histograms resolve (one hour), in microseconds; longer ones saturate.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// How many error messages a run keeps verbatim for the report.
const ERROR_EXAMPLES: usize = 5;

/// The kinds of request the workloads time. Primary kinds are what a workload is about (its
/// ops/s); the others are the pieces of a primary operation (parts of a multipart upload,
/// ranges of a ranged GET).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    Put,
    Get,
    List,
    Delete,
    /// A whole multipart upload: create, all parts, complete.
    Multipart,
    UploadPart,
    GetRange,
}

impl OpKind {
    /// The name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Get => "get",
            OpKind::List => "list",
            OpKind::Delete => "delete",
            OpKind::Multipart => "multipart",
            OpKind::UploadPart => "upload_part",
            OpKind::GetRange => "get_range",
        }
    }
}

/// Everything measured about one kind of operation.
#[derive(Clone, Debug)]
pub struct OpTally {
    /// Latency of successful operations, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Successful operations.
    pub ops: u64,
    /// Payload bytes moved by successful operations.
    pub bytes: u64,
    /// Objects covered by successful operations (keys returned, for listings).
    pub objects: u64,
    /// Failed operations by error code.
    pub errors: BTreeMap<String, u64>,
}

impl Default for OpTally {
    fn default() -> Self {
        OpTally {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("static histogram bounds are valid"),
            ops: 0,
            bytes: 0,
            objects: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl OpTally {
    /// Records a successful operation.
    pub fn record_ok(&mut self, latency: Duration, bytes: u64, objects: u64) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.latency_us.saturating_record(micros);
        self.ops += 1;
        self.bytes += bytes;
        self.objects += objects;
    }

    /// Records a failed operation under `code`.
    pub fn record_error(&mut self, code: &str) {
        *self.errors.entry(code.to_string()).or_default() += 1;
    }

    /// Failed operations of all codes.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds `other`'s measurements to this one.
    pub fn merge(&mut self, other: &OpTally) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms share bounds");
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.objects += other.objects;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
    }
}

/// Totals of primary operations, shared by workers and read by the progress line.
#[derive(Default)]
pub struct Progress {
    pub ops: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

impl Progress {
    /// (ops, bytes, errors) so far.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.ops.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// One worker's measurements.
pub struct Recorder {
    pub tallies: BTreeMap<OpKind, OpTally>,
    pub error_examples: Vec<String>,
    progress: Arc<Progress>,
    primary: &'static [OpKind],
}

impl Recorder {
    pub fn new(progress: Arc<Progress>, primary: &'static [OpKind]) -> Recorder {
        Recorder {
            tallies: BTreeMap::new(),
            error_examples: Vec::new(),
            progress,
            primary,
        }
    }

    /// Records a successful `kind` operation.
    pub fn ok(&mut self, kind: OpKind, latency: Duration, bytes: u64, objects: u64) {
        self.tallies
            .entry(kind)
            .or_default()
            .record_ok(latency, bytes, objects);
        if self.primary.contains(&kind) {
            self.progress.ops.fetch_add(1, Ordering::Relaxed);
            self.progress.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Records a failed `kind` operation.
    pub fn error(&mut self, kind: OpKind, error: &OpError) {
        self.tallies
            .entry(kind)
            .or_default()
            .record_error(&error.code());
        if self.primary.contains(&kind) {
            self.progress.errors.fetch_add(1, Ordering::Relaxed);
            if self.error_examples.len() < ERROR_EXAMPLES {
                self.error_examples.push(error.to_string());
            }
        }
    }

    /// Adds another worker's measurements to this one.
    pub fn merge(&mut self, other: Recorder) {
        for (kind, tally) in &other.tallies {
            self.tallies.entry(*kind).or_default().merge(tally);
        }
        let room = ERROR_EXAMPLES.saturating_sub(self.error_examples.len());
        self.error_examples
            .extend(other.error_examples.into_iter().take(room));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_tallies_add_counts_bytes_errors_and_latencies() {
        let mut a = OpTally::default();
        a.record_ok(Duration::from_millis(2), 100, 1);
        a.record_error("NoSuchKey");
        let mut b = OpTally::default();
        b.record_ok(Duration::from_millis(8), 50, 1);
        b.record_error("NoSuchKey");
        b.record_error("SlowDown");
        a.merge(&b);
        assert_eq!((a.ops, a.bytes, a.objects), (2, 150, 2));
        assert_eq!(a.errors.get("NoSuchKey"), Some(&2));
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.latency_us.len(), 2);
        assert!(a.latency_us.max() >= 7_990);
    }

    #[test]
    fn only_primary_operations_move_the_progress_totals() {
        let progress = Arc::new(Progress::default());
        let mut rec = Recorder::new(progress.clone(), &[OpKind::Multipart]);
        rec.ok(OpKind::UploadPart, Duration::from_millis(1), 10, 0);
        rec.ok(OpKind::Multipart, Duration::from_millis(3), 10, 1);
        let failure = OpError::Timeout {
            op: "UploadPart",
            target: "b/k".into(),
            seconds: 1.0,
        };
        rec.error(OpKind::UploadPart, &failure);
        assert_eq!(progress.snapshot(), (1, 10, 0));
        assert!(rec.error_examples.is_empty());
        rec.error(OpKind::Multipart, &failure);
        assert_eq!(progress.snapshot(), (1, 10, 1));
        assert_eq!(rec.error_examples.len(), 1);
    }

    #[test]
    fn latencies_beyond_an_hour_saturate_instead_of_failing() {
        let mut t = OpTally::default();
        t.record_ok(Duration::from_secs(7200), 0, 1);
        t.record_ok(Duration::ZERO, 0, 1);
        assert_eq!(t.latency_us.len(), 2);
    }
}
