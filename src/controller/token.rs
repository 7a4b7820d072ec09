//! Reconciling one `DatabricksToken`: mint, rotate, revoke replaced tokens after their grace
//! period, sweep orphans, and mirror the Secret's record into status.
//!
//! Order matters for the invariants: a new token is written to the Secret before the old one is
//! ever revoked. A token minted but never written (a crash, an uncertain create) carries the
//! resource's tag, and the token list read before the next mint finds and revokes it.

use databricks_client::CreateTokenRequest;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::events::EventType,
};
use tracing::{info, warn};

use super::context::{Context, FIELD_MANAGER};
use super::error::Error;
use super::{
    backoff::Blocked, events, finalizer, own_writes::OwnWrites, plan, revocation, rollout, status,
    sweep,
};
use crate::crd::{DatabricksToken, event_actions, event_reasons};
use crate::databricks::{self, Owner};
use crate::schedule::{self, EpochMillis};
use crate::secret::{self, SecretLayout, TokenOrigin, TokenRecord};
use crate::workspace::{ResolvedWorkspace, WorkspaceKey, Workspaces};

pub use super::outcome::{Failed, Synced};

/// Bring the Secret and Databricks in line with the spec. Every call to Databricks passes the
/// workspace's shared backoff first; the outcome is reported back to it.
/// `pending`: the places this resource may have left a token it does not record
/// (`status.pendingSweeps`), updated with what this sync swept and added.
pub async fn sync(
    token: &DatabricksToken,
    ctx: &Context,
    now: EpochMillis,
    pending: &mut Vec<TokenOrigin>,
) -> Result<Synced, Failed> {
    let key = Workspaces::key_for(token);
    let mut gate = Gate {
        key: &key,
        entered: false,
    };
    let result = sync_inner(token, ctx, now, &mut gate, pending).await;
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
    pending: &mut Vec<TokenOrigin>,
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

    // Gather what `plan::decide` asks for until it has a plan.
    let cached = ctx.secrets.get(&namespace, &name);
    let recent_replacements = ctx.replacements.recent(&uid);
    let mut inputs = plan::Inputs {
        token,
        now,
        secret_name: &name,
        desired_hash: &desired_hash,
        cached: cached.as_ref().map(|c| plan::Cached {
            version: c.resource_version.as_deref(),
            record: c.record.as_deref(),
        }),
        live: plan::Gathered::NotYet,
        renamed: plan::Gathered::NotYet,
        recent_replacements: &recent_replacements,
        finalizer_was_set: finalizer::is_set(token),
        uncertain_create: status::is_minting(token),
        last_check: ctx.verifications.last(&uid),
        verify_interval: ctx.settings.verify_interval.as_millis() as EpochMillis,
        started_at: ctx.started_at,
    };
    let mut live: Option<Secret> = None;
    let plan = loop {
        match plan::decide(&inputs) {
            plan::Step::ReadSecret => {
                live = secrets
                    .get_opt(&name)
                    .await
                    .map_err(Error::kube("read Secret"))?;
                inputs.live = plan::Gathered::Got(live.as_ref().map(|s| plan::Live {
                    observed: plan::observe(Some(s), &token.spec.secret.token_key),
                    owned: secret::is_owned_by(s, token),
                }));
            }
            plan::Step::ReadRenamed(old) => {
                let old = owned_secret(token, &secrets, &old).await?;
                inputs.renamed = plan::Gathered::Got(
                    old.map(|s| plan::observe(Some(&s), &token.spec.secret.token_key)),
                );
            }
            plan::Step::SecretTaken => return Err(conflict(name)),
            plan::Step::ReplacementsExhausted { count, until } => {
                return Err(Failed {
                    error: Error::ReplacementsExhausted {
                        name,
                        changed_by: live
                            .as_ref()
                            .and_then(|l| plan::who_changed(l, FIELD_MANAGER)),
                        count,
                        until,
                    },
                    secret_serves: Some(false),
                    partial: None,
                });
            }
            plan::Step::Act(plan) => break *plan,
        }
    };
    if plan.first_sight {
        ctx.verifications.first_sight(&uid, now);
    }
    if sweep::first_create_in_doubt(
        inputs.finalizer_was_set,
        plan.observed.record.is_some(),
        token.metadata.generation,
        token.status.as_ref().and_then(|s| s.observed_generation),
    ) {
        for (key, host) in ctx.workspaces.usable_by(&namespace) {
            let place = sweep::any_owner_at(key, host);
            *pending = sweep::with_place(std::mem::take(pending), place);
        }
    }
    let secret_serves = Some(plan.secret_serves);
    // Whether the Secret exists, so a write must find it as it was read (or absent).
    let mut secret_exists = !plan.read_whole || live.is_some();
    let mut secret_version = if plan.read_whole {
        live.as_ref().and_then(|s| s.resource_version())
    } else {
        token
            .status
            .as_ref()
            .and_then(|s| s.secret_resource_version.clone())
    };
    if plan.calls_workspace {
        gate.enter(ctx, now).map_err(|b| Failed {
            error: Error::WorkspaceBackingOff {
                reason: b.reason,
                message: b.message,
                until: b.until,
            },
            secret_serves,
            partial: None,
        })?;
    }
    let mut reason = plan.reason;
    let mut snapshot = None;
    // A failed list does not hold up a rotation that is due: it is reported afterwards.
    let mut later_error = None;
    if let Some(not_before) = plan.list_not_before {
        match ctx.inventory.snapshot(&workspace, &owner, not_before).await {
            Ok(snap) => {
                let record = plan.observed.record.as_ref();
                if plan::missing_from_list(reason, record, &snap.tokens) {
                    let minted_by_another =
                        match record.and_then(|r| plan::identity_to_compare(r, &owner)) {
                            Some(minted_by) => {
                                workspace.identity().await.is_ok_and(|now| now != minted_by)
                            }
                            None => false,
                        };
                    reason = Some(plan::reason_when_missing(minted_by_another));
                }
                snapshot = Some(snap);
            }
            Err(e) => later_error = Some(e),
        }
    }
    let secret_serves = reason.map_or(secret_serves, |r| Some(plan::secret_serves(Some(r))));

    let mut record = plan.observed.record.clone();
    let mut value = plan.observed.value.clone();
    let mut rotated_at = None;
    if let Some(reason) = reason {
        let failed = |error| Failed {
            error,
            secret_serves,
            partial: None,
        };
        let origin = origin_at(&workspace, &owner).await.map_err(failed)?;
        let places =
            sweep::to_record_before_create(plan.observed.record.as_ref(), &origin, pending);
        if !places.is_empty() {
            // Durable before the create: a process that dies in it leaves a token only where
            // status says to look.
            pending.extend(places);
            status::record_pending_sweeps(token, ctx, pending)
                .await
                .map_err(failed)?;
        }
        let rotated = rotate(
            token,
            ctx,
            &workspace,
            &owner,
            origin.clone(),
            &plan.observed,
            reason,
            &desired_hash,
            now,
        )
        .await;
        let (new_record, new_value) = match rotated {
            Ok(rotated) => rotated,
            Err(e) => {
                if e.mint_uncertain() {
                    *pending = sweep::with_place(std::mem::take(pending), origin);
                }
                return Err(failed(e));
            }
        };
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
                // Nobody will ever see this token: take it back now, or have its place swept
                // should that fail too.
                let revoked =
                    databricks::revoke(&workspace.client, &owner, &new_record.current.token_id)
                        .await;
                if let (Err(_), Some(origin)) = (revoked, new_record.current.origin.clone()) {
                    *pending = sweep::with_place(std::mem::take(pending), origin);
                }
                return Err(match e {
                    WriteError::Taken => conflict(name),
                    WriteError::Kube(e) => failed(e),
                });
            }
        };
        secret_exists = true;
        secret_version = written;
        if plan::is_replacement(reason) {
            ctx.replacements.record(&uid, now);
        }
        announce_rotation(token, ctx, reason, &new_record, &PAT_WORDING).await;
        rollout::restart_targets(token, ctx, now).await;
        record = Some(new_record);
        value = Some(new_value);
        rotated_at = Some(now);
    }
    let Some(mut record) = record else {
        return Err(Failed {
            error: later_error.unwrap_or(Error::MissingField("token record")),
            secret_serves,
            partial: None,
        });
    };

    if let Some(snap) = &snapshot {
        sweep_orphans(token, ctx, &workspace, &owner, &uid, &record, &snap.tokens).await;
        ctx.verifications.mark_verified(&uid, now);
    }
    if !pending.is_empty() {
        // The place just listed was swept above, if the list is newer than every pending place
        // (they were all added before this sync began).
        let listed = snapshot
            .as_ref()
            .filter(|s| s.taken_at >= now)
            .and(record.current.origin.as_ref());
        *pending =
            sweep::sweep_pending(ctx, token, std::mem::take(pending), Some(&record), listed).await;
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

    let rewrite = plan::rewrite(revoked_any, plan.read_whole, rotated_at.is_some());
    if rewrite != plan::Rewrite::No {
        let value = value.ok_or(Error::MissingField("token value"))?;
        let desired = secret::render(token, &layout(&name, &workspace), &record, &value);
        let drifted = live
            .as_ref()
            .is_none_or(|l| !secret::is_up_to_date(l, &desired));
        if rewrite == plan::Rewrite::Yes || drifted {
            let expected = plan::expected_secret(secret_exists, secret_version.as_deref());
            // What was read is stale once this sync wrote the Secret.
            let read = live.as_ref().filter(|_| rotated_at.is_none());
            match write_secret(token, &ctx.own_writes, &secrets, desired, expected, read).await {
                Ok(version) => secret_version = version,
                Err(WriteError::Taken) => return Err(conflict(name)),
                Err(WriteError::Kube(e)) => {
                    later_error.get_or_insert(e);
                }
            }
        }
    }
    if let Some(old) = plan::delete_renamed(plan.renamed_from.as_deref(), later_error.is_some()) {
        match secrets.delete(old, &DeleteParams::default()).await {
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
        next_verification: ctx.verifications.next(&uid, now),
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

fn layout<'a>(name: &'a str, workspace: &'a ResolvedWorkspace) -> SecretLayout<'a> {
    SecretLayout {
        name,
        host: &workspace.host,
    }
}

/// Where a create at `workspace` for `owner` mints, and who owns the token.
async fn origin_at(workspace: &ResolvedWorkspace, owner: &Owner) -> Result<TokenOrigin, Error> {
    Ok(TokenOrigin {
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
    })
}

/// Mint a replacement and build the record the Secret will hold.
#[allow(clippy::too_many_arguments)]
async fn rotate(
    token: &DatabricksToken,
    ctx: &Context,
    workspace: &ResolvedWorkspace,
    owner: &Owner,
    origin: TokenOrigin,
    observed: &plan::Observed,
    reason: plan::RotationReason,
    desired_hash: &str,
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
    let sent_at = crate::now_millis();
    let created = databricks::mint(&workspace.client, owner, &request)
        .await
        .map_err(Error::databricks("create token"))?;
    let answered_at = crate::now_millis();
    ctx.metrics.mint();
    info!(token_id = %created.info.token_id, reason = reason.as_str(), "minted token");

    let minted = plan::Minted {
        token_id: created.info.token_id.clone(),
        value_digest: secret::value_digest(created.value.expose()),
        // Databricks' clock is not the cluster's: keep the times on the operator's clock.
        times: schedule::on_local_clock(
            sent_at,
            answered_at,
            created.info.creation_time,
            created.info.expiry_time,
        ),
        origin,
    };
    let grace = plan::grace_period(token, ctx.settings.default_grace_period);
    let record = plan::new_record(token, observed, reason, minted, grace, desired_hash, now);
    Ok((record, created.value.expose().to_string()))
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

/// How the events of one token type name a new token: the first one, and its replacements.
pub(super) struct Wording {
    pub first_reason: &'static str,
    pub first: &'static str,
    pub next_reason: &'static str,
    pub next: &'static str,
}

const PAT_WORDING: Wording = Wording {
    first_reason: event_reasons::MINTED,
    first: "Minted token",
    next_reason: event_reasons::ROTATED,
    next: "Rotated to token",
};

/// The event for a new token (and the rotation metric when it replaced one).
pub(super) async fn announce_rotation(
    token: &DatabricksToken,
    ctx: &Context,
    reason: plan::RotationReason,
    record: &TokenRecord,
    wording: &Wording,
) {
    let expiry = record
        .current
        .expiry
        .map(secret::format_time)
        .unwrap_or_else(|| "never".into());
    let id = &record.current.token_id;
    let (event_reason, note) = if reason == plan::RotationReason::Initial {
        (
            wording.first_reason,
            format!("{} {id} (expires {expiry})", wording.first),
        )
    } else {
        ctx.metrics.rotation(reason.as_str());
        (
            wording.next_reason,
            format!(
                "{} {id} (expires {expiry}); reason: {}",
                wording.next,
                reason.as_str()
            ),
        )
    };
    events::publish(
        ctx,
        token,
        EventType::Normal,
        event_reason,
        event_actions::MINT,
        note,
    )
    .await;
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
    for orphan in plan::orphans(uid, record, live) {
        match databricks::revoke(&workspace.client, owner, &orphan.token_id).await {
            Ok(databricks::Revoked::AlreadyGone) => {}
            Ok(databricks::Revoked::Now) => {
                sweep::announce_orphan_revoked(ctx, token, &orphan.token_id, None).await;
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
        let outcome = match revoker
            .revoke(&p.token_id, p.origin.as_ref(), p.revoke_after.min(now))
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                kept.push(p);
                first_error.get_or_insert(e);
                continue;
            }
        };
        if !plan::forget_after(&outcome, p.has_expired(now)) {
            if let revocation::Outcome::Blocked(why) = outcome {
                first_error.get_or_insert(Error::RevocationBlocked {
                    token_id: p.token_id.clone(),
                    why,
                });
            }
            kept.push(p);
            continue;
        }
        changed = true;
        match outcome {
            revocation::Outcome::Revoked => {
                ctx.metrics.revocation("grace_period_over");
                let note = format!(
                    "Revoked previous token {} after its grace period",
                    p.token_id
                );
                events::publish(
                    ctx,
                    token,
                    EventType::Normal,
                    event_reasons::REVOKED,
                    event_actions::REVOKE,
                    note,
                )
                .await;
            }
            revocation::Outcome::Gone => {
                info!(token_id = %p.token_id, "previous token already gone where it was minted");
            }
            revocation::Outcome::Foreign => {
                let note = format!(
                    "Did not revoke token {}: the Secret names it, but it does not carry this resource's tag",
                    p.token_id
                );
                events::publish(
                    ctx,
                    token,
                    EventType::Warning,
                    event_reasons::FOREIGN_TOKEN_IGNORED,
                    event_actions::REVOKE,
                    note,
                )
                .await;
            }
            revocation::Outcome::Blocked(_) => {
                info!(token_id = %p.token_id, "previous token could not be revoked and has expired");
            }
        }
    }
    record.previous = kept;
    (changed, first_error)
}

#[cfg(test)]
mod tests {
    //! The Secret writes of one reconcile against a scripted API server: the exact requests.

    use std::{
        collections::VecDeque,
        sync::{Arc, Mutex},
    };

    use http::Request;
    use kube::client::Body;
    use serde_json::json;

    use super::*;
    use crate::controller::fixtures;
    use crate::crd::DatabricksTokenSpec;
    use crate::secret::CurrentToken;

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
                Ok::<_, std::convert::Infallible>(fixtures::json_response(status, &answer))
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
