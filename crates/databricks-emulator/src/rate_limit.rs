//! A workspace's own request limit, as the real service enforces one: a token bucket refilled
//! at `per_second`, holding at most one second's worth. Over it, a call gets 429
//! REQUEST_LIMIT_EXCEEDED with Retry-After, exactly like an injected rate-limit fault.
//!
//! Databricks does not document the limit of the token endpoints; token-management is reported
//! (second-hand) at about 40 requests/s. Off by default, so tests see no limit they did not ask for.

use std::time::Instant;

#[derive(Debug)]
pub struct Bucket {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(per_second: u32, now: Instant) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            tokens: f64::from(per_second.max(1)),
            last: now,
        }
    }

    /// Whether a call arriving at `now` is within the limit (and takes its share if so).
    pub fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_second_of_burst_then_the_refill_rate() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(10, t0);
        let admitted = (0..15).filter(|_| bucket.admit(t0)).count();
        assert_eq!(admitted, 10, "one second's worth at once");
        assert!(
            !bucket.admit(t0 + Duration::from_millis(50)),
            "half a token refilled"
        );
        assert!(
            bucket.admit(t0 + Duration::from_millis(100)),
            "one token refilled"
        );
        let later = t0 + Duration::from_secs(60);
        let admitted = (0..15).filter(|_| bucket.admit(later)).count();
        assert_eq!(admitted, 10, "idle time refills no more than the burst");
    }
}
