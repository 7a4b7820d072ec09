//! What makes a workspace be checked again at once, rather than at its periodic check: a token
//! whose call was refused (401/403) and a change to a credential Secret.
//!
//! Credential Secrets are the user's, so they are found by what they are not: a metadata-only
//! watch of the Secrets the operator does not manage (`managed-by` label), kept in no cache, each
//! change mapped to the workspaces naming that Secret. It covers the watched namespaces (all, or
//! the `--namespaces` list, where the operator may already list Secrets); a
//! ClusterDatabricksWorkspace's credential in a namespace outside that list is read with `get`
//! only and is re-checked when a token's call is refused or at the periodic check.

use futures::{Stream, StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    core::PartialObjectMeta,
    runtime::{
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tokio::sync::mpsc;

use super::watch;
use crate::crd::{ClusterDatabricksWorkspace, DatabricksWorkspace, WorkspaceKind};
use crate::secret::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::workspace::{WorkspaceKey, WorkspaceObject};

/// Queued checks; a full queue drops a request, as the checks already queued re-read the state.
const QUEUE: usize = 256;

/// Requests a workspace check from anywhere (token reconciles, the credential watch).
pub struct WorkspaceTriggers {
    namespaced: mpsc::Sender<ObjectRef<DatabricksWorkspace>>,
    cluster: mpsc::Sender<ObjectRef<ClusterDatabricksWorkspace>>,
    namespaced_store: Store<DatabricksWorkspace>,
    cluster_store: Store<ClusterDatabricksWorkspace>,
}

/// The receiving ends, one per workspace controller.
pub struct TriggerStreams {
    pub namespaced: mpsc::Receiver<ObjectRef<DatabricksWorkspace>>,
    pub cluster: mpsc::Receiver<ObjectRef<ClusterDatabricksWorkspace>>,
}

/// `namespaced_store` and `cluster_store` show which workspaces are Ready.
pub fn channel(
    namespaced_store: Store<DatabricksWorkspace>,
    cluster_store: Store<ClusterDatabricksWorkspace>,
) -> (WorkspaceTriggers, TriggerStreams) {
    let (namespaced, namespaced_rx) = mpsc::channel(QUEUE);
    let (cluster, cluster_rx) = mpsc::channel(QUEUE);
    (
        WorkspaceTriggers {
            namespaced,
            cluster,
            namespaced_store,
            cluster_store,
        },
        TriggerStreams {
            namespaced: namespaced_rx,
            cluster: cluster_rx,
        },
    )
}

impl WorkspaceTriggers {
    /// A token's call with this workspace's credential was refused. Only a workspace that says
    /// it is Ready is checked: one already not Ready is rechecked on its own backoff, which a
    /// fleet of failing tokens must not defeat.
    pub fn refused(&self, key: &WorkspaceKey) {
        let ready = match (key.kind, &key.namespace) {
            (WorkspaceKind::DatabricksWorkspace, Some(ns)) => self
                .namespaced_store
                .get(&ObjectRef::new(&key.name).within(ns))
                .map(|ws| ws.ready_status()),
            (WorkspaceKind::ClusterDatabricksWorkspace, _) => self
                .cluster_store
                .get(&ObjectRef::new(&key.name))
                .map(|ws| ws.ready_status()),
            (WorkspaceKind::DatabricksWorkspace, None) => None,
        };
        if ready.is_some_and(|status| status != "False") {
            self.recheck(key);
        }
    }

    /// Check this workspace now.
    pub fn recheck(&self, key: &WorkspaceKey) {
        let _ = match (key.kind, &key.namespace) {
            (WorkspaceKind::DatabricksWorkspace, Some(ns)) => self
                .namespaced
                .try_send(ObjectRef::new(&key.name).within(ns))
                .is_ok(),
            (WorkspaceKind::ClusterDatabricksWorkspace, _) => {
                self.cluster.try_send(ObjectRef::new(&key.name)).is_ok()
            }
            (WorkspaceKind::DatabricksWorkspace, None) => false,
        };
    }
}

/// A receiver as the stream a controller's `reconcile_on` takes.
pub fn stream_of<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Every change (or deletion) of a Secret the operator does not manage, metadata only. Not what
/// a (re)list shows: at startup that is every Secret, and a restarted operator re-checks nothing.
pub fn unmanaged_secret_changes(
    kube: &kube::Client,
    namespaces: &[String],
) -> BoxStream<'static, PartialObjectMeta<Secret>> {
    let selector = format!("{MANAGED_BY_LABEL}!={MANAGED_BY}");
    let nothing_kept = std::sync::Arc::new(|_: &str| Vec::new());
    watch::namespaced::<PartialObjectMeta<Secret>>(
        kube,
        namespaces,
        watch::config().labels(&selector),
        nothing_kept,
    )
    // A watch error is retried by the watcher's backoff; the periodic check covers what the
    // lost event would have triggered.
    .filter_map(|event| futures::future::ready(event.ok().and_then(live_change)))
    .boxed()
}

/// The object of a live change; None for the events of a (re)list.
fn live_change<K>(event: watcher::Event<K>) -> Option<K> {
    match event {
        watcher::Event::Apply(obj) | watcher::Event::Delete(obj) => Some(obj),
        watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::InitDone => None,
    }
}

/// The workspaces whose credential is the Secret `namespace/name`.
pub fn workspaces_using<'a>(
    namespace: &str,
    name: &str,
    namespaced: impl IntoIterator<Item = &'a DatabricksWorkspace>,
    cluster: impl IntoIterator<Item = &'a ClusterDatabricksWorkspace>,
) -> Vec<WorkspaceKey> {
    fn using<K: WorkspaceObject>(ws: &K, namespace: &str, name: &str) -> Option<WorkspaceKey> {
        ws.credential()
            .filter(|c| c.namespace == namespace && c.name == name)
            .map(|_| ws.key())
    }
    let namespaced = namespaced
        .into_iter()
        .filter_map(|ws| using(ws, namespace, name));
    let cluster = cluster
        .into_iter()
        .filter_map(|ws| using(ws, namespace, name));
    namespaced.chain(cluster).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespaced(ns: &str, name: &str, secret: &str) -> DatabricksWorkspace {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dbtoken.dev/v1alpha1", "kind": "DatabricksWorkspace",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"host": "https://x.cloud.databricks.com",
                     "auth": {"pat": {"secretRef": {"name": secret}}}},
        }))
        .unwrap()
    }

    fn cluster(name: &str, secret_ns: &str, secret: &str) -> ClusterDatabricksWorkspace {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dbtoken.dev/v1alpha1", "kind": "ClusterDatabricksWorkspace",
            "metadata": {"name": name},
            "spec": {"host": "https://x.cloud.databricks.com", "allowedNamespaces": ["a"],
                     "auth": {"oauthM2M": {"secretRef": {"name": secret, "namespace": secret_ns}}}},
        }))
        .unwrap()
    }

    #[test]
    fn a_secret_maps_to_the_workspaces_naming_it_in_its_namespace_only() {
        let ns_ws = [
            namespaced("team-a", "ws", "cred"),
            namespaced("team-a", "other", "other-cred"),
            namespaced("team-b", "ws", "cred"),
        ];
        let cl_ws = [
            cluster("shared", "platform", "cred"),
            cluster("elsewhere", "team-a", "cred"),
        ];
        let names = |keys: Vec<WorkspaceKey>| -> Vec<String> {
            keys.iter().map(ToString::to_string).collect()
        };
        assert_eq!(
            names(workspaces_using("team-a", "cred", &ns_ws, &cl_ws)),
            [
                "DatabricksWorkspace team-a/ws",
                "ClusterDatabricksWorkspace elsewhere"
            ]
        );
        assert_eq!(
            names(workspaces_using("platform", "cred", &ns_ws, &cl_ws)),
            ["ClusterDatabricksWorkspace shared"]
        );
        assert!(workspaces_using("team-a", "unrelated", &ns_ws, &cl_ws).is_empty());
    }

    #[test]
    fn only_live_changes_count_not_a_relist() {
        use watcher::Event;
        assert_eq!(live_change(Event::Apply(1)), Some(1));
        assert_eq!(live_change(Event::Delete(2)), Some(2));
        assert_eq!(live_change(Event::<i32>::Init), None);
        assert_eq!(live_change(Event::InitApply(3)), None);
        assert_eq!(live_change(Event::<i32>::InitDone), None);
    }

    #[tokio::test]
    async fn a_recheck_reaches_the_controller_of_its_kind() {
        let (triggers, streams) = channel(
            kube::runtime::reflector::store().0,
            kube::runtime::reflector::store().0,
        );
        triggers.recheck(&WorkspaceKey {
            kind: WorkspaceKind::DatabricksWorkspace,
            namespace: Some("team-a".into()),
            name: "ws".into(),
        });
        triggers.recheck(&WorkspaceKey {
            kind: WorkspaceKind::ClusterDatabricksWorkspace,
            namespace: None,
            name: "shared".into(),
        });
        drop(triggers);
        let namespaced: Vec<_> = stream_of(streams.namespaced).collect().await;
        let cluster: Vec<_> = stream_of(streams.cluster).collect().await;
        assert_eq!(namespaced, [ObjectRef::new("ws").within("team-a")]);
        assert_eq!(cluster, [ObjectRef::new("shared")]);
    }
}
