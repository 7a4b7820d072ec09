//! When to retry, and how long to wait: capped exponential backoff with full jitter, a
//! server's Retry-After taking precedence, all within an overall deadline.

use std::time::Duration;

use rand::Rng;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// No retry starts after this much time since the first attempt.
    pub overall_deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            overall_deadline: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1): uniformly random up to
    /// the exponential ceiling, or the server's delay when it gave one.
    pub fn delay(&self, attempt: u32, server_delay: Option<Duration>) -> Duration {
        if let Some(d) = server_delay {
            return d;
        }
        let ceiling = self.ceiling(attempt);
        ceiling.mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff)
    }
}

/// Whether a request may be sent again after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Safety {
    /// Reads and deletes: repeating them changes nothing.
    Idempotent,
    /// Creates: repeating one that reached the server could mint twice.
    Create,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_exponential_ceiling_and_the_cap() {
        let p = RetryPolicy::default();
        for attempt in 1..10 {
            let ceiling =
                Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(10));
            for _ in 0..50 {
                assert!(p.delay(attempt, None) <= ceiling);
            }
        }
    }

    #[test]
    fn the_server_delay_wins() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn jitter_spreads_delays() {
        let p = RetryPolicy::default();
        let distinct: std::collections::BTreeSet<_> = (0..20).map(|_| p.delay(4, None)).collect();
        assert!(distinct.len() > 10);
    }
}
