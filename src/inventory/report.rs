//! The `status.inventory` an inventory leaves: counts by class, what was revoked, what a cleanup
//! policy matched, or why the inventory failed (keeping the last counts).

use crate::crd::{CLEANUP_IDS_SHOWN, CleanupMode, CleanupStatus, InventorySpec, InventoryStatus};
use crate::schedule::EpochMillis;

use super::{Class, Tally};

/// What the inventory did after counting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Done {
    pub orphans_revoked: u64,
    pub cleanup_revoked: u64,
}

pub fn mode_name(mode: CleanupMode) -> &'static str {
    match mode {
        CleanupMode::DryRun => "DryRun",
        CleanupMode::Revoke => "Revoke",
    }
}

pub fn succeeded(
    tally: &Tally,
    spec: &InventorySpec,
    now: EpochMillis,
    generation: Option<i64>,
    done: Done,
) -> InventoryStatus {
    InventoryStatus {
        last_inventory_time: Some(crate::secret::format_time(now)),
        total: tally.total(),
        managed: tally.count(Class::Managed),
        orphaned: tally.count(Class::Orphaned),
        orphans_revoked: done.orphans_revoked,
        expiring_soon: tally.count(Class::ExpiringSoon),
        never_expiring: tally.count(Class::NeverExpiring),
        expired: tally.count(Class::Expired),
        other: tally.count(Class::Other),
        cleanup: spec.cleanup.as_ref().map(|c| CleanupStatus {
            mode: mode_name(c.mode).into(),
            matched: tally.cleanup.seen,
            revoked: done.cleanup_revoked,
            token_ids: tally
                .cleanup
                .ids
                .keys()
                .take(CLEANUP_IDS_SHOWN)
                .cloned()
                .collect(),
        }),
        error: None,
        observed_generation: generation,
    }
}

/// A failed inventory: the counts of the last success stay, with the error beside them.
pub fn failed(
    previous: Option<&InventoryStatus>,
    generation: Option<i64>,
    error: String,
) -> InventoryStatus {
    InventoryStatus {
        error: Some(error),
        observed_generation: generation,
        ..previous.cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CleanupPolicy, CleanupRule, OrphanPolicy};

    #[test]
    fn status_shows_counts_actions_and_the_first_matched_ids() {
        let mut tally = Tally::new(false);
        tally.counts = [3, 2, 1, 4, 5, 6];
        for id in ["b", "a"] {
            tally.cleanup.ids.insert(id.into(), "1".into());
        }
        tally.cleanup.seen = 2;
        let spec = InventorySpec {
            interval: None,
            expiry_warning_window: None,
            owners: vec![],
            orphans: OrphanPolicy::Revoke,
            per_token_metrics: false,
            cleanup: Some(CleanupPolicy {
                mode: CleanupMode::DryRun,
                rules: vec![CleanupRule {
                    owners: vec!["1".into()],
                    comment_contains: "x".into(),
                }],
            }),
        };
        let done = Done {
            orphans_revoked: 2,
            cleanup_revoked: 0,
        };
        let s = succeeded(&tally, &spec, 0, Some(4), done);
        assert_eq!(
            (
                s.total,
                s.managed,
                s.orphaned,
                s.expired,
                s.never_expiring,
                s.expiring_soon,
                s.other
            ),
            (21, 3, 2, 1, 4, 5, 6)
        );
        assert_eq!(s.orphans_revoked, 2);
        assert_eq!(
            s.last_inventory_time.as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
        let cleanup = s.cleanup.clone().unwrap();
        assert_eq!((cleanup.mode.as_str(), cleanup.matched), ("DryRun", 2));
        assert_eq!(cleanup.token_ids, ["a", "b"]);
        let f = failed(Some(&s), Some(5), "PERMISSION_DENIED".into());
        assert_eq!((f.total, f.observed_generation), (21, Some(5)));
        assert_eq!(f.error.as_deref(), Some("PERMISSION_DENIED"));
    }
}
