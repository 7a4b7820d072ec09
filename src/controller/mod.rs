//! The controllers: `DatabricksToken` reconciliation (mint, rotate, revoke) and workspace
//! credential checks. `run` wires the watches; the modules below hold one concern each.

mod backoff;
mod cleanup;
mod context;
mod credential_watch;
mod error;
mod events;
mod failure_events;
mod finalizer;
#[cfg(test)]
mod fixtures;
mod inventory;
mod lock;
mod namespace_merge;
mod oauth_token;
mod outcome;
mod own_writes;
pub mod plan;
mod protection;
mod reconcile;
mod replacements;
mod revocation;
mod rollout;
mod secret_index;
mod settings;
pub mod status;
mod sweep;
mod token;
mod token_inventory;
mod verification;
mod watch;
mod workspace_status;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use futures::{FutureExt, StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt, controller,
        events::Reporter,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};

pub use context::{Context, FIELD_MANAGER};
pub use error::Error;
pub use finalizer::FINALIZER;
pub use settings::Settings;

use crate::crd::{ClusterDatabricksWorkspace, DatabricksToken, DatabricksWorkspace};
use crate::metrics::Metrics;
use crate::secret::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::workspace::{ClientSettings, WorkspaceObject, Workspaces};

/// Run the controllers until `shutdown` resolves.
pub async fn run(
    kube: kube::Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let namespaces = settings.watched_namespaces();

    let (token_reader, token_writer) = reflector::store::<DatabricksToken>();
    let token_filter = watch::TriggerFilter::default();
    let tokens = watch::namespaced::<DatabricksToken>(
        &kube,
        &namespaces,
        watch::config(),
        watch::known_in_store(token_reader.clone()),
    )
    .modify(watch::slim_for_cache)
    .reflect(token_writer)
    .map_ok({
        let filter = token_filter.clone();
        move |event| {
            if let watcher::Event::Delete(token) = &event {
                filter.forget(token);
            }
            event
        }
    })
    .applied_objects()
    .try_filter(move |token| future::ready(token_filter.changed(token, watch::token_trigger)));

    let secret_index = secret_index::SecretIndex::default();
    let own_writes = Arc::new(own_writes::OwnWrites::default());
    let managed = watch::config().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let secrets = {
        let (index, own_writes) = (secret_index.clone(), own_writes.clone());
        // Api<PartialObjectMeta<_>> lists and watches metadata only.
        let known = Arc::new({
            let index = index.clone();
            move |ns: &str| index.in_namespace(ns)
        });
        watch::namespaced::<PartialObjectMeta<Secret>>(&kube, &namespaces, managed, known)
            .map_ok(move |event| {
                index.apply(&event);
                event
            })
            .touched_objects()
            .try_filter(move |s| future::ready(!own_writes.is_echo(s)))
    };

    // Each workspace kind is watched once, for the token controller (a workspace's change
    // retriggers its tokens) and for the workspace checks alike.
    let (ws_reader, ws_writer) = reflector::store::<DatabricksWorkspace>();
    let (namespaced_watch, ws_for_tokens, ws_for_checks) = watch::fan_out(
        watch::namespaced::<DatabricksWorkspace>(
            &kube,
            &namespaces,
            watcher::Config::default(),
            watch::known_in_store(ws_reader.clone()),
        )
        .modify(watch::slim_for_cache)
        .reflect(ws_writer),
        shutdown.clone(),
    );
    let workspaces = ws_for_tokens
        .map(Ok::<_, watcher::Error>)
        .touched_objects()
        .predicate_filter(watch::workspace_trigger, Default::default());

    let (cws_reader, cws_writer) = reflector::store::<ClusterDatabricksWorkspace>();
    let (cluster_watch, cws_for_tokens, cws_for_checks) = watch::fan_out(
        watcher::watcher(kube::Api::all(kube.clone()), watcher::Config::default())
            .default_backoff()
            .modify(watch::slim_for_cache)
            .reflect(cws_writer),
        shutdown.clone(),
    );
    let cluster_workspaces = cws_for_tokens
        .map(Ok::<_, watcher::Error>)
        .touched_objects()
        .predicate_filter(watch::workspace_trigger, Default::default());

    // A store's readiness future wakes only its latest waiter, so each store has one: these
    // shared futures, which every reconcile and the workspace controllers await instead.
    let workspaces_ready = {
        let (w, c) = (ws_reader.clone(), cws_reader.clone());
        async move {
            let _ = futures::join!(w.wait_until_ready(), c.wait_until_ready());
        }
        .boxed()
        .shared()
    };
    let caches_ready = {
        let (s, w) = (secret_index.clone(), workspaces_ready.clone());
        async move {
            let _ = futures::join!(s.wait_until_ready(), w);
        }
        .boxed()
        .shared()
    };

    let client_settings = ClientSettings {
        insecure_allow_http: settings.insecure_allow_http,
        entra_authority_host: settings.entra_authority_host.clone(),
        observer: Some(metrics.clone() as Arc<dyn databricks_client::RequestObserver>),
        credential_ttl: settings.credential_ttl,
    };
    let (workspace_triggers, workspace_trigger_streams) =
        credential_watch::channel(ws_reader.clone(), cws_reader.clone());
    let (ws_reader_for_checks, cws_reader_for_checks) = (ws_reader.clone(), cws_reader.clone());
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        kube: kube.clone(),
        workspaces: Workspaces::new(kube.clone(), ws_reader, cws_reader, client_settings),
        tokens: token_reader.clone(),
        secrets: secret_index,
        inventory: Default::default(),
        reporter,
        metrics: metrics.clone(),
        backoff: backoff::Backoff::new(settings.backoff_base, settings.backoff_max),
        workspace_backoff: backoff::WorkspaceBackoff::new(
            settings.backoff_base,
            settings.backoff_max,
        ),
        replacements: Default::default(),
        verifications: verification::Verifications::new(settings.verify_interval),
        started_at: crate::now_millis(),
        own_writes,
        workspaces_seen: Mutex::new(HashSet::new()),
        workspace_triggers,
        failure_events: Default::default(),
        caches_ready,
        settings: settings.clone(),
    });

    // A workspace's spec or readiness changed (a credential fixed or refused): its tokens
    // retry now, their backoff started over.
    fn retrigger<K: WorkspaceObject>(
        reader: Store<DatabricksToken>,
        ctx: Arc<Context>,
    ) -> impl Fn(K) -> Vec<ObjectRef<DatabricksToken>> {
        move |ws| {
            let tokens = watch::dependents(&reader, &ws);
            ctx.reset_backoff_of(&reader, &tokens);
            tokens
        }
    }

    let token_controller = Controller::for_stream(tokens, token_reader.clone())
        // Not owns_stream: a Retain Secret has no ownerReference (see watch::secret_owner).
        .watches_stream(secrets, |s| watch::secret_owner(&s))
        .watches_stream(workspaces, retrigger(token_reader.clone(), ctx.clone()))
        .watches_stream(
            cluster_workspaces,
            retrigger(token_reader.clone(), ctx.clone()),
        )
        .with_config(controller::Config::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .for_each(|_| future::ready(()));

    let inventory = token_inventory::run(ctx.clone(), namespaces.clone(), shutdown.clone());
    // The workspace controllers wait for their stores themselves; started once the stores are
    // ready, they find them ready at once rather than compete for the readiness wake-up.
    let workspace_controllers = workspace_status::run(
        kube.clone(),
        &namespaces,
        ctx.clone(),
        workspace_status::Watched {
            namespaced: ws_reader_for_checks,
            namespaced_events: ws_for_checks,
            cluster: cws_reader_for_checks,
            cluster_events: cws_for_checks,
        },
        workspace_trigger_streams,
        shutdown,
    );
    let workspace_controllers = async move {
        workspaces_ready.await;
        workspace_controllers.await;
    };
    futures::join!(
        token_controller,
        workspace_controllers,
        inventory,
        namespaced_watch,
        cluster_watch
    );
}
