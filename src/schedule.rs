//! Rotation schedule maths: when to renew a token and when to revoke the one it replaced.
//! Pure functions over epoch milliseconds, so every edge case is a unit test.

use std::time::Duration;

/// Millisecond epoch timestamps, the unit Databricks uses for creation and expiry times.
pub type EpochMillis = i64;

/// Default share of the lifetime left when rotating: renew at 2/3 of the lifetime, like cert-manager.
pub const DEFAULT_RENEW_BEFORE_PERCENT: u8 = 33;

/// The largest early shift of a renewal, to spread a fleet created at the same moment.
const MAX_JITTER_MILLIS: i64 = 5 * 60 * 1000;
/// Jitter never exceeds this share (in percent) of the time between creation and renewal.
const MAX_JITTER_PERCENT: i64 = 5;

/// How early to renew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewBefore {
    /// A fixed time before expiry.
    Fixed(Duration),
    /// This percentage of the token's actual lifetime before expiry.
    Percent(u8),
}

impl Default for RenewBefore {
    fn default() -> Self {
        RenewBefore::Percent(DEFAULT_RENEW_BEFORE_PERCENT)
    }
}

/// When to replace a token created at `creation` that expires at `expiry` (None: never).
///
/// The actual lifetime comes from the expiry Databricks returned, which can be shorter than the
/// one requested when the workspace caps lifetimes. A fixed `renew_before` that does not fit in
/// that lifetime falls back to the default percentage, so the token is still rotated in time.
/// `jitter_seed` (e.g. a hash of the token id) shifts the renewal slightly earlier, the same way
/// every time it is computed, so repeated reconciles agree.
pub fn renewal_time(
    creation: EpochMillis,
    expiry: Option<EpochMillis>,
    renew_before: RenewBefore,
    jitter_seed: u64,
) -> Option<EpochMillis> {
    let expiry = expiry?;
    let lifetime = (expiry - creation).max(0);
    let before = match renew_before {
        RenewBefore::Fixed(d) if (d.as_millis() as i64) < lifetime => d.as_millis() as i64,
        RenewBefore::Fixed(_) => percent_of(lifetime, DEFAULT_RENEW_BEFORE_PERCENT),
        RenewBefore::Percent(p) => percent_of(lifetime, p),
    };
    let unjittered = expiry - before;
    let window = (unjittered - creation).max(0);
    let max_jitter = (window * MAX_JITTER_PERCENT / 100).min(MAX_JITTER_MILLIS);
    let jitter = if max_jitter > 0 {
        (jitter_seed % (max_jitter as u64 + 1)) as i64
    } else {
        0
    };
    Some(unjittered - jitter)
}

fn percent_of(millis: i64, percent: u8) -> i64 {
    millis * i64::from(percent.min(99)) / 100
}

/// When a replaced token is revoked: after the grace period, but never later than its own
/// expiry (a dead token needs no overlap).
pub fn revoke_after(
    now: EpochMillis,
    grace: Duration,
    old_expiry: Option<EpochMillis>,
) -> EpochMillis {
    let after_grace = now.saturating_add(grace.as_millis() as i64);
    match old_expiry {
        Some(expiry) => after_grace.min(expiry.max(now)),
        None => after_grace,
    }
}

/// Whether the token must be replaced now.
pub fn is_due(now: EpochMillis, renewal: Option<EpochMillis>) -> bool {
    renewal.is_some_and(|r| now >= r)
}

/// Whether the token is dead already.
pub fn is_expired(now: EpochMillis, expiry: Option<EpochMillis>) -> bool {
    expiry.is_some_and(|e| now >= e)
}

/// How long to wait until the earliest of the given moments, at least `min_wait` and at most
/// `max_wait` (moments in the past mean "now", i.e. `min_wait`).
pub fn wait_until_earliest(
    now: EpochMillis,
    moments: impl IntoIterator<Item = EpochMillis>,
    min_wait: Duration,
    max_wait: Duration,
) -> Duration {
    let earliest = moments.into_iter().min();
    let wait = match earliest {
        Some(t) if t > now => Duration::from_millis((t - now) as u64),
        Some(_) => min_wait,
        None => max_wait,
    };
    wait.clamp(min_wait, max_wait)
}

pub use crate::hash::seed_of;

/// A new token's creation and expiry on the operator's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTimes {
    pub creation: EpochMillis,
    pub expiry: Option<EpochMillis>,
}

/// Databricks reports `creation` and `expiry` (-1: never) on its own clock, which may be minutes
/// from the operator's; the lifetime between them is the same on both. On the operator's clock
/// the token was created by the time the answer arrived (a list sent later shows it) and
/// expires no earlier than a lifetime after the request was sent: keep the later creation and
/// the earlier expiry, so renewal is never late and a list is never read too early.
pub fn on_local_clock(
    sent_at: EpochMillis,
    answered_at: EpochMillis,
    creation: EpochMillis,
    expiry: EpochMillis,
) -> LocalTimes {
    LocalTimes {
        creation: answered_at,
        expiry: (expiry > 0)
            .then(|| sent_at.saturating_add(expiry.saturating_sub(creation).max(0))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    #[test]
    fn default_renewal_is_at_two_thirds_of_the_lifetime_without_jitter() {
        let r = renewal_time(0, Some(30 * DAY), RenewBefore::default(), 0).unwrap();
        assert_eq!(r, 30 * DAY - 30 * DAY * 33 / 100);
    }

    #[test]
    fn fixed_renew_before_is_subtracted_from_the_actual_expiry() {
        let r = renewal_time(
            1_000,
            Some(1_000 + 10 * DAY),
            RenewBefore::Fixed(Duration::from_secs(2 * 86_400)),
            0,
        );
        assert_eq!(r, Some(1_000 + 8 * DAY));
    }

    #[test]
    fn fixed_renew_before_longer_than_a_capped_lifetime_falls_back_to_the_default_share() {
        // Asked for 90 days renewing 30 days early; the workspace capped the token at 7 days.
        let r = renewal_time(
            0,
            Some(7 * DAY),
            RenewBefore::Fixed(Duration::from_secs(30 * 86_400)),
            0,
        )
        .unwrap();
        assert!(
            r > 0 && r < 7 * DAY,
            "renewal {r} must fall inside the lifetime"
        );
        assert_eq!(r, 7 * DAY - 7 * DAY * 33 / 100);
    }

    #[test]
    fn percentage_renew_before_uses_the_actual_lifetime() {
        let r = renewal_time(0, Some(100 * HOUR), RenewBefore::Percent(10), 0);
        assert_eq!(r, Some(90 * HOUR));
    }

    #[test]
    fn tokens_without_expiry_are_never_due() {
        assert_eq!(renewal_time(0, None, RenewBefore::default(), 7), None);
        assert!(!is_due(i64::MAX, None));
    }

    #[test]
    fn jitter_only_moves_renewal_earlier_and_within_bounds() {
        let base = renewal_time(0, Some(30 * DAY), RenewBefore::default(), 0).unwrap();
        for seed in [
            1u64,
            42,
            999_999,
            u64::MAX,
            seed_of("a"),
            seed_of("token-123"),
        ] {
            let r = renewal_time(0, Some(30 * DAY), RenewBefore::default(), seed).unwrap();
            assert!(r <= base);
            assert!(
                base - r <= MAX_JITTER_MILLIS,
                "jitter {} too large",
                base - r
            );
        }
    }

    #[test]
    fn jitter_is_at_most_five_percent_of_a_short_window() {
        let base = renewal_time(0, Some(30_000), RenewBefore::default(), 0).unwrap();
        for seed in 0..1_000u64 {
            let r = renewal_time(0, Some(30_000), RenewBefore::default(), seed).unwrap();
            assert!(base - r <= base * 5 / 100);
        }
    }

    #[test]
    fn jitter_is_stable_for_the_same_seed() {
        let a = renewal_time(5, Some(5 + DAY), RenewBefore::default(), seed_of("id-1"));
        let b = renewal_time(5, Some(5 + DAY), RenewBefore::default(), seed_of("id-1"));
        assert_eq!(a, b);
    }

    #[test]
    fn different_seeds_spread_renewals() {
        let times: std::collections::BTreeSet<_> = (0..50)
            .map(|i| {
                renewal_time(
                    0,
                    Some(30 * DAY),
                    RenewBefore::default(),
                    seed_of(&format!("t{i}")),
                )
            })
            .collect();
        assert!(
            times.len() > 40,
            "only {} distinct renewal times",
            times.len()
        );
    }

    #[test]
    fn an_already_expired_token_renews_at_once() {
        let r = renewal_time(0, Some(0), RenewBefore::default(), 3);
        assert!(is_due(0, r));
        assert!(is_expired(0, Some(0)));
        assert!(!is_expired(0, Some(1)));
    }

    #[test]
    fn revoke_after_is_now_plus_grace() {
        assert_eq!(
            revoke_after(1_000, Duration::from_secs(60), Some(10 * HOUR)),
            61_000
        );
    }

    #[test]
    fn revoke_after_never_outlives_the_old_token() {
        assert_eq!(
            revoke_after(1_000, Duration::from_secs(3_600), Some(5_000)),
            5_000
        );
    }

    #[test]
    fn revoke_after_of_an_expired_token_is_now() {
        assert_eq!(
            revoke_after(9_000, Duration::from_secs(3_600), Some(5_000)),
            9_000
        );
    }

    #[test]
    fn wait_picks_the_earliest_moment() {
        let w = wait_until_earliest(
            0,
            [50_000, 10_000, 30_000],
            Duration::from_secs(1),
            Duration::from_secs(3_600),
        );
        assert_eq!(w, Duration::from_secs(10));
    }

    #[test]
    fn wait_for_a_past_moment_is_the_minimum() {
        let w = wait_until_earliest(
            100_000,
            [5],
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        assert_eq!(w, Duration::from_secs(1));
    }

    #[test]
    fn wait_is_capped_and_defaults_to_the_maximum() {
        let max = Duration::from_secs(600);
        assert_eq!(
            wait_until_earliest(0, [100 * DAY], Duration::from_secs(1), max),
            max
        );
        assert_eq!(wait_until_earliest(0, [], Duration::from_secs(1), max), max);
    }

    #[test]
    fn databricks_times_move_onto_the_operators_clock() {
        const SENT: EpochMillis = 1_700_000_000_000;
        let minute = 60_000;
        // Databricks five minutes ahead, five minutes behind, in step: the same local times.
        for skew in [5 * minute, -5 * minute, 0] {
            let created_there = SENT + 200 + skew;
            let local = on_local_clock(SENT, SENT + 400, created_there, created_there + HOUR);
            assert_eq!(
                local,
                LocalTimes {
                    creation: SENT + 400,
                    expiry: Some(SENT + HOUR),
                },
                "skew {skew}"
            );
        }
        assert_eq!(on_local_clock(SENT, SENT + 1, SENT + 9, -1).expiry, None);
    }
}
