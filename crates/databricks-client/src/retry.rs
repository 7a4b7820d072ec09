//! When to retry, and how long to wait: capped exponential backoff with full jitter, a
//! server's Retry-After taking precedence, all within an overall deadline.
//!
//! Reads and deletes are retried on 429, 5xx and transport errors: repeating them changes
//! nothing (a repeated delete answers 404, which callers treat as done).
//!
//! A create is retried only when the server certainly did not act on it, because a blind
//! retry can mint a second token that nobody holds:
//! - 429: Databricks rate-limits before it processes a request;
//! - a connection that never opened (refused, DNS, TLS handshake, connect timeout): nothing
//!   was sent;
//! - 401 / 403-invalid-token with an exchanged OAuth token: refused at authentication (the
//!   client refreshes the token and tries once more, see `client.rs`).
//!
//! Everything else on a create is "outcome uncertain" and returned at once: 500/502/504, a
//! timeout, a connection reset after sending, an unreadable 2xx body, and also 503. Databricks'
//! 503 usually comes from its front door before any work, but a proxy answers 503 too when a
//! backend died after acting, and the two cannot be told apart. A late mint costs a requeue;
//! a double mint leaks a live credential. The caller then looks for the token the create may
//! have made (the operator's orphan sweep) before creating again.

use std::time::Duration;

use rand::Rng;

use crate::Error;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt (a longer Retry-After ends the
    /// call with the error, whose `retry_after()` the caller can honour).
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

/// Whether a request may be sent again after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Safety {
    /// Reads and deletes: repeating them changes nothing.
    Idempotent,
    /// Creates: repeating one that reached the server could mint twice.
    Create,
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1): uniformly random up to
    /// the exponential ceiling ("full jitter"), or the server's delay when it gave one.
    pub fn delay(&self, attempt: u32, server_delay: Option<Duration>) -> Duration {
        if let Some(d) = server_delay {
            return d;
        }
        self.ceiling(attempt)
            .mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff)
    }

    /// After failed attempt number `attempt`, `elapsed` since the first began: how long to
    /// wait before the next, or None to give up and return the error. While the host is
    /// `failing` (the last call ended in a transient failure, nothing has succeeded since), a
    /// call makes one attempt: the caller's own backoff paces the next, and the client's
    /// retries would only multiply it.
    pub(crate) fn next_delay(
        &self,
        safety: Safety,
        error: &Error,
        attempt: u32,
        elapsed: Duration,
        failing: bool,
    ) -> Option<Duration> {
        if failing || !may_repeat(safety, error) || attempt >= self.max_attempts {
            return None;
        }
        let delay = self.delay(attempt, error.retry_after());
        (elapsed + delay <= self.overall_deadline).then_some(delay)
    }
}

/// Whether a call that ended with `error` says the host is failing (rather than refusing this
/// one request): 429, 5xx and transport errors.
pub(crate) fn marks_failing(error: &Error) -> bool {
    error.is_retryable()
}

/// Whether sending the same request again is safe and may help.
pub(crate) fn may_repeat(safety: Safety, error: &Error) -> bool {
    error.is_retryable()
        && match safety {
            Safety::Idempotent => true,
            Safety::Create => !error.create_outcome_uncertain(),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(uncertain: bool) -> Error {
        Error::Unavailable {
            status: 503,
            code: "TEMPORARILY_UNAVAILABLE".into(),
            message: "m".into(),
            retry_after: None,
            uncertain,
        }
    }

    fn rate_limited(retry_after: Option<Duration>) -> Error {
        Error::RateLimited {
            code: "REQUEST_LIMIT_EXCEEDED".into(),
            message: "m".into(),
            retry_after,
        }
    }

    fn transport(uncertain: bool) -> Error {
        Error::Transport {
            message: "m".into(),
            uncertain,
        }
    }

    #[test]
    fn delays_stay_under_the_exponential_ceiling_and_the_cap() {
        let p = RetryPolicy::default();
        for attempt in 1..40 {
            let ceiling = Duration::from_millis(100u64.saturating_mul(1 << (attempt - 1).min(30)))
                .min(Duration::from_secs(10));
            for _ in 0..50 {
                assert!(p.delay(attempt, None) <= ceiling, "attempt {attempt}");
            }
        }
    }

    #[test]
    fn the_ceiling_doubles_then_stops_at_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(5), Duration::from_millis(1_600));
        assert_eq!(p.ceiling(8), Duration::from_secs(10));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(10));
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

    #[test]
    fn reads_repeat_on_every_transient_error() {
        for e in [unavailable(false), rate_limited(None), transport(false)] {
            assert!(may_repeat(Safety::Idempotent, &e), "{e:?}");
        }
    }

    #[test]
    fn creates_repeat_only_when_the_server_did_not_act() {
        assert!(may_repeat(Safety::Create, &rate_limited(None)));
        assert!(may_repeat(Safety::Create, &transport(false)));
        assert!(!may_repeat(Safety::Create, &transport(true)));
        assert!(!may_repeat(Safety::Create, &unavailable(true)));
    }

    #[test]
    fn permanent_errors_never_repeat() {
        let e = Error::NotFound {
            code: "RESOURCE_DOES_NOT_EXIST".into(),
            message: "m".into(),
        };
        assert!(!may_repeat(Safety::Idempotent, &e));
        assert!(!may_repeat(
            Safety::Idempotent,
            &Error::AuthFlow {
                message: "m".into()
            }
        ));
    }

    #[test]
    fn attempts_are_capped() {
        let p = RetryPolicy::default();
        let e = unavailable(false);
        assert!(
            p.next_delay(Safety::Idempotent, &e, 4, Duration::ZERO, false)
                .is_some()
        );
        assert!(
            p.next_delay(Safety::Idempotent, &e, 5, Duration::ZERO, false)
                .is_none()
        );
    }

    #[test]
    fn a_host_already_failing_gets_one_attempt_per_call() {
        let p = RetryPolicy::default();
        for e in [unavailable(false), rate_limited(None), transport(false)] {
            assert!(
                p.next_delay(Safety::Idempotent, &e, 1, Duration::ZERO, false)
                    .is_some()
            );
            assert_eq!(
                p.next_delay(Safety::Idempotent, &e, 1, Duration::ZERO, true),
                None,
                "{e:?}"
            );
        }
    }

    /// Whether a call's outcome leaves the host marked failing.
    #[test]
    fn only_transient_failures_mark_the_host_failing() {
        assert!(marks_failing(&unavailable(false)));
        assert!(marks_failing(&transport(true)));
        assert!(marks_failing(&rate_limited(None)));
        assert!(!marks_failing(&Error::NotFound {
            code: "RESOURCE_DOES_NOT_EXIST".into(),
            message: "m".into(),
        }));
    }

    #[test]
    fn no_retry_starts_after_the_deadline() {
        let p = RetryPolicy {
            overall_deadline: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let e = rate_limited(Some(Duration::from_secs(3)));
        assert_eq!(
            p.next_delay(Safety::Idempotent, &e, 1, Duration::from_secs(7), false),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            p.next_delay(Safety::Idempotent, &e, 1, Duration::from_secs(8), false),
            None
        );
        let far = rate_limited(Some(Duration::from_secs(60)));
        assert_eq!(
            p.next_delay(Safety::Idempotent, &far, 1, Duration::ZERO, false),
            None
        );
    }
}
