//! Workspace objects get a Ready condition once their credentials authenticate (a who-am-I
//! call), rechecked periodically and with backoff while failing, and at once when a token's call
//! is refused or the credential Secret changes (`credential_watch`).

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, future};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{Controller, WatchStreamExt, controller::Action, reflector, watcher},
};
use serde::Serialize;
use tracing::warn;

use super::credential_watch::{self, TriggerStreams};
use super::{Context, Error, FIELD_MANAGER, watch};
use crate::crd::{
    ClusterDatabricksWorkspace, Condition, ConditionStatus, DatabricksWorkspace, WorkspaceStatus,
    upsert_condition,
};
use crate::workspace::{ResolvedWorkspace, WorkspaceError, WorkspaceKey};

const RECHECK_READY: Duration = Duration::from_secs(300);

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
    .predicate_filter(kube::runtime::predicates::generation, Default::default());
    let namespaced = Controller::for_stream(stream, reader.clone())
        .reconcile_on(credential_watch::stream_of(triggers.namespaced))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_namespaced, error_policy, ctx.clone())
        .for_each(|_| future::ready(()));

    let cluster = Controller::new(
        Api::<ClusterDatabricksWorkspace>::all(kube.clone()),
        watcher::Config::default(),
    );
    let cluster_store = cluster.store();
    let cluster = cluster
        .reconcile_on(credential_watch::stream_of(triggers.cluster))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_cluster, error_policy, ctx.clone())
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
                ctx.backoff.reset(&backoff_key(&key));
                ctx.workspace_triggers.recheck(&key);
            }
            future::ready(())
        });
    futures::join!(namespaced, cluster, credentials);
}

/// The check's backoff is per workspace, so a credential change can start it over.
fn backoff_key(key: &WorkspaceKey) -> String {
    format!("workspace-check/{key}")
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
                .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
    });
    ready && ctx.first_sight_of_workspace(key)
}

async fn reconcile_namespaced(
    ws: Arc<DatabricksWorkspace>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let key = format!(
        "ns/{}/{}",
        ws.namespace().unwrap_or_default(),
        ws.name_any()
    );
    if trust_existing(&ctx, key, ws.status.as_ref(), ws.metadata.generation) {
        return Ok(Action::requeue(RECHECK_READY));
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
    Ok(action)
}

async fn reconcile_cluster(
    ws: Arc<ClusterDatabricksWorkspace>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if trust_existing(
        &ctx,
        format!("cluster/{}", ws.name_any()),
        ws.status.as_ref(),
        ws.metadata.generation,
    ) {
        return Ok(Action::requeue(RECHECK_READY));
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
    Ok(action)
}

/// Authenticate once and describe the outcome.
async fn check(
    resolved: Result<Arc<ResolvedWorkspace>, WorkspaceError>,
    ctx: &Context,
    key: &WorkspaceKey,
    current: Option<WorkspaceStatus>,
    generation: Option<i64>,
) -> (WorkspaceStatus, Action) {
    let mut status = current.unwrap_or_default();
    let now = crate::secret::format_time(crate::now_millis());
    let outcome = match resolved {
        Ok(ws) => match ws.client.current_user().await {
            Ok(user) => Ok(user.user_name.unwrap_or(user.id)),
            Err(e) => {
                ctx.workspaces.invalidate(&ws.key);
                Err((Error::databricks("authenticate")(e)).to_string_with_reason())
            }
        },
        Err(e) => Err((e.reason().to_string(), e.to_string())),
    };
    let (condition, action) = match outcome {
        Ok(identity) => {
            ctx.backoff.reset(&backoff_key(key));
            status.identity = Some(identity.clone());
            let message = format!("Authenticated as {identity}");
            (
                Condition::new(
                    "Ready",
                    ConditionStatus::True,
                    "Authenticated",
                    message,
                    &now,
                    generation,
                ),
                Action::requeue(RECHECK_READY),
            )
        }
        Err((reason, message)) => {
            let delay = ctx
                .backoff
                .next_delay(&backoff_key(key), None)
                .min(RECHECK_READY);
            (
                Condition::new(
                    "Ready",
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
