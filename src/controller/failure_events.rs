//! When a persisting failure is published again as an event: at once when it is new, then
//! now and then, so `kubectl get events` shows it is current without one event per retry.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use super::lock::lock;
use crate::schedule::EpochMillis;

/// A failure that persists is published again this often, so `kubectl get events` (which keeps
/// events for an hour by default) shows it is still current. Bounded: one event per failing
/// token per interval, whatever its retry rate.
pub const REPEAT_FAILURE_EVERY: Duration = Duration::from_secs(10 * 60);

/// When each failing token (by uid) last had its failure published.
#[derive(Default)]
pub struct FailureEvents {
    last: Mutex<HashMap<String, EpochMillis>>,
}

impl FailureEvents {
    /// Whether to publish this failure now: it is new (the status changed), or the last event
    /// about it is older than `REPEAT_FAILURE_EVERY`. Records the publication when it is.
    pub fn due(&self, uid: &str, changed: bool, now: EpochMillis) -> bool {
        let mut last = lock(&self.last);
        let due = publish_due(changed, last.get(uid).copied(), now, REPEAT_FAILURE_EVERY);
        if due {
            last.insert(uid.to_string(), now);
        }
        due
    }

    /// The token is healthy again, or gone.
    pub fn clear(&self, uid: &str) {
        lock(&self.last).remove(uid);
    }
}

fn publish_due(
    changed: bool,
    last: Option<EpochMillis>,
    now: EpochMillis,
    every: Duration,
) -> bool {
    changed || last.is_none_or(|at| now - at >= every.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_persisting_failure_is_published_again_only_after_the_interval() {
        let every = Duration::from_secs(600);
        let cases = [
            // (status changed, last published, now, due)
            (true, Some(1_000), 1_001, true),
            (false, None, 5_000, true),
            (false, Some(0), 599_999, false),
            (false, Some(0), 600_000, true),
            (true, None, 0, true),
        ];
        for (changed, last, now, due) in cases {
            assert_eq!(
                publish_due(changed, last, now, every),
                due,
                "{changed} {last:?} {now}"
            );
        }
    }

    #[test]
    fn the_tracker_remembers_the_last_publication_until_cleared() {
        let events = FailureEvents::default();
        assert!(events.due("a", true, 0));
        assert!(!events.due("a", false, 1_000));
        assert!(events.due("b", false, 1_000), "another token");
        assert!(events.due("a", false, 600_000));
        assert!(!events.due("a", false, 600_001));
        events.clear("a");
        assert!(events.due("a", false, 600_002));
    }
}
