//! Reconciling one `DatabricksToken`: mint, rotate, revoke replaced tokens after their grace
//! period, sweep orphans, and mirror the Secret's record into status.
//!
//! Order matters for the invariants: a new token is written to the Secret before the old one is
//! ever revoked. A token minted but never written (a crash, an uncertain create) carries the
//! resource's tag, and the token list read before the next mint finds and revokes it.

use std::sync::Arc;

use databricks_client::CreateTokenRequest;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
    runtime::{controller::Action, events::EventType},
};
use tracing::{info, warn};

use super::{Context, Error, FIELD_MANAGER, cleanup, events, plan, revocation, rollout, status};
use crate::crd::DatabricksToken;
use crate::databricks::{self, Owner};
use crate::schedule::{self, EpochMillis};
use crate::secret::{
    self, CurrentToken, PreviousTokenRecord, SecretLayout, TokenOrigin, TokenRecord,
};
use crate::workspace::ResolvedWorkspace;

/// What a successful sync leaves behind, for status and the next wake-up.
pub struct Synced {
    pub record: TokenRecord,
    pub secret_name: String,
    /// The Secret's resourceVersion as last written or read whole.
    pub secret_version: Option<String>,
    pub rotated_at: Option<EpochMillis>,
    pub next_verification: EpochMillis,
}

/// Bring the Secret and Databricks in line with the spec.
pub async fn sync(
    token: &DatabricksToken,
    ctx: &Context,
    now: EpochMillis,
) -> Result<Synced, Error> {
    let uid = token.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let namespace = token
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let workspace = ctx.workspaces.for_minting(token).await?;
    let owner = owner_of(token);
    let name = secret::secret_name(token);
    let secrets: Api<Secret> = Api::namespaced(ctx.kube.clone(), &namespace);
    let desired_hash = plan::spec_hash(&token.spec, &workspace.host);

    // The cache keeps a Secret's version and token record only. An untouched Secret with nothing
    // due needs no more; anything else, and anything that writes the Secret, reads it whole first.
    let quiet = ctx
        .secrets
        .get(&namespace, &name)
        .filter(|c| plan::is_untouched(token, &name, c.resource_version.as_deref()))
        .and_then(|c| c.record)
        .map(|record| plan::Observed::untouched(Arc::unwrap_or_clone(record)))
        .filter(|o| {
            plan::rotation_reason(token, o, &desired_hash, now).is_none()
                && o.record
                    .as_ref()
                    .is_some_and(|r| !r.has_revocations_due(now))
        });
    let read_whole = quiet.is_none();
    let mut live = None;
    let mut secret_version = None;
    let mut observed = match quiet {
        Some(observed) => {
            secret_version = token
                .status
                .as_ref()
                .and_then(|s| s.secret_resource_version.clone());
            observed
        }
        None => {
            live = secrets
                .get_opt(&name)
                .await
                .map_err(Error::kube("read Secret"))?;
            if let Some(s) = &live {
                if !secret::is_owned_by(s, token) {
                    return Err(Error::SecretConflict { name });
                }
                secret_version = s.resource_version();
            }
            plan::observe(live.as_ref(), &token.spec.secret.token_key)
        }
    };
    let mut reason = plan::rotation_reason(token, &observed, &desired_hash, now);
    // A renamed Secret: carry the token over from the old one instead of minting.
    let mut renamed_from = None;
    if observed.record.is_none()
        && let Some(old) = moved_secret(token, &secrets, &name).await?
    {
        let old_observed = plan::observe(Some(&old), &token.spec.secret.token_key);
        if old_observed.value.is_some() {
            observed = old_observed;
            reason = plan::rotation_reason(token, &observed, &desired_hash, now);
            renamed_from = old.metadata.name.clone();
        }
    }

    // Before a mint, tokens an earlier attempt may have left; otherwise the periodic check.
    let uncertain_create = status::is_minting(token);
    let unknown_mints =
        reason.is_some() && ctx.unknown_mints_possible(token, cleanup::has_finalizer(token));
    let verify = uncertain_create || unknown_mints || ctx.verification_due(&uid, now);
    let mut snapshot = None;
    if verify {
        // Fresh enough to contain the current token, and recent: shared by a fleet verifying
        // at once, yet never so old that an outside revocation goes unseen. After an uncertain
        // create, only a list taken now can show the token it may have left; what an earlier
        // process left shows in any list taken since this one started.
        let created = observed
            .record
            .as_ref()
            .map_or(0, |r| r.current.creation + 1);
        let recent = now - (ctx.settings.verify_interval.as_millis() as i64) / 4;
        let not_before = if uncertain_create {
            now
        } else if unknown_mints {
            created.max(ctx.started_at())
        } else {
            created.max(recent)
        };
        let snap = ctx
            .inventory
            .snapshot(&workspace, &owner, not_before)
            .await?;
        if reason.is_none()
            && let Some(record) = &observed.record
            && !snap
                .tokens
                .iter()
                .any(|t| t.token_id == record.current.token_id)
        {
            // Another identity's list does not show the token: a swapped credential is a change
            // of identity (the old token lives on and gets its grace period), not a revocation.
            reason = Some(
                if minted_by_another_identity(record, &workspace, &owner).await {
                    plan::RotationReason::SpecChanged
                } else {
                    plan::RotationReason::RevokedOutside
                },
            );
        }
        snapshot = Some(snap);
    }

    let mut record = observed.record.clone();
    let mut value = observed.value.clone();
    let mut rotated_at = None;
    let mut secret_written = false;
    if let Some(reason) = reason {
        let (new_record, new_value) =
            rotate(token, ctx, &workspace, &owner, &observed, reason, now).await?;
        let desired = secret::render(token, &layout(&name, &workspace), &new_record, &new_value);
        let written = match apply_secret(ctx, &secrets, &desired).await {
            Ok(version) => version,
            Err(e) => {
                // Nobody will ever see this token: take it back now (the sweep covers a failure
                // here).
                let _ = databricks::revoke(&workspace.client, &owner, &new_record.current.token_id)
                    .await;
                return Err(e);
            }
        };
        secret_written = true;
        secret_version = written;
        announce_rotation(token, ctx, reason, &new_record).await;
        rollout::restart_targets(token, ctx, now).await;
        record = Some(new_record);
        value = Some(new_value);
        rotated_at = Some(now);
    }
    let mut record = record.ok_or(Error::MissingField("token record"))?;

    if let Some(snap) = &snapshot {
        sweep_orphans(token, ctx, &workspace, &owner, &uid, &record, &snap.tokens).await;
        ctx.mark_verified(&uid, now);
    }

    let revoker = revocation::Revoker {
        ctx,
        namespace: &namespace,
        uid: &uid,
        current: workspace.clone(),
        owner: &owner,
    };
    let (revoked_any, revoke_error) = revoke_due(token, ctx, &revoker, &mut record, now).await;

    // Rewrite after a revocation, or when the Secret read whole differs from what it should be.
    if revoked_any || (read_whole && !secret_written) {
        let value = value.ok_or(Error::MissingField("token value"))?;
        let desired = secret::render(token, &layout(&name, &workspace), &record, &value);
        let drifted = live
            .as_ref()
            .is_none_or(|l| !secret::is_up_to_date(l, &desired));
        if revoked_any || drifted {
            secret_version = apply_secret(ctx, &secrets, &desired).await?;
        }
    }
    if let Some(e) = revoke_error {
        return Err(e);
    }
    if let Some(old) = renamed_from {
        secrets
            .delete(&old, &DeleteParams::default())
            .await
            .map_err(Error::kube("delete renamed Secret"))?;
    }

    Ok(Synced {
        record,
        secret_name: name,
        secret_version,
        rotated_at,
        next_verification: ctx.next_verification(&uid, now),
    })
}

/// The requeue delay after a successful sync.
pub fn next_wakeup(
    token: &DatabricksToken,
    synced: &Synced,
    now: EpochMillis,
    max: std::time::Duration,
) -> Action {
    let mut moments: Vec<EpochMillis> = synced
        .record
        .previous
        .iter()
        .map(|p| p.revoke_after)
        .collect();
    moments.extend(plan::renewal_of(token, &synced.record));
    moments.extend(synced.record.current.expiry);
    moments.push(synced.next_verification);
    Action::requeue(schedule::wait_until_earliest(
        now,
        moments,
        std::time::Duration::from_millis(500),
        max,
    ))
}

pub fn owner_of(token: &DatabricksToken) -> Owner {
    match &token.spec.on_behalf_of {
        Some(obo) => Owner::ServicePrincipal(obo.application_id.clone()),
        None => Owner::Caller,
    }
}

fn layout<'a>(name: &'a str, workspace: &'a ResolvedWorkspace) -> SecretLayout<'a> {
    SecretLayout {
        name,
        host: &workspace.host,
    }
}

/// Mint a replacement and build the record the Secret will hold.
async fn rotate(
    token: &DatabricksToken,
    ctx: &Context,
    workspace: &ResolvedWorkspace,
    owner: &Owner,
    observed: &plan::Observed,
    reason: plan::RotationReason,
    now: EpochMillis,
) -> Result<(TokenRecord, String), Error> {
    let uid = token.uid().unwrap_or_default();
    let request = CreateTokenRequest {
        lifetime_seconds: Some(
            std::time::Duration::from(token.spec.lifetime)
                .as_secs()
                .max(1),
        ),
        comment: Some(databricks::tagged_comment(
            token.spec.comment.as_deref(),
            &uid,
        )),
        scopes: token.spec.scopes.clone(),
    };
    let origin = TokenOrigin {
        workspace: workspace.key.clone(),
        host: workspace.host.clone(),
        application_id: match owner {
            Owner::ServicePrincipal(app) => Some(app.clone()),
            Owner::Caller => None,
        },
        // Who owns the token, so that it is revoked by that identity after a credential swap.
        identity: match owner {
            Owner::Caller => Some(
                workspace
                    .identity()
                    .await
                    .map_err(Error::databricks("read identity"))?,
            ),
            Owner::ServicePrincipal(_) => None,
        },
    };
    let sent_at = crate::now_millis();
    let created = databricks::mint(&workspace.client, owner, &request)
        .await
        .map_err(Error::databricks("create token"))?;
    let answered_at = crate::now_millis();
    ctx.metrics.mint();
    info!(token_id = %created.info.token_id, reason = reason.as_str(), "minted token");

    let grace = token
        .spec
        .rotation
        .as_ref()
        .and_then(|r| r.grace_period)
        .map(std::time::Duration::from)
        .unwrap_or(ctx.settings.default_grace_period);
    // Databricks' clock is not the cluster's: keep the times on the operator's clock.
    let local = schedule::on_local_clock(
        sent_at,
        answered_at,
        created.info.creation_time,
        created.info.expiry_time,
    );
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
    previous.retain(|p| p.token_id != created.info.token_id);
    let record = TokenRecord {
        current: CurrentToken {
            token_id: created.info.token_id.clone(),
            creation: local.creation,
            expiry: local.expiry,
            value_digest: secret::value_digest(created.value.expose()),
            origin: Some(origin),
        },
        previous,
        spec_hash: plan::spec_hash(&token.spec, &workspace.host),
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
    };
    Ok((record, created.value.expose().to_string()))
}

/// Replaced tokens still waiting: from the Secret, or from status when the Secret is gone.
fn carried_previous(
    token: &DatabricksToken,
    observed: &plan::Observed,
) -> Vec<PreviousTokenRecord> {
    if let Some(r) = &observed.record {
        return r.previous.clone();
    }
    token
        .status
        .iter()
        .flat_map(|s| s.previous_tokens.iter())
        .filter_map(|p| {
            Some(PreviousTokenRecord {
                token_id: p.token_id.clone(),
                revoke_after: secret::parse_time(&p.revoke_after)?,
                expiry: None,
                origin: None,
            })
        })
        .collect()
}

/// The token being replaced (id, expiry, origin): from the Secret, or from status when it is
/// gone (which records no origin).
fn old_current(
    token: &DatabricksToken,
    observed: &plan::Observed,
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
        s.expiry_time.as_deref().and_then(secret::parse_time),
        None,
    ))
}

/// Whether the current token belongs to an identity other than the one the workspace
/// credential authenticates as now (the credential was swapped). Unknown: no.
async fn minted_by_another_identity(
    record: &TokenRecord,
    workspace: &ResolvedWorkspace,
    owner: &Owner,
) -> bool {
    let Some(minted_by) = record
        .current
        .origin
        .as_ref()
        .filter(|o| o.application_id.is_none())
        .and_then(|o| o.identity.as_deref())
    else {
        return false;
    };
    *owner == Owner::Caller && workspace.identity().await.is_ok_and(|now| now != minted_by)
}

/// An owned Secret under the name status last recorded, when the spec now names another.
async fn moved_secret(
    token: &DatabricksToken,
    secrets: &Api<Secret>,
    name: &str,
) -> Result<Option<Secret>, Error> {
    let Some(old_name) = token.status.as_ref().and_then(|s| s.secret_name.clone()) else {
        return Ok(None);
    };
    if old_name == name {
        return Ok(None);
    }
    let old = secrets
        .get_opt(&old_name)
        .await
        .map_err(Error::kube("read previous Secret"))?;
    Ok(old.filter(|s| secret::is_owned_by(s, token)))
}

/// Server-side apply of the whole Secret; returns its new resourceVersion.
async fn apply_secret(
    ctx: &Context,
    secrets: &Api<Secret>,
    desired: &Secret,
) -> Result<Option<String>, Error> {
    let name = desired.metadata.name.clone().unwrap_or_default();
    let written = secrets
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await
        .map_err(Error::kube("write Secret"))?;
    ctx.own_writes.record(&written);
    Ok(written.resource_version())
}

async fn announce_rotation(
    token: &DatabricksToken,
    ctx: &Context,
    reason: plan::RotationReason,
    record: &TokenRecord,
) {
    let expiry = record
        .current
        .expiry
        .map(secret::format_time)
        .unwrap_or_else(|| "never".into());
    let (event_reason, note) = if reason == plan::RotationReason::Initial {
        (
            "Minted",
            format!(
                "Minted token {} (expires {expiry})",
                record.current.token_id
            ),
        )
    } else {
        ctx.metrics.rotation(reason.as_str());
        (
            "Rotated",
            format!(
                "Rotated to token {} (expires {expiry}); reason: {}",
                record.current.token_id,
                reason.as_str()
            ),
        )
    };
    events::publish(ctx, token, EventType::Normal, event_reason, "Mint", note).await;
}

/// Revoke tokens tagged for this resource that are neither current nor waiting out a grace period.
async fn sweep_orphans(
    token: &DatabricksToken,
    ctx: &Context,
    workspace: &ResolvedWorkspace,
    owner: &Owner,
    uid: &str,
    record: &TokenRecord,
    live: &[databricks_client::TokenInfo],
) {
    for orphan in live.iter().filter(|t| {
        databricks::is_tagged_for(t, uid)
            && t.token_id != record.current.token_id
            && !record.previous.iter().any(|p| p.token_id == t.token_id)
    }) {
        match databricks::revoke(&workspace.client, owner, &orphan.token_id).await {
            Ok(databricks::Revoked::AlreadyGone) => {}
            Ok(databricks::Revoked::Now) => {
                ctx.metrics.orphan_revoked();
                ctx.metrics.revocation("orphan");
                let note = format!(
                    "Revoked orphaned token {} left by an interrupted mint",
                    orphan.token_id
                );
                events::publish(
                    ctx,
                    token,
                    EventType::Normal,
                    "OrphanRevoked",
                    "Revoke",
                    note,
                )
                .await;
            }
            Err(e) => {
                warn!(token_id = %orphan.token_id, error = %e, "could not revoke orphaned token")
            }
        }
    }
}

/// Revoke replaced tokens whose grace period is over, where and by whom each was minted, and
/// only those carrying this resource's tag. Returns whether the record changed, and the first
/// failure (reported after the Secret records what did get revoked).
async fn revoke_due(
    token: &DatabricksToken,
    ctx: &Context,
    revoker: &revocation::Revoker<'_>,
    record: &mut TokenRecord,
    now: EpochMillis,
) -> (bool, Option<Error>) {
    let mut changed = false;
    let mut first_error = None;
    let mut kept = Vec::new();
    for p in std::mem::take(&mut record.previous) {
        if !p.is_due(now) {
            kept.push(p);
            continue;
        }
        // Any list taken after its revoke-after (it was minted before) shows it if alive.
        let outcome = revoker
            .revoke(&p.token_id, p.origin.as_ref(), p.revoke_after.min(now))
            .await;
        match outcome {
            Ok(revocation::Outcome::Revoked) => {
                changed = true;
                ctx.metrics.revocation("grace_period_over");
                let note = format!(
                    "Revoked previous token {} after its grace period",
                    p.token_id
                );
                events::publish(ctx, token, EventType::Normal, "Revoked", "Revoke", note).await;
            }
            Ok(revocation::Outcome::Gone) => {
                changed = true;
                info!(token_id = %p.token_id, "previous token already gone where it was minted");
            }
            Ok(revocation::Outcome::Foreign) => {
                changed = true;
                let note = format!(
                    "Did not revoke token {}: the Secret names it, but it does not carry this resource's tag",
                    p.token_id
                );
                events::publish(
                    ctx,
                    token,
                    EventType::Warning,
                    FOREIGN_TOKEN_IGNORED,
                    "Revoke",
                    note,
                )
                .await;
            }
            Ok(revocation::Outcome::Blocked(_)) if p.has_expired(now) => {
                changed = true;
                info!(token_id = %p.token_id, "previous token could not be revoked and has expired");
            }
            Ok(revocation::Outcome::Blocked(why)) => {
                first_error.get_or_insert(Error::RevocationBlocked {
                    token_id: p.token_id.clone(),
                    why,
                });
                kept.push(p);
            }
            Err(e) => {
                kept.push(p);
                first_error.get_or_insert(e);
            }
        }
    }
    record.previous = kept;
    (changed, first_error)
}

/// Event reason: a token id read from the Secret is not this resource's, so it was left alone.
pub const FOREIGN_TOKEN_IGNORED: &str = "ForeignTokenIgnored";
