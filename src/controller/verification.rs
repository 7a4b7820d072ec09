//! When each resource was last checked against Databricks (a token list), so the periodic
//! check is spread per resource and a restarted operator makes no calls for tokens that are fine.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use super::lock::lock;
use super::plan::LastCheck;
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

    /// The last check of a resource, for `plan::decide`.
    pub fn last(&self, uid: &str) -> Option<LastCheck> {
        lock(&self.checks).get(uid).map(|c| LastCheck {
            at: c.at,
            listed: c.listed,
        })
    }

    /// A resource first seen counts as just checked, so a restarted operator makes no
    /// Databricks calls for tokens that are fine (`plan::Plan::first_sight`).
    pub fn first_sight(&self, uid: &str, now: EpochMillis) {
        lock(&self.checks).insert(
            uid.to_string(),
            Check {
                at: now,
                listed: false,
            },
        );
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
    fn checks_are_remembered_until_forgotten() {
        let v = Verifications::new(Duration::from_secs(10));
        assert_eq!(v.last("a"), None);
        assert_eq!(v.next("a", 7), 10_007, "unknown: from now");
        v.first_sight("a", 5);
        assert_eq!(
            v.last("a"),
            Some(LastCheck {
                at: 5,
                listed: false
            })
        );
        assert_eq!(v.next("a", 6), 10_005);
        v.mark_verified("a", 20_000);
        assert_eq!(
            v.last("a"),
            Some(LastCheck {
                at: 20_000,
                listed: true
            })
        );
        v.forget("a");
        assert_eq!(v.last("a"), None);
    }
}
