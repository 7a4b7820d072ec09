//! The controllers: `DatabricksToken` reconciliation (mint, rotate, revoke) and workspace
//! credential checks. `run` wires the watches; the modules below hold one concern each.

mod backoff;
mod cleanup;
mod credential_watch;
mod error;
mod events;
mod inventory;
mod namespace_merge;
mod oauth_token;
mod outcome;
mod own_writes;
pub mod plan;
mod protection;
mod revocation;
mod rollout;
mod secret_index;
pub mod status;
mod token;
mod watch;
mod workspace_status;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        events::{EventType, Reporter},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tracing::{Instrument, debug, info_span, warn};

pub use cleanup::FINALIZER;
pub use error::Error;

use crate::crd::{ClusterDatabricksWorkspace, DatabricksToken, DatabricksWorkspace, WorkspaceKind};
use crate::metrics::Metrics;
use crate::schedule::EpochMillis;
use crate::secret::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::workspace::{ClientSettings, WorkspaceKey, Workspaces};

/// How soon a reconcile whose write met a newer object (HTTP 409) runs again.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);

/// Field manager for every server-side apply of the operator.
pub const FIELD_MANAGER: &str = "databricks-token-operator";

/// What the controllers need from the operator's configuration.
#[derive(Clone)]
pub struct ControllerConfig {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    pub insecure_allow_http: bool,
    pub entra_authority_host: String,
    pub verify_interval: Duration,
    pub default_grace_period: Duration,
    pub concurrency: u16,
}

pub struct Settings {
    pub verify_interval: Duration,
    pub default_grace_period: Duration,
    /// The longest a healthy resource sleeps before it is looked at again.
    pub max_requeue: Duration,
}

/// Shared state of all reconciles.
pub struct Context {
    pub kube: kube::Client,
    pub workspaces: Workspaces,
    /// The token controller's cache, for deletion protection: which tokens still use a workspace.
    pub tokens: Store<DatabricksToken>,
    /// Managed Secrets, version and token record only: values are read only to be written.
    pub secrets: secret_index::SecretIndex,
    pub inventory: inventory::Inventory,
    /// Who publishes the events.
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    backoff: backoff::Backoff,
    /// Shared by every caller of a workspace, so a failing one is probed once per step.
    pub workspace_backoff: backoff::WorkspaceBackoff<WorkspaceKey>,
    /// When each resource (by uid) minted a replacement for a token taken out of its Secret.
    replacements: Mutex<HashMap<String, Vec<EpochMillis>>>,
    /// When each resource (by uid) was last checked against Databricks.
    checks: Mutex<HashMap<String, Check>>,
    /// When this process started: a token list taken since then shows what a previous
    /// process may have minted and not recorded.
    started_at: EpochMillis,
    /// Secrets this process wrote, so the watch event of its own write triggers nothing.
    pub own_writes: Arc<own_writes::OwnWrites>,
    /// Workspace objects this process has looked at.
    workspaces_seen: Mutex<HashSet<String>>,
    /// Asks the workspace controllers for a check now (a refused call, a credential change).
    workspace_triggers: credential_watch::WorkspaceTriggers,
    /// When each failing token's failure was last published as an event.
    failure_events: events::FailureEvents,
    /// Resolves once the Secret and workspace caches hold their first full list. Shared, because
    /// a store's readiness future wakes only its latest waiter, and reconciles wait concurrently.
    caches_ready: future::Shared<future::BoxFuture<'static, ()>>,
}

/// The last check of one resource against Databricks.
struct Check {
    at: EpochMillis,
    /// Whether this process has compared the resource with a token list since it started
    /// (a first sight counts as checked, but lists nothing).
    listed: bool,
}

impl Context {
    /// Whether the periodic check is due. A resource first seen counts as just checked, so a
    /// restarted operator makes no Databricks calls for tokens that are fine.
    pub fn verification_due(&self, uid: &str, now: EpochMillis) -> bool {
        let mut checks = lock(&self.checks);
        match checks.get(uid) {
            Some(c) => now - c.at >= self.settings.verify_interval.as_millis() as i64,
            None => {
                checks.insert(
                    uid.to_string(),
                    Check {
                        at: now,
                        listed: false,
                    },
                );
                false
            }
        }
    }

    pub fn mark_verified(&self, uid: &str, now: EpochMillis) {
        lock(&self.checks).insert(
            uid.to_string(),
            Check {
                at: now,
                listed: true,
            },
        );
    }

    /// Whether a token list must be read before minting for `token`: another process (one that
    /// crashed, or a former leader) may have minted a token it never wrote to the Secret. Not
    /// for a resource whose finalizer this process added, as nobody mints before the finalizer.
    pub fn unknown_mints_possible(&self, token: &DatabricksToken, finalizer_was_set: bool) -> bool {
        finalizer_was_set
            && !lock(&self.checks)
                .get(&token.uid().unwrap_or_default())
                .is_some_and(|c| c.listed)
    }

    pub fn started_at(&self) -> EpochMillis {
        self.started_at
    }

    pub fn next_verification(&self, uid: &str, now: EpochMillis) -> EpochMillis {
        let last = lock(&self.checks).get(uid).map_or(now, |c| c.at);
        last + self.settings.verify_interval.as_millis() as i64
    }

    /// Recent replacement mints of a resource (deleted or altered Secret).
    pub fn replacements(&self, uid: &str) -> Vec<EpochMillis> {
        lock(&self.replacements)
            .get(uid)
            .cloned()
            .unwrap_or_default()
    }

    pub fn record_replacement(&self, uid: &str, now: EpochMillis) {
        let mut map = lock(&self.replacements);
        let times = map.entry(uid.to_string()).or_default();
        times.retain(|t| now - t < plan::REPLACEMENT_WINDOW);
        times.push(now);
    }

    /// True the first time this process sees the workspace `key`.
    pub fn first_sight_of_workspace(&self, key: String) -> bool {
        lock(&self.workspaces_seen).insert(key)
    }

    /// Start the backoff of these tokens over.
    fn reset_backoff_of(
        &self,
        reader: &Store<DatabricksToken>,
        tokens: &[ObjectRef<DatabricksToken>],
    ) {
        for token in tokens.iter().filter_map(|r| reader.get(r)) {
            self.backoff.reset(&token.uid().unwrap_or_default());
        }
    }

    /// Drop everything kept about a deleted resource.
    pub fn forget(&self, token: &DatabricksToken) {
        let uid = token.uid().unwrap_or_default();
        lock(&self.checks).remove(&uid);
        lock(&self.replacements).remove(&uid);
        self.backoff.reset(&uid);
        self.failure_events.clear(&uid);
        self.metrics
            .forget_token(&token.namespace().unwrap_or_default(), &token.name_any());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn reconcile(token: Arc<DatabricksToken>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!("reconcile", namespace = %token.namespace().unwrap_or_default(), name = %token.name_any());
    async move {
        // Until the watch caches are filled, a workspace or Secret would look missing.
        ctx.caches_ready.clone().await;
        let started = Instant::now();
        let result = reconcile_inner(&token, &ctx).await;
        ctx.metrics.reconcile_duration(started.elapsed());
        result
    }
    .instrument(span)
    .await
}

async fn reconcile_inner(token: &DatabricksToken, ctx: &Context) -> Result<Action, Error> {
    if token.meta().deletion_timestamp.is_some() {
        return cleanup::finalize(token, ctx).await;
    }
    let ns = token.namespace().unwrap_or_default();
    let name = token.name_any();
    let now = crate::now_millis();
    // A refused finalizer (workspace being deleted) is a failure shown in status like any other.
    let result = async {
        cleanup::ensure_finalizer(token, ctx).await?;
        token::sync(token, ctx, now).await
    };
    match result.await {
        Ok(synced) => {
            status::write_if_changed(token, ctx, &status::synced(token, &synced, now)).await?;
            let renewal = plan::renewal_of(token, &synced.record);
            ctx.metrics
                .observe_token(&ns, &name, true, synced.record.current.expiry, renewal);
            ctx.backoff.reset(&token.uid().unwrap_or_default());
            ctx.failure_events.clear(&token.uid().unwrap_or_default());
            Ok(token::next_wakeup(
                token,
                &synced,
                now,
                ctx.settings.max_requeue,
            ))
        }
        Err(failed) if failed.error.is_conflict() => {
            // What the sync completed is recorded all the same; the rest retries at once.
            if let Some(partial) = &failed.partial {
                let desired = status::synced(token, partial, now);
                if let Err(e) = status::write_if_changed(token, ctx, &desired).await {
                    warn!(error = %e, "could not record the rotation in status");
                }
            }
            ctx.metrics.reconcile_error("Conflict");
            Err(failed.error)
        }
        Err(failed) => {
            let error = &failed.error;
            if error.is_auth_failure() {
                ctx.workspaces.invalidate(&Workspaces::key_for(token));
            }
            if error.is_refused() {
                // The workspace says at once whether its credential is what was refused.
                ctx.workspace_triggers.refused(&Workspaces::key_for(token));
            }
            let desired = status::failed(token, &failed, now);
            let changed = token.status.as_ref() != Some(&desired);
            if let Err(e) = status::write_if_changed(token, ctx, &desired).await {
                warn!(error = %e, "could not record the failure in status");
            }
            // A new failure is published at once, a persisting one again now and then, so that
            // `kubectl get events` shows it is current.
            let news = changed && status::failure_is_news(token.status.as_ref(), &desired);
            if ctx
                .failure_events
                .due(&token.uid().unwrap_or_default(), news, now)
            {
                events::publish(
                    ctx,
                    token,
                    EventType::Warning,
                    &error.reason(),
                    "Reconcile",
                    error.to_string(),
                )
                .await;
            }
            let ready = status::is_ready(&desired);
            let expiry = desired
                .expiry_time
                .as_deref()
                .and_then(crate::secret::parse_time);
            let renewal = desired
                .renewal_time
                .as_deref()
                .and_then(crate::secret::parse_time);
            ctx.metrics
                .observe_token(&ns, &name, ready, expiry, renewal);
            ctx.metrics.reconcile_error(&error.reason());
            Err(failed.error)
        }
    }
}

fn error_policy(token: Arc<DatabricksToken>, error: &Error, ctx: Arc<Context>) -> Action {
    if error.is_conflict() {
        debug!(namespace = %token.namespace().unwrap_or_default(), name = %token.name_any(), error = %error, "write conflict; retrying from the newer object");
        return Action::requeue(CONFLICT_RETRY);
    }
    let now = crate::now_millis();
    let workspace_retry = ctx
        .workspace_backoff
        .retry_at(&Workspaces::key_for(&token))
        .filter(|_| error.is_workspace_failure());
    let delay = match error.wait_until() {
        // A wait someone else set (the workspace's backoff, the replacement budget): the
        // resource's own backoff does not grow meanwhile.
        Some(until) => wait_until(now, until),
        None => {
            let own = ctx
                .backoff
                .next_delay(&token.uid().unwrap_or_default(), error.retry_after());
            own.max(workspace_retry.map_or(Duration::ZERO, |at| wait_until(now, at)))
        }
    };
    // However long the backoff, look again when the token in the Secret expires: Ready must turn
    // False then, not when the backoff ends.
    let expiry = token
        .status
        .as_ref()
        .and_then(|s| s.expiry_time.as_deref())
        .and_then(crate::secret::parse_time);
    let delay = plan::failure_wakeup(delay, expiry, now);
    warn!(
        namespace = %token.namespace().unwrap_or_default(),
        name = %token.name_any(),
        reason = %error.reason(),
        error = %error,
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// The delay until `at`, a little later so that the wait is surely over, and spread.
fn wait_until(now: EpochMillis, at: EpochMillis) -> Duration {
    let wait = Duration::from_millis(at.saturating_sub(now).max(0) as u64);
    wait + Duration::from_millis(100) + wait.mul_f64(rand::random_range(0.0..0.1))
}

/// What retriggers a token: its spec, a rotation request, deletion. Not status writes, which
/// would otherwise make every reconcile trigger the next.
fn token_trigger(token: &DatabricksToken) -> Option<u64> {
    let requested = token
        .annotations()
        .get(crate::secret::ANN_ROTATE_REQUESTED)
        .cloned()
        .unwrap_or_default();
    let text = format!(
        "{:?}/{requested}/{}",
        token.meta().generation,
        token.meta().deletion_timestamp.is_some()
    );
    Some(crate::schedule::seed_of(&text))
}

/// Run the controllers until `shutdown` resolves.
pub async fn run(
    kube: kube::Client,
    config: ControllerConfig,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let namespaces = config.namespaces.clone();

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
    .try_filter(move |token| future::ready(token_filter.changed(token, token_trigger)));

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

    let (ws_reader, ws_writer) = reflector::store::<DatabricksWorkspace>();
    let workspaces = watch::namespaced::<DatabricksWorkspace>(
        &kube,
        &namespaces,
        watcher::Config::default(),
        watch::known_in_store(ws_reader.clone()),
    )
    .modify(watch::slim_for_cache)
    .reflect(ws_writer)
    .touched_objects()
    .predicate_filter(watch::workspace_trigger, Default::default());

    let (cws_reader, cws_writer) = reflector::store::<ClusterDatabricksWorkspace>();
    let cluster_workspaces =
        watcher::watcher(kube::Api::all(kube.clone()), watcher::Config::default())
            .default_backoff()
            .modify(watch::slim_for_cache)
            .reflect(cws_writer)
            .touched_objects()
            .predicate_filter(watch::workspace_trigger, Default::default());

    let caches_ready = {
        let (s, w, c) = (secret_index.clone(), ws_reader.clone(), cws_reader.clone());
        async move {
            let _ = futures::join!(
                s.wait_until_ready(),
                w.wait_until_ready(),
                c.wait_until_ready()
            );
        }
        .boxed()
        .shared()
    };

    let settings = ClientSettings {
        insecure_allow_http: config.insecure_allow_http,
        entra_authority_host: config.entra_authority_host.clone(),
        observer: Some(metrics.clone() as Arc<dyn databricks_client::RequestObserver>),
        credential_ttl: Duration::from_secs(300),
    };
    let (workspace_triggers, workspace_trigger_streams) =
        credential_watch::channel(ws_reader.clone(), cws_reader.clone());
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        kube: kube.clone(),
        workspaces: Workspaces::new(kube.clone(), ws_reader, cws_reader, settings),
        tokens: token_reader.clone(),
        secrets: secret_index,
        inventory: Default::default(),
        reporter,
        metrics: metrics.clone(),
        settings: Settings {
            verify_interval: config.verify_interval,
            default_grace_period: config.default_grace_period,
            max_requeue: config.verify_interval.max(Duration::from_secs(1)),
        },
        backoff: backoff::Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
        workspace_backoff: backoff::WorkspaceBackoff::new(
            Duration::from_secs(1),
            Duration::from_secs(300),
        ),
        replacements: Mutex::new(HashMap::new()),
        checks: Mutex::new(HashMap::new()),
        started_at: crate::now_millis(),
        own_writes,
        workspaces_seen: Mutex::new(HashSet::new()),
        workspace_triggers,
        failure_events: Default::default(),
        caches_ready,
    });

    // A workspace's spec or readiness changed (a credential fixed or refused): its tokens
    // retry now, their backoff started over.
    let by_namespaced_ws = {
        let (reader, ctx) = (token_reader.clone(), ctx.clone());
        move |ws: DatabricksWorkspace| {
            let tokens = dependents(
                &reader,
                WorkspaceKind::DatabricksWorkspace,
                ws.namespace(),
                &ws.name_any(),
            );
            ctx.reset_backoff_of(&reader, &tokens);
            tokens
        }
    };
    let by_cluster_ws = {
        let (reader, ctx) = (token_reader.clone(), ctx.clone());
        move |ws: ClusterDatabricksWorkspace| {
            let tokens = dependents(
                &reader,
                WorkspaceKind::ClusterDatabricksWorkspace,
                None,
                &ws.name_any(),
            );
            ctx.reset_backoff_of(&reader, &tokens);
            tokens
        }
    };

    let token_controller = Controller::for_stream(tokens, token_reader)
        // Not owns_stream: a Retain Secret has no ownerReference (see watch::secret_owner).
        .watches_stream(secrets, |s| watch::secret_owner(&s))
        .watches_stream(workspaces, by_namespaced_ws)
        .watches_stream(cluster_workspaces, by_cluster_ws)
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| future::ready(()));

    let workspace_controllers = workspace_status::run(
        kube.clone(),
        &namespaces,
        ctx.clone(),
        workspace_trigger_streams,
        shutdown,
    );
    futures::join!(token_controller, workspace_controllers);
}

/// Tokens that use the given workspace.
fn dependents(
    reader: &Store<DatabricksToken>,
    kind: WorkspaceKind,
    namespace: Option<String>,
    name: &str,
) -> Vec<ObjectRef<DatabricksToken>> {
    reader
        .state()
        .iter()
        .filter(|t| {
            let r = &t.spec.workspace_ref;
            r.kind == kind
                && r.name == name
                && (kind == WorkspaceKind::ClusterDatabricksWorkspace || t.namespace() == namespace)
        })
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}
