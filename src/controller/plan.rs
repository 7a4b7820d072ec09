//! The operator's decisions about one `DatabricksToken`, as pure functions: `decide` plans a
//! sync step by step; below, whether and why a token is replaced (from the Secret and the spec
//! alone), the record a new token gets, the replacement budget, what Ready says after a
//! failure, and how a Secret is written safely.

mod decide;

pub use decide::*;

use std::time::Duration;

use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry},
};
use kube::ResourceExt;

use crate::crd::{DatabricksToken, DatabricksTokenSpec, Timestamp};
use crate::schedule::{self, EpochMillis, RenewBefore};

use crate::secret::{self, CurrentToken, PreviousTokenRecord, TokenOrigin, TokenRecord};

/// Why a new token is minted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationReason {
    /// The resource has never had a token.
    Initial,
    /// The Secret disappeared.
    SecretDeleted,
    /// The Secret's token value is not the one the operator wrote.
    ValueAltered,
    /// Lifetime, scopes or identity changed.
    SpecChanged,
    /// The token expired before it could be renewed (e.g. the operator was down).
    Expired,
    /// The token vanished from Databricks (revoked by someone else).
    RevokedOutside,
    /// `dbtoken.dev/rotate-requested-at` was set or changed.
    Manual,
    /// The renewal time came.
    Renewal,
}

impl RotationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationReason::Initial => "Initial",
            RotationReason::SecretDeleted => "SecretDeleted",
            RotationReason::ValueAltered => "ValueAltered",
            RotationReason::SpecChanged => "SpecChanged",
            RotationReason::Expired => "Expired",
            RotationReason::RevokedOutside => "RevokedOutside",
            RotationReason::Manual => "ManualRequest",
            RotationReason::Renewal => "Renewal",
        }
    }

    /// Whether the replaced token may still work and so deserves a grace period.
    pub fn old_token_may_live(self) -> bool {
        !matches!(
            self,
            RotationReason::Expired | RotationReason::RevokedOutside | RotationReason::Initial
        )
    }
}

/// What the Secret tells about the current token.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub record: Option<TokenRecord>,
    /// Whether the Secret holds the recorded value (under any key: keys may be renamed).
    pub has_value: bool,
    /// That value, when the Secret was read with its data.
    pub value: Option<String>,
    /// Whether the spec's token key holds a value other than the recorded one (tampering,
    /// as opposed to a key that was renamed in the spec and is simply absent yet).
    pub value_altered: bool,
}

impl Observed {
    /// No Secret, or one without a token record.
    pub fn nothing() -> Observed {
        Observed {
            record: None,
            has_value: false,
            value: None,
            value_altered: false,
        }
    }

    /// A Secret known to be exactly as the operator last wrote or checked it: its annotations
    /// tell everything, and its data is not needed unless something is to be written.
    pub fn untouched(record: TokenRecord) -> Observed {
        Observed {
            record: Some(record),
            has_value: true,
            value: None,
            value_altered: false,
        }
    }
}

/// Whether the Secret at `version` is exactly as the operator last wrote or checked it: the
/// resourceVersion status recorded, for the spec status last acted on.
pub fn is_untouched(token: &DatabricksToken, name: &str, version: Option<&str>) -> bool {
    let Some(status) = token.status.as_ref() else {
        return false;
    };
    let same_secret = status.secret_name.as_deref() == Some(name)
        && version.is_some()
        && status.secret_resource_version.as_deref() == version;
    same_secret && status.observed_generation == token.metadata.generation
}

pub fn observe(secret: Option<&Secret>, token_key: &str) -> Observed {
    let record = secret.and_then(|s| secret::read_record(&s.metadata));
    let Some((secret, record)) = secret.zip(record) else {
        return Observed::nothing();
    };
    let digest = &record.current.value_digest;
    let value_altered = secret::stored_value(secret, token_key)
        .is_some_and(|v| &secret::value_digest(&v) != digest);
    let value = secret
        .data
        .iter()
        .flatten()
        .filter_map(|(_, v)| String::from_utf8(v.0.clone()).ok())
        .find(|v| &secret::value_digest(v) == digest);
    Observed {
        record: Some(record),
        has_value: value.is_some(),
        value,
        value_altered,
    }
}

/// The fields whose change needs a new token (not renewal or Secret layout changes).
pub fn spec_hash(spec: &DatabricksTokenSpec, host: &str) -> String {
    let identity = serde_json::json!({
        "lifetime": spec.lifetime.map(|l| l.to_string()),
        "scopes": spec.scopes,
        "onBehalfOf": spec.on_behalf_of.as_ref().map(|o| &o.application_id),
        "workspace": [format!("{:?}", spec.workspace_ref.kind), spec.workspace_ref.name.clone()],
        "host": host,
    });
    format!("{:016x}", schedule::seed_of(&identity.to_string()))
}

pub fn renew_before(spec: &DatabricksTokenSpec) -> RenewBefore {
    match (spec.renew_before, spec.renew_before_percentage) {
        (Some(d), _) => RenewBefore::Fixed(d.into()),
        (None, Some(p)) => RenewBefore::Percent(p),
        (None, None) => RenewBefore::default(),
    }
}

/// When the recorded token is renewed.
pub fn renewal_of(token: &DatabricksToken, record: &TokenRecord) -> Option<EpochMillis> {
    let c = &record.current;
    schedule::renewal_time(
        c.creation,
        c.expiry,
        renew_before(&token.spec),
        schedule::seed_of(&c.token_id),
    )
}

/// The pending manual rotation request, if it has not been handled yet.
pub fn pending_manual_request(
    token: &DatabricksToken,
    record: Option<&TokenRecord>,
) -> Option<String> {
    let requested = token.annotations().get(secret::ANN_ROTATE_REQUESTED)?;
    let handled = record.and_then(|r| r.rotate_request_handled.as_ref());
    (handled != Some(requested)).then(|| requested.clone())
}

/// A token just minted, as the record needs it.
pub struct Minted {
    pub token_id: String,
    pub value_digest: String,
    /// Its creation and expiry on the operator's clock.
    pub times: schedule::LocalTimes,
    pub origin: TokenOrigin,
}

/// The grace period of a replaced token: the spec's, or the operator's default.
pub fn grace_period(token: &DatabricksToken, default: Duration) -> Duration {
    token
        .spec
        .rotation
        .as_ref()
        .and_then(|r| r.grace_period)
        .map(Duration::from)
        .unwrap_or(default)
}

/// The record the Secret holds after a rotation: the new token current; the replaced one
/// waiting out its grace period when it may still work; earlier replaced ones carried over.
pub fn new_record(
    token: &DatabricksToken,
    observed: &Observed,
    reason: RotationReason,
    minted: Minted,
    grace: Duration,
    desired_hash: &str,
    now: EpochMillis,
) -> TokenRecord {
    let mut previous = carried_previous(token, observed);
    if reason.old_token_may_live()
        && let Some((token_id, expiry, origin)) = old_current(token, observed)
    {
        previous.push(PreviousTokenRecord {
            revoke_after: schedule::revoke_after(now, grace, expiry),
            token_id,
            expiry,
            origin,
        });
    }
    previous.retain(|p| p.token_id != minted.token_id);
    TokenRecord {
        current: CurrentToken {
            token_id: minted.token_id,
            creation: minted.times.creation,
            expiry: minted.times.expiry,
            value_digest: minted.value_digest,
            origin: Some(minted.origin),
        },
        previous,
        spec_hash: desired_hash.to_string(),
        rotate_request_handled: token
            .annotations()
            .get(secret::ANN_ROTATE_REQUESTED)
            .cloned()
            .or_else(|| {
                observed
                    .record
                    .as_ref()
                    .and_then(|r| r.rotate_request_handled.clone())
            }),
    }
}

/// Replaced tokens still waiting: from the Secret, or from status when the Secret is gone.
fn carried_previous(token: &DatabricksToken, observed: &Observed) -> Vec<PreviousTokenRecord> {
    if let Some(r) = &observed.record {
        return r.previous.clone();
    }
    token
        .status
        .iter()
        .flat_map(|s| s.previous_tokens.iter())
        .map(|p| PreviousTokenRecord {
            token_id: p.token_id.clone(),
            revoke_after: p.revoke_after.as_millis(),
            expiry: None,
            origin: None,
        })
        .collect()
}

/// The token being replaced (id, expiry, origin): from the Secret, or from status when it is
/// gone (which records no origin).
fn old_current(
    token: &DatabricksToken,
    observed: &Observed,
) -> Option<(String, Option<EpochMillis>, Option<TokenOrigin>)> {
    if let Some(r) = &observed.record {
        return Some((
            r.current.token_id.clone(),
            r.current.expiry,
            r.current.origin.clone(),
        ));
    }
    let s = token.status.as_ref()?;
    Some((
        s.token_id.clone()?,
        s.expiry_time.map(Timestamp::as_millis),
        None,
    ))
}

/// Why the token must be replaced now, judged from the Secret alone.
pub fn rotation_reason(
    token: &DatabricksToken,
    observed: &Observed,
    desired_spec_hash: &str,
    now: EpochMillis,
) -> Option<RotationReason> {
    let Some(record) = &observed.record else {
        let had_token = token.status.as_ref().is_some_and(|s| s.token_id.is_some());
        return Some(if had_token {
            RotationReason::SecretDeleted
        } else {
            RotationReason::Initial
        });
    };
    if !observed.has_value || observed.value_altered {
        return Some(RotationReason::ValueAltered);
    }
    if record.spec_hash != desired_spec_hash {
        return Some(RotationReason::SpecChanged);
    }
    if schedule::is_expired(now, record.current.expiry) {
        return Some(RotationReason::Expired);
    }
    if pending_manual_request(token, Some(record)).is_some() {
        return Some(RotationReason::Manual);
    }
    if schedule::is_due(now, renewal_of(token, record)) {
        return Some(RotationReason::Renewal);
    }
    None
}

/// Whether the Secret still holds a token that works, when the reconcile that judged
/// `reason` fails before replacing it. A renewal or a spec change leaves the old token serving;
/// a deleted, altered or foreign Secret, or a dead token, serves nothing.
pub fn secret_serves(reason: Option<RotationReason>) -> bool {
    match reason {
        None
        | Some(RotationReason::Renewal | RotationReason::Manual | RotationReason::SpecChanged) => {
            true
        }
        Some(
            RotationReason::Initial
            | RotationReason::SecretDeleted
            | RotationReason::ValueAltered
            | RotationReason::Expired
            | RotationReason::RevokedOutside,
        ) => false,
    }
}

/// Whether Ready stays True after a failed reconcile: the Secret serves a token (as far as the
/// failed reconcile got to know; unknown counts as serving) and that token has not expired.
pub fn ready_after_failure(secret_serves: Option<bool>, token_alive: bool) -> bool {
    secret_serves.unwrap_or(true) && token_alive
}

/// When a failed resource is looked at again: after its backoff, but no later than just past the
/// expiry of the token its Secret holds (still ahead), so that Ready turns False on time.
pub fn failure_wakeup(
    backoff: std::time::Duration,
    expiry: Option<EpochMillis>,
    now: EpochMillis,
) -> std::time::Duration {
    match expiry.filter(|e| *e > now) {
        Some(e) => backoff.min(std::time::Duration::from_millis((e - now) as u64 + 50)),
        None => backoff,
    }
}

/// How long a resource that synced sleeps: until the earliest of a replaced token's revocation,
/// its renewal, its expiry and its next check against Databricks; at least half a second (a
/// moment just past is retried shortly, not at once), at most `max`.
pub fn next_wakeup(
    token: &DatabricksToken,
    record: &TokenRecord,
    next_verification: EpochMillis,
    now: EpochMillis,
    max: Duration,
) -> Duration {
    let mut moments: Vec<EpochMillis> = record.previous.iter().map(|p| p.revoke_after).collect();
    moments.extend(renewal_of(token, record));
    moments.extend(record.current.expiry);
    moments.push(next_verification);
    schedule::wait_until_earliest(now, moments, MIN_WAKEUP, max)
}

/// The shortest sleep after a successful sync.
const MIN_WAKEUP: Duration = Duration::from_millis(500);

/// What became of a token the operator set out to revoke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevocationOutcome {
    /// Revoked now.
    Revoked,
    /// Already gone where it was minted (revoked or expired).
    Gone,
    /// Not this resource's token (no tag, or another resource's): left alone.
    Foreign,
    /// Nothing the operator can reach may revoke it now (the workspace or its credential is
    /// gone, or the credential may not manage that owner's tokens): kept until it can be.
    Blocked(String),
}

/// Whether a replaced token is dropped from the record after an attempt to revoke it: when it
/// is revoked, gone, or not this resource's; and when nothing may revoke it but it has expired
/// (it cannot authenticate any more). Otherwise it stays recorded and the failure is reported.
pub fn forget_after(outcome: &RevocationOutcome, expired: bool) -> bool {
    match outcome {
        RevocationOutcome::Revoked | RevocationOutcome::Gone | RevocationOutcome::Foreign => true,
        RevocationOutcome::Blocked(_) => expired,
    }
}

/// Whether a rotation replaces a token someone took out of the Secret (deleted it or wrote
/// another value): the mints a fight over the Secret costs, which are budgeted.
pub fn is_replacement(reason: RotationReason) -> bool {
    matches!(
        reason,
        RotationReason::SecretDeleted | RotationReason::ValueAltered
    )
}

/// Replacement mints allowed at once; beyond them each waits twice as long as the previous.
pub const FREE_REPLACEMENTS: usize = 3;
/// Replacement mints older than this are forgotten.
pub const REPLACEMENT_WINDOW: EpochMillis = 3_600_000;
const REPLACEMENT_BACKOFF: EpochMillis = 30_000;
const REPLACEMENT_BACKOFF_CAP: EpochMillis = 1_800_000;

/// When the next replacement mint may happen, given the times of the recent ones: None means
/// now. A Secret overwritten in a loop would otherwise burn the identity's token quota (600).
pub fn next_replacement_at(recent: &[EpochMillis], now: EpochMillis) -> Option<EpochMillis> {
    let in_window: Vec<EpochMillis> = recent
        .iter()
        .copied()
        .filter(|t| now - t < REPLACEMENT_WINDOW)
        .collect();
    let over = in_window.len().checked_sub(FREE_REPLACEMENTS)?;
    let last = in_window.iter().copied().max()?;
    let wait = REPLACEMENT_BACKOFF
        .saturating_mul(1 << over.min(16))
        .min(REPLACEMENT_BACKOFF_CAP);
    (now < last + wait).then_some(last + wait)
}

/// Who last wrote the Secret's data other than the operator, from its managedFields.
pub fn who_changed(secret: &Secret, own_manager: &str) -> Option<String> {
    secret
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref().is_some_and(|n| n != own_manager))
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.get("f:data").is_some())
        })
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))
        .and_then(|m| m.manager.clone())
}

/// The Secret status last recorded, when the spec now names another: the old one is emptied
/// of its token (deleted) once the new one holds it, even by a later reconcile after a crash.
pub fn renamed_from<'a>(recorded: Option<&'a str>, desired: &str) -> Option<&'a str> {
    recorded.filter(|old| *old != desired)
}

/// What a Secret write must find, so that a Secret the operator does not own is never
/// overwritten: none at all (a create, which fails if someone created it meanwhile), or the
/// version read (an apply, which fails if it was replaced meanwhile).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectedSecret {
    Absent,
    /// None: the version is not known (the write is unconditional).
    AtVersion(Option<String>),
}

pub fn expected_secret(exists: bool, version: Option<&str>) -> ExpectedSecret {
    if exists {
        ExpectedSecret::AtVersion(version.map(str::to_string))
    } else {
        ExpectedSecret::Absent
    }
}

/// A Secret the operator created (POST) has its fields recorded under an "Update" entry, which
/// server-side apply never removes fields of. Before an apply that drops a key, label or
/// annotation, that entry is turned into the operator's "Apply" entry (merged with it when both
/// exist). Returns the managedFields to write, or None when nothing is to be dropped or there is
/// nothing to convert.
pub fn adopt_created_fields(
    live: &Secret,
    desired: &Secret,
    manager: &str,
) -> Option<Vec<ManagedFieldsEntry>> {
    let entries = live.metadata.managed_fields.as_ref()?;
    let ours = |m: &ManagedFieldsEntry, op: &str| {
        m.manager.as_deref() == Some(manager) && m.operation.as_deref() == Some(op)
    };
    let created = entries.iter().find(|m| ours(m, "Update"))?;
    if !drops_something(live, desired) {
        return None;
    }
    let created_fields = created.fields_v1.as_ref().map(|f| f.0.clone());
    let mut out: Vec<ManagedFieldsEntry> = Vec::with_capacity(entries.len());
    let mut merged = false;
    for m in entries {
        if ours(m, "Update") {
            continue;
        }
        let mut m = m.clone();
        if ours(&m, "Apply") {
            let mut fields = m
                .fields_v1
                .map(|f| f.0)
                .unwrap_or_else(|| serde_json::json!({}));
            if let Some(extra) = &created_fields {
                merge_fields(&mut fields, extra);
            }
            m.fields_v1 = Some(FieldsV1(fields));
            merged = true;
        }
        out.push(m);
    }
    if !merged {
        out.push(ManagedFieldsEntry {
            operation: Some("Apply".into()),
            ..created.clone()
        });
    }
    Some(out)
}

/// Whether `live` has a data key, label or annotation that `desired` does not.
fn drops_something(live: &Secret, desired: &Secret) -> bool {
    fn extra<V, W>(
        live: Option<&std::collections::BTreeMap<String, V>>,
        want: Option<&std::collections::BTreeMap<String, W>>,
    ) -> bool {
        live.into_iter()
            .flatten()
            .any(|(k, _)| !want.is_some_and(|w| w.contains_key(k)))
    }
    extra(live.data.as_ref(), desired.data.as_ref())
        || extra(
            live.metadata.labels.as_ref(),
            desired.metadata.labels.as_ref(),
        )
        || extra(
            live.metadata.annotations.as_ref(),
            desired.metadata.annotations.as_ref(),
        )
}

/// Union of two fieldsV1 trees.
fn merge_fields(into: &mut serde_json::Value, from: &serde_json::Value) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        for (k, v) in from {
            match into.get_mut(k) {
                Some(existing) => merge_fields(existing, v),
                None => {
                    into.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{CurrentToken, SecretLayout, render, value_digest};

    const NOW: EpochMillis = 1_700_000_000_000;
    const HOUR: EpochMillis = 3_600_000;

    fn token(extra: &str) -> DatabricksToken {
        let spec: DatabricksTokenSpec = serde_yaml::from_str(&format!(
            "workspaceRef: {{name: ws}}\nlifetime: 3h\n{extra}"
        ))
        .unwrap();
        let mut t = DatabricksToken::new("t", spec);
        t.metadata.namespace = Some("ns".into());
        t.metadata.uid = Some("uid".into());
        t
    }

    fn record_for(t: &DatabricksToken, creation: EpochMillis) -> TokenRecord {
        TokenRecord {
            current: CurrentToken {
                token_id: "id".into(),
                creation,
                expiry: Some(creation + 3 * HOUR),
                value_digest: value_digest("value"),
                origin: None,
            },
            previous: vec![],
            spec_hash: spec_hash(&t.spec, "https://h"),
            rotate_request_handled: None,
        }
    }

    fn secret_for(t: &DatabricksToken, record: &TokenRecord, value: &str) -> Secret {
        render(
            t,
            &SecretLayout {
                name: "t",
                host: "https://h",
            },
            record,
            value,
        )
    }

    fn reason(t: &DatabricksToken, s: Option<&Secret>, now: EpochMillis) -> Option<RotationReason> {
        let o = observe(s, &t.spec.secret.token_key);
        rotation_reason(t, &o, &spec_hash(&t.spec, "https://h"), now)
    }

    #[test]
    fn a_fresh_token_needs_nothing() {
        let t = token("");
        let s = secret_for(&t, &record_for(&t, NOW), "value");
        assert_eq!(reason(&t, Some(&s), NOW + HOUR), None);
    }

    #[test]
    fn no_secret_and_no_history_is_the_initial_mint() {
        assert_eq!(reason(&token(""), None, NOW), Some(RotationReason::Initial));
    }

    #[test]
    fn no_secret_after_a_mint_means_it_was_deleted() {
        let mut t = token("");
        t.status = Some(crate::crd::DatabricksTokenStatus {
            token_id: Some("id".into()),
            ..Default::default()
        });
        assert_eq!(reason(&t, None, NOW), Some(RotationReason::SecretDeleted));
    }

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_lifetime() {
        let t = token("");
        let s = secret_for(&t, &record_for(&t, NOW), "value");
        assert_eq!(reason(&t, Some(&s), NOW + 2 * HOUR - 10 * 60_000), None);
        assert_eq!(
            reason(&t, Some(&s), NOW + 2 * HOUR + 1),
            Some(RotationReason::Renewal)
        );
    }

    #[test]
    fn an_expired_token_is_replaced() {
        let t = token("");
        let s = secret_for(&t, &record_for(&t, NOW), "value");
        assert_eq!(
            reason(&t, Some(&s), NOW + 3 * HOUR),
            Some(RotationReason::Expired)
        );
    }

    #[test]
    fn an_altered_value_is_replaced() {
        let t = token("");
        let mut s = secret_for(&t, &record_for(&t, NOW), "value");
        for v in s.data.as_mut().unwrap().values_mut() {
            *v = k8s_openapi::ByteString(b"tampered".to_vec());
        }
        assert_eq!(
            reason(&t, Some(&s), NOW),
            Some(RotationReason::ValueAltered)
        );
    }

    #[test]
    fn an_altered_token_key_is_replaced_even_if_env_keys_still_hold_the_value() {
        let t = token("");
        let mut s = secret_for(&t, &record_for(&t, NOW), "value");
        s.data.as_mut().unwrap().insert(
            "token".into(),
            k8s_openapi::ByteString(b"tampered".to_vec()),
        );
        assert_eq!(
            reason(&t, Some(&s), NOW),
            Some(RotationReason::ValueAltered)
        );
    }

    #[test]
    fn a_renamed_token_key_only_rewrites_the_secret() {
        let old = token("");
        let s = secret_for(&old, &record_for(&old, NOW), "value");
        let renamed = token("secret: {tokenKey: pat}\n");
        assert_eq!(reason(&renamed, Some(&s), NOW), None);
        assert_eq!(observe(Some(&s), "pat").value.as_deref(), Some("value"));
    }

    #[test]
    fn lifetime_scope_or_identity_changes_need_a_new_token() {
        let t = token("");
        let s = secret_for(&t, &record_for(&t, NOW), "value");
        for extra in [
            "scopes: [sql]\n",
            "onBehalfOf: {applicationId: 8a4f9d1e-52f6-4c3a-9a57-1c8b0c0f5b21}\n",
        ] {
            assert_eq!(
                reason(&token(extra), Some(&s), NOW),
                Some(RotationReason::SpecChanged),
                "{extra}"
            );
        }
        let longer: DatabricksToken = {
            let mut l = token("");
            l.spec.lifetime = Some("4h".parse().unwrap());
            l
        };
        assert_eq!(
            reason(&longer, Some(&s), NOW),
            Some(RotationReason::SpecChanged)
        );
    }

    #[test]
    fn renew_before_and_comment_changes_need_no_new_token() {
        let t = token("");
        let s = secret_for(&t, &record_for(&t, NOW), "value");
        assert_eq!(
            reason(&token("renewBefore: 30m\ncomment: hi\n"), Some(&s), NOW),
            None
        );
    }

    #[test]
    fn a_manual_request_rotates_once() {
        let mut t = token("");
        t.metadata.annotations = Some(
            [(
                secret::ANN_ROTATE_REQUESTED.to_string(),
                "2026-01-01T00:00:00Z".to_string(),
            )]
            .into(),
        );
        let mut record = record_for(&t, NOW);
        let s = secret_for(&t, &record, "value");
        assert_eq!(reason(&t, Some(&s), NOW), Some(RotationReason::Manual));
        record.rotate_request_handled = Some("2026-01-01T00:00:00Z".into());
        let s = secret_for(&t, &record, "value");
        assert_eq!(reason(&t, Some(&s), NOW), None);
    }

    /// A token whose status recorded Secret `t` at resourceVersion 7 for generation 1.
    fn acted_on(generation: i64) -> DatabricksToken {
        let mut t = token("");
        t.metadata.generation = Some(generation);
        t.status = Some(crate::crd::DatabricksTokenStatus {
            secret_name: Some("t".into()),
            secret_resource_version: Some("7".into()),
            observed_generation: Some(1),
            ..Default::default()
        });
        t
    }

    #[test]
    fn an_untouched_secret_is_judged_from_its_record() {
        let t = acted_on(1);
        assert!(is_untouched(&t, "t", Some("7")));
        let record = record_for(&t, NOW);
        assert_eq!(
            rotation_reason(
                &t,
                &Observed::untouched(record),
                &spec_hash(&t.spec, "https://h"),
                NOW
            ),
            None
        );
    }

    #[test]
    fn a_secret_changed_by_someone_else_is_read_again() {
        assert!(!is_untouched(&acted_on(1), "t", Some("8")));
    }

    #[test]
    fn a_changed_spec_or_secret_name_reads_the_secret_again() {
        assert!(
            !is_untouched(&acted_on(2), "t", Some("7")),
            "new generation"
        );
        assert!(!is_untouched(&acted_on(1), "other", Some("7")), "renamed");
        let mut t = acted_on(1);
        t.status.as_mut().unwrap().secret_resource_version = None;
        assert!(!is_untouched(&t, "t", Some("7")), "never recorded");
        assert!(!is_untouched(&t, "t", None), "no version either");
    }

    #[test]
    fn what_the_secret_serves_when_a_replacement_fails() {
        use RotationReason::*;
        let table = [
            (None, true),
            (Some(Renewal), true),
            (Some(Manual), true),
            (Some(SpecChanged), true),
            (Some(Initial), false),
            (Some(SecretDeleted), false),
            (Some(ValueAltered), false),
            (Some(Expired), false),
            (Some(RevokedOutside), false),
        ];
        for (reason, serves) in table {
            assert_eq!(secret_serves(reason), serves, "{reason:?}");
        }
    }

    #[test]
    fn ready_after_a_failure_needs_a_serving_secret_and_a_live_token() {
        let table = [
            (Some(true), true, true),
            (None, true, true),
            (Some(false), true, false),
            (Some(true), false, false),
            (None, false, false),
        ];
        for (serves, alive, ready) in table {
            assert_eq!(
                ready_after_failure(serves, alive),
                ready,
                "{serves:?} {alive}"
            );
        }
    }

    #[test]
    fn only_a_deleted_or_altered_secret_is_a_replacement() {
        use RotationReason::*;
        for r in [SecretDeleted, ValueAltered] {
            assert!(is_replacement(r), "{r:?}");
        }
        for r in [
            Initial,
            SpecChanged,
            Expired,
            RevokedOutside,
            Manual,
            Renewal,
        ] {
            assert!(!is_replacement(r), "{r:?}");
        }
    }

    #[test]
    fn replacement_mints_are_free_then_back_off() {
        let s = 1_000;
        let table: [(&[EpochMillis], EpochMillis, Option<EpochMillis>); 7] = [
            (&[], NOW, None),
            (&[NOW - 3 * s, NOW - 2 * s], NOW, None),
            // The fourth in the window waits 30 s after the third...
            (
                &[NOW - 3 * s, NOW - 2 * s, NOW - s],
                NOW,
                Some(NOW - s + 30 * s),
            ),
            (&[NOW - 40 * s, NOW - 35 * s, NOW - 31 * s], NOW, None),
            // ...the fifth 60 s after the fourth.
            (
                &[NOW - 50 * s, NOW - 45 * s, NOW - 40 * s, NOW - 5 * s],
                NOW,
                Some(NOW + 55 * s),
            ),
            // Mints older than the window do not count.
            (
                &[NOW - 2 * HOUR, NOW - 2 * HOUR, NOW - 2 * HOUR, NOW - s],
                NOW,
                None,
            ),
            // The wait is capped.
            (&[NOW - s; 40], NOW, Some(NOW - s + 1_800_000)),
        ];
        for (recent, now, expected) in table {
            assert_eq!(next_replacement_at(recent, now), expected, "{recent:?}");
        }
    }

    #[test]
    fn the_last_writer_of_the_data_other_than_the_operator_is_named() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, Time};
        let entry = |manager: &str, secs: i64, fields: serde_json::Value| ManagedFieldsEntry {
            manager: Some(manager.into()),
            time: Some(Time(jiff::Timestamp::from_second(secs).unwrap())),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        };
        let data = serde_json::json!({"f:data": {"f:token": {}}});
        let labels = serde_json::json!({"f:metadata": {"f:labels": {}}});
        let mut secret = Secret::default();
        secret.metadata.managed_fields = Some(vec![
            entry("op", 300, data.clone()),
            entry("kubectl-edit", 100, data.clone()),
            entry("fighter", 200, data.clone()),
            entry("labeller", 400, labels),
        ]);
        assert_eq!(who_changed(&secret, "op").as_deref(), Some("fighter"));
        secret.metadata.managed_fields = Some(vec![entry("op", 1, data)]);
        assert_eq!(who_changed(&secret, "op"), None);
    }

    #[test]
    fn a_renamed_secret_is_found_from_status() {
        assert_eq!(renamed_from(Some("old"), "new"), Some("old"));
        assert_eq!(renamed_from(Some("same"), "same"), None);
        assert_eq!(renamed_from(None, "new"), None);
    }

    #[test]
    fn a_secret_is_created_when_absent_and_applied_at_the_version_read() {
        assert_eq!(expected_secret(false, None), ExpectedSecret::Absent);
        assert_eq!(expected_secret(false, Some("3")), ExpectedSecret::Absent);
        assert_eq!(
            expected_secret(true, Some("3")),
            ExpectedSecret::AtVersion(Some("3".into()))
        );
        assert_eq!(expected_secret(true, None), ExpectedSecret::AtVersion(None));
    }

    mod adopt {
        use super::*;
        use k8s_openapi::ByteString;
        use serde_json::json;

        fn entry(manager: &str, op: &str, fields: serde_json::Value) -> ManagedFieldsEntry {
            ManagedFieldsEntry {
                manager: Some(manager.into()),
                operation: Some(op.into()),
                fields_v1: Some(FieldsV1(fields)),
                ..ManagedFieldsEntry::default()
            }
        }

        fn secret(keys: &[&str], managed: Vec<ManagedFieldsEntry>) -> Secret {
            let mut s = Secret {
                data: Some(
                    keys.iter()
                        .map(|k| (k.to_string(), ByteString(vec![])))
                        .collect(),
                ),
                ..Secret::default()
            };
            s.metadata.managed_fields = Some(managed);
            s
        }

        #[test]
        fn nothing_dropped_needs_no_write() {
            let live = secret(
                &["a"],
                vec![entry("op", "Update", json!({"f:data": {"f:a": {}}}))],
            );
            assert_eq!(
                adopt_created_fields(&live, &secret(&["a", "b"], vec![]), "op"),
                None
            );
        }

        #[test]
        fn a_secret_applied_all_along_needs_no_write() {
            let live = secret(
                &["a"],
                vec![entry("op", "Apply", json!({"f:data": {"f:a": {}}}))],
            );
            assert_eq!(
                adopt_created_fields(&live, &secret(&[], vec![]), "op"),
                None
            );
        }

        #[test]
        fn the_create_entry_becomes_the_apply_entry() {
            let others = entry("kubectl", "Update", json!({"f:metadata": {}}));
            let live = secret(
                &["a", "b"],
                vec![
                    entry("op", "Update", json!({"f:data": {"f:a": {}, "f:b": {}}})),
                    others.clone(),
                ],
            );
            let out = adopt_created_fields(&live, &secret(&["a"], vec![]), "op").unwrap();
            assert_eq!(
                out,
                vec![
                    others,
                    entry("op", "Apply", json!({"f:data": {"f:a": {}, "f:b": {}}}))
                ]
            );
        }

        #[test]
        fn both_entries_merge_into_the_apply_entry() {
            let live = secret(
                &["a", "b", "c"],
                vec![
                    entry("op", "Update", json!({"f:data": {"f:a": {}, "f:b": {}}})),
                    entry("op", "Apply", json!({"f:data": {"f:c": {}}, "f:type": {}})),
                ],
            );
            let out = adopt_created_fields(&live, &secret(&["a"], vec![]), "op").unwrap();
            assert_eq!(
                out,
                vec![entry(
                    "op",
                    "Apply",
                    json!({"f:data": {"f:a": {}, "f:b": {}, "f:c": {}}, "f:type": {}})
                )]
            );
        }
    }

    #[test]
    fn a_failure_is_looked_at_again_when_the_token_expires_at_the_latest() {
        use std::time::Duration;
        let minute = Duration::from_secs(60);
        for (backoff, expiry, expected) in [
            (minute, None, minute),
            (minute, Some(10_000), Duration::from_millis(10_050)),
            (Duration::from_secs(1), Some(10_000), Duration::from_secs(1)),
            (minute, Some(-5), minute),
        ] {
            assert_eq!(failure_wakeup(backoff, expiry, 0), expected, "{expiry:?}");
        }
    }

    #[test]
    fn a_synced_resource_wakes_for_the_earliest_thing_due() {
        use std::time::Duration;
        let t = token("");
        let r = record_for(&t, NOW);
        let renewal = renewal_of(&t, &r).unwrap();
        let max = Duration::from_secs(600);
        let ms = |m: EpochMillis| Duration::from_millis(m as u64);
        let mut waiting = r.clone();
        waiting.previous.push(crate::secret::PreviousTokenRecord {
            token_id: "old".into(),
            revoke_after: NOW + 60_000,
            expiry: None,
            origin: None,
        });
        let long = Duration::from_secs(24 * 3600);
        let table = [
            ("the next check", &r, NOW + 120_000, max, ms(120_000)),
            (
                "renewal before the next check",
                &r,
                NOW + 10 * HOUR,
                long,
                ms(renewal - NOW),
            ),
            (
                "a replaced token's revocation",
                &waiting,
                NOW + 120_000,
                max,
                ms(60_000),
            ),
            (
                "never longer than the maximum",
                &r,
                NOW + 10 * HOUR,
                max,
                max,
            ),
            (
                "a moment past: shortly",
                &r,
                NOW - 1,
                max,
                Duration::from_millis(500),
            ),
        ];
        for (case, record, next_check, max, expected) in table {
            assert_eq!(
                next_wakeup(&t, record, next_check, NOW, max),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn a_token_nothing_may_revoke_is_kept_until_it_expires() {
        use RevocationOutcome::*;
        let table = [
            (Revoked, false, true),
            (Gone, false, true),
            (Foreign, false, true),
            (Blocked("no credential".into()), false, false),
            (Blocked("no credential".into()), true, true),
        ];
        for (outcome, expired, forget) in table {
            assert_eq!(
                forget_after(&outcome, expired),
                forget,
                "{outcome:?} {expired}"
            );
        }
    }
}
