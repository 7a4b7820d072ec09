//! Reconciling a `DatabricksToken` of type `oauth`: keep a Databricks OAuth access token of the
//! workspace's own service principal in the Secret, renewed at 2/3 of the lifetime Databricks
//! granted. Gather (workspace, Secret), decide (pure, [`decide`]), act (issue, write).
//!
//! Unlike a PAT, an access token has no id, no comment and no revocation: a replaced one simply
//! expires within the hour, so there are no previous tokens, no grace periods and no sweep. The
//! Secret's annotations (the same record as for PATs) stay the source of truth, so status,
//! printer columns, metrics and alerts read it the same way.

use kube::{Api, ResourceExt, api::DeleteParams};
use std::sync::Arc;
use tracing::info;

use k8s_openapi::api::core::v1::Secret;

use super::context::{Context, FIELD_MANAGER};
use super::error::Error;
use super::outcome::{Failed, Synced};
use super::{
    plan,
    token::{Wording, WriteError, announce_rotation, write_secret},
};
use crate::crd::{DatabricksToken, DatabricksTokenSpec, event_reasons};
use crate::schedule::{self, EpochMillis};
use crate::secret::{self, CurrentToken, SecretLayout, TokenRecord};
use crate::workspace::{WorkspaceError, Workspaces};

/// The scope asked for when the spec names none: every API, as the workspace's own client.
pub const DEFAULT_SCOPE: &str = "all-apis";

/// Prefix of the id an access token gets in the Secret and status: Databricks gives it none, and
/// a recognisable prefix keeps it from ever being taken for a PAT id (nothing revokes it).
pub const TOKEN_ID_PREFIX: &str = "oauth-";

/// What one sync of an oauth-type token does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Ask the token endpoint for a new access token and write it.
    Issue(plan::RotationReason),
    /// The token is fine, but the Secret read whole differs from what it should be.
    Rewrite,
    /// Everything is in place.
    Keep,
}

/// What to do, from the Secret alone. `drifted`: the Secret was read whole and differs from
/// the one the record renders (a changed key layout, labels, a removed key).
pub fn decide(
    token: &DatabricksToken,
    observed: &plan::Observed,
    desired_hash: &str,
    drifted: bool,
    now: EpochMillis,
) -> Step {
    match plan::rotation_reason(token, observed, desired_hash, now) {
        Some(reason) => Step::Issue(reason),
        None if drifted => Step::Rewrite,
        None => Step::Keep,
    }
}

/// The `scope` asked of the token endpoint: the spec's scopes, space-separated (RFC 6749 3.3).
pub fn scope(spec: &DatabricksTokenSpec) -> String {
    match spec.scopes.as_deref() {
        Some(scopes) if !scopes.is_empty() => scopes.join(" "),
        _ => DEFAULT_SCOPE.to_string(),
    }
}

/// The fields whose change needs a new access token: scope and where it is issued.
pub fn spec_hash(spec: &DatabricksTokenSpec, host: &str) -> String {
    let identity = serde_json::json!({
        "type": "oauth",
        "scope": scope(spec),
        "workspace": [format!("{:?}", spec.workspace_ref.kind), spec.workspace_ref.name.clone()],
        "host": host,
    });
    format!("{:016x}", schedule::seed_of(&identity.to_string()))
}

/// The id shown for an access token: the prefix and the start of its value's SHA-256 (the
/// Secret's `dbtoken.dev/token-sha256` annotation), so status and Secret can be matched.
pub fn token_id(value_digest: &str) -> String {
    format!(
        "{TOKEN_ID_PREFIX}{}",
        value_digest.chars().take(16).collect::<String>()
    )
}

/// Whether a recorded token id is an access token's (nothing to revoke).
pub fn is_access_token_id(id: &str) -> bool {
    id.starts_with(TOKEN_ID_PREFIX)
}

/// What an issued token looks like to the token endpoint's caller.
pub struct Issued<'a> {
    pub value_digest: String,
    /// `expires_in` as granted.
    pub lifetime: std::time::Duration,
    pub sent_at: EpochMillis,
    pub answered_at: EpochMillis,
    pub spec_hash: &'a str,
}

/// The record the Secret holds for a newly issued access token. Times on the operator's clock:
/// the token counts as created when the answer arrived and as expiring a granted lifetime after
/// the request was sent, so renewal is never late.
pub fn issued_record(
    token: &DatabricksToken,
    issued: &Issued,
    previous: Option<&TokenRecord>,
) -> TokenRecord {
    let local = schedule::on_local_clock(
        issued.sent_at,
        issued.answered_at,
        0,
        issued.lifetime.as_millis() as EpochMillis,
    );
    TokenRecord {
        current: CurrentToken {
            token_id: token_id(&issued.value_digest),
            creation: local.creation,
            expiry: local.expiry,
            value_digest: issued.value_digest.clone(),
            origin: None,
        },
        previous: Vec::new(),
        spec_hash: issued.spec_hash.to_string(),
        rotate_request_handled: token
            .annotations()
            .get(secret::ANN_ROTATE_REQUESTED)
            .cloned()
            .or_else(|| previous.and_then(|r| r.rotate_request_handled.clone())),
    }
}

/// Bring the Secret in line with the spec: a valid access token, renewed in time.
pub async fn sync(
    token: &DatabricksToken,
    ctx: &Context,
    now: EpochMillis,
) -> Result<Synced, Failed> {
    // Gather.
    let namespace = token
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = token.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let workspace = ctx
        .workspaces
        .for_minting(token)
        .await
        .map_err(|e| match e {
            // The PAT advice (onBehalfOf) does not apply to an access token.
            WorkspaceError::OwnIdentityTokenRefused { workspace, why } => {
                Error::OAuthOwnIdentityRefused {
                    workspace: format!("{:?} {}", workspace.kind, workspace.name),
                    why,
                }
            }
            other => Error::from(other),
        })?;
    if !workspace.client.issues_oauth_tokens() {
        return Err(Error::OAuthUnavailable {
            workspace: format!("{:?} {}", workspace.key.kind, workspace.key.name),
        }
        .into());
    }
    let name = secret::secret_name(token);
    let layout = SecretLayout {
        name: &name,
        host: &workspace.host,
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.kube.clone(), &namespace);
    let desired_hash = spec_hash(&token.spec, &workspace.host);

    // An untouched Secret (the version status recorded) with nothing due needs only its cached
    // record; anything else, and anything that writes the Secret, reads it whole first.
    let quiet = ctx
        .secrets
        .get(&namespace, &name)
        .filter(|c| plan::is_untouched(token, &name, c.resource_version.as_deref()))
        .and_then(|c| c.record)
        .map(|r| plan::Observed::untouched(Arc::unwrap_or_clone(r)))
        .filter(|o| decide(token, o, &desired_hash, false, now) == Step::Keep);
    if let Some(observed) = quiet {
        let record = observed.record.ok_or(Error::MissingField("token record"))?;
        return Ok(Synced {
            record,
            secret_name: name,
            secret_version: token
                .status
                .as_ref()
                .and_then(|s| s.secret_resource_version.clone()),
            rotated_at: None,
            next_verification: quiet_until(ctx, now),
        });
    }
    let live = secrets
        .get_opt(&name)
        .await
        .map_err(Error::kube("read Secret"))?;
    if let Some(s) = &live
        && !secret::is_owned_by(s, token)
    {
        return Err(conflict(name));
    }
    let mut secret_version = live.as_ref().and_then(|s| s.resource_version());
    let secret_exists = live.is_some();
    let observed = plan::observe(live.as_ref(), &token.spec.secret.token_key);
    let drifted = match (&live, &observed.record, &observed.value) {
        (Some(l), Some(record), Some(value)) => {
            !secret::is_up_to_date(l, &secret::render(token, &layout, record, value))
        }
        _ => false,
    };

    // Decide.
    let step = decide(token, &observed, &desired_hash, drifted, now);
    let serves = plan::secret_serves(match step {
        Step::Issue(reason) => Some(reason),
        _ => None,
    });
    let failed = |error| Failed {
        error,
        secret_serves: Some(serves),
        partial: None,
    };

    // Act.
    let mut rotated_at = None;
    let record = match step {
        Step::Keep => observed.record.clone(),
        Step::Rewrite => {
            let (Some(record), Some(value)) = (&observed.record, &observed.value) else {
                return Err(failed(Error::MissingField("token value")));
            };
            let desired = secret::render(token, &layout, record, value);
            let expected = plan::expected_secret(secret_exists, secret_version.as_deref());
            secret_version = write(token, ctx, &secrets, desired, expected, live.as_ref())
                .await
                .map_err(|e| e.into_failed(&name, serves))?;
            observed.record.clone()
        }
        Step::Issue(reason) => {
            if plan::is_replacement(reason) {
                let recent = ctx.replacements.recent(&uid);
                if let Some(until) = plan::next_replacement_at(&recent, now) {
                    return Err(Failed {
                        error: Error::ReplacementsExhausted {
                            name,
                            changed_by: live
                                .as_ref()
                                .and_then(|l| plan::who_changed(l, FIELD_MANAGER)),
                            count: recent.len(),
                            until,
                        },
                        secret_serves: Some(false),
                        partial: None,
                    });
                }
            }
            let key = Workspaces::key_for(token);
            ctx.workspace_backoff.enter(&key, now).map_err(|b| {
                failed(Error::WorkspaceBackingOff {
                    reason: b.reason,
                    message: b.message,
                    until: b.until,
                })
            })?;
            let sent_at = crate::now_millis();
            let grant = workspace
                .client
                .issue_access_token(&scope(&token.spec))
                .await;
            let answered_at = crate::now_millis();
            let grant = match grant {
                Ok(grant) => {
                    ctx.workspace_backoff.succeeded(&key);
                    grant
                }
                Err(e) => {
                    let error = Error::databricks("issue OAuth access token")(e);
                    if error.is_workspace_failure() {
                        ctx.workspace_backoff.failed(
                            &key,
                            crate::now_millis(),
                            error.retry_after(),
                            &error.reason(),
                            &error.to_string(),
                        );
                    }
                    return Err(failed(error));
                }
            };
            ctx.metrics.mint();
            let value = grant.value.expose();
            let record = issued_record(
                token,
                &Issued {
                    value_digest: secret::value_digest(value),
                    lifetime: grant.lifetime,
                    sent_at,
                    answered_at,
                    spec_hash: &desired_hash,
                },
                observed.record.as_ref(),
            );
            info!(token_id = %record.current.token_id, reason = reason.as_str(), "issued OAuth access token");
            let desired = secret::render(token, &layout, &record, value);
            let expected = plan::expected_secret(secret_exists, secret_version.as_deref());
            // A token nobody will see needs no cleanup: it expires by itself.
            secret_version = write(token, ctx, &secrets, desired, expected, live.as_ref())
                .await
                .map_err(|e| e.into_failed(&name, serves))?;
            if plan::is_replacement(reason) {
                ctx.replacements.record(&uid, now);
            }
            announce_rotation(token, ctx, reason, &record, &OAUTH_WORDING).await;
            rotated_at = Some(now);
            Some(record)
        }
    };
    let Some(record) = record else {
        return Err(failed(Error::MissingField("token record")));
    };
    delete_renamed(token, &secrets, &name).await;
    Ok(Synced {
        record,
        secret_name: name,
        secret_version,
        rotated_at,
        next_verification: quiet_until(ctx, now),
    })
}

/// Nothing to verify in Databricks (an access token cannot be listed or revoked): the
/// wake-up is the renewal, or the longest requeue.
fn quiet_until(ctx: &Context, now: EpochMillis) -> EpochMillis {
    now + ctx.settings.max_requeue().as_millis() as EpochMillis
}

fn conflict(name: String) -> Failed {
    Failed {
        error: Error::SecretConflict { name },
        secret_serves: Some(false),
        partial: None,
    }
}

impl WriteError {
    fn into_failed(self, name: &str, serves: bool) -> Failed {
        match self {
            WriteError::Taken => conflict(name.to_string()),
            WriteError::Kube(error) => Failed {
                error,
                secret_serves: Some(serves),
                partial: None,
            },
        }
    }
}

async fn write(
    token: &DatabricksToken,
    ctx: &Context,
    secrets: &Api<Secret>,
    desired: Secret,
    expected: plan::ExpectedSecret,
    live: Option<&Secret>,
) -> Result<Option<String>, WriteError> {
    write_secret(token, &ctx.own_writes, secrets, desired, expected, live).await
}

/// After `spec.secret.name` changed, the Secret under the old name (if this resource owns it)
/// goes once the new one holds a token. Best effort: the next sync tries again.
async fn delete_renamed(token: &DatabricksToken, secrets: &Api<Secret>, name: &str) {
    let recorded = token.status.as_ref().and_then(|s| s.secret_name.as_deref());
    let Some(old) = plan::renamed_from(recorded, name) else {
        return;
    };
    if let Ok(Some(s)) = secrets.get_opt(old).await
        && secret::is_owned_by(&s, token)
    {
        let _ = secrets.delete(old, &DeleteParams::default()).await;
    }
}

const OAUTH_WORDING: Wording = Wording {
    first_reason: event_reasons::ISSUED,
    first: "Issued OAuth access token",
    next_reason: event_reasons::RENEWED,
    next: "Renewed to OAuth access token",
};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::crd::DatabricksTokenSpec;

    const MINUTE: EpochMillis = 60_000;
    const HOST: &str = "https://ws.example.com";

    fn token(extra: &str) -> DatabricksToken {
        let spec: DatabricksTokenSpec =
            serde_yaml::from_str(&format!("workspaceRef: {{name: ws}}\ntype: oauth\n{extra}"))
                .unwrap();
        let mut t = DatabricksToken::new("t", spec);
        t.metadata.namespace = Some("ns".into());
        t.metadata.uid = Some("uid-1".into());
        t
    }

    /// A token issued at 0 for an hour, as the Secret records it.
    fn record(t: &DatabricksToken) -> TokenRecord {
        issued_record(
            t,
            &Issued {
                value_digest: secret::value_digest("eyJvalue"),
                lifetime: Duration::from_secs(3600),
                sent_at: 0,
                answered_at: 0,
                spec_hash: &spec_hash(&t.spec, HOST),
            },
            None,
        )
    }

    fn observed(record: Option<TokenRecord>) -> plan::Observed {
        match record {
            Some(r) => plan::Observed::untouched(r),
            None => plan::Observed {
                record: None,
                has_value: false,
                value: None,
                value_altered: false,
            },
        }
    }

    #[test]
    fn decisions_over_an_access_tokens_life() {
        let t = token("");
        let hash = spec_hash(&t.spec, HOST);
        let fresh = Some(record(&t));
        let altered = plan::Observed {
            value_altered: true,
            ..observed(fresh.clone())
        };
        let rescoped = token("scopes: [sql]");
        let rescoped_hash = spec_hash(&rescoped.spec, HOST);
        let mut requested = token("");
        requested.metadata.annotations = Some(
            [(
                secret::ANN_ROTATE_REQUESTED.to_string(),
                "2026-01-01T00:00:00Z".to_string(),
            )]
            .into(),
        );
        let cases: Vec<(
            &str,
            &DatabricksToken,
            plan::Observed,
            &str,
            bool,
            EpochMillis,
            Step,
        )> = vec![
            (
                "no Secret yet",
                &t,
                observed(None),
                &hash,
                false,
                0,
                Step::Issue(plan::RotationReason::Initial),
            ),
            (
                "fresh",
                &t,
                observed(fresh.clone()),
                &hash,
                false,
                10 * MINUTE,
                Step::Keep,
            ),
            (
                "fresh, Secret drifted",
                &t,
                observed(fresh.clone()),
                &hash,
                true,
                10 * MINUTE,
                Step::Rewrite,
            ),
            (
                "just before 2/3 of the hour (jitter at most 5% early)",
                &t,
                observed(fresh.clone()),
                &hash,
                false,
                38 * MINUTE,
                Step::Keep,
            ),
            (
                "past 2/3 of the hour",
                &t,
                observed(fresh.clone()),
                &hash,
                false,
                41 * MINUTE,
                Step::Issue(plan::RotationReason::Renewal),
            ),
            (
                "expired (operator was down)",
                &t,
                observed(fresh.clone()),
                &hash,
                false,
                61 * MINUTE,
                Step::Issue(plan::RotationReason::Expired),
            ),
            (
                "value altered by hand",
                &t,
                altered,
                &hash,
                false,
                MINUTE,
                Step::Issue(plan::RotationReason::ValueAltered),
            ),
            (
                "scopes changed",
                &rescoped,
                observed(fresh.clone()),
                &rescoped_hash,
                false,
                MINUTE,
                Step::Issue(plan::RotationReason::SpecChanged),
            ),
            (
                "manual rotation request",
                &requested,
                observed(fresh.clone()),
                &hash,
                false,
                MINUTE,
                Step::Issue(plan::RotationReason::Manual),
            ),
        ];
        for (what, t, observed, hash, drifted, now, want) in cases {
            assert_eq!(decide(t, &observed, hash, drifted, now), want, "{what}");
        }
    }

    #[test]
    fn an_issued_token_renews_at_two_thirds_of_the_granted_lifetime_with_bounded_jitter() {
        let t = token("");
        for value in ["eyJa", "eyJb", "eyJc", "eyJd"] {
            let r = issued_record(
                &t,
                &Issued {
                    value_digest: secret::value_digest(value),
                    lifetime: Duration::from_secs(3600),
                    sent_at: 1_000,
                    answered_at: 1_500,
                    spec_hash: "h",
                },
                None,
            );
            assert_eq!(r.current.creation, 1_500, "created when the answer came");
            assert_eq!(
                r.current.expiry,
                Some(1_000 + 3_600_000),
                "from the request"
            );
            let renewal = plan::renewal_of(&t, &r).unwrap();
            let two_thirds = 1_000 + 3_600_000 - 3_600_000 * 33 / 100;
            assert!(
                renewal <= two_thirds,
                "{value}: {renewal} after {two_thirds}"
            );
            assert!(
                renewal >= two_thirds - 2 * MINUTE,
                "{value}: jitter too large"
            );
            assert!(r.previous.is_empty(), "nothing waits to be revoked");
            assert!(is_access_token_id(&r.current.token_id));
        }
    }

    #[test]
    fn a_short_granted_lifetime_renews_within_it() {
        let t = token("renewBeforePercentage: 50");
        let r = issued_record(
            &t,
            &Issued {
                value_digest: secret::value_digest("eyJx"),
                lifetime: Duration::from_secs(30),
                sent_at: 0,
                answered_at: 0,
                spec_hash: "h",
            },
            None,
        );
        let renewal = plan::renewal_of(&t, &r).unwrap();
        assert!((14_000..=15_000).contains(&renewal), "{renewal}");
    }

    #[test]
    fn the_token_id_names_no_secret_and_matches_the_digest_annotation() {
        let digest = secret::value_digest("eyJsecret");
        let id = token_id(&digest);
        assert_eq!(id, format!("oauth-{}", &digest[..16]));
        assert!(!id.contains("eyJsecret"));
        assert!(!is_access_token_id("1234567890abcdef"));
    }

    #[test]
    fn scope_is_the_spec_scopes_space_separated_or_all_apis() {
        assert_eq!(scope(&token("").spec), "all-apis");
        assert_eq!(
            scope(&token("scopes: [all-apis, sql]").spec),
            "all-apis sql"
        );
    }

    #[test]
    fn the_spec_hash_changes_with_scope_and_host_not_with_the_secret_layout() {
        let base = spec_hash(&token("").spec, HOST);
        assert_ne!(base, spec_hash(&token("scopes: [sql]").spec, HOST));
        assert_ne!(base, spec_hash(&token("").spec, "https://other"));
        assert_eq!(
            base,
            spec_hash(&token("secret: {name: other, envKeys: false}").spec, HOST)
        );
    }
}
