//! The decisions of one sync of a `DatabricksToken`, as pure functions of what `token` gathered:
//! whether the Secret is read whole, whether the token is replaced and why, whether and how fresh
//! a token list is needed, whether the workspace is called at all. `token` asks [`decide`] what
//! to do next, gathers what it asks for, and asks again; each answer is acted on once.
//!
//! The steps after the calls (what a token list says, what to sweep, whether to write the Secret
//! again, whether to delete a renamed one) are the functions below `decide`.

use databricks_client::TokenInfo;

use super::{
    Observed, RotationReason, is_replacement, is_untouched, next_replacement_at, renamed_from,
    rotation_reason, secret_serves,
};
use crate::crd::DatabricksToken;
use crate::databricks::{self, Owner};
use crate::schedule::EpochMillis;
use crate::secret::TokenRecord;

/// Something `token` has either gathered already or not yet.
#[derive(Clone, Debug, PartialEq)]
pub enum Gathered<T> {
    NotYet,
    Got(T),
}

/// The Secret as the watch cache knows it: its version and the token record of its annotations.
#[derive(Clone, Copy, Debug)]
pub struct Cached<'a> {
    pub version: Option<&'a str>,
    pub record: Option<&'a TokenRecord>,
}

/// The Secret read whole.
#[derive(Clone, Debug)]
pub struct Live {
    pub observed: Observed,
    /// It carries this resource's ownership (reference or owner-uid annotation).
    pub owned: bool,
}

/// When this process last compared the resource with Databricks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastCheck {
    pub at: EpochMillis,
    /// A token list was read for it (a first sight counts as checked, but lists nothing).
    pub listed: bool,
}

/// Everything the decisions of one sync look at.
pub struct Inputs<'a> {
    pub token: &'a DatabricksToken,
    pub now: EpochMillis,
    /// The Secret the spec names now.
    pub secret_name: &'a str,
    /// `plan::spec_hash` of the spec at the workspace's host.
    pub desired_hash: &'a str,
    /// None: the cache holds no Secret of that name.
    pub cached: Option<Cached<'a>>,
    /// The Secret read whole; `Got(None)` when it does not exist.
    pub live: Gathered<Option<Live>>,
    /// The Secret status last recorded, when the spec renamed it: `Got(None)` when it is gone or
    /// not this resource's.
    pub renamed: Gathered<Option<Observed>>,
    /// Recent replacement mints (deleted or overwritten Secrets).
    pub recent_replacements: &'a [EpochMillis],
    /// The resource had the finalizer before this reconcile (so another process may have minted).
    pub finalizer_was_set: bool,
    /// The last create failed with an unknown outcome (`Rotating=True, Minting`).
    pub uncertain_create: bool,
    pub last_check: Option<LastCheck>,
    pub verify_interval: EpochMillis,
    /// When this process started.
    pub started_at: EpochMillis,
}

/// What to do next.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Read the Secret the spec names, whole (the cache does not tell enough, or it is written).
    ReadSecret,
    /// Read the Secret status recorded before the spec renamed it.
    ReadRenamed(String),
    /// The Secret exists and is not this resource's: it is never written.
    SecretTaken,
    /// The Secret keeps losing its token and the replacement budget is spent until `until`.
    ReplacementsExhausted { count: usize, until: EpochMillis },
    /// Call Databricks and write as planned.
    Act(Box<Plan>),
}

/// The plan of one sync, once the Secret is known.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// What the Secret holds: from the cache, read whole, or carried over from a renamed one.
    pub observed: Observed,
    /// The Secret was read whole (so it is rewritten if it drifted).
    pub read_whole: bool,
    /// The Secret named before a rename, deleted once the new one holds the token.
    pub renamed_from: Option<String>,
    /// Why the token is replaced now, as far as the Secret tells (a token list may add
    /// `RevokedOutside`, see [`missing_from_list`]).
    pub reason: Option<RotationReason>,
    /// Whether the Secret still serves a working token should this sync fail.
    pub secret_serves: bool,
    /// Whether the sync calls the workspace (and so passes its backoff).
    pub calls_workspace: bool,
    /// Read a token list taken no earlier than this.
    pub list_not_before: Option<EpochMillis>,
    /// The resource is seen for the first time: it counts as just checked.
    pub first_sight: bool,
}

/// The next step of a sync.
pub fn decide(i: &Inputs) -> Step {
    let (observed, read_whole, renamed) = match &i.live {
        Gathered::NotYet => match quiet(i) {
            Some(observed) => (observed, false, None),
            None => return Step::ReadSecret,
        },
        Gathered::Got(live) => {
            if live.as_ref().is_some_and(|l| !l.owned) {
                return Step::SecretTaken;
            }
            let recorded = i
                .token
                .status
                .as_ref()
                .and_then(|s| s.secret_name.as_deref());
            let current = live.as_ref().map(|l| l.observed.clone());
            match renamed_from(recorded, i.secret_name) {
                None => (current.unwrap_or_else(Observed::nothing), true, None),
                Some(old) => match &i.renamed {
                    Gathered::NotYet => return Step::ReadRenamed(old.to_string()),
                    // Gone, or not this resource's: nothing to carry over or delete.
                    Gathered::Got(None) => (current.unwrap_or_else(Observed::nothing), true, None),
                    Gathered::Got(Some(old_observed)) => (
                        carry_over(current, old_observed),
                        true,
                        Some(old.to_string()),
                    ),
                },
            }
        }
    };

    let reason = rotation_reason(i.token, &observed, i.desired_hash, i.now);
    if let Some(r) = reason
        && is_replacement(r)
        && let Some(until) = next_replacement_at(i.recent_replacements, i.now)
    {
        return Step::ReplacementsExhausted {
            count: i.recent_replacements.len(),
            until,
        };
    }

    // Before a mint, tokens an earlier attempt may have left; otherwise the periodic check.
    let listed = i.last_check.is_some_and(|c| c.listed);
    let unknown_mints = reason.is_some() && i.finalizer_was_set && !listed;
    let first_sight = !i.uncertain_create && !unknown_mints && i.last_check.is_none();
    let due = i
        .last_check
        .is_some_and(|c| i.now - c.at >= i.verify_interval);
    let verify = i.uncertain_create || unknown_mints || due;
    let list_not_before = verify.then(|| {
        // Fresh enough to contain the current token, and recent: shared by a fleet verifying
        // at once, yet never so old that an outside revocation goes unseen. After an uncertain
        // create, only a list taken now can show the token it may have left; what an earlier
        // process left shows in any list taken since this one started.
        let created = observed
            .record
            .as_ref()
            .map_or(0, |r| r.current.creation + 1);
        let recent = i.now - i.verify_interval / 4;
        if i.uncertain_create {
            i.now
        } else if unknown_mints {
            created.max(i.started_at)
        } else {
            created.max(recent)
        }
    });
    let revocations_due = observed
        .record
        .as_ref()
        .is_some_and(|r| r.has_revocations_due(i.now));
    Step::Act(Box::new(Plan {
        calls_workspace: verify || reason.is_some() || revocations_due,
        secret_serves: secret_serves(reason),
        observed,
        read_whole,
        renamed_from: renamed,
        reason,
        list_not_before,
        first_sight,
    }))
}

/// The quiet path: the cache shows the Secret exactly as last written or checked, and nothing is
/// due (no rotation, no revocation). Its data is then not needed.
fn quiet(i: &Inputs) -> Option<Observed> {
    let cached = i.cached?;
    if !is_untouched(i.token, i.secret_name, cached.version) {
        return None;
    }
    let observed = Observed::untouched(cached.record?.clone());
    let nothing_due = rotation_reason(i.token, &observed, i.desired_hash, i.now).is_none()
        && observed
            .record
            .as_ref()
            .is_some_and(|r| !r.has_revocations_due(i.now));
    nothing_due.then_some(observed)
}

/// After a rename: the new Secret's token if it has one, otherwise the old Secret's, carried
/// over instead of minting.
fn carry_over(current: Option<Observed>, old: &Observed) -> Observed {
    match current {
        Some(c) if c.record.is_some() => c,
        _ if old.value.is_some() => old.clone(),
        c => c.unwrap_or_else(Observed::nothing),
    }
}

/// Whether a token list shows that the current token is gone, when nothing else replaces it:
/// then it was revoked outside, or the credential now belongs to another identity.
pub fn missing_from_list(
    reason: Option<RotationReason>,
    record: Option<&TokenRecord>,
    listed: &[TokenInfo],
) -> bool {
    reason.is_none()
        && record.is_some_and(|r| !listed.iter().any(|t| t.token_id == r.current.token_id))
}

/// Why a token missing from the list is replaced. Another identity's list does not show it: a
/// swapped credential is a change of identity (the old token lives on and gets its grace
/// period), not a revocation.
pub fn reason_when_missing(minted_by_another_identity: bool) -> RotationReason {
    if minted_by_another_identity {
        RotationReason::SpecChanged
    } else {
        RotationReason::RevokedOutside
    }
}

/// The identity to compare with the credential's own when the current token is missing from
/// the list: the one that minted it as its own token, if recorded (a service principal's token
/// is listed whoever the credential is). None: no comparison, the token was revoked outside.
pub fn identity_to_compare<'r>(record: &'r TokenRecord, owner: &Owner) -> Option<&'r str> {
    if *owner != Owner::Caller {
        return None;
    }
    record
        .current
        .origin
        .as_ref()
        .filter(|o| o.application_id.is_none())
        .and_then(|o| o.identity.as_deref())
}

/// Tokens tagged for this resource that are neither current nor waiting out a grace period:
/// left by an interrupted mint, revoked by the sweep.
pub fn orphans<'t>(uid: &str, record: &TokenRecord, listed: &'t [TokenInfo]) -> Vec<&'t TokenInfo> {
    listed
        .iter()
        .filter(|t| {
            databricks::is_tagged_for(t, uid)
                && t.token_id != record.current.token_id
                && !record.previous.iter().any(|p| p.token_id == t.token_id)
        })
        .collect()
}

/// Whether the Secret is written once the calls are done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rewrite {
    No,
    /// Only if the Secret read differs from what it should be.
    IfDrifted,
    Yes,
}

/// A revocation changed the record: write it. A Secret read whole (and not written by a
/// rotation already) is rewritten when it drifted (a key renamed, a label changed).
pub fn rewrite(revoked_any: bool, read_whole: bool, rotated: bool) -> Rewrite {
    if revoked_any {
        Rewrite::Yes
    } else if read_whole && !rotated {
        Rewrite::IfDrifted
    } else {
        Rewrite::No
    }
}

/// The renamed Secret is deleted once everything else succeeded (the new one holds the token).
pub fn delete_renamed(renamed_from: Option<&str>, failed: bool) -> Option<&str> {
    renamed_from.filter(|_| !failed)
}

#[cfg(test)]
mod tests;
