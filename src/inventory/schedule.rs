//! When a workspace's next inventory is due: after its interval, at once after a spec change,
//! and sooner (backing off up to the interval) after a failure. A process (a restart, a new
//! leader) lists every workspace once when it starts: the metrics it serves come only from its
//! own inventories, and counts from status alone cannot fill the per-owner series.

use std::time::Duration;

use crate::crd::InventorySpec;
use crate::schedule::EpochMillis;

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
pub const DEFAULT_WARNING_WINDOW: Duration = Duration::from_secs(30 * 86_400);
/// The first retry after a failure; each further failure doubles it, up to the interval.
pub const FIRST_RETRY: Duration = Duration::from_secs(10);

pub fn interval(spec: &InventorySpec) -> Duration {
    spec.interval.map_or(DEFAULT_INTERVAL, Into::into)
}

pub fn warning_window(spec: &InventorySpec) -> Duration {
    spec.expiry_warning_window
        .map_or(DEFAULT_WARNING_WINDOW, Into::into)
}

/// What this process remembers of a workspace's last inventory attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub at: EpochMillis,
    pub generation: Option<i64>,
    /// Failures in a row (0: the last attempt succeeded).
    pub failures: u32,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// When the next inventory is due, after this process's `last` attempt (none yet: now).
pub fn next_due(
    interval: Duration,
    generation: Option<i64>,
    last: Option<&Attempt>,
) -> EpochMillis {
    let Some(last) = last else {
        return 0;
    };
    if last.generation != generation {
        return 0;
    }
    let wait = match last.failures {
        0 => interval,
        n => FIRST_RETRY
            .saturating_mul(1 << (n - 1).min(20))
            .min(interval),
    };
    last.at.saturating_add(millis(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn attempt(at: i64, generation: i64, failures: u32) -> Attempt {
        Attempt {
            at,
            generation: Some(generation),
            failures,
        }
    }

    #[test]
    fn the_next_inventory_follows_the_interval_spec_changes_and_failures() {
        let t = 1_000_000;
        let h = 3_600_000;
        let cases: [(&str, Option<Attempt>, i64); 7] = [
            ("never attempted", None, 0),
            ("after a success", Some(attempt(t, 1, 0)), t + h),
            ("spec changed", Some(attempt(t, 0, 0)), 0),
            ("one failure", Some(attempt(t, 1, 1)), t + 10_000),
            ("three failures", Some(attempt(t, 1, 3)), t + 40_000),
            (
                "many failures: at most the interval",
                Some(attempt(t, 1, 30)),
                t + h,
            ),
            ("spec changed while failing", Some(attempt(t, 0, 4)), 0),
        ];
        for (case, last, due) in cases {
            assert_eq!(next_due(HOUR, Some(1), last.as_ref()), due, "{case}");
        }
    }

    #[test]
    fn defaults_are_an_hour_and_thirty_days() {
        let spec: InventorySpec = serde_json::from_str("{}").unwrap();
        assert_eq!(interval(&spec), HOUR);
        assert_eq!(warning_window(&spec), Duration::from_secs(2_592_000));
        let spec: InventorySpec =
            serde_json::from_str(r#"{"interval": "15m", "expiryWarningWindow": "168h"}"#).unwrap();
        assert_eq!(interval(&spec), Duration::from_secs(900));
        assert_eq!(warning_window(&spec), Duration::from_secs(7 * 86_400));
    }
}
