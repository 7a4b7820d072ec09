//! Workspace objects get a Ready condition once their credentials authenticate (a who-am-I
//! call), rechecked periodically and with backoff while failing, and at once when a token's call
//! is refused or the credential Secret changes (`credential_watch`). Each reconcile first keeps
//! the workspace and its credential Secret from being deleted while tokens still revoke through
//! them (`protection`); a workspace being deleted is only finalized, never checked.

use std::{sync::Arc, time::Duration};

use futures::{Stream, StreamExt, future};
use kube::{
    ResourceExt,
    api::{Api, Patch, PatchParams},
    runtime::{Controller, WatchStreamExt, controller::Action, reflector::Store, watcher},
};
use serde::Serialize;
use tracing::warn;

use super::context::{Context, FIELD_MANAGER};
use super::credential_watch::{self, TriggerStreams};
use super::error::Error;
use super::protection;
use super::token_inventory;
use crate::crd::condition_types::{DELETING, READY};
use crate::crd::reasons::{AUTHENTICATED, WAITING_FOR_TOKENS};
use crate::crd::{
    ClusterDatabricksWorkspace, Condition, ConditionStatus, DatabricksWorkspace, WorkspaceStatus,
    upsert_condition,
};
use crate::workspace::{ResolvedWorkspace, WorkspaceError, WorkspaceKey, WorkspaceObject};

/// The workspaces of both kinds: their caches, and the watch events that fill them (the same
/// watches the token controller's caches come from).
pub struct Watched<N, C> {
    pub namespaced: Store<DatabricksWorkspace>,
    pub namespaced_events: N,
    pub cluster: Store<ClusterDatabricksWorkspace>,
    pub cluster_events: C,
}

pub async fn run<N, C>(
    kube: kube::Client,
    namespaces: &[String],
    ctx: Arc<Context>,
    watched: Watched<N, C>,
    triggers: TriggerStreams,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) where
    N: Stream<Item = watcher::Event<DatabricksWorkspace>> + Send + 'static,
    C: Stream<Item = watcher::Event<ClusterDatabricksWorkspace>> + Send + 'static,
{
    let reader = watched.namespaced.clone();
    let cluster_store = watched.cluster.clone();
    let namespaced = Controller::for_stream(changes(watched.namespaced_events), watched.namespaced)
        .reconcile_on(credential_watch::stream_of(triggers.namespaced))
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |ws, ctx| reconcile(ws, ctx, Arc::new(Vec::new())),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));

    // Tokens of a cluster workspace live in every watched namespace.
    let in_namespaces = Arc::new(namespaces.to_vec());
    let cluster = Controller::for_stream(changes(watched.cluster_events), watched.cluster)
        .reconcile_on(credential_watch::stream_of(triggers.cluster))
        .graceful_shutdown_on(shutdown.clone())
        .run(
            move |ws, ctx| reconcile(ws, ctx, in_namespaces.clone()),
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

/// The workspaces whose spec changed or whose deletion started, from the shared watch events.
fn changes<K: WorkspaceObject>(
    events: impl Stream<Item = watcher::Event<K>> + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
    events
        .map(Ok)
        .applied_objects()
        .predicate_filter(spec_or_deletion, Default::default())
}

/// Backoff of a check that failed before any call (a missing credential Secret, say), per
/// workspace so that a credential change can start it over.
fn backoff_key(key: &WorkspaceKey) -> String {
    format!("workspace-check/{key}")
}

/// Backoff of a failed reconcile (protection, a status write), per workspace object.
fn reconcile_backoff_key(key: &WorkspaceKey) -> String {
    format!("workspace-reconcile/{key}")
}

/// A spec change, or the start of deletion (which finalizers turn into an update).
fn spec_or_deletion<K: WorkspaceObject>(ws: &K) -> Option<u64> {
    let meta = ws.meta();
    let text = format!(
        "{:?}/{}",
        meta.generation,
        meta.deletion_timestamp.is_some()
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

/// Check one workspace; a success starts its reconcile backoff over.
async fn reconcile<K: WorkspaceObject>(
    ws: Arc<K>,
    ctx: Arc<Context>,
    watched_namespaces: Arc<Vec<String>>,
) -> Result<Action, Error> {
    let result = check_workspace(ws.as_ref(), &ctx, &watched_namespaces).await;
    if result.is_ok() {
        ctx.backoff.reset(&reconcile_backoff_key(&ws.key()));
    }
    result
}

async fn check_workspace<K: WorkspaceObject>(
    ws: &K,
    ctx: &Context,
    watched_namespaces: &[String],
) -> Result<Action, Error> {
    let api = ws.api(ctx.kube.clone());
    if ws.meta().deletion_timestamp.is_some() {
        let finalized = protection::finalize(ws, ctx, watched_namespaces).await?;
        return show_deletion(&api, ws, ws.status(), finalized).await;
    }
    // A failure to protect (RBAC on the credential Secret, say) must not hide the Ready check:
    // it is returned after it, and retried with backoff.
    let protected = protection::protect(ws, ctx).await;
    let key = ws.key();
    let generation = ws.meta().generation;
    if trust_existing(ctx, key.to_string(), ws.status(), generation) {
        return protected.map(|()| Action::requeue(ctx.settings.workspace_recheck_interval));
    }
    let resolved = ctx.workspaces.for_object(ws).await;
    let (status, action) = check(resolved, ctx, &key, ws.status().cloned(), generation).await;
    if token_inventory::without_inventory(ws.status()).as_ref() != Some(&status) {
        let kind = K::kind(&()).to_string();
        write_status(&api, &ws.name_any(), &kind, &status).await?;
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
    let mut status = token_inventory::without_inventory(current.as_ref()).unwrap_or_default();
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

fn error_policy<K: WorkspaceObject>(ws: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(workspace = %ws.key(), error = %error, "workspace check failed");
    Action::requeue(
        ctx.backoff
            .next_delay(&reconcile_backoff_key(&ws.key()), None),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::World;

    fn namespaced(ns: &str, deleting: bool) -> Arc<DatabricksWorkspace> {
        let mut ws: DatabricksWorkspace = serde_json::from_value(serde_json::json!({
            "apiVersion": "dbtoken.dev/v1alpha1", "kind": "DatabricksWorkspace",
            "metadata": {"name": "ws", "namespace": ns},
            "spec": {"host": "https://x.cloud.databricks.com",
                     "auth": {"pat": {"secretRef": {"name": "cred"}}}},
        }))
        .unwrap();
        if deleting {
            ws.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            );
        }
        Arc::new(ws)
    }

    fn cluster() -> Arc<ClusterDatabricksWorkspace> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "dbtoken.dev/v1alpha1", "kind": "ClusterDatabricksWorkspace",
                "metadata": {"name": "ws"},
                "spec": {"host": "https://x.cloud.databricks.com", "allowedNamespaces": ["a"],
                         "auth": {"pat": {"secretRef": {"name": "cred", "namespace": "p"}}}},
            }))
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn a_failing_workspace_backs_off_on_its_own_and_afresh_after_a_success() {
        let world = World::new().await;
        let ctx = world.ctx.clone();
        let failures = |key: WorkspaceKey| ctx.backoff.failures(&reconcile_backoff_key(&key));
        let error = || Error::MissingField("metadata.uid");
        error_policy(namespaced("a", false), &error(), ctx.clone());
        error_policy(namespaced("a", false), &error(), ctx.clone());
        error_policy(namespaced("b", false), &error(), ctx.clone());
        error_policy(cluster(), &error(), ctx.clone());
        assert_eq!(failures(namespaced("a", false).key()), 2);
        assert_eq!(
            failures(namespaced("b", false).key()),
            1,
            "same name, other namespace"
        );
        assert_eq!(failures(cluster().key()), 1, "same name, other kind");

        // A reconcile that succeeds (a deleted workspace nothing holds) starts over.
        reconcile(namespaced("a", true), ctx.clone(), Arc::default())
            .await
            .expect("reconcile");
        assert_eq!(failures(namespaced("a", false).key()), 0);
        assert_eq!(failures(namespaced("b", false).key()), 1);
        assert_eq!(world.calls.take(), Vec::<String>::new());
    }
}
