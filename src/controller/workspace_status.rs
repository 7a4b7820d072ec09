//! Workspace objects get a Ready condition once their credentials authenticate (a who-am-I
//! call), rechecked periodically and with backoff while failing, and at once when a token's call
//! is refused or the credential Secret changes (`credential_watch`). Each reconcile first keeps
//! the workspace and its credential Secret from being deleted while tokens still revoke through
//! them (`protection`); a workspace being deleted is only finalized, never checked.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, future};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{Controller, WatchStreamExt, controller::Action, reflector, watcher},
};
use serde::Serialize;
use tracing::warn;

use super::context::{Context, FIELD_MANAGER};
use super::credential_watch::{self, TriggerStreams};
use super::error::Error;
use super::{protection, watch};
use crate::crd::condition_types::{DELETING, READY};
use crate::crd::reasons::{AUTHENTICATED, WAITING_FOR_TOKENS};
use crate::crd::{
    ClusterDatabricksWorkspace, Condition, ConditionStatus, DatabricksWorkspace, WorkspaceStatus,
    upsert_condition,
};
use crate::workspace::{ResolvedWorkspace, WorkspaceError, WorkspaceKey};

pub async fn run(
    kube: kube::Client,
    namespaces: &[String],
    ctx: Arc<Context>,
    triggers: TriggerStreams,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let (reader, writer) = reflector::store::<DatabricksWorkspace>();
    let stream = watch::namespaced::<DatabricksWorkspace>(
        &kube,
        namespaces,
        watcher::Config::default(),
        watch::known_in_store(reader.clone()),
    )
    .reflect(writer)
    .applied_objects()
    .predicate_filter(spec_or_deletion, Default::default());
    let namespaced = Controller::for_stream(stream, reader.clone())
        .reconcile_on(credential_watch::stream_of(triggers.namespaced))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_namespaced, error_policy, ctx.clone())
        .for_each(|_| future::ready(()));

    // Tokens of a cluster workspace live in every watched namespace.
    let watched = Arc::new(namespaces.to_vec());
    let cluster = Controller::new(
        Api::<ClusterDatabricksWorkspace>::all(kube.clone()),
        watcher::Config::default(),
    );
    let cluster_store = cluster.store();
    let cluster = cluster
        .reconcile_on(credential_watch::stream_of(triggers.cluster))
        .graceful_shutdown_on(shutdown.clone())
        .run(
            move |ws, ctx| reconcile_cluster(ws, ctx, watched.clone()),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));

    // A changed credential Secret: forget the cached client and the check's backoff, check now.
    let credentials = credential_watch::unmanaged_secret_changes(&kube, namespaces)
        .take_until(shutdown)
        .for_each(move |secret| {
            let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
            let (namespaced, cluster) = (reader.state(), cluster_store.state());
            let using = credential_watch::workspaces_using(
                &ns,
                &name,
                namespaced.iter().map(|w| w.as_ref()),
                cluster.iter().map(|w| w.as_ref()),
            );
            for key in using {
                ctx.workspaces.invalidate(&key);
                ctx.workspace_backoff.succeeded(&key);
                ctx.backoff.reset(&backoff_key(&key));
                ctx.workspace_triggers.recheck(&key);
            }
            future::ready(())
        });
    futures::join!(namespaced, cluster, credentials);
}

/// Backoff of a check that failed before any call (a missing credential Secret, say), per
/// workspace so that a credential change can start it over.
fn backoff_key(key: &WorkspaceKey) -> String {
    format!("workspace-check/{key}")
}

/// A spec change, or the start of deletion (which finalizers turn into an update).
fn spec_or_deletion(ws: &DatabricksWorkspace) -> Option<u64> {
    let text = format!(
        "{:?}/{}",
        ws.metadata.generation,
        ws.metadata.deletion_timestamp.is_some()
    );
    Some(crate::schedule::seed_of(&text))
}

/// A workspace found Ready for its current generation is trusted until the next periodic check,
/// so a restarted operator makes no Databricks calls for workspaces that are fine.
fn trust_existing(
    ctx: &Context,
    key: String,
    status: Option<&WorkspaceStatus>,
    generation: Option<i64>,
) -> bool {
    let ready = status.is_some_and(|s| {
        s.observed_generation == generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == READY && c.status == ConditionStatus::True)
    });
    ready && ctx.first_sight_of_workspace(key)
}

async fn reconcile_namespaced(
    ws: Arc<DatabricksWorkspace>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if ws.metadata.deletion_timestamp.is_some() {
        let finalized = protection::finalize(ws.as_ref(), &ctx, &[]).await?;
        let api: Api<DatabricksWorkspace> =
            Api::namespaced(ctx.kube.clone(), &ws.namespace().unwrap_or_default());
        return show_deletion(&api, ws.as_ref(), ws.status.as_ref(), finalized).await;
    }
    // A failure to protect (RBAC on the credential Secret, say) must not hide the Ready check:
    // it is returned after it, and retried with backoff.
    let protected = protection::protect(ws.as_ref(), &ctx).await;
    let key = format!(
        "ns/{}/{}",
        ws.namespace().unwrap_or_default(),
        ws.name_any()
    );
    if trust_existing(&ctx, key, ws.status.as_ref(), ws.metadata.generation) {
        return protected.map(|()| Action::requeue(ctx.settings.workspace_recheck_interval));
    }
    let resolved = ctx.workspaces.for_namespaced(&ws).await;
    let key = WorkspaceKey {
        kind: crate::crd::WorkspaceKind::DatabricksWorkspace,
        namespace: ws.namespace(),
        name: ws.name_any(),
    };
    let (status, action) = check(
        resolved,
        &ctx,
        &key,
        ws.status.clone(),
        ws.metadata.generation,
    )
    .await;
    if ws.status.as_ref() != Some(&status) {
        let api: Api<DatabricksWorkspace> =
            Api::namespaced(ctx.kube.clone(), &ws.namespace().unwrap_or_default());
        write_status(&api, &ws.name_any(), "DatabricksWorkspace", &status).await?;
    }
    protected.map(|()| action)
}

async fn reconcile_cluster(
    ws: Arc<ClusterDatabricksWorkspace>,
    ctx: Arc<Context>,
    watched_namespaces: Arc<Vec<String>>,
) -> Result<Action, Error> {
    if ws.metadata.deletion_timestamp.is_some() {
        let finalized = protection::finalize(ws.as_ref(), &ctx, &watched_namespaces).await?;
        let api: Api<ClusterDatabricksWorkspace> = Api::all(ctx.kube.clone());
        return show_deletion(&api, ws.as_ref(), ws.status.as_ref(), finalized).await;
    }
    let protected = protection::protect(ws.as_ref(), &ctx).await;
    if trust_existing(
        &ctx,
        format!("cluster/{}", ws.name_any()),
        ws.status.as_ref(),
        ws.metadata.generation,
    ) {
        return protected.map(|()| Action::requeue(ctx.settings.workspace_recheck_interval));
    }
    let resolved = ctx.workspaces.for_cluster(&ws).await;
    let key = WorkspaceKey {
        kind: crate::crd::WorkspaceKind::ClusterDatabricksWorkspace,
        namespace: None,
        name: ws.name_any(),
    };
    let (status, action) = check(
        resolved,
        &ctx,
        &key,
        ws.status.clone(),
        ws.metadata.generation,
    )
    .await;
    if ws.status.as_ref() != Some(&status) {
        let api: Api<ClusterDatabricksWorkspace> = Api::all(ctx.kube.clone());
        write_status(&api, &ws.name_any(), "ClusterDatabricksWorkspace", &status).await?;
    }
    protected.map(|()| action)
}

/// A workspace whose deletion waits for its tokens says so in a `Deleting` condition, so that
/// `kubectl describe` explains why it stays.
async fn show_deletion<K>(
    api: &Api<K>,
    ws: &K,
    current: Option<&WorkspaceStatus>,
    finalized: protection::Finalized,
) -> Result<Action, Error>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Serialize,
{
    let protection::Finalized::Waiting(tokens, delay) = finalized else {
        return Ok(Action::await_change());
    };
    let mut status = current.cloned().unwrap_or_default();
    let message = format!(
        "Deleted; waiting for {tokens} DatabricksToken(s) using it to be deleted and their tokens revoked"
    );
    let unchanged = status
        .conditions
        .iter()
        .any(|c| c.type_ == DELETING && c.message == message);
    if !unchanged {
        let now = crate::secret::format_time(crate::now_millis());
        let generation = ws.meta().generation;
        upsert_condition(
            &mut status.conditions,
            Condition::new(
                DELETING,
                ConditionStatus::True,
                WAITING_FOR_TOKENS,
                message,
                &now,
                generation,
            ),
        );
        let kind = K::kind(&()).to_string();
        write_status(api, &ws.name_any(), &kind, &status).await?;
    }
    Ok(Action::requeue(delay))
}

/// Authenticate once and describe the outcome.
async fn check(
    resolved: Result<Arc<ResolvedWorkspace>, WorkspaceError>,
    ctx: &Context,
    key: &WorkspaceKey,
    current: Option<WorkspaceStatus>,
    generation: Option<i64>,
) -> (WorkspaceStatus, Action) {
    let mut status = current.clone().unwrap_or_default();
    let now = crate::secret::format_time(crate::now_millis());
    // Calls share the workspace's backoff with its tokens: a failing workspace is probed once
    // per step, by whichever caller comes first.
    // A changed spec (a fixed host, another credential) starts afresh.
    let mut wait_until = None;
    let spec_changed = current.as_ref().and_then(|s| s.observed_generation) != generation;
    let outcome = match resolved {
        Ok(ws) => {
            match ctx
                .workspace_backoff
                .enter_afresh_if(spec_changed, &ws.key, crate::now_millis())
            {
                Err(blocked) => {
                    wait_until = Some(blocked.until);
                    Err((blocked.reason, blocked.message))
                }
                Ok(()) => match ws.client.current_user().await {
                    Ok(user) => {
                        ctx.workspace_backoff.succeeded(&ws.key);
                        Ok(user.user_name.unwrap_or(user.id))
                    }
                    Err(e) => {
                        let error = Error::databricks("authenticate")(e);
                        if error.is_auth_failure() {
                            ctx.workspaces.invalidate(&ws.key);
                        }
                        let (reason, message) = error.to_string_with_reason();
                        wait_until = Some(ctx.workspace_backoff.failed(
                            &ws.key,
                            crate::now_millis(),
                            error.retry_after(),
                            &reason,
                            &message,
                        ));
                        Err((reason, message))
                    }
                },
            }
        }
        Err(e) => Err((e.reason().to_string(), e.to_string())),
    };
    let (condition, action) = match outcome {
        Ok(identity) => {
            ctx.backoff.reset(&backoff_key(key));
            status.identity = Some(identity.clone());
            let message = format!("Authenticated as {identity}");
            (
                Condition::new(
                    READY,
                    ConditionStatus::True,
                    AUTHENTICATED,
                    message,
                    &now,
                    generation,
                ),
                Action::requeue(ctx.settings.workspace_recheck_interval),
            )
        }
        Err((reason, message)) => {
            let delay = match wait_until {
                Some(at) => Duration::from_millis((at - crate::now_millis()).max(0) as u64 + 100),
                None => ctx.backoff.next_delay(&backoff_key(key), None),
            }
            .min(ctx.settings.workspace_recheck_interval);
            (
                Condition::new(
                    READY,
                    ConditionStatus::False,
                    &reason,
                    message,
                    &now,
                    generation,
                ),
                Action::requeue(delay),
            )
        }
    };
    upsert_condition(&mut status.conditions, condition);
    status.observed_generation = generation;
    (status, action)
}

impl Error {
    fn to_string_with_reason(&self) -> (String, String) {
        (self.reason(), self.to_string())
    }
}

async fn write_status<K>(
    api: &Api<K>,
    name: &str,
    kind: &str,
    status: &WorkspaceStatus,
) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Serialize,
{
    let patch =
        serde_json::json!({"apiVersion": "dbtoken.dev/v1alpha1", "kind": kind, "status": status});
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube("write workspace status"))?;
    Ok(())
}

fn error_policy<K: ResourceExt>(ws: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(name = %ws.name_any(), error = %error, "workspace check failed");
    Action::requeue(
        ctx.backoff
            .next_delay(&format!("ws/{}", ws.name_any()), None),
    )
}
