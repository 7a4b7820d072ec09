//! Watch streams over all namespaces or a listed few, and what retriggers dependents.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use std::future::Future;

use futures::{Stream, StreamExt, channel::mpsc::UnboundedReceiver, stream::BoxStream};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;

use super::namespace_merge::{self, Known};
use crate::crd::DatabricksToken;
use crate::workspace::{WorkspaceObject, Workspaces};

/// Watch settings for the large caches. Small list pages: each page is decoded whole, with the
/// managedFields the caches then drop, and those transient pages set the peak memory of a
/// restart with thousands of objects (BENCHMARKS.md).
pub fn config() -> watcher::Config {
    watcher::Config::default().page_size(100)
}

/// One watch over every namespace, or one per listed namespace merged so that a single store
/// holds them all (see `namespace_merge`). `known` lists what the store fed by the stream holds
/// in a namespace, to prune it when that namespace alone lists again. Each watch backs off on
/// its own errors.
pub fn namespaced<K>(
    client: &kube::Client,
    namespaces: &[String],
    config: watcher::Config,
    known: Known<K>,
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
        return watcher::watcher(Api::<K>::all(client.clone()), config)
            .default_backoff()
            .boxed();
    }
    let streams = namespaces
        .iter()
        .map(|ns| {
            watcher::watcher(Api::<K>::namespaced(client.clone(), ns), config.clone())
                .default_backoff()
                .boxed()
        })
        .collect();
    namespace_merge::merge(namespaces.to_vec(), streams, known).boxed()
}

/// What a reflector store holds in one namespace, for `namespaced`.
pub fn known_in_store<K>(store: Store<K>) -> Known<K>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    Arc::new(move |ns: &str| {
        store
            .state()
            .iter()
            .filter(|o| o.meta().namespace.as_deref() == Some(ns))
            .map(|o| (**o).clone())
            .collect()
    })
}

/// One watch for two consumers: each event of `events` (a reflector's, so the store is filled
/// first) goes to both returned streams, so a kind the token controller and the workspace checks
/// both follow is listed and watched once. The returned future drives the watch until
/// `shutdown`. A watch error is logged; the watcher retries with its backoff.
pub fn fan_out<K>(
    events: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (
    impl Future<Output = ()> + Send + 'static,
    UnboundedReceiver<watcher::Event<K>>,
    UnboundedReceiver<watcher::Event<K>>,
)
where
    K: Clone + Send + 'static,
{
    let (first, first_rx) = futures::channel::mpsc::unbounded();
    let (second, second_rx) = futures::channel::mpsc::unbounded();
    let driver = events.take_until(shutdown).for_each(move |event| {
        match event {
            Ok(event) => {
                let _ = first.unbounded_send(event.clone());
                let _ = second.unbounded_send(event);
            }
            Err(e) => tracing::warn!(error = %e, "watch error"),
        }
        futures::future::ready(())
    });
    (driver, first_rx, second_rx)
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

/// Passes an object on only when its trigger value changed since the last one seen, like
/// kube-runtime's `predicate_filter`, but remembering two integers per object instead of its
/// name, namespace and uid as strings: at 10,000 tokens that is about 2 MiB less
/// (BENCHMARKS.md). Keys are 64-bit hashes of the uid; two objects would have to collide, and then
/// still repeat each other's trigger value, for an event to be missed, and the periodic
/// verification would still come.
#[derive(Clone, Default)]
pub struct TriggerFilter {
    last: Arc<Mutex<HashMap<u64, u64>>>,
}

impl TriggerFilter {
    /// Whether `obj` is to be reconciled: its trigger value is new or changed.
    pub fn changed<K: Resource>(&self, obj: &K, trigger: impl Fn(&K) -> Option<u64>) -> bool {
        let Some(value) = trigger(obj) else {
            return true;
        };
        let key = key_of(obj);
        super::lock::lock(&self.last).insert(key, value) != Some(value)
    }

    /// Drop what is remembered of a deleted object.
    pub fn forget<K: Resource>(&self, obj: &K) {
        super::lock::lock(&self.last).remove(&key_of(obj));
    }
}

fn key_of<K: Resource>(obj: &K) -> u64 {
    let meta = obj.meta();
    crate::schedule::seed_of(meta.uid.as_deref().unwrap_or_default())
}

/// The `DatabricksToken` a managed Secret belongs to: its controller ownerReference, or for a
/// `Retain` Secret (which has none, see `secret::ANN_OWNER_UID`) the token-name label.
pub fn secret_owner(
    secret: &PartialObjectMeta<Secret>,
) -> Option<ObjectRef<crate::crd::DatabricksToken>> {
    let meta = &secret.metadata;
    let namespace = meta.namespace.as_deref()?;
    let name = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "DatabricksToken")
        .map(|o| o.name.as_str())
        .or_else(|| {
            meta.labels
                .as_ref()?
                .get(crate::secret::TOKEN_NAME_LABEL)
                .map(String::as_str)
        })?;
    Some(ObjectRef::new(name).within(namespace))
}

/// A workspace retriggers its tokens when its spec or its readiness changes (a credential fix).
pub fn workspace_trigger<K: WorkspaceObject>(ws: &K) -> Option<u64> {
    Some(crate::schedule::seed_of(&format!(
        "{:?}/{}",
        ws.meta().generation,
        ws.ready_status()
    )))
}

/// What retriggers a token: its spec, a rotation request, deletion. Not status writes, which
/// would otherwise make every reconcile trigger the next.
pub fn token_trigger(token: &DatabricksToken) -> Option<u64> {
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

/// Tokens that use the workspace `ws`.
pub fn dependents<K: WorkspaceObject>(
    reader: &Store<DatabricksToken>,
    ws: &K,
) -> Vec<ObjectRef<DatabricksToken>> {
    let key = ws.key();
    reader
        .state()
        .iter()
        .filter(|t| Workspaces::key_for(t) == key)
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn object(uid: &str, generation: i64) -> Secret {
        Secret {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                generation: Some(generation),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn only_a_changed_trigger_passes() {
        let filter = TriggerFilter::default();
        let generation = |s: &Secret| s.metadata.generation.map(|g| g as u64);
        assert!(filter.changed(&object("a", 1), generation), "first sight");
        assert!(!filter.changed(&object("a", 1), generation), "same again");
        assert!(
            filter.changed(&object("b", 1), generation),
            "another object"
        );
        assert!(filter.changed(&object("a", 2), generation), "changed");
        filter.forget(&object("a", 2));
        assert!(filter.changed(&object("a", 2), generation), "forgotten");
        assert!(
            filter.changed(&object("c", 1), |_| None),
            "no trigger value always passes"
        );
    }

    #[test]
    fn a_secret_maps_to_its_token_by_reference_or_by_label() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let meta = |owner: Option<&str>, label: Option<&str>| {
            let mut m = PartialObjectMeta::<Secret>::default();
            m.metadata.namespace = Some("team-a".into());
            m.metadata.owner_references = owner.map(|name| {
                vec![OwnerReference {
                    kind: "DatabricksToken".into(),
                    name: name.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            });
            m.metadata.labels = label
                .map(|l| [(crate::secret::TOKEN_NAME_LABEL.to_string(), l.to_string())].into());
            m
        };
        let name = |m| secret_owner(&m).map(|r| r.name);
        assert_eq!(name(meta(Some("a"), Some("a"))).as_deref(), Some("a"));
        assert_eq!(
            name(meta(None, Some("retained"))).as_deref(),
            Some("retained")
        );
        assert_eq!(name(meta(None, None)), None);
    }

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
