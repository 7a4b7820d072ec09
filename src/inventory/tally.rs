//! Counting a token list as it streams past: totals and per-owner counts by class, the earliest
//! expiry per owner, and the few token ids something must be done about. Nothing else is kept,
//! so the memory of an inventory grows with the number of owners, not of tokens (apart from the
//! opt-in per-token series).

use std::collections::BTreeMap;

use databricks_client::TokenInfo;

use super::classify::{self, Class, Judge};
use crate::crd::InventorySpec;
use crate::databricks::tag_owner;
use crate::schedule::EpochMillis;

/// Orphans revoked, or cleanup matches acted on, per inventory at most: the rest wait for the
/// next one, so a workspace full of them costs bounded memory and calls per interval.
pub const MAX_ACTIONS: usize = 500;

/// Counts by class, indexed by `Class::index`.
pub type Counts = [u64; Class::ALL.len()];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnerTally {
    pub counts: Counts,
    /// The earliest future expiry of the owner's tokens not minted by this operator.
    pub earliest_expiry: Option<EpochMillis>,
}

/// One token as the opt-in per-token series shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenExpiry {
    pub token_id: String,
    pub owner: String,
    pub class: Class,
    pub expiry: EpochMillis,
}

/// The smallest `cap` token ids seen, each with a detail (an orphan's resource uid, a cleanup
/// match's owner), so that a dry run and the real run that follows pick the same ones; and the
/// total seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FirstIds {
    pub ids: BTreeMap<String, String>,
    pub seen: u64,
}

impl FirstIds {
    fn add(&mut self, id: &str, detail: &str, cap: usize) {
        self.seen += 1;
        let fits = self.ids.len() < cap;
        if fits
            || self
                .ids
                .last_key_value()
                .is_some_and(|(last, _)| id < last.as_str())
        {
            if !fits {
                self.ids.pop_last();
            }
            self.ids.insert(id.to_string(), detail.to_string());
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub counts: Counts,
    pub by_owner: BTreeMap<String, OwnerTally>,
    pub orphans: FirstIds,
    pub cleanup: FirstIds,
    /// Only with `perTokenMetrics`.
    pub per_token: Option<Vec<TokenExpiry>>,
}

impl Tally {
    pub fn new(per_token: bool) -> Self {
        Tally {
            per_token: per_token.then(Vec::new),
            ..Tally::default()
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn count(&self, class: Class) -> u64 {
        self.counts[class.index()]
    }

    /// Count one listed token.
    pub fn add(&mut self, spec: &InventorySpec, judge: &Judge<'_>, token: TokenInfo) {
        if !classify::included(spec, &token) {
            return;
        }
        let class = judge.classify(&token);
        let owner = classify::owner_of(&token);
        self.counts[class.index()] += 1;
        let entry = self.by_owner.entry(owner.clone()).or_default();
        entry.counts[class.index()] += 1;
        if matches!(class, Class::ExpiringSoon | Class::Other) {
            let e = token.expiry_time;
            entry.earliest_expiry = Some(entry.earliest_expiry.map_or(e, |cur| cur.min(e)));
        }
        if class == Class::Orphaned {
            let uid = token.comment.as_deref().and_then(tag_owner).unwrap_or("");
            self.orphans.add(&token.token_id, uid, MAX_ACTIONS);
        }
        if let Some(cleanup) = &spec.cleanup
            && classify::cleanup_matches(&cleanup.rules, class, &token)
        {
            self.cleanup.add(&token.token_id, &owner, MAX_ACTIONS);
        }
        if let Some(per_token) = &mut self.per_token
            && token.expiry_time >= 0
        {
            per_token.push(TokenExpiry {
                owner,
                token_id: token.token_id,
                class,
                expiry: token.expiry_time,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CleanupMode, CleanupPolicy, CleanupRule, OrphanPolicy};

    const NOW: i64 = 1_000_000_000;
    const DAY: i64 = 86_400_000;

    fn spec(owners: &[&str], cleanup: Option<CleanupPolicy>) -> InventorySpec {
        InventorySpec {
            interval: None,
            expiry_warning_window: None,
            owners: owners.iter().map(|s| s.to_string()).collect(),
            orphans: OrphanPolicy::Revoke,
            per_token_metrics: false,
            cleanup,
        }
    }

    fn token(id: &str, owner: i64, comment: &str, expiry: i64) -> TokenInfo {
        TokenInfo {
            token_id: id.into(),
            creation_time: 0,
            expiry_time: expiry,
            comment: Some(comment.into()),
            scopes: None,
            created_by_id: Some(owner),
            created_by_username: Some(format!("user{owner}")),
            owner_id: Some(owner),
        }
    }

    fn judge_with<'a>(exists: &'a dyn Fn(&str) -> bool) -> Judge<'a> {
        Judge {
            now: NOW,
            warning_window_ms: 30 * DAY,
            me: Some(1),
            exists,
        }
    }

    #[test]
    fn counts_by_class_and_owner_with_the_earliest_expiry() {
        let exists = |uid: &str| uid == "live";
        let judge = judge_with(&exists);
        let spec = spec(&[], None);
        let mut tally = Tally::new(false);
        for t in [
            token("a", 1, "[dbtoken.dev/uid=live]", NOW + DAY),
            token("b", 1, "[dbtoken.dev/uid=gone]", NOW + DAY),
            token("c", 2, "bootstrap", -1),
            token("d", 2, "ci", NOW + 3 * DAY),
            token("e", 2, "ci", NOW + 2 * DAY),
            token("f", 3, "long", NOW + 300 * DAY),
            token("g", 3, "old", NOW - 1),
        ] {
            tally.add(&spec, &judge, t);
        }
        assert_eq!(tally.counts, [1, 1, 1, 1, 2, 1]);
        assert_eq!(tally.total(), 7);
        assert_eq!(tally.by_owner["1"].counts, [1, 1, 0, 0, 0, 0]);
        assert_eq!(
            tally.by_owner["1"].earliest_expiry, None,
            "the operator's own"
        );
        assert_eq!(tally.by_owner["2"].earliest_expiry, Some(NOW + 2 * DAY));
        assert_eq!(tally.by_owner["3"].earliest_expiry, Some(NOW + 300 * DAY));
        assert_eq!(
            tally.orphans.ids.iter().collect::<Vec<_>>(),
            [(&"b".to_string(), &"gone".to_string())]
        );
        assert!(tally.per_token.is_none());
    }

    #[test]
    fn the_owners_filter_leaves_other_tokens_uncounted() {
        let exists = |_: &str| false;
        let judge = judge_with(&exists);
        let spec = spec(&["user2"], None);
        let mut tally = Tally::new(true);
        tally.add(&spec, &judge, token("a", 1, "[dbtoken.dev/uid=gone]", -1));
        tally.add(&spec, &judge, token("b", 2, "x", NOW + DAY));
        assert_eq!(tally.total(), 1);
        assert_eq!(tally.orphans.seen, 0);
        assert_eq!(
            tally.per_token,
            Some(vec![TokenExpiry {
                token_id: "b".into(),
                owner: "2".into(),
                class: Class::ExpiringSoon,
                expiry: NOW + DAY
            }])
        );
    }

    #[test]
    fn cleanup_matches_are_counted_and_the_first_ids_kept() {
        let exists = |_: &str| false;
        let judge = judge_with(&exists);
        let policy = CleanupPolicy {
            mode: CleanupMode::DryRun,
            rules: vec![CleanupRule {
                owners: vec!["2".into()],
                comment_contains: "temp-".into(),
            }],
        };
        let spec = spec(&[], Some(policy));
        let mut tally = Tally::new(false);
        for i in (0..MAX_ACTIONS + 10).rev() {
            tally.add(&spec, &judge, token(&format!("{i:05}"), 2, "temp-x", -1));
        }
        tally.add(&spec, &judge, token("zzz", 3, "temp-x", -1));
        tally.add(&spec, &judge, token("yyy", 2, "keep", -1));
        assert_eq!(tally.cleanup.seen, (MAX_ACTIONS + 10) as u64);
        assert_eq!(tally.cleanup.ids.len(), MAX_ACTIONS);
        assert_eq!(
            tally.cleanup.ids.first_key_value(),
            Some((&"00000".to_string(), &"2".to_string()))
        );
        assert_eq!(
            tally.cleanup.ids.last_key_value().map(|(id, _)| id.clone()),
            Some(format!("{:05}", MAX_ACTIONS - 1))
        );
    }
}
