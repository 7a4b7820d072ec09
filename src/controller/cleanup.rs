//! Deletion of a `DatabricksToken`, behind the `dbtoken.dev/revoke-tokens` finalizer:
//! `Revoke` revokes every token of the resource and deletes the Secret; `Retain` leaves both
//! (a Retain Secret has no ownerReference for garbage collection to follow; one written by an
//! older version is detached here).
//!
//! The workspace and its credential Secret outlive this finalizer (`protection`), so revocation
//! works whatever was deleted first: the whole namespace, or the workspace before its tokens.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
    runtime::{controller::Action, events::EventType},
};

use super::context::Context;
use super::error::Error;
use super::{events, finalizer, plan, revocation, sweep};
use crate::crd::{DatabricksToken, DeletionPolicy, TokenType, event_actions, event_reasons};
use crate::databricks;
use crate::schedule::EpochMillis;
use crate::secret::{self, TokenOrigin};
use crate::workspace::WorkspaceError;
use tracing::warn;

pub async fn finalize(token: &DatabricksToken, ctx: &Context) -> Result<Action, Error> {
    if !finalizer::is_set(token) {
        return Ok(Action::await_change());
    }
    let ns = token.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.kube.clone(), &ns);
    let name = secret::secret_name(token);
    let live = secrets
        .get_opt(&name)
        .await
        .map_err(Error::kube("read Secret"))?;
    let owned = live.filter(|s| secret::is_owned_by(s, token));

    match token.spec.deletion_policy {
        DeletionPolicy::Revoke => {
            if token.spec.token_type == TokenType::OAuth {
                oauth_nothing_to_revoke(token, ctx).await;
            } else {
                let recorded = owned
                    .as_ref()
                    .is_some_and(|s| secret::read_record(&s.metadata).is_some());
                sweep_left_places(token, ctx, recorded).await?;
                revoke_all(token, ctx, owned.as_ref()).await?;
            }
            if owned.is_some() {
                match secrets.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(e) => return Err(Error::kube("delete Secret")(e)),
                }
            }
        }
        DeletionPolicy::Retain => {
            if owned.is_some() {
                let patch = serde_json::json!({"metadata": {"ownerReferences": null}});
                secrets
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::kube("detach Secret"))?;
            }
            let note = format!("Retained Secret {name} and its tokens (deletionPolicy: Retain)");
            events::publish(
                ctx,
                token,
                EventType::Normal,
                event_reasons::RETAINED,
                event_actions::DELETE,
                note,
            )
            .await;
        }
    }
    let remaining: Vec<String> = token
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer::FINALIZER)
        .cloned()
        .collect();
    finalizer::set(token, ctx, remaining).await?;
    ctx.forget(token);
    Ok(Action::await_change())
}

/// An OAuth access token cannot be revoked: deleting the Secret is all there is to do, and the
/// token dies at its expiry (within the hour).
async fn oauth_nothing_to_revoke(token: &DatabricksToken, ctx: &Context) {
    let expiry = token
        .status
        .as_ref()
        .and_then(|s| s.expiry_time)
        .map_or_else(|| "unknown".to_string(), |t| t.to_string());
    let note = format!(
        "Deleted the Secret; an OAuth access token cannot be revoked and expires by itself (current: {expiry})"
    );
    events::publish(
        ctx,
        token,
        EventType::Normal,
        event_reasons::NOTHING_TO_REVOKE,
        event_actions::DELETE,
        note,
    )
    .await;
}

/// Revoke what this resource may have left where it no longer looks (`status.pendingSweeps`,
/// and every workspace of the namespace when its first create is in doubt). A place nothing can
/// reach any more (its workspace deleted) does not hold the deletion: its tokens expire by
/// themselves.
async fn sweep_left_places(
    token: &DatabricksToken,
    ctx: &Context,
    recorded: bool,
) -> Result<(), Error> {
    let mut places = token
        .status
        .as_ref()
        .map(|s| s.pending_sweeps.clone())
        .unwrap_or_default();
    if sweep::first_create_in_doubt(
        true,
        recorded,
        token.metadata.generation,
        token.status.as_ref().and_then(|s| s.observed_generation),
    ) {
        for (key, host) in ctx
            .workspaces
            .usable_by(&token.namespace().unwrap_or_default())
        {
            places = sweep::with_place(places, sweep::any_owner_at(key, host));
        }
    }
    for place in &places {
        match sweep::sweep(ctx, token, place, None).await? {
            sweep::Swept::Done { revoked } => {
                for _ in &revoked {
                    ctx.metrics.revocation("deleted");
                }
            }
            sweep::Swept::Blocked(why) | sweep::Swept::Unreachable(why) => {
                warn!(workspace = %place.workspace, host = %place.host, why = %why, "cannot sweep a place this resource may have left a token")
            }
        }
    }
    Ok(())
}

/// Revoke the current token, every previous one, and anything else tagged for this resource.
async fn revoke_all(
    token: &DatabricksToken,
    ctx: &Context,
    secret: Option<&Secret>,
) -> Result<(), Error> {
    // The workspace is still there: its finalizer waits for this one. A namespace a cluster
    // workspace no longer admits still revokes through it what it minted while admitted.
    let (workspace, admitted) = match ctx.workspaces.for_revocation(token).await {
        Ok(found) => found,
        // Only a workspace deleted before it had the operator's finalizer is gone: there is
        // nothing to call, and blocking deletion forever would help nobody. The tokens die at
        // their expiry; the event says so.
        Err(e @ WorkspaceError::NotFound(_)) => {
            let expiry = token
                .status
                .as_ref()
                .and_then(|s| s.expiry_time)
                .map_or_else(|| "unknown".into(), |t| t.to_string());
            let note = format!(
                "Could not revoke tokens: {e}; they expire by themselves (current: {expiry})"
            );
            events::publish(
                ctx,
                token,
                EventType::Warning,
                event_reasons::REVOKE_SKIPPED,
                event_actions::DELETE,
                note,
            )
            .await;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let owner = databricks::Owner::of(token);
    let uid = token.uid().unwrap_or_default();
    let namespace = token.namespace().unwrap_or_default();
    // Each id with where it was minted and when it expires, as far as the Secret recorded them
    // (status records neither). Not admitted any more: only what the token list shows tagged
    // for this resource, so that ids written into a Secret or status cannot aim the shared
    // workspace's credentials at tokens this namespace never minted.
    type Known = (Option<TokenOrigin>, Option<EpochMillis>);
    let mut ids: BTreeMap<String, Known> = BTreeMap::new();
    if admitted {
        if let Some(status) = &token.status {
            ids.extend(status.token_id.clone().map(|id| (id, (None, None))));
            ids.extend(
                status
                    .previous_tokens
                    .iter()
                    .map(|p| (p.token_id.clone(), (None, None))),
            );
        }
        if let Some(record) = secret.and_then(|s| secret::read_record(&s.metadata)) {
            ids.insert(
                record.current.token_id,
                (record.current.origin, record.current.expiry),
            );
            ids.extend(
                record
                    .previous
                    .into_iter()
                    .map(|p| (p.token_id, (p.origin, p.expiry))),
            );
        }
    }
    // Never aim a revocation at an access token's id (it names no Databricks token).
    ids.retain(|id, _| !super::oauth_token::is_access_token_id(id));
    let now = crate::now_millis();
    let snapshot = ctx.inventory.snapshot(&workspace, &owner, now).await?;
    for t in snapshot
        .tokens
        .iter()
        .filter(|t| databricks::is_tagged_for(t, &uid))
    {
        ids.entry(t.token_id.clone()).or_insert((None, None));
    }

    let revoker = revocation::Revoker {
        ctx,
        namespace: &namespace,
        uid: &uid,
        current: workspace.clone(),
        owner: &owner,
    };
    let mut revoked = 0;
    for (id, (origin, expiry)) in &ids {
        // Token ids from the Secret are revoked only where a lookup shows this resource's tag.
        let outcome = revoker.revoke(id, origin.as_ref(), now).await?;
        // Expired: it cannot authenticate, so nothing is left to hold the deletion for.
        if !plan::forget_after(&outcome, expiry.is_some_and(|e| e <= now)) {
            if let revocation::Outcome::Blocked(why) = outcome {
                return Err(Error::RevocationBlocked {
                    token_id: id.clone(),
                    why,
                });
            }
        } else if outcome == revocation::Outcome::Revoked {
            revoked += 1;
            ctx.metrics.revocation("deleted");
        }
    }
    // Count only what this call revoked: a token already gone was not revoked here.
    let gone = ids.len() - revoked;
    let (reason, note) = if revoked > 0 {
        (
            event_reasons::REVOKED,
            format!(
                "Revoked {revoked} token(s) of this resource, {gone} already gone (deletionPolicy: Revoke)"
            ),
        )
    } else {
        (
            event_reasons::NOTHING_TO_REVOKE,
            format!(
                "No live token of this resource to revoke, {gone} already gone (deletionPolicy: Revoke)"
            ),
        )
    };
    events::publish(
        ctx,
        token,
        EventType::Normal,
        reason,
        event_actions::DELETE,
        note,
    )
    .await;
    Ok(())
}
