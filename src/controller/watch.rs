//! Watch streams over all namespaces or a listed few, and what retriggers dependents.

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::NamespaceResourceScope;
use kube::{Api, Resource, runtime::watcher};
use serde::de::DeserializeOwned;

use crate::crd::{ClusterDatabricksWorkspace, DatabricksWorkspace, find_condition};

/// Watch settings for the large caches. Small list pages: each page is decoded whole, with the
/// managedFields the caches then drop, and those transient pages set the peak memory of a
/// restart with thousands of objects (BENCHMARKS.md).
pub fn config() -> watcher::Config {
    watcher::Config::default().page_size(100)
}

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

/// What `kubectl apply` leaves on every object it applied: a copy of the whole manifest.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Caches need neither managedFields nor kubectl's copy of the manifest, which together are
/// often larger than the rest of the object; dropping them keeps memory flat at scale.
pub fn slim_for_cache<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::ObjectMeta;

    #[test]
    fn slim_objects_keep_their_own_annotations() {
        let mut secret = Secret {
            metadata: ObjectMeta {
                annotations: Some(
                    [(LAST_APPLIED, "{...}"), ("dbtoken.dev/token-id", "abc")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                managed_fields: Some(vec![Default::default()]),
                ..Default::default()
            },
            ..Default::default()
        };
        slim_for_cache(&mut secret);
        let annotations = secret.metadata.annotations.unwrap();
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations["dbtoken.dev/token-id"], "abc");
        assert!(secret.metadata.managed_fields.is_none());
    }
}
