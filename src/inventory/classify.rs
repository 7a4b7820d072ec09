//! Which class a listed token belongs to, whose it is, and whether a cleanup rule names it:
//! pure functions of the token, the clock and what the operator knows.

use databricks_client::TokenInfo;

use crate::crd::{CleanupRule, InventorySpec};
use crate::databricks::tag_owner;
use crate::schedule::EpochMillis;

/// The classes of the inventory, in the order status and metrics show them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Tagged by this operator for a DatabricksToken that exists.
    Managed,
    /// Tagged by this operator, with this workspace's credential, for a DatabricksToken that no
    /// longer exists.
    Orphaned,
    /// Not the operator's; past its expiry on the operator's clock.
    Expired,
    /// Not the operator's; never expires.
    NeverExpiring,
    /// Not the operator's; expires within the warning window.
    ExpiringSoon,
    /// Not the operator's; expires after the warning window.
    Other,
}

impl Class {
    pub const ALL: [Class; 6] = [
        Class::Managed,
        Class::Orphaned,
        Class::Expired,
        Class::NeverExpiring,
        Class::ExpiringSoon,
        Class::Other,
    ];

    /// The `class` label value.
    pub fn label(self) -> &'static str {
        match self {
            Class::Managed => "managed",
            Class::Orphaned => "orphaned",
            Class::Expired => "expired",
            Class::NeverExpiring => "never_expiring",
            Class::ExpiringSoon => "expiring_soon",
            Class::Other => "other",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Tokens the operator minted: never touched by a cleanup policy.
    pub fn is_operators(self) -> bool {
        matches!(self, Class::Managed | Class::Orphaned)
    }
}

/// What classification needs besides the token.
pub struct Judge<'a> {
    pub now: EpochMillis,
    pub warning_window_ms: i64,
    /// The identity id the workspace credential authenticates as: only tokens it created can be
    /// this operator's orphans (another install's tokens carry tags too).
    pub me: Option<i64>,
    /// Whether a DatabricksToken with this uid exists.
    pub exists: &'a dyn Fn(&str) -> bool,
}

impl Judge<'_> {
    pub fn classify(&self, token: &TokenInfo) -> Class {
        if let Some(uid) = token.comment.as_deref().and_then(tag_owner) {
            if (self.exists)(uid) {
                return Class::Managed;
            }
            if self.me.is_some() && token.created_by_id == self.me {
                return Class::Orphaned;
            }
        }
        match token.expiry_time {
            e if e < 0 => Class::NeverExpiring,
            e if e <= self.now => Class::Expired,
            e if e <= self.now.saturating_add(self.warning_window_ms) => Class::ExpiringSoon,
            _ => Class::Other,
        }
    }
}

/// The `owner` label of a token: the identity id token management reports.
pub fn owner_of(token: &TokenInfo) -> String {
    token
        .owner_id
        .map_or_else(|| "unknown".to_string(), |id| id.to_string())
}

/// Whether `names` (entries of `owners` lists) name the token's owner: its identity id, or the
/// user name / application id that created it.
pub fn names_owner(names: &[String], token: &TokenInfo) -> bool {
    names.iter().any(|n| {
        token.owner_id.is_some_and(|id| n == &id.to_string())
            || token.created_by_username.as_deref() == Some(n.as_str())
    })
}

/// Whether the inventory counts this token (its `owners` filter; empty counts all).
pub fn included(spec: &InventorySpec, token: &TokenInfo) -> bool {
    spec.owners.is_empty() || names_owner(&spec.owners, token)
}

/// Whether a cleanup rule names this token. The operator's own tokens never match.
pub fn cleanup_matches(rules: &[CleanupRule], class: Class, token: &TokenInfo) -> bool {
    !class.is_operators()
        && rules.iter().any(|r| {
            names_owner(&r.owners, token)
                && token
                    .comment
                    .as_deref()
                    .is_some_and(|c| c.contains(&r.comment_contains))
        })
}

/// Whether this operator can know that a DatabricksToken tagged on a workspace's tokens no
/// longer exists: only when it watches every namespace whose DatabricksTokens may use the
/// workspace. Another install watching other namespaces through the same cluster workspace mints
/// tokens that look like orphans here. `watched` empty: every namespace; `allowed`: a cluster
/// workspace's allowedNamespaces (None for a namespaced workspace, always in a watched one).
pub fn orphans_knowable(watched: &[String], allowed: Option<&[String]>) -> bool {
    watched.is_empty()
        || allowed.is_none_or(|allowed| {
            allowed
                .iter()
                .all(|n| n != "*" && watched.iter().any(|w| w == n))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000_000;
    const DAY: i64 = 86_400_000;

    fn token(comment: &str, expiry: i64, creator: i64) -> TokenInfo {
        TokenInfo {
            token_id: "t".into(),
            creation_time: 0,
            expiry_time: expiry,
            comment: (!comment.is_empty()).then(|| comment.to_string()),
            scopes: None,
            created_by_id: Some(creator),
            created_by_username: Some(format!("user{creator}")),
            owner_id: Some(creator + 100),
        }
    }

    #[test]
    fn tokens_fall_into_one_class_each() {
        let exists = |uid: &str| uid == "live";
        let judge = Judge {
            now: NOW,
            warning_window_ms: 30 * DAY,
            me: Some(7),
            exists: &exists,
        };
        let cases = [
            // (comment, expiry, creator, class)
            ("[dbtoken.dev/uid=live] etl", NOW + DAY, 7, Class::Managed),
            // Managed whoever created it: the resource exists.
            ("[dbtoken.dev/uid=live]", -1, 9, Class::Managed),
            (
                "[dbtoken.dev/uid=gone] etl",
                NOW + 90 * DAY,
                7,
                Class::Orphaned,
            ),
            (
                "legacy text [dbtoken.dev/uid=gone]",
                NOW + DAY,
                7,
                Class::Orphaned,
            ),
            // Another identity's tag is not this operator's orphan: judged by expiry.
            ("[dbtoken.dev/uid=gone]", -1, 9, Class::NeverExpiring),
            ("[dbtoken.dev/uid=gone]", NOW + DAY, 9, Class::ExpiringSoon),
            // A tag quoted mid-comment is not a tag.
            (
                "see [dbtoken.dev/uid=gone] here",
                NOW + DAY,
                7,
                Class::ExpiringSoon,
            ),
            ("bootstrap", -1, 7, Class::NeverExpiring),
            ("", -1, 3, Class::NeverExpiring),
            ("ci", NOW, 3, Class::Expired),
            ("ci", NOW - 1, 3, Class::Expired),
            ("ci", NOW + 1, 3, Class::ExpiringSoon),
            ("ci", NOW + 30 * DAY, 3, Class::ExpiringSoon),
            ("ci", NOW + 30 * DAY + 1, 3, Class::Other),
        ];
        for (comment, expiry, creator, class) in cases {
            assert_eq!(
                judge.classify(&token(comment, expiry, creator)),
                class,
                "{comment:?} expiring {expiry} by {creator}"
            );
        }
    }

    #[test]
    fn without_a_known_identity_nothing_is_an_orphan() {
        let exists = |_: &str| false;
        let judge = Judge {
            now: NOW,
            warning_window_ms: DAY,
            me: None,
            exists: &exists,
        };
        let mut t = token("[dbtoken.dev/uid=gone]", -1, 7);
        t.created_by_id = None;
        assert_eq!(judge.classify(&t), Class::NeverExpiring);
    }

    #[test]
    fn orphans_are_known_only_where_every_namespace_that_may_mint_is_watched() {
        let v = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // (watched, allowedNamespaces, knowable)
        type Case<'a> = (&'a [&'a str], Option<&'a [&'a str]>, bool);
        let cases: [Case; 7] = [
            (&[], None, true),
            (&[], Some(&["*"]), true),
            (&["a"], None, true),
            (&["a", "b"], Some(&["a"]), true),
            (&["a", "b"], Some(&["a", "b"]), true),
            (&["a"], Some(&["a", "b"]), false),
            (&["a"], Some(&["*"]), false),
        ];
        for (watched, allowed, knowable) in cases {
            let allowed = allowed.map(v);
            assert_eq!(
                orphans_knowable(&v(watched), allowed.as_deref()),
                knowable,
                "{watched:?} {allowed:?}"
            );
        }
    }

    #[test]
    fn owners_are_named_by_id_or_creating_user_name() {
        let t = token("x", -1, 5);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(names_owner(&names(&["105"]), &t));
        assert!(names_owner(&names(&["user5"]), &t));
        assert!(!names_owner(&names(&["5", "user105"]), &t));
        assert!(!names_owner(&[], &t));
        assert_eq!(owner_of(&t), "105");
        let mut anonymous = t.clone();
        anonymous.owner_id = None;
        assert_eq!(owner_of(&anonymous), "unknown");
    }

    #[test]
    fn cleanup_needs_owner_and_comment_and_spares_the_operators_tokens() {
        let rules = vec![CleanupRule {
            owners: vec!["user5".into()],
            comment_contains: "temp-".into(),
        }];
        let cases = [
            ("temp-build", 5, Class::NeverExpiring, true),
            ("my temp-2", 5, Class::Other, true),
            ("Temp-build", 5, Class::Other, false),
            ("temp-build", 6, Class::Other, false),
            ("", 5, Class::Other, false),
            ("temp-x [dbtoken.dev/uid=u]", 5, Class::Managed, false),
            ("temp-x [dbtoken.dev/uid=u]", 5, Class::Orphaned, false),
        ];
        for (comment, creator, class, matches) in cases {
            assert_eq!(
                cleanup_matches(&rules, class, &token(comment, -1, creator)),
                matches,
                "{comment:?} by {creator} ({class:?})"
            );
        }
    }
}
