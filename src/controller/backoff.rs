//! Per-object exponential backoff for failing reconciles, so a broken resource is retried
//! ever less often instead of hammering Databricks or the API server.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use rand::Rng;

pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Record a failure of `key` and return how long to wait before the next attempt: the
    /// exponential delay with up to 20% jitter, at least the server's `retry_after`.
    pub fn next_delay(&self, key: &str, retry_after: Option<Duration>) -> Duration {
        let attempt = {
            let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let exp = self
            .base
            .saturating_mul(1u32 << (attempt - 1).min(20))
            .min(self.cap);
        let jitter = exp.mul_f64(rand::rng().random_range(0.0..0.2));
        (exp + jitter).max(retry_after.unwrap_or_default())
    }

    /// Forget failures of `key` after a success.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    #[cfg(test)]
    pub fn failures(&self, key: &str) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_up_to_the_cap() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let d: Vec<_> = (0..6).map(|_| b.next_delay("a", None)).collect();
        assert!(d[0] >= Duration::from_secs(1) && d[0] < Duration::from_millis(1_200));
        assert!(d[1] >= Duration::from_secs(2) && d[1] < Duration::from_millis(2_400));
        assert!(d[2] >= Duration::from_secs(4));
        assert!(d[5] >= Duration::from_secs(10) && d[5] <= Duration::from_secs(12));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        assert!(b.next_delay("a", Some(Duration::from_secs(30))) >= Duration::from_secs(30));
    }

    #[test]
    fn reset_starts_over_and_keys_are_independent() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        b.next_delay("a", None);
        b.next_delay("a", None);
        b.next_delay("b", None);
        assert_eq!(b.failures("a"), 2);
        assert_eq!(b.failures("b"), 1);
        b.reset("a");
        assert_eq!(b.failures("a"), 0);
        assert!(b.next_delay("a", None) < Duration::from_millis(1_200));
    }
}
