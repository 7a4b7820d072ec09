//! Watch streams over all namespaces or a listed few, and what retriggers dependents.

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::NamespaceResourceScope;
use kube::{Api, Resource, runtime::watcher};
use serde::de::DeserializeOwned;

use crate::crd::{ClusterDatabricksWorkspace, DatabricksWorkspace, find_condition};

/// One watch over every namespace, or several merged into one stream when namespaces are listed.
pub fn namespaced<K>(
    client: &kube::Client,
    namespaces: &[String],
    config: watcher::Config,
) -> BoxStream<'static, watcher::Result<watcher::Event<K>>>
where
    K: Resource<Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    K::DynamicType: Default,
{
    if namespaces.is_empty() {
        return watcher::watcher(Api::<K>::all(client.clone()), config).boxed();
    }
    let streams = namespaces.iter().map(|ns| {
        watcher::watcher(Api::<K>::namespaced(client.clone(), ns), config.clone()).boxed()
    });
    futures::stream::select_all(streams).boxed()
}

/// Caches do not need managedFields; dropping them keeps memory flat at scale.
pub fn strip_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// A workspace retriggers its tokens when its spec or its readiness changes (a credential fix).
pub fn workspace_trigger<K: WorkspaceLike>(ws: &K) -> Option<u64> {
    Some(crate::schedule::seed_of(&format!(
        "{:?}/{}",
        ws.meta().generation,
        ws.ready_status()
    )))
}

pub trait WorkspaceLike: Resource {
    fn ready_status(&self) -> String;
}

impl WorkspaceLike for DatabricksWorkspace {
    fn ready_status(&self) -> String {
        self.status
            .as_ref()
            .and_then(|s| find_condition(&s.conditions, "Ready"))
            .map(|c| format!("{:?}", c.status))
            .unwrap_or_default()
    }
}

impl WorkspaceLike for ClusterDatabricksWorkspace {
    fn ready_status(&self) -> String {
        self.status
            .as_ref()
            .and_then(|s| find_condition(&s.conditions, "Ready"))
            .map(|c| format!("{:?}", c.status))
            .unwrap_or_default()
    }
}
