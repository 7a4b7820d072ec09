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
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{controller::Action, events::EventType},
};
use tracing::{info, warn};

use super::{
    Context, Error, FIELD_MANAGER, backoff::Blocked, cleanup, events, own_writes::OwnWrites, plan,
    revocation, rollout, status,
};
use crate::crd::{DatabricksToken, TokenType};
use crate::databricks::{self, Owner};
use crate::schedule::{self, EpochMillis};
use crate::secret::{
    self, CurrentToken, PreviousTokenRecord, SecretLayout, TokenOrigin, TokenRecord,
};
use crate::workspace::{ResolvedWorkspace, WorkspaceKey, Workspaces};

pub use super::outcome::{Failed, Synced};

/// Bring the Secret and Databricks in line with the spec. Every call to Databricks passes the
/// workspace's shared backoff first; the outcome is reported back to it.
pub async fn sync(
    token: &DatabricksToken,
    ctx: &Context,
    now: EpochMillis,
) -> Result<Synced, Failed> {
    if token.spec.token_type == TokenType::OAuth {
        return super::oauth_token::sync(token, ctx, now).await;
    }
    let key = Workspaces::key_for(token);
    let mut gate = Gate {
        key: &key,
        entered: false,
    };
    let result = sync_inner(token, ctx, now, &mut gate).await;
    if gate.entered {
        match &result {
            Err(f) if f.error.is_workspace_failure() => {
                ctx.workspace_backoff.failed(
                    &key,
                    crate::now_millis(),
                    f.error.retry_after(),
                    &f.error.reason(),
                    &f.error.to_string(),
                );
            }
            _ => ctx.workspace_backoff.succeeded(&key),
        }
    }
    result
}

/// Passage to one workspace's API for one reconcile.
struct Gate<'a> {
    key: &'a WorkspaceKey,
    entered: bool,
}

impl Gate<'_> {
    /// Pass the workspace's backoff (once per reconcile).
    fn enter(&mut self, ctx: &Context, now: EpochMillis) -> Result<(), Blocked> {
        if !self.entered {
            ctx.workspace_backoff.enter(self.key, now)?;
            self.entered = true;
        }
        Ok(())
    }
}

async fn sync_inner(
    token: &DatabricksToken,
    ctx: &Context,
    now: EpochMillis,
    gate: &mut Gate<'_>,
) -> Result<Synced, Failed> {
    let uid = token.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let namespace = token
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let workspace = ctx
        .workspaces
        .for_minting(token)
        .await
        .map_err(Error::from)?;
    let owner = Owner::of(token);
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
                    return Err(conflict(name));
                }
                secret_version = s.resource_version();
            }
            plan::observe(live.as_ref(), &token.spec.secret.token_key)
        }
    };
    // Whether the Secret exists, so a write must find it as it was read (or absent).
    let mut secret_exists = !read_whole || live.is_some();
    let mut reason = plan::rotation_reason(token, &observed, &desired_hash, now);
    // A renamed Secret: carry the token over from the old one instead of minting, and delete the
    // old one once the new one holds the token (also when a crash came between the two).
    let recorded_name = token.status.as_ref().and_then(|s| s.secret_name.as_deref());
    let mut renamed_from = None;
    if let Some(old_name) = plan::renamed_from(recorded_name, &name)
        && let Some(old) = owned_secret(token, &secrets, old_name).await?
    {
        if observed.record.is_none() {
            let old_observed = plan::observe(Some(&old), &token.spec.secret.token_key);
            if old_observed.value.is_some() {
                observed = old_observed;
                reason = plan::rotation_reason(token, &observed, &desired_hash, now);
            }
        }
        renamed_from = Some(old_name.to_string());
    }

    // Someone keeps taking the token out of the Secret: replacements are budgeted.
    if let Some(r) = reason
        && plan::is_replacement(r)
    {
        let recent = ctx.replacements(&uid);
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

    // Before a mint, tokens an earlier attempt may have left; otherwise the periodic check.
    let uncertain_create = status::is_minting(token);
    let unknown_mints =
        reason.is_some() && ctx.unknown_mints_possible(token, cleanup::has_finalizer(token));
    let verify = uncertain_create || unknown_mints || ctx.verification_due(&uid, now);
    let revocations_due = observed
        .record
        .as_ref()
        .is_some_and(|r| r.has_revocations_due(now));
    let serves = |reason| Some(plan::secret_serves(reason));
    if verify || reason.is_some() || revocations_due {
        gate.enter(ctx, now).map_err(|b| Failed {
            error: Error::WorkspaceBackingOff {
                reason: b.reason,
                message: b.message,
                until: b.until,
            },
            secret_serves: serves(reason),
            partial: None,
        })?;
    }
    let mut snapshot = None;
    // A failed list does not hold up a rotation that is due: it is reported afterwards.
    let mut later_error = None;
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
        match ctx.inventory.snapshot(&workspace, &owner, not_before).await {
            Ok(snap) => {
                if reason.is_none()
                    && let Some(record) = &observed.record
                    && !snap
                        .tokens
                        .iter()
                        .any(|t| t.token_id == record.current.token_id)
                {
                    // Another identity's list does not show the token: a swapped credential is
                    // a change of identity (the old token lives on and gets its grace period),
                    // not a revocation.
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
            Err(e) => later_error = Some(e),
        }
    }

    let mut record = observed.record.clone();
    let mut value = observed.value.clone();
    let mut rotated_at = None;
    let mut secret_written = false;
    if let Some(reason) = reason {
        let failed = |error| Failed {
            error,
            secret_serves: serves(Some(reason)),
            partial: None,
        };
        let (new_record, new_value) =
            rotate(token, ctx, &workspace, &owner, &observed, reason, now)
                .await
                .map_err(failed)?;
        let desired = secret::render(token, &layout(&name, &workspace), &new_record, &new_value);
        let expected = plan::expected_secret(secret_exists, secret_version.as_deref());
        let written = match write_secret(
            token,
            &ctx.own_writes,
            &secrets,
            desired,
            expected,
            live.as_ref(),
        )
        .await
        {
            Ok(version) => version,
            Err(e) => {
                // Nobody will ever see this token: take it back now (the sweep covers a failure
                // here).
                let _ = databricks::revoke(&workspace.client, &owner, &new_record.current.token_id)
                    .await;
                return Err(match e {
                    WriteError::Taken => conflict(name),
                    WriteError::Kube(e) => failed(e),
                });
            }
        };
        secret_written = true;
        secret_exists = true;
        secret_version = written;
        if plan::is_replacement(reason) {
            ctx.record_replacement(&uid, now);
        }
        announce_rotation(token, ctx, reason, &new_record).await;
        rollout::restart_targets(token, ctx, now).await;
        record = Some(new_record);
        value = Some(new_value);
        rotated_at = Some(now);
    }
    let Some(mut record) = record else {
        return Err(Failed {
            error: later_error.unwrap_or(Error::MissingField("token record")),
            secret_serves: serves(reason),
            partial: None,
        });
    };

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
    if later_error.is_none() {
        later_error = revoke_error;
    }

    // Rewrite after a revocation, or when the Secret read whole differs from what it should be.
    if revoked_any || (read_whole && !secret_written) {
        let value = value.ok_or(Error::MissingField("token value"))?;
        let desired = secret::render(token, &layout(&name, &workspace), &record, &value);
        let drifted = live
            .as_ref()
            .is_none_or(|l| !secret::is_up_to_date(l, &desired));
        if revoked_any || drifted {
            let expected = plan::expected_secret(secret_exists, secret_version.as_deref());
            // What was read is stale once this sync wrote the Secret.
            let read = live.as_ref().filter(|_| !secret_written);
            match write_secret(token, &ctx.own_writes, &secrets, desired, expected, read).await {
                Ok(version) => secret_version = version,
                Err(WriteError::Taken) => return Err(conflict(name)),
                Err(WriteError::Kube(e)) => {
                    later_error.get_or_insert(e);
                }
            }
        }
    }
    if later_error.is_none()
        && let Some(old) = renamed_from
    {
        match secrets.delete(&old, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => later_error = Some(Error::kube("delete renamed Secret")(e)),
        }
    }

    let synced = Synced {
        record,
        secret_name: name,
        secret_version,
        rotated_at,
        next_verification: ctx.next_verification(&uid, now),
    };
    match later_error {
        None => Ok(synced),
        Some(error) => Err(Failed {
            error,
            secret_serves: Some(true),
            partial: Some(synced),
        }),
    }
}

fn conflict(name: String) -> Failed {
    Failed {
        error: Error::SecretConflict { name },
        secret_serves: Some(false),
        partial: None,
    }
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
        lifetime_seconds: token
            .spec
            .lifetime
            .map(|l| std::time::Duration::from(l).as_secs().max(1)),
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

/// The Secret `name`, if this resource owns it.
async fn owned_secret(
    token: &DatabricksToken,
    secrets: &Api<Secret>,
    name: &str,
) -> Result<Option<Secret>, Error> {
    let old = secrets
        .get_opt(name)
        .await
        .map_err(Error::kube("read previous Secret"))?;
    Ok(old.filter(|s| secret::is_owned_by(s, token)))
}

/// Why a Secret write did not happen.
pub(super) enum WriteError {
    /// The Secret was created or replaced by someone else since it was read.
    Taken,
    Kube(Error),
}

/// Write the whole Secret, only if it is still as it was read: created when it was absent
/// (never over a Secret someone created meanwhile), applied at the version read otherwise.
/// Returns its new resourceVersion.
pub(super) async fn write_secret(
    token: &DatabricksToken,
    own_writes: &OwnWrites,
    secrets: &Api<Secret>,
    mut desired: Secret,
    expected: plan::ExpectedSecret,
    live: Option<&Secret>,
) -> Result<Option<String>, WriteError> {
    let name = desired.metadata.name.clone().unwrap_or_default();
    let result = match expected {
        plan::ExpectedSecret::Absent => {
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PostParams::default()
            };
            secrets.create(&params, &desired).await
        }
        plan::ExpectedSecret::AtVersion(mut version) => {
            if let Some(live) = live
                && let Some(managed) = plan::adopt_created_fields(live, &desired, FIELD_MANAGER)
            {
                version = adopt_fields(secrets, &name, managed, version)
                    .await
                    .map_err(WriteError::Kube)?;
            }
            desired.metadata.resource_version = version;
            secrets
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&desired),
                )
                .await
        }
    };
    match result {
        Ok(written) => {
            own_writes.record(&written);
            Ok(written.resource_version())
        }
        // Created by someone else meanwhile, or changed since it was read: whose it is now,
        // the next reconcile reads again (a Secret of someone else is never written).
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let foreign = secrets
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .is_some_and(|live| !secret::is_owned_by(&live, token));
            if foreign {
                Err(WriteError::Taken)
            } else {
                Err(WriteError::Kube(Error::kube("write Secret")(
                    kube::Error::Api(s),
                )))
            }
        }
        Err(e) => Err(WriteError::Kube(Error::kube("write Secret")(e))),
    }
}

/// Hand the fields the operator's create recorded to its server-side apply (see
/// `plan::adopt_created_fields`), at the version read. Returns the new version.
async fn adopt_fields(
    secrets: &Api<Secret>,
    name: &str,
    managed: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry>,
    version: Option<String>,
) -> Result<Option<String>, Error> {
    let patch = serde_json::json!({
        "metadata": {"managedFields": managed, "resourceVersion": version}
    });
    let patched = secrets
        .patch(
            name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .map_err(Error::kube("adopt Secret fields"))?;
    Ok(patched.resource_version())
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

#[cfg(test)]
mod tests {
    //! The Secret writes of one reconcile against a scripted API server: the exact requests.

    use std::{
        collections::VecDeque,
        sync::{Arc, Mutex},
    };

    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;

    use super::*;
    use crate::crd::DatabricksTokenSpec;

    /// One expected request (method, path) and the answer to give.
    type Step = (&'static str, &'static str, u16, serde_json::Value);

    /// The requests seen: method, path and query, body.
    type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

    fn api_server(script: Vec<Step>) -> (kube::Client, Seen) {
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let script = script.clone();
            let log = log.clone();
            async move {
                let method = req.method().to_string();
                let uri = req.uri().to_string();
                let body = req.into_body().collect_bytes().await.unwrap_or_default();
                log.lock().unwrap().push((
                    method.clone(),
                    uri.clone(),
                    String::from_utf8_lossy(&body).into(),
                ));
                let (want_method, want_path, status, answer) = script
                    .lock()
                    .unwrap()
                    .pop_front()
                    .expect("an unexpected request");
                assert_eq!(method, want_method, "{uri}");
                assert!(uri.starts_with(want_path), "{uri} is not {want_path}");
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        (kube::Client::new(service, "ns"), seen)
    }

    fn token() -> DatabricksToken {
        let spec: DatabricksTokenSpec =
            serde_yaml::from_str("workspaceRef: {name: ws}\nlifetime: 1h\n").unwrap();
        let mut t = DatabricksToken::new("t", spec);
        t.metadata.namespace = Some("ns".into());
        t.metadata.uid = Some("uid-1".into());
        t
    }

    fn desired(t: &DatabricksToken) -> Secret {
        let record = TokenRecord {
            current: CurrentToken {
                token_id: "id".into(),
                creation: 0,
                expiry: None,
                value_digest: secret::value_digest("v"),
                origin: None,
            },
            previous: vec![],
            spec_hash: "h".into(),
            rotate_request_handled: None,
        };
        secret::render(
            t,
            &SecretLayout {
                name: "t",
                host: "https://h",
            },
            &record,
            "v",
        )
    }

    fn as_json(s: &Secret, version: &str) -> serde_json::Value {
        let mut v = serde_json::to_value(s).unwrap();
        v["apiVersion"] = json!("v1");
        v["kind"] = json!("Secret");
        v["metadata"]["resourceVersion"] = json!(version);
        v
    }

    fn foreign() -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t", "namespace": "ns", "resourceVersion": "9"}, "data": {"token": "dXNlcg=="}})
    }

    fn conflict(reason: &str) -> serde_json::Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": 409, "message": "conflict"})
    }

    const SECRETS: &str = "/api/v1/namespaces/ns/secrets";

    #[tokio::test]
    async fn an_absent_secret_is_created_never_applied() {
        let t = token();
        let want = desired(&t);
        let (client, seen) = api_server(vec![("POST", SECRETS, 201, as_json(&want, "5"))]);
        let secrets: Api<Secret> = Api::namespaced(client, "ns");
        let written = write_secret(
            &t,
            &OwnWrites::default(),
            &secrets,
            want,
            plan::ExpectedSecret::Absent,
            None,
        )
        .await;
        assert!(matches!(written, Ok(Some(ref v)) if v == "5"));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(
            seen[0].1.contains("fieldManager=databricks-token-operator"),
            "{}",
            seen[0].1
        );
    }

    #[tokio::test]
    async fn an_existing_secret_is_applied_at_the_version_read() {
        let t = token();
        let want = desired(&t);
        let (client, seen) = api_server(vec![(
            "PATCH",
            "/api/v1/namespaces/ns/secrets/t",
            200,
            as_json(&want, "8"),
        )]);
        let secrets: Api<Secret> = Api::namespaced(client, "ns");
        let written = write_secret(
            &t,
            &OwnWrites::default(),
            &secrets,
            want,
            plan::ExpectedSecret::AtVersion(Some("7".into())),
            None,
        )
        .await;
        assert!(matches!(written, Ok(Some(ref v)) if v == "8"));
        let body: serde_json::Value = serde_json::from_str(&seen.lock().unwrap()[0].2).unwrap();
        assert_eq!(body["metadata"]["resourceVersion"], json!("7"));
    }

    #[tokio::test]
    async fn a_secret_created_meanwhile_by_someone_else_is_left_alone() {
        let t = token();
        let (client, seen) = api_server(vec![
            ("POST", SECRETS, 409, conflict("AlreadyExists")),
            ("GET", "/api/v1/namespaces/ns/secrets/t", 200, foreign()),
        ]);
        let secrets: Api<Secret> = Api::namespaced(client, "ns");
        let written = write_secret(
            &t,
            &OwnWrites::default(),
            &secrets,
            desired(&t),
            plan::ExpectedSecret::Absent,
            None,
        )
        .await;
        assert!(matches!(written, Err(WriteError::Taken)));
        assert_eq!(seen.lock().unwrap().len(), 2, "no write after the conflict");
    }

    #[tokio::test]
    async fn a_secret_changed_meanwhile_but_still_owned_is_a_plain_conflict() {
        let t = token();
        let want = desired(&t);
        let (client, _) = api_server(vec![
            (
                "PATCH",
                "/api/v1/namespaces/ns/secrets/t",
                409,
                conflict("Conflict"),
            ),
            (
                "GET",
                "/api/v1/namespaces/ns/secrets/t",
                200,
                as_json(&want, "9"),
            ),
        ]);
        let secrets: Api<Secret> = Api::namespaced(client, "ns");
        let written = write_secret(
            &t,
            &OwnWrites::default(),
            &secrets,
            want,
            plan::ExpectedSecret::AtVersion(Some("7".into())),
            None,
        )
        .await;
        assert!(matches!(written, Err(WriteError::Kube(ref e)) if e.is_conflict()));
    }
}
