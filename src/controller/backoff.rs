//! Per-object exponential backoff for failing reconciles, so a broken resource is retried
//! ever less often instead of hammering Databricks or the API server.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use rand::Rng;

use crate::schedule::EpochMillis;

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
        jittered(exponential(self.base, self.cap, attempt)).max(retry_after.unwrap_or_default())
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

/// Backoff shared by every caller of one workspace: while it fails, one attempt per step
/// reaches it (a probe), whichever token or check makes it; the others wait without calling.
/// Reset by the first success.
pub struct WorkspaceBackoff<K> {
    base: Duration,
    cap: Duration,
    failing: Mutex<HashMap<K, Failing>>,
}

struct Failing {
    failures: u32,
    retry_at: EpochMillis,
    /// A caller was let through at or after `retry_at` and has not reported back yet.
    probe_since: Option<EpochMillis>,
    reason: String,
    message: String,
}

/// A workspace call refused because the workspace is backing off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub until: EpochMillis,
    /// The failure that closed the gate, repeated so the waiting tokens show it.
    pub reason: String,
    pub message: String,
}

/// A probe that never reports back (its reconcile was cancelled) stops blocking after this.
const PROBE_TIMEOUT: EpochMillis = 120_000;
/// How soon a caller kept out by another's probe looks again.
const PROBE_WAIT: EpochMillis = 1_000;

impl<K: std::hash::Hash + Eq + Clone> WorkspaceBackoff<K> {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failing: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a call to `key` must wait. A caller let through after the wait is the probe:
    /// it must report `failed` or `succeeded`.
    pub fn enter(&self, key: &K, now: EpochMillis) -> Result<(), Blocked> {
        let mut map = lock(&self.failing);
        let Some(f) = map.get_mut(key) else {
            return Ok(());
        };
        let blocked = |until| Blocked {
            until,
            reason: f.reason.clone(),
            message: f.message.clone(),
        };
        if now < f.retry_at {
            return Err(blocked(f.retry_at));
        }
        if let Some(since) = f.probe_since
            && now - since < PROBE_TIMEOUT
        {
            return Err(blocked(now + PROBE_WAIT));
        }
        f.probe_since = Some(now);
        Ok(())
    }

    /// `enter`, forgetting earlier failures first when `afresh` (the workspace's spec changed).
    pub fn enter_afresh_if(&self, afresh: bool, key: &K, now: EpochMillis) -> Result<(), Blocked> {
        if afresh {
            self.succeeded(key);
        }
        self.enter(key, now)
    }

    /// Record a workspace failure; returns when the next attempt may be made. Failures of
    /// calls that raced into the same step count once.
    pub fn failed(
        &self,
        key: &K,
        now: EpochMillis,
        retry_after: Option<Duration>,
        reason: &str,
        message: &str,
    ) -> EpochMillis {
        let mut map = lock(&self.failing);
        let f = map.entry(key.clone()).or_insert(Failing {
            failures: 0,
            retry_at: 0,
            probe_since: None,
            reason: String::new(),
            message: String::new(),
        });
        f.reason = reason.to_string();
        f.message = message.to_string();
        f.probe_since = None;
        if now >= f.retry_at {
            f.failures = f.failures.saturating_add(1);
            let delay = jittered(exponential(self.base, self.cap, f.failures))
                .max(retry_after.unwrap_or_default());
            f.retry_at = now + delay.as_millis() as EpochMillis;
        }
        f.retry_at
    }

    /// The workspace answered: forget its failures.
    pub fn succeeded(&self, key: &K) {
        lock(&self.failing).remove(key);
    }

    /// When the next attempt may be made, if the workspace is failing.
    pub fn retry_at(&self, key: &K) -> Option<EpochMillis> {
        lock(&self.failing).get(key).map(|f| f.retry_at)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `base * 2^(attempt-1)`, at most `cap`.
fn exponential(base: Duration, cap: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(cap)
}

/// Up to 20% more, so a fleet does not wake in lockstep.
fn jittered(d: Duration) -> Duration {
    d + d.mul_f64(rand::rng().random_range(0.0..0.2))
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

    const S: EpochMillis = 1_000;

    fn ws() -> WorkspaceBackoff<&'static str> {
        WorkspaceBackoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }

    #[test]
    fn a_healthy_workspace_lets_everyone_through() {
        let b = ws();
        assert_eq!(b.enter(&"w", 0), Ok(()));
        assert_eq!(b.enter(&"w", 0), Ok(()));
    }

    #[test]
    fn a_failing_workspace_blocks_every_caller_until_the_next_step() {
        let b = ws();
        let next = b.failed(&"w", 0, None, "BAD_GATEWAY", "HTTP 502");
        assert!((S..=S * 12 / 10).contains(&next), "{next}");
        let blocked = b.enter(&"w", next - 1).unwrap_err();
        assert_eq!(blocked.until, next);
        assert_eq!(
            (blocked.reason.as_str(), blocked.message.as_str()),
            ("BAD_GATEWAY", "HTTP 502")
        );
        assert_eq!(b.enter(&"other", 0), Ok(()), "keys are independent");
    }

    #[test]
    fn one_probe_per_step_and_the_rest_wait_for_it() {
        let b = ws();
        let next = b.failed(&"w", 0, None, "R", "m");
        assert_eq!(b.enter(&"w", next), Ok(()), "the probe");
        let waiting = b.enter(&"w", next).unwrap_err();
        assert_eq!(waiting.until, next + PROBE_WAIT);
        let after = b.failed(&"w", next, None, "R", "m");
        assert!(
            after - next >= 2 * S,
            "the second step doubles: {}",
            after - next
        );
        // A probe that never reported back does not block for ever.
        assert_eq!(b.enter(&"w", after), Ok(()));
        assert_eq!(b.enter(&"w", after + PROBE_TIMEOUT), Ok(()));
    }

    #[test]
    fn failures_racing_into_one_step_count_once() {
        let b = ws();
        let first = b.failed(&"w", 0, None, "R", "m");
        let again = b.failed(&"w", 10, None, "R", "m");
        assert_eq!(first, again);
    }

    #[test]
    fn success_resets_and_retry_after_is_a_floor() {
        let b = ws();
        b.failed(&"w", 0, None, "R", "m");
        b.succeeded(&"w");
        assert_eq!(b.retry_at(&"w"), None);
        assert_eq!(b.enter(&"w", 0), Ok(()));
        let next = b.failed(&"w", 0, Some(Duration::from_secs(30)), "R", "m");
        assert!(next >= 30 * S);
    }
}
