//! The `status.inventory` an inventory leaves: counts by class, what was revoked, what a cleanup
//! policy matched, or why the inventory failed (keeping the last counts).

use crate::crd::{CLEANUP_IDS_SHOWN, CleanupMode, CleanupStatus, InventorySpec, InventoryStatus};
use crate::schedule::EpochMillis;

use super::{Class, Tally};

/// What the inventory did after counting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Done {
    pub orphans_revoked: u64,
    pub cleanup_revoked: u64,
    /// Why acting stopped early (a revocation failed); the counts still stand.
    pub error: Option<String>,
}

/// Token ids a dry-run event names (status lists up to `CLEANUP_IDS_SHOWN`).
pub const IDS_IN_EVENT: usize = 20;

/// Whether a dry run found another set than the last one reported (first `CLEANUP_IDS_SHOWN`
/// ids, sorted), so its event is worth publishing: not the same one every interval.
pub fn dry_run_is_news(previous: Option<&InventoryStatus>, ids: &[&str]) -> bool {
    let shown = &ids[..ids.len().min(CLEANUP_IDS_SHOWN)];
    let before = previous
        .and_then(|s| s.cleanup.as_ref())
        .filter(|c| c.mode == mode_name(CleanupMode::DryRun));
    before.is_none_or(|c| {
        c.token_ids
            .iter()
            .map(String::as_str)
            .ne(shown.iter().copied())
    })
}

pub fn dry_run_note(matched: u64, ids: &[&str]) -> String {
    if ids.is_empty() {
        return "Cleanup dry run: no token matches the rules".to_string();
    }
    let more = ids.len().saturating_sub(IDS_IN_EVENT);
    let listed = ids[..ids.len().min(IDS_IN_EVENT)].join(", ");
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "Cleanup dry run: {matched} token(s) match the rules and would be revoked: {listed}{more}"
    )
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
        error: done.error,
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
            error: None,
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
        assert_eq!(s.error, None);
        assert_eq!((f.total, f.observed_generation), (21, Some(5)));
        assert_eq!(f.error.as_deref(), Some("PERMISSION_DENIED"));
    }

    #[test]
    fn a_dry_run_event_is_published_only_when_the_matched_set_changes() {
        let dry = |ids: &[&str], mode: &str| InventoryStatus {
            cleanup: Some(CleanupStatus {
                mode: mode.into(),
                matched: ids.len() as u64,
                revoked: 0,
                token_ids: ids.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        };
        let cases = [
            ("first dry run", None, vec!["a", "b"], true),
            (
                "same set",
                Some(dry(&["a", "b"], "DryRun")),
                vec!["a", "b"],
                false,
            ),
            (
                "one more",
                Some(dry(&["a", "b"], "DryRun")),
                vec!["a", "b", "c"],
                true,
            ),
            (
                "one fewer",
                Some(dry(&["a", "b"], "DryRun")),
                vec!["a"],
                true,
            ),
            (
                "after a real run",
                Some(dry(&["a"], "Revoke")),
                vec!["a"],
                true,
            ),
            (
                "nothing, as before",
                Some(dry(&[], "DryRun")),
                vec![],
                false,
            ),
        ];
        for (case, previous, ids, news) in cases {
            assert_eq!(dry_run_is_news(previous.as_ref(), &ids), news, "{case}");
        }
        // Beyond the ids status shows, a change is not news (status could not show it).
        let many: Vec<String> = (0..CLEANUP_IDS_SHOWN + 5)
            .map(|i| format!("{i:04}"))
            .collect();
        let shown: Vec<&str> = many.iter().map(String::as_str).collect();
        let previous = dry(&shown[..CLEANUP_IDS_SHOWN], "DryRun");
        assert!(!dry_run_is_news(Some(&previous), &shown));
    }

    #[test]
    fn a_dry_run_note_names_the_first_ids_and_counts_the_rest() {
        assert_eq!(
            dry_run_note(0, &[]),
            "Cleanup dry run: no token matches the rules"
        );
        assert_eq!(
            dry_run_note(2, &["a", "b"]),
            "Cleanup dry run: 2 token(s) match the rules and would be revoked: a, b"
        );
        let many: Vec<String> = (0..IDS_IN_EVENT + 3).map(|i| format!("t{i}")).collect();
        let ids: Vec<&str> = many.iter().map(String::as_str).collect();
        let note = dry_run_note(900, &ids);
        assert!(note.starts_with("Cleanup dry run: 900 token(s)"), "{note}");
        assert!(
            note.ends_with(&format!("t{} and 3 more", IDS_IN_EVENT - 1)),
            "{note}"
        );
    }
}
