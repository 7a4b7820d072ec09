//! The operator's decision table: what one sync of a `DatabricksToken` does, case by case.
//! Each row names a situation; the expectation is the step `decide` answers (and, for a plan,
//! the fields that matter).

use super::*;
use crate::crd::{DatabricksTokenSpec, DatabricksTokenStatus};
use crate::secret::{CurrentToken, PreviousTokenRecord, value_digest};

const NOW: EpochMillis = 1_700_000_000_000;
const MIN: EpochMillis = 60_000;
const HOUR: EpochMillis = 60 * MIN;
/// The verify interval of every case: 10 minutes, like the default.
const VERIFY: EpochMillis = 10 * MIN;
/// When "this process" started.
const STARTED: EpochMillis = NOW - 30 * MIN;

fn spec(extra: &str) -> DatabricksTokenSpec {
    serde_yaml::from_str(&format!(
        "workspaceRef: {{name: ws}}\nlifetime: 3h\n{extra}"
    ))
    .unwrap()
}

/// A resource whose status records Secret `t` at version 7 for generation 1, token `id`.
fn token() -> DatabricksToken {
    let mut t = DatabricksToken::new("t", spec(""));
    t.metadata.namespace = Some("ns".into());
    t.metadata.uid = Some("uid".into());
    t.metadata.generation = Some(1);
    t.status = Some(DatabricksTokenStatus {
        token_id: Some("id".into()),
        secret_name: Some("t".into()),
        secret_resource_version: Some("7".into()),
        observed_generation: Some(1),
        ..Default::default()
    });
    t
}

fn hash(t: &DatabricksToken) -> String {
    super::super::spec_hash(&t.spec, "https://h")
}

/// The record of token `id`, minted `age` ago for a 3h lifetime.
fn record(t: &DatabricksToken, age: EpochMillis) -> TokenRecord {
    TokenRecord {
        current: CurrentToken {
            token_id: "id".into(),
            creation: NOW - age,
            expiry: Some(NOW - age + 3 * HOUR),
            value_digest: value_digest("value"),
            origin: None,
        },
        previous: vec![],
        spec_hash: hash(t),
        rotate_request_handled: None,
    }
}

fn holding(record: TokenRecord) -> Observed {
    Observed {
        record: Some(record),
        has_value: true,
        value: Some("value".into()),
        value_altered: false,
    }
}

fn live(observed: Observed) -> Gathered<Option<Live>> {
    Gathered::Got(Some(Live {
        observed,
        owned: true,
    }))
}

/// One situation; `inputs` lends it to `decide`.
struct Case {
    token: DatabricksToken,
    name: &'static str,
    cached: Option<(Option<&'static str>, Option<TokenRecord>)>,
    live: Gathered<Option<Live>>,
    renamed: Gathered<Option<Observed>>,
    replacements: Vec<EpochMillis>,
    finalizer_was_set: bool,
    uncertain_create: bool,
    last_check: Option<LastCheck>,
}

impl Case {
    /// A healthy resource: the cache shows its Secret untouched with a fresh token, checked a
    /// minute ago with a list.
    fn healthy() -> Case {
        let t = token();
        let r = record(&t, 10 * MIN);
        Case {
            cached: Some((Some("7"), Some(r))),
            token: t,
            name: "t",
            live: Gathered::NotYet,
            renamed: Gathered::NotYet,
            replacements: vec![],
            finalizer_was_set: true,
            uncertain_create: false,
            last_check: Some(LastCheck {
                at: NOW - MIN,
                listed: true,
            }),
        }
    }

    fn decide(&self) -> Step {
        let hash = hash(&self.token);
        let cached = self.cached.as_ref().map(|(version, record)| Cached {
            version: *version,
            record: record.as_ref(),
        });
        decide(&Inputs {
            token: &self.token,
            now: NOW,
            secret_name: self.name,
            desired_hash: &hash,
            cached,
            live: self.live.clone(),
            renamed: self.renamed.clone(),
            recent_replacements: &self.replacements,
            finalizer_was_set: self.finalizer_was_set,
            uncertain_create: self.uncertain_create,
            last_check: self.last_check,
            verify_interval: VERIFY,
            started_at: STARTED,
        })
    }

    fn plan(&self) -> Plan {
        match self.decide() {
            Step::Act(plan) => *plan,
            other => panic!("expected a plan, got {other:?}"),
        }
    }
}

/// The fields of a plan a row states: (read whole, reason, list not before, calls workspace,
/// Secret serves should the sync fail).
type Expected = (
    bool,
    Option<RotationReason>,
    Option<EpochMillis>,
    bool,
    bool,
);

fn summary(p: &Plan) -> Expected {
    (
        p.read_whole,
        p.reason,
        p.list_not_before,
        p.calls_workspace,
        p.secret_serves,
    )
}

#[test]
fn the_cache_decides_whether_the_secret_is_read_whole() {
    let renewal_due = || {
        let mut c = Case::healthy();
        let t = c.token.clone();
        c.cached = Some((Some("7"), Some(record(&t, 2 * HOUR + MIN))));
        c
    };
    let changed_version = || {
        let mut c = Case::healthy();
        c.cached.as_mut().unwrap().0 = Some("8");
        c
    };
    let not_cached = || {
        let mut c = Case::healthy();
        c.cached = None;
        c
    };
    let revocation_due = || {
        let mut c = Case::healthy();
        let t = c.token.clone();
        let mut r = record(&t, 10 * MIN);
        r.previous.push(PreviousTokenRecord {
            token_id: "old".into(),
            revoke_after: NOW - 1,
            expiry: None,
            origin: None,
        });
        c.cached = Some((Some("7"), Some(r)));
        c
    };
    let new_generation = || {
        let mut c = Case::healthy();
        c.token.metadata.generation = Some(2);
        c
    };
    let table: [(&str, Case, Step); 6] = [
        (
            "untouched, nothing due: the quiet path",
            Case::healthy(),
            Step::Act(Box::new(Plan {
                observed: Observed::untouched(record(&token(), 10 * MIN)),
                read_whole: false,
                renamed_from: None,
                reason: None,
                secret_serves: true,
                calls_workspace: false,
                list_not_before: None,
                first_sight: false,
            })),
        ),
        ("renewal due", renewal_due(), Step::ReadSecret),
        ("changed by someone", changed_version(), Step::ReadSecret),
        ("not in the cache", not_cached(), Step::ReadSecret),
        ("a revocation due", revocation_due(), Step::ReadSecret),
        ("the spec changed", new_generation(), Step::ReadSecret),
    ];
    for (case, c, step) in table {
        assert_eq!(c.decide(), step, "{case}");
    }
}

#[test]
fn a_secret_read_whole_is_judged_by_what_it_holds() {
    use RotationReason::*;
    let t = token();
    let with = |observed: Observed| {
        let mut c = Case::healthy();
        c.live = live(observed);
        c
    };
    let fresh = || holding(record(&t, 10 * MIN));
    let altered = {
        let mut o = fresh();
        o.value_altered = true;
        o
    };
    let value_gone = {
        let mut o = fresh();
        o.has_value = false;
        o.value = None;
        o
    };
    let other_spec = {
        let mut r = record(&t, 10 * MIN);
        r.spec_hash = "another".into();
        holding(r)
    };
    let manual = {
        let mut c = with(fresh());
        c.token.metadata.annotations = Some(
            [(
                crate::secret::ANN_ROTATE_REQUESTED.to_string(),
                "2026-01-01T00:00:00Z".to_string(),
            )]
            .into(),
        );
        c
    };
    let deleted = {
        let mut c = Case::healthy();
        c.live = Gathered::Got(None);
        c
    };
    let never_minted = {
        let mut c = Case::healthy();
        c.live = Gathered::Got(None);
        c.token.status.as_mut().unwrap().token_id = None;
        c
    };
    let revocation_due = {
        let mut r = record(&t, 10 * MIN);
        r.previous.push(PreviousTokenRecord {
            token_id: "old".into(),
            revoke_after: NOW - 1,
            expiry: None,
            origin: None,
        });
        with(holding(r))
    };
    // (case, situation, (read whole, reason, list not before, calls workspace, serves))
    let table: [(&str, Case, Expected); 10] = [
        (
            "fine: rewritten if drifted, no call",
            with(fresh()),
            (true, None, None, false, true),
        ),
        (
            "renewal time: the old token keeps serving",
            with(holding(record(&t, 2 * HOUR + MIN))),
            (true, Some(Renewal), None, true, true),
        ),
        (
            "expired: nothing serves",
            with(holding(record(&t, 3 * HOUR))),
            (true, Some(Expired), None, true, false),
        ),
        (
            "value overwritten",
            with(altered),
            (true, Some(ValueAltered), None, true, false),
        ),
        (
            "value removed",
            with(value_gone),
            (true, Some(ValueAltered), None, true, false),
        ),
        (
            "lifetime, scopes or identity changed",
            with(other_spec),
            (true, Some(SpecChanged), None, true, true),
        ),
        (
            "rotate-requested-at set",
            manual,
            (true, Some(Manual), None, true, true),
        ),
        (
            "Secret deleted after a mint",
            deleted,
            (true, Some(SecretDeleted), None, true, false),
        ),
        (
            "first mint",
            never_minted,
            (true, Some(Initial), None, true, false),
        ),
        (
            "a replaced token's grace period is over",
            revocation_due,
            (true, None, None, true, true),
        ),
    ];
    for (case, c, expected) in table {
        assert_eq!(summary(&c.plan()), expected, "{case}");
    }
}

#[test]
fn a_token_list_is_read_when_a_mint_may_have_been_lost_or_the_check_is_due() {
    let t = token();
    let created = NOW - 10 * MIN + 1;
    let fresh_live = || {
        let mut c = Case::healthy();
        c.live = live(holding(record(&t, 10 * MIN)));
        c
    };
    let renewal = |c: &mut Case| c.live = live(holding(record(&t, 2 * HOUR + MIN)));
    let due = {
        let mut c = Case::healthy();
        c.last_check = Some(LastCheck {
            at: NOW - VERIFY,
            listed: true,
        });
        c
    };
    let due_long_ago = {
        let mut c = due_clone();
        c.cached = Some((Some("7"), Some(record(&t, 2 * HOUR))));
        c.live = live(holding(record(&t, 100 * MIN)));
        c
    };
    fn due_clone() -> Case {
        let mut c = Case::healthy();
        c.last_check = Some(LastCheck {
            at: NOW - VERIFY,
            listed: true,
        });
        c
    }
    let uncertain = {
        let mut c = fresh_live();
        c.uncertain_create = true;
        c
    };
    let mint_after_restart = {
        let mut c = fresh_live();
        renewal(&mut c);
        c.last_check = Some(LastCheck {
            at: NOW - MIN,
            listed: false,
        });
        c
    };
    let mint_after_own_finalizer = {
        let mut c = fresh_live();
        renewal(&mut c);
        c.finalizer_was_set = false;
        c.last_check = None;
        c
    };
    let mint_listed_already = {
        let mut c = fresh_live();
        renewal(&mut c);
        c
    };
    let renewal_created = NOW - (2 * HOUR + MIN) + 1;
    // (case, situation, list not before)
    let table: [(&str, Case, Option<EpochMillis>); 7] = [
        ("checked a minute ago", Case::healthy(), None),
        (
            "periodic check due: a list at most a quarter interval old, newer than the token",
            due,
            Some(created.max(NOW - VERIFY / 4)),
        ),
        (
            "periodic check of an older token: a recent list",
            due_long_ago,
            Some(NOW - VERIFY / 4),
        ),
        (
            "the last create's outcome is unknown: a list taken now",
            uncertain,
            Some(NOW),
        ),
        (
            "a mint by a resource this process has not listed: any list since it started",
            mint_after_restart,
            Some(STARTED.max(renewal_created)),
        ),
        (
            "a mint right after this process set the finalizer: no list",
            mint_after_own_finalizer,
            None,
        ),
        (
            "a mint by a resource listed since start: no list",
            mint_listed_already,
            None,
        ),
    ];
    for (case, c, expected) in table {
        let plan = c.plan();
        assert_eq!(plan.list_not_before, expected, "{case}");
        if expected.is_some() {
            assert!(plan.calls_workspace, "{case}: a list calls the workspace");
        }
    }
}

#[test]
fn a_resource_first_seen_counts_as_just_checked() {
    let mut c = Case::healthy();
    c.last_check = None;
    let plan = c.plan();
    assert!(plan.first_sight);
    assert_eq!(plan.list_not_before, None);
    assert!(
        !plan.calls_workspace,
        "a restart calls nothing for a fine token"
    );
    // Not when a list is read anyway: it records the check itself.
    c.uncertain_create = true;
    assert!(!c.plan().first_sight);
}

#[test]
fn a_secret_of_someone_else_is_never_used() {
    let mut c = Case::healthy();
    c.live = Gathered::Got(Some(Live {
        observed: Observed::nothing(),
        owned: false,
    }));
    assert_eq!(c.decide(), Step::SecretTaken);
}

#[test]
fn a_renamed_secret_hands_its_token_over_and_is_deleted() {
    let t = token();
    let renamed = || {
        let mut c = Case::healthy();
        c.name = "new";
        c.cached = None;
        c.live = Gathered::Got(None);
        c
    };
    assert_eq!(renamed().decide(), Step::ReadRenamed("t".into()));

    let mut carried = renamed();
    carried.renamed = Gathered::Got(Some(holding(record(&t, 10 * MIN))));
    let plan = carried.plan();
    assert_eq!(plan.reason, None, "the token is carried over, not minted");
    assert_eq!(plan.observed.value.as_deref(), Some("value"));
    assert_eq!(plan.renamed_from.as_deref(), Some("t"));

    // The new Secret already holds the token (a crash came before the delete).
    let mut written = renamed();
    written.live = live(holding(record(&t, 10 * MIN)));
    written.renamed = Gathered::Got(Some(Observed::nothing()));
    let plan = written.plan();
    assert_eq!(plan.reason, None);
    assert_eq!(plan.renamed_from.as_deref(), Some("t"));

    // The old one is gone or not this resource's: a new token, nothing to delete.
    let mut gone = renamed();
    gone.renamed = Gathered::Got(None);
    let plan = gone.plan();
    assert_eq!(plan.reason, Some(RotationReason::SecretDeleted));
    assert_eq!(plan.renamed_from, None);
}

#[test]
fn replacements_of_a_secret_someone_keeps_emptying_are_budgeted() {
    let mut c = Case::healthy();
    c.live = Gathered::Got(None);
    c.replacements = vec![NOW - 3_000, NOW - 2_000, NOW - 1_000];
    assert_eq!(
        c.decide(),
        Step::ReplacementsExhausted {
            count: 3,
            until: NOW - 1_000 + 30_000
        }
    );
    // Renewals are not replacements: never budgeted.
    let t = token();
    c.live = live(holding(record(&t, 2 * HOUR + MIN)));
    assert_eq!(c.plan().reason, Some(RotationReason::Renewal));
}

#[test]
fn a_token_missing_from_the_list_was_revoked_outside_or_belongs_to_another_identity() {
    let t = token();
    let r = record(&t, 10 * MIN);
    let listed = |id: &str| TokenInfo {
        token_id: id.into(),
        creation_time: 0,
        expiry_time: -1,
        comment: None,
        scopes: None,
        created_by_id: None,
        created_by_username: None,
        owner_id: None,
    };
    assert!(!missing_from_list(None, Some(&r), &[listed("id")]));
    assert!(missing_from_list(None, Some(&r), &[listed("other")]));
    assert!(
        !missing_from_list(Some(RotationReason::Renewal), Some(&r), &[]),
        "replaced anyway"
    );
    assert!(!missing_from_list(None, None, &[]), "nothing recorded");
    assert_eq!(reason_when_missing(false), RotationReason::RevokedOutside);
    assert_eq!(reason_when_missing(true), RotationReason::SpecChanged);

    let mut own = r.clone();
    own.current.origin = Some(crate::secret::TokenOrigin {
        workspace: crate::workspace::WorkspaceKey {
            kind: crate::crd::WorkspaceKind::DatabricksWorkspace,
            namespace: Some("ns".into()),
            name: "ws".into(),
        },
        host: "https://h".into(),
        application_id: None,
        identity: Some("42".into()),
    });
    assert_eq!(identity_to_compare(&own, &Owner::Caller), Some("42"));
    assert_eq!(
        identity_to_compare(&own, &Owner::ServicePrincipal("sp".into())),
        None
    );
    assert_eq!(identity_to_compare(&r, &Owner::Caller), None, "unknown");
}

#[test]
fn the_sweep_revokes_tagged_tokens_nothing_records() {
    let t = token();
    let mut r = record(&t, 10 * MIN);
    r.previous.push(PreviousTokenRecord {
        token_id: "waiting".into(),
        revoke_after: NOW + HOUR,
        expiry: None,
        origin: None,
    });
    let info = |id: &str, uid: &str| TokenInfo {
        token_id: id.into(),
        creation_time: 0,
        expiry_time: -1,
        comment: Some(databricks::tagged_comment(None, uid)),
        scopes: None,
        created_by_id: None,
        created_by_username: None,
        owner_id: None,
    };
    let listed = [
        info("id", "uid"),
        info("waiting", "uid"),
        info("lost", "uid"),
        info("theirs", "another-uid"),
    ];
    let ids: Vec<&str> = orphans("uid", &r, &listed)
        .iter()
        .map(|t| t.token_id.as_str())
        .collect();
    assert_eq!(ids, ["lost"]);
}

#[test]
fn the_secret_is_written_again_after_a_revocation_or_when_it_drifted() {
    let table = [
        // (revoked any, read whole, rotated, rewrite)
        (true, false, false, Rewrite::Yes),
        (true, true, true, Rewrite::Yes),
        (false, true, false, Rewrite::IfDrifted),
        (false, true, true, Rewrite::No),
        (false, false, false, Rewrite::No),
    ];
    for (revoked, whole, rotated, expected) in table {
        assert_eq!(
            rewrite(revoked, whole, rotated),
            expected,
            "{revoked} {whole} {rotated}"
        );
    }
    assert_eq!(delete_renamed(Some("old"), false), Some("old"));
    assert_eq!(delete_renamed(Some("old"), true), None, "after a failure");
    assert_eq!(delete_renamed(None, false), None);
}
