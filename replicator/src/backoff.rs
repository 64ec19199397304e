//! Retry delays: exponential from one second, capped, with jitter so that the changes that
//! failed together (a peer outage) do not all come back in the same instant.

use std::time::Duration;

const BASE: Duration = Duration::from_secs(1);

/// The delay before attempt `attempts + 1`, after `attempts` failures: between half and all of
/// `min(cap, 1s * 2^(attempts-1))`.
pub fn delay(attempts: u32, cap: Duration) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    let full = BASE.saturating_mul(1 << exp).min(cap);
    full.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_stay_under_the_cap() {
        let cap = Duration::from_secs(300);
        for attempts in 1..40 {
            let d = delay(attempts, cap);
            let full = Duration::from_secs(1 << (attempts - 1).min(30)).min(cap);
            assert!(d >= full / 2 && d <= full, "attempt {attempts}: {d:?}");
        }
        assert!(delay(2, Duration::from_millis(200)) <= Duration::from_millis(200));
    }
}
