//! A peer's bandwidth cap: a token bucket over the bytes sent, shared by all of the peer's
//! transfers. Bytes are never refused, only delayed, so an object of any size completes at
//! the capped rate (no per-object deadline that a large object could never meet).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes per second, with a burst of a tenth of a second's worth.
pub struct Throttle {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Throttle {
    pub fn new(bytes_per_second: u64) -> Throttle {
        let rate = bytes_per_second.max(1) as f64;
        let burst = (rate / 10.0).max(64.0 * 1024.0);
        Throttle {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes `n` bytes' worth of tokens, going into debt if there are not enough; returns how
    /// long the caller must wait before sending them.
    pub fn reserve(&self, n: u64) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst)
            - n as f64;
        *state = (tokens, now);
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sending_faster_than_the_rate_accumulates_waiting() {
        let t = Throttle::new(1_000_000);
        // The burst goes through, then each megabyte costs a second.
        assert_eq!(t.reserve(100_000), Duration::ZERO);
        let wait = t.reserve(1_000_000);
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_millis(1001),
            "{wait:?}"
        );
        let wait = t.reserve(1_000_000);
        assert!(
            wait > Duration::from_millis(1900),
            "debt adds up across callers: {wait:?}"
        );
    }
}
