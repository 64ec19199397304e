//! What one client can hold of the server: connections (in all and per client address), the
//! time to send a request head (and to keep an idle keep-alive connection), and the pace of
//! a request body. A slowloris client, a flood of idle sockets or a body trickled a byte at a
//! time is cut, and each refusal is counted in the metrics; a slow but real WAN upload is not.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use bytesize::ByteSize;
use http_body::{Body, Frame, SizeHint};
use serde::Deserialize;
use tokio::time::{Instant, Sleep};

/// `[limits]` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longest time to receive a whole request head; also how long an idle keep-alive
    /// connection is kept.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Longest wait for the next byte of a request body.
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// Least a request body must deliver per second, averaged over `body_rate_window` of
    /// time spent waiting for it (time the server spends writing does not count).
    pub min_body_rate: ByteSize,
    #[serde(with = "humantime_serde")]
    pub body_rate_window: Duration,
    /// Open connections; more are closed as they are accepted.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_connections_per_client: usize,
    /// Requests in flight (health probes and the admin API aside); beyond this, 503
    /// SlowDown with Retry-After, which every SDK retries.
    pub max_requests: usize,
    /// Of those, requests carrying a body (uploads hold stripe buffers): the bound on the
    /// memory uploads take together.
    pub max_uploads: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(30),
            min_body_rate: ByteSize::kib(1),
            body_rate_window: Duration::from_secs(30),
            max_connections: 8192,
            max_connections_per_client: 1024,
            max_requests: 2048,
            max_uploads: 64,
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.header_timeout.is_zero()
            || self.body_idle_timeout.is_zero()
            || self.body_rate_window.is_zero()
        {
            return Err("limits: timeouts and the rate window must be above zero".into());
        }
        if self.max_connections == 0
            || self.max_connections_per_client == 0
            || self.max_requests == 0
            || self.max_uploads == 0
        {
            return Err("limits: connection and request limits must be above zero".into());
        }
        Ok(())
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerClient,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerClient => "per_client",
        }
    }
}

/// Counts open connections, in all and per client address.
pub struct ConnectionGate {
    max_total: usize,
    max_per_client: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// An admitted connection; dropping it frees its place.
pub struct Admitted {
    gate: Arc<ConnectionGate>,
    client: IpAddr,
}

impl ConnectionGate {
    pub fn new(limits: &LimitsConfig) -> Arc<ConnectionGate> {
        Arc::new(ConnectionGate {
            max_total: limits.max_connections,
            max_per_client: limits.max_connections_per_client,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Admitted, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_client) = &mut *open;
        if *total >= self.max_total {
            return Err(Refusal::Total);
        }
        let mine = per_client.entry(client).or_insert(0);
        if *mine >= self.max_per_client {
            return Err(Refusal::PerClient);
        }
        *mine += 1;
        *total += 1;
        crate::metrics::global().connections_open.set(*total as i64);
        Ok(Admitted {
            gate: self.clone(),
            client,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_client) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                per_client.remove(&self.client);
            }
        }
        crate::metrics::global().connections_open.set(*total as i64);
    }
}

/// Requests in flight, and uploads among them.
pub struct Admission {
    requests: Arc<tokio::sync::Semaphore>,
    uploads: Arc<tokio::sync::Semaphore>,
}

/// A request admitted; dropping it frees its place.
pub struct AdmittedRequest {
    _request: tokio::sync::OwnedSemaphorePermit,
    upload: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for AdmittedRequest {
    fn drop(&mut self) {
        let m = crate::metrics::global();
        m.requests_in_flight.dec();
        if self.upload.is_some() {
            m.uploads_in_flight.dec();
        }
    }
}

impl Admission {
    pub fn new(limits: &LimitsConfig) -> Admission {
        Admission {
            requests: Arc::new(tokio::sync::Semaphore::new(limits.max_requests)),
            uploads: Arc::new(tokio::sync::Semaphore::new(limits.max_uploads)),
        }
    }

    /// A place for a request (`upload`: it carries a body), or the limit it met.
    pub fn admit(&self, upload: bool) -> Result<AdmittedRequest, &'static str> {
        let request = self
            .requests
            .clone()
            .try_acquire_owned()
            .map_err(|_| "requests")?;
        let upload = if upload {
            Some(
                self.uploads
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| "uploads")?,
            )
        } else {
            None
        };
        let m = crate::metrics::global();
        m.requests_in_flight.inc();
        if upload.is_some() {
            m.uploads_in_flight.inc();
        }
        Ok(AdmittedRequest {
            _request: request,
            upload,
        })
    }
}

/// The pace a request body must keep.
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    pub idle: Duration,
    pub window: Duration,
    /// Bytes due per `window` of waiting.
    pub min_bytes: u64,
}

impl BodyPace {
    pub fn of(limits: &LimitsConfig) -> BodyPace {
        BodyPace {
            idle: limits.body_idle_timeout,
            window: limits.body_rate_window,
            min_bytes: (limits.min_body_rate.as_u64() as f64
                * limits.body_rate_window.as_secs_f64()) as u64,
        }
    }
}

/// A request body that ends in an error when its client stalls or trickles.
#[derive(Debug, thiserror::Error)]
pub enum PaceError {
    #[error("no byte of the request body for {0:?}")]
    Idle(Duration),
    #[error("the request body arrived slower than {min_bytes} bytes per {window:?}")]
    TooSlow { min_bytes: u64, window: Duration },
    #[error(transparent)]
    Body(#[from] hyper::Error),
}

/// [`hyper::body::Incoming`] under a [`BodyPace`]: only time spent waiting for the client
/// counts (while the server is busy writing what it has, the client is not to blame).
pub struct PacedBody<B> {
    inner: B,
    pace: BodyPace,
    timer: Pin<Box<Sleep>>,
    /// When the current wait for the client began (restarted when a window closes).
    waiting_since: Option<Instant>,
    /// When the client last delivered (the start of the current stall).
    stalled_since: Option<Instant>,
    /// Waiting time and bytes in the current window.
    waited: Duration,
    bytes: u64,
}

impl<B> PacedBody<B> {
    pub fn new(inner: B, pace: BodyPace) -> PacedBody<B> {
        PacedBody {
            inner,
            pace,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            waiting_since: None,
            stalled_since: None,
            waited: Duration::ZERO,
            bytes: 0,
        }
    }

    /// Ends the current wait at `now`; an error when the window closed short of its bytes.
    fn settle(&mut self, now: Instant) -> Result<(), PaceError> {
        if let Some(since) = self.waiting_since.take() {
            self.waited += now - since;
        }
        if self.waited >= self.pace.window {
            if self.bytes < self.pace.min_bytes {
                crate::metrics::global()
                    .bodies_cut
                    .with_label_values(&["too_slow"])
                    .inc();
                return Err(PaceError::TooSlow {
                    min_bytes: self.pace.min_bytes,
                    window: self.pace.window,
                });
            }
            self.waited = Duration::ZERO;
            self.bytes = 0;
        }
        Ok(())
    }
}

impl<B> Body for PacedBody<B>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = PaceError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, PaceError>>> {
        let this = &mut *self;
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.stalled_since = None;
                    if let Some(data) = frame.data_ref() {
                        this.bytes += data.len() as u64;
                    }
                    if let Err(e) = this.settle(Instant::now()) {
                        return Poll::Ready(Some(Err(e)));
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {}
            }
            let now = Instant::now();
            let since = *this.waiting_since.get_or_insert(now);
            let stalled = *this.stalled_since.get_or_insert(now);
            let window_left = this.pace.window.saturating_sub(this.waited);
            let deadline = (stalled + this.pace.idle).min(since + window_left);
            if this.timer.deadline() != deadline {
                this.timer.as_mut().reset(deadline);
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer fired: a wait too long, or a window closed.
            if now - stalled >= this.pace.idle {
                crate::metrics::global()
                    .bodies_cut
                    .with_label_values(&["idle"])
                    .inc();
                return Poll::Ready(Some(Err(PaceError::Idle(this.pace.idle))));
            }
            if let Err(e) = this.settle(now) {
                return Poll::Ready(Some(Err(e)));
            }
            this.waiting_since = Some(now);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn limits(total: usize, per_client: usize) -> LimitsConfig {
        LimitsConfig {
            max_connections: total,
            max_connections_per_client: per_client,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn requests_and_uploads_in_flight_are_bounded_and_freed_on_drop() {
        let admission = Admission::new(&LimitsConfig {
            max_requests: 3,
            max_uploads: 1,
            ..LimitsConfig::default()
        });
        let upload = admission.admit(true).unwrap();
        assert_eq!(admission.admit(true).err(), Some("uploads"));
        let _a = admission.admit(false).unwrap();
        let _b = admission.admit(false).unwrap();
        assert_eq!(admission.admit(false).err(), Some("requests"));
        drop(upload);
        assert!(admission.admit(false).is_ok());
    }

    #[test]
    fn connections_are_counted_in_all_and_per_client_and_freed_on_drop() {
        let gate = ConnectionGate::new(&limits(3, 2));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).err(), Some(Refusal::PerClient));
        let _b1 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).err(), Some(Refusal::Total));
        drop(a1);
        assert!(gate.admit(b).is_ok(), "a freed place is taken again");
    }

    /// A body that yields `chunks`, each after `gap`.
    fn trickle(
        chunks: usize,
        size: usize,
        gap: Duration,
    ) -> impl Body<Data = Bytes, Error = hyper::Error> + Unpin {
        let stream = futures::stream::unfold(0, move |i| async move {
            if i == chunks {
                return None;
            }
            tokio::time::sleep(gap).await;
            Some((
                Ok::<_, hyper::Error>(Frame::data(Bytes::from(vec![7u8; size]))),
                i + 1,
            ))
        });
        StreamBody::new(Box::pin(stream))
    }

    /// Real time, scaled down: a 500 ms window that wants 1,000 bytes.
    const PACE: BodyPace = BodyPace {
        idle: Duration::from_secs(5),
        window: Duration::from_millis(500),
        min_bytes: 1000,
    };

    #[tokio::test]
    async fn a_trickle_is_cut_when_a_window_closes_short() {
        // One byte every 20 ms: 25 bytes in a window that wants 1,000.
        let body = PacedBody::new(trickle(1000, 1, Duration::from_millis(20)), PACE);
        let started = Instant::now();
        let err = body.collect().await.unwrap_err();
        assert!(matches!(err, PaceError::TooSlow { .. }), "{err}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(500), "{took:?}");
        assert!(took < Duration::from_secs(4), "{took:?}");
    }

    #[tokio::test]
    async fn a_stalled_body_is_cut_after_the_idle_timeout() {
        let pace = BodyPace {
            idle: Duration::from_millis(200),
            window: Duration::from_secs(60),
            ..PACE
        };
        let body = PacedBody::new(trickle(2, 100_000, Duration::from_secs(30)), pace);
        let started = Instant::now();
        let err = body.collect().await.unwrap_err();
        assert!(matches!(err, PaceError::Idle(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_slow_wan_upload_and_a_busy_server_are_not_cut() {
        // 8 KiB every 10 ms, far above the pace, over several windows.
        let body = PacedBody::new(trickle(100, 8192, Duration::from_millis(10)), PACE);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 819_200);
        // Bytes that were there all along, read by a server that stops for longer than a
        // window between reads: the server's own pauses do not count against the client.
        let mut body = PacedBody::new(trickle(3, 10, Duration::ZERO), PACE);
        for _ in 0..3 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap().len(), 10);
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        assert!(body.frame().await.is_none());
    }
}
