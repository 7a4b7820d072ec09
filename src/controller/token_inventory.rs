//! The token inventory (`spec.inventory`) of both workspace kinds, run beside the controllers:
//! each workspace that asks for it is listed once per interval through token management,
//! streamed into a tally (`crate::inventory`), written to `status.inventory` (under its own
//! field manager, so the Ready check and the inventory never overwrite each other) and to the
//! metrics. This operator's orphans are revoked; a cleanup policy revokes (or, in a dry run,
//! reports) the unmanaged tokens it names. Every revocation gets an event on the workspace.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType, Recorder},
};
use tracing::{info, warn};

use super::{Context, Error};
use crate::crd::{
    CleanupMode, ClusterDatabricksWorkspace, DatabricksWorkspace, InventorySpec, InventoryStatus,
    OrphanPolicy, WorkspaceKind, WorkspaceStatus,
};
use crate::inventory::{
    Judge, Tally, classify,
    report::{self, Done},
    schedule::{self, Attempt},
};
use crate::metrics::WorkspaceLabels;
use crate::schedule::EpochMillis;
use crate::workspace::{ResolvedWorkspace, WorkspaceKey};

/// Field manager of `status.inventory`.
pub const FIELD_MANAGER: &str = "databricks-token-operator-inventory";

/// Event reasons and action.
pub const ORPHAN_REVOKED: &str = "OrphanRevoked";
pub const UNMANAGED_TOKEN_REVOKED: &str = "UnmanagedTokenRevoked";
pub const CLEANUP_DRY_RUN: &str = "CleanupDryRun";
pub const INVENTORY_FAILED: &str = "InventoryFailed";
const ACTION: &str = "Inventory";

/// How often the loop looks for due inventories.
const TICK: Duration = Duration::from_secs(2);
/// Workspaces listed at once.
const CONCURRENT: usize = 4;

/// A workspace object with inventory on, of either kind.
#[derive(Clone)]
struct Target {
    key: WorkspaceKey,
    spec: Option<InventorySpec>,
    generation: Option<i64>,
    status: Option<InventoryStatus>,
    reference: ObjectReference,
    object: Object,
}

#[derive(Clone)]
enum Object {
    Namespaced(Arc<DatabricksWorkspace>),
    Cluster(Arc<ClusterDatabricksWorkspace>),
}

impl Target {
    fn labels(&self) -> WorkspaceLabels {
        WorkspaceLabels {
            kind: format!("{:?}", self.key.kind),
            namespace: self.key.namespace.clone().unwrap_or_default(),
            workspace: self.key.name.clone(),
        }
    }
}

fn inventory_of(status: Option<&WorkspaceStatus>) -> Option<InventoryStatus> {
    status.and_then(|s| s.inventory.clone())
}

/// Every workspace object not being deleted, from the controllers' caches.
fn targets(ctx: &Context) -> Vec<Target> {
    let (namespaced, cluster) = ctx.workspaces.stores();
    let live = |m: &kube::core::ObjectMeta| m.deletion_timestamp.is_none();
    let mut all: Vec<Target> = namespaced
        .state()
        .into_iter()
        .filter(|w| live(&w.metadata))
        .map(|w| Target {
            key: WorkspaceKey {
                kind: WorkspaceKind::DatabricksWorkspace,
                namespace: w.namespace(),
                name: w.name_any(),
            },
            spec: w.spec.inventory.clone(),
            generation: w.metadata.generation,
            status: inventory_of(w.status.as_ref()),
            reference: w.object_ref(&()),
            object: Object::Namespaced(w),
        })
        .collect();
    all.extend(
        cluster
            .state()
            .into_iter()
            .filter(|w| live(&w.metadata))
            .map(|w| Target {
                key: WorkspaceKey {
                    kind: WorkspaceKind::ClusterDatabricksWorkspace,
                    namespace: None,
                    name: w.name_any(),
                },
                spec: w.spec.inventory.clone(),
                generation: w.metadata.generation,
                status: inventory_of(w.status.as_ref()),
                reference: w.object_ref(&()),
                object: Object::Cluster(w),
            }),
    );
    all
}

/// Run inventories as they fall due until `shutdown`. `watched`: the namespaces the operator
/// watches (empty: all), which decide where orphans can be told apart.
pub async fn run(
    ctx: Arc<Context>,
    watched: Vec<String>,
    shutdown: impl std::future::Future<Output = ()> + Clone,
) {
    // Orphans are judged against the DatabricksTokens that exist: only once they are all known.
    let ready = async {
        ctx.caches_ready.clone().await;
        let _ = ctx.tokens.wait_until_ready().await;
    };
    tokio::select! {
        _ = ready => {}
        _ = shutdown.clone() => return,
    }
    let mut attempts: HashMap<WorkspaceKey, Attempt> = HashMap::new();
    let mut exported: HashSet<WorkspaceKey> = HashSet::new();
    loop {
        let now = crate::now_millis();
        let all = targets(&ctx);
        let keys: HashSet<&WorkspaceKey> = all.iter().map(|t| &t.key).collect();
        attempts.retain(|k, _| keys.contains(k));
        // Series of workspaces deleted or with inventory turned off go.
        let on: HashSet<WorkspaceKey> = all
            .iter()
            .filter(|t| t.spec.is_some())
            .map(|t| t.key.clone())
            .collect();
        for gone in exported.iter().filter(|k| !on.contains(*k)) {
            ctx.metrics.forget_inventory(&labels_of(gone));
        }
        exported.retain(|k| on.contains(k));

        let mut due = Vec::new();
        for t in all {
            match &t.spec {
                // Once per generation: a failed clear is not retried every tick.
                None if t.status.is_some()
                    && attempts
                        .get(&t.key)
                        .is_none_or(|a| a.generation != t.generation) =>
                {
                    clear_status(&ctx, &t).await;
                    attempts.insert(
                        t.key.clone(),
                        Attempt {
                            at: now,
                            generation: t.generation,
                            failures: 0,
                        },
                    );
                }
                None => {}
                Some(spec) => {
                    let next = schedule::next_due(
                        schedule::interval(spec),
                        t.generation,
                        attempts.get(&t.key),
                    );
                    let blocked = ctx
                        .workspace_backoff
                        .retry_at(&t.key)
                        .is_some_and(|at| at > now);
                    if next <= now && !blocked {
                        due.push(t);
                    }
                }
            }
        }
        let done: Vec<(WorkspaceKey, Attempt)> = futures::stream::iter(due)
            .map(|t| {
                let previous = attempts.get(&t.key).copied();
                let (ctx, watched) = (ctx.clone(), &watched);
                async move {
                    let attempt = inventory_one(&ctx, &t, watched, previous).await;
                    (t.key.clone(), attempt)
                }
            })
            .buffer_unordered(CONCURRENT)
            .collect()
            .await;
        for (key, attempt) in done {
            if attempt.failures == 0 {
                exported.insert(key.clone());
            }
            attempts.insert(key, attempt);
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.clone() => return,
        }
    }
}

fn labels_of(key: &WorkspaceKey) -> WorkspaceLabels {
    WorkspaceLabels {
        kind: format!("{:?}", key.kind),
        namespace: key.namespace.clone().unwrap_or_default(),
        workspace: key.name.clone(),
    }
}

/// One inventory of one workspace: list, count, act, report.
async fn inventory_one(
    ctx: &Context,
    t: &Target,
    watched: &[String],
    previous: Option<Attempt>,
) -> Attempt {
    let Some(spec) = &t.spec else {
        return Attempt {
            at: crate::now_millis(),
            generation: t.generation,
            failures: 0,
        };
    };
    let now = crate::now_millis();
    let (status, failures) = match list_and_act(ctx, t, spec, watched, now).await {
        Ok((tally, done)) => {
            ctx.metrics.observe_inventory(t.labels(), &tally, now);
            info!(workspace = %t.key, total = tally.total(), orphans_revoked = done.orphans_revoked, cleanup_revoked = done.cleanup_revoked, "token inventory");
            let failures = match &done.error {
                None => 0,
                Some(error) => {
                    warn!(workspace = %t.key, error = %error, "token inventory could not revoke");
                    publish(ctx, t, EventType::Warning, INVENTORY_FAILED, error.clone()).await;
                    failures_after(previous, t.generation)
                }
            };
            (
                report::succeeded(&tally, spec, now, t.generation, done),
                failures,
            )
        }
        Err(e) => {
            let message = format!("{}: {e}", e.reason());
            warn!(workspace = %t.key, error = %message, "token inventory failed");
            let repeated = t.status.as_ref().and_then(|s| s.error.as_deref()) == Some(&message);
            if !repeated {
                publish(
                    ctx,
                    t,
                    EventType::Warning,
                    INVENTORY_FAILED,
                    message.clone(),
                )
                .await;
            }
            (
                report::failed(t.status.as_ref(), t.generation, message),
                failures_after(previous, t.generation),
            )
        }
    };
    if t.status.as_ref() != Some(&status)
        && let Err(e) = write_status(ctx, t, Some(&status)).await
    {
        warn!(workspace = %t.key, error = %e, "could not write the inventory status");
    }
    Attempt {
        at: now,
        generation: t.generation,
        failures,
    }
}

/// Failures in a row after one more; a spec change starts the backoff over.
fn failures_after(previous: Option<Attempt>, generation: Option<i64>) -> u32 {
    previous
        .filter(|p| p.generation == generation)
        .map_or(0, |p| p.failures)
        + 1
}

async fn resolve(ctx: &Context, t: &Target) -> Result<Arc<ResolvedWorkspace>, Error> {
    Ok(match &t.object {
        Object::Namespaced(ws) => ctx.workspaces.for_namespaced(ws).await?,
        Object::Cluster(ws) => ctx.workspaces.for_cluster(ws).await?,
    })
}

/// The uids of the DatabricksTokens that exist (in the namespaces this operator watches).
fn existing_uids(ctx: &Context) -> HashSet<String> {
    ctx.tokens.state().iter().filter_map(|t| t.uid()).collect()
}

/// List and count, then act on what the count found. A revocation that fails stops the acting,
/// not the report: the counts are written with the error beside them.
async fn list_and_act(
    ctx: &Context,
    t: &Target,
    spec: &InventorySpec,
    watched: &[String],
    now: EpochMillis,
) -> Result<(Tally, Done), Error> {
    let workspace = resolve(ctx, t).await?;
    let me = workspace
        .identity()
        .await
        .map_err(Error::databricks("read the operator's identity"))?
        .parse::<i64>()
        .ok();
    let uids = existing_uids(ctx);
    let exists = |uid: &str| uids.contains(uid);
    let judge = Judge {
        now,
        warning_window_ms: schedule::warning_window(spec).as_millis() as i64,
        me,
        exists: &exists,
    };
    let tally = workspace
        .client
        .visit_managed_tokens(
            &Default::default(),
            || Tally::new(spec.per_token_metrics),
            |tally, token| tally.add(spec, &judge, token),
        )
        .await
        .map_err(Error::databricks("list the workspace's tokens"))?;
    let mut done = Done::default();
    let acted = async {
        let allowed = match &t.object {
            Object::Namespaced(_) => None,
            Object::Cluster(ws) => Some(ws.spec.allowed_namespaces.as_slice()),
        };
        if spec.orphans == OrphanPolicy::Revoke {
            if classify::orphans_knowable(watched, allowed) {
                revoke_orphans(ctx, t, &workspace, &tally, &mut done).await?;
            } else if tally.orphans.seen > 0 {
                info!(workspace = %t.key, orphans = tally.orphans.seen, "orphans only counted: namespaces this operator does not watch may use the workspace");
            }
        }
        if let Some(cleanup) = &spec.cleanup {
            apply_cleanup(ctx, t, &workspace, cleanup.mode, &tally, &mut done).await?;
        }
        Ok::<_, Error>(())
    };
    if let Err(e) = acted.await {
        done.error = Some(format!("{}: {e}", e.reason()));
    }
    Ok((tally, done))
}

async fn revoke_orphans(
    ctx: &Context,
    t: &Target,
    workspace: &ResolvedWorkspace,
    tally: &Tally,
    done: &mut Done,
) -> Result<(), Error> {
    if tally.orphans.ids.is_empty() {
        return Ok(());
    }
    // A DatabricksToken created while the list was read minted after the uids were taken: ask
    // the cache again before revoking anything.
    let uids = existing_uids(ctx);
    for (id, uid) in tally
        .orphans
        .ids
        .iter()
        .filter(|(_, uid)| !uids.contains(*uid))
    {
        if revoke(workspace, id).await? {
            done.orphans_revoked += 1;
            ctx.metrics.orphan_revoked();
            ctx.metrics.revocation("inventory_orphan");
            let note = format!(
                "Revoked token {id}: tagged by this operator for DatabricksToken uid {uid}, which no longer exists"
            );
            publish(ctx, t, EventType::Normal, ORPHAN_REVOKED, note).await;
        }
    }
    Ok(())
}

async fn apply_cleanup(
    ctx: &Context,
    t: &Target,
    workspace: &ResolvedWorkspace,
    mode: CleanupMode,
    tally: &Tally,
    done: &mut Done,
) -> Result<(), Error> {
    match mode {
        CleanupMode::DryRun => {
            let ids: Vec<&str> = tally.cleanup.ids.keys().map(String::as_str).collect();
            if report::dry_run_is_news(t.status.as_ref(), &ids) {
                let note = report::dry_run_note(tally.cleanup.seen, &ids);
                publish(ctx, t, EventType::Normal, CLEANUP_DRY_RUN, note).await;
            }
        }
        CleanupMode::Revoke => {
            for (id, owner) in &tally.cleanup.ids {
                if revoke(workspace, id).await? {
                    done.cleanup_revoked += 1;
                    ctx.metrics.revocation("cleanup");
                    let note = format!(
                        "Revoked token {id} of owner {owner}: named by a cleanup rule (spec.inventory.cleanup)"
                    );
                    publish(ctx, t, EventType::Normal, UNMANAGED_TOKEN_REVOKED, note).await;
                }
            }
        }
    }
    Ok(())
}

/// Revoke through token management (an admin may revoke any owner's token: the inventory came
/// from the same API, so whoever minted it); false when it was already gone.
async fn revoke(workspace: &ResolvedWorkspace, token_id: &str) -> Result<bool, Error> {
    match workspace.client.delete_managed_token(token_id).await {
        Ok(()) => Ok(true),
        Err(databricks_client::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(Error::databricks("revoke a token")(e)),
    }
}

async fn publish(ctx: &Context, t: &Target, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: ACTION.to_string(),
        secondary: None,
    };
    let recorder = Recorder::new(ctx.kube.clone(), ctx.reporter.clone());
    if let Err(e) = recorder.publish(&event, &t.reference).await {
        warn!(error = %e, reason, "could not publish event");
    }
}

/// Inventory turned off: give up `status.inventory` (the field manager's empty apply removes it).
async fn clear_status(ctx: &Context, t: &Target) {
    if let Err(e) = write_status(ctx, t, None).await {
        warn!(workspace = %t.key, error = %e, "could not clear the inventory status");
    }
}

async fn write_status(
    ctx: &Context,
    t: &Target,
    inventory: Option<&InventoryStatus>,
) -> Result<(), kube::Error> {
    let status = match inventory {
        Some(i) => serde_json::json!({ "inventory": i }),
        None => serde_json::json!({}),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match &t.object {
        Object::Namespaced(ws) => {
            let patch = serde_json::json!({
                "apiVersion": "dbtoken.dev/v1alpha1",
                "kind": "DatabricksWorkspace",
                "status": status,
            });
            let api: Api<DatabricksWorkspace> =
                Api::namespaced(ctx.kube.clone(), &ws.namespace().unwrap_or_default());
            api.patch_status(&ws.name_any(), &params, &Patch::Apply(&patch))
                .await?;
        }
        Object::Cluster(ws) => {
            let patch = serde_json::json!({
                "apiVersion": "dbtoken.dev/v1alpha1",
                "kind": "ClusterDatabricksWorkspace",
                "status": status,
            });
            let api: Api<ClusterDatabricksWorkspace> = Api::all(ctx.kube.clone());
            api.patch_status(&ws.name_any(), &params, &Patch::Apply(&patch))
                .await?;
        }
    }
    Ok(())
}

/// The Ready check writes the workspace status without `inventory` (this module's field), and
/// compares without it, so neither writer takes over the other's fields.
pub fn without_inventory(status: Option<&WorkspaceStatus>) -> Option<WorkspaceStatus> {
    status.cloned().map(|mut s| {
        s.inventory = None;
        s
    })
}
