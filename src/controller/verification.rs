//! When each resource was last checked against Databricks (a token list), so the periodic
//! check is spread per resource and a restarted operator makes no calls for tokens that are fine.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use super::lock::lock;
use crate::schedule::EpochMillis;

/// The last check of one resource against Databricks.
struct Check {
    at: EpochMillis,
    /// Whether this process has compared the resource with a token list since it started
    /// (a first sight counts as checked, but lists nothing).
    listed: bool,
}

/// Last checks by resource uid.
pub struct Verifications {
    interval: Duration,
    checks: Mutex<HashMap<String, Check>>,
}

impl Verifications {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            checks: Mutex::new(HashMap::new()),
        }
    }

    fn interval_ms(&self) -> EpochMillis {
        self.interval.as_millis() as EpochMillis
    }

    /// Whether the periodic check is due. A resource first seen counts as just checked, so a
    /// restarted operator makes no Databricks calls for tokens that are fine.
    pub fn due(&self, uid: &str, now: EpochMillis) -> bool {
        let mut checks = lock(&self.checks);
        match checks.get(uid) {
            Some(c) => now - c.at >= self.interval_ms(),
            None => {
                checks.insert(
                    uid.to_string(),
                    Check {
                        at: now,
                        listed: false,
                    },
                );
                false
            }
        }
    }

    pub fn mark_verified(&self, uid: &str, now: EpochMillis) {
        lock(&self.checks).insert(
            uid.to_string(),
            Check {
                at: now,
                listed: true,
            },
        );
    }

    /// Whether this process has compared the resource with a token list since it started.
    pub fn listed(&self, uid: &str) -> bool {
        lock(&self.checks).get(uid).is_some_and(|c| c.listed)
    }

    pub fn next(&self, uid: &str, now: EpochMillis) -> EpochMillis {
        let last = lock(&self.checks).get(uid).map_or(now, |c| c.at);
        last + self.interval_ms()
    }

    pub fn forget(&self, uid: &str) {
        lock(&self.checks).remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_sight_counts_as_checked_but_not_listed() {
        let v = Verifications::new(Duration::from_secs(10));
        assert!(!v.due("a", 0), "first sight");
        assert!(!v.listed("a"));
        assert!(!v.due("a", 9_999));
        assert!(v.due("a", 10_000));
        assert_eq!(v.next("a", 5), 10_000);
        v.mark_verified("a", 20_000);
        assert!(v.listed("a"));
        assert_eq!(v.next("a", 20_000), 30_000);
        v.forget("a");
        assert!(!v.listed("a"));
        assert_eq!(v.next("a", 7), 10_007, "unknown: from now");
    }
}
