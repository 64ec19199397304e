//! Runs an operation from N concurrent workers until a count or a deadline, and prints a
//! progress line on stderr once a second.
//!
//! Operations are numbered from 0 by one shared counter, so with `--count N` exactly the
//! operations 0..N run, each once, whatever the concurrency; a workload maps the number to a
//! key. An operation in flight at the deadline is finished and counted.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::bench::args::Stop;
use crate::bench::stats::{OpKind, Progress, Recorder};
use crate::error::OpError;

/// One kind of operation a workload repeats.
pub trait Operation: Send + Sync + 'static {
    /// Per-worker state carried from one operation to the next (e.g. a listing cursor).
    type State: Default + Send;

    /// Performs operation number `n`, recording its outcome in `rec`.
    fn run(
        &self,
        n: u64,
        state: &mut Self::State,
        rec: &mut Recorder,
    ) -> impl Future<Output = ()> + Send;
}

/// What a drive measured.
pub struct Outcome {
    pub recorder: Recorder,
    /// From the start of the first operation to the end of the last.
    pub elapsed: Duration,
}

/// Runs `op` from `concurrency` workers until `stop`; `primary` names the operation kinds the
/// progress line counts, shown under `label`.
pub async fn drive<O: Operation>(
    op: Arc<O>,
    concurrency: usize,
    stop: Stop,
    primary: &'static [OpKind],
    label: &str,
) -> Outcome {
    let progress = Arc::new(Progress::default());
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = stop.duration.map(|d| start + d);
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (op, next, progress) = (op.clone(), next.clone(), progress.clone());
        workers.spawn(async move {
            let mut rec = Recorder::new(progress, primary);
            let mut state = O::State::default();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if stop.count.is_some_and(|count| n >= count) {
                    break;
                }
                op.run(n, &mut state, &mut rec).await;
            }
            rec
        });
    }
    let ticker = tokio::spawn(print_progress(label.to_string(), progress.clone(), start));
    let mut total = Recorder::new(progress.clone(), primary);
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(rec) => total.merge(rec),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("bench worker cancelled: {e}"),
        }
    }
    let elapsed = start.elapsed();
    ticker.abort();
    progress_line(label, &progress, elapsed, None, true);
    Outcome {
        recorder: total,
        elapsed,
    }
}

/// Runs `fut`, failing it with [`OpError::Timeout`] after `limit`.
pub async fn with_timeout<T>(
    limit: Duration,
    op: &'static str,
    target: impl FnOnce() -> String,
    fut: impl Future<Output = Result<T, OpError>>,
) -> Result<T, OpError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) => Err(OpError::Timeout {
            op,
            target: target(),
            seconds: limit.as_secs_f64(),
        }),
    }
}

async fn print_progress(label: String, progress: Arc<Progress>, start: Instant) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.tick().await;
    let mut last = (progress.snapshot(), Instant::now());
    loop {
        interval.tick().await;
        let now = Instant::now();
        progress_line(
            &label,
            &progress,
            now - start,
            Some((last.0, now - last.1)),
            false,
        );
        last = (progress.snapshot(), now);
    }
}

/// Prints `label  12s  1234 ops  411 ops/s  26.9 MB/s  0 errors`: rates over the last
/// interval while running, over the whole run at the end. On a terminal the line is rewritten
/// in place; otherwise one line per second.
fn progress_line(
    label: &str,
    progress: &Progress,
    elapsed: Duration,
    since: Option<((u64, u64, u64), Duration)>,
    last: bool,
) {
    let (ops, bytes, errors) = progress.snapshot();
    let ((ops0, bytes0, _), window) = since.unwrap_or(((0, 0, 0), elapsed));
    let secs = window.as_secs_f64().max(1e-9);
    let line = format!(
        "{label} {:>6.1}s {ops:>9} ops {:>10.1} ops/s {:>9.1} MB/s {errors:>6} errors",
        elapsed.as_secs_f64(),
        (ops - ops0) as f64 / secs,
        (bytes - bytes0) as f64 / secs / 1e6,
    );
    let mut stderr = std::io::stderr().lock();
    let _ = if stderr.is_terminal() {
        write!(stderr, "\r{line}{}", if last { "\n" } else { "" })
    } else {
        writeln!(stderr, "{line}")
    };
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records every operation number it is given.
    #[derive(Default)]
    struct Numbers(Mutex<Vec<u64>>);

    impl Operation for Numbers {
        type State = u64;

        async fn run(&self, n: u64, state: &mut u64, rec: &mut Recorder) {
            *state += 1;
            self.0.lock().unwrap().push(n);
            tokio::task::yield_now().await;
            rec.ok(OpKind::Put, Duration::from_micros(10), 3, 1);
        }
    }

    #[tokio::test]
    async fn a_count_runs_each_operation_number_exactly_once() {
        let op = Arc::new(Numbers::default());
        let stop = Stop {
            count: Some(100),
            duration: None,
        };
        let outcome = drive(op.clone(), 7, stop, &[OpKind::Put], "test").await;
        let mut seen = op.0.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        let put = &outcome.recorder.tallies[&OpKind::Put];
        assert_eq!((put.ops, put.bytes), (100, 300));
    }

    #[tokio::test]
    async fn a_duration_stops_the_run() {
        let op = Arc::new(Numbers::default());
        let stop = Stop {
            count: None,
            duration: Some(Duration::from_millis(50)),
        };
        let outcome = drive(op.clone(), 2, stop, &[OpKind::Put], "test").await;
        assert!(outcome.elapsed >= Duration::from_millis(50));
        assert!(outcome.recorder.tallies[&OpKind::Put].ops > 0);
    }

    #[tokio::test]
    async fn an_operation_past_its_limit_fails_with_timeout() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        };
        let err = with_timeout(
            Duration::from_millis(10),
            "GetObject",
            || "b/k".into(),
            slow,
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), "Timeout");
    }
}
