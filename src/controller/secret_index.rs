//! What the controller keeps of each managed Secret between reconciles: its resourceVersion and
//! the token record its annotations hold. A few hundred bytes per Secret instead of the whole
//! object (or even its metadata), and never a token value.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use k8s_openapi::api::core::v1::Secret;
use kube::{ResourceExt, core::PartialObjectMeta, runtime::watcher};
use tokio::sync::watch;

use crate::secret::{self, TokenRecord};

/// A managed Secret as the cache knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretSummary {
    pub resource_version: Option<String>,
    /// Shared, so a lookup copies a pointer, and boxed, so the index's table stays small.
    pub record: Option<Arc<TokenRecord>>,
}

type Key = (String, String);

#[derive(Default)]
struct State {
    secrets: HashMap<Key, SecretSummary>,
    /// Filled during a (re)list, swapped in when it is complete, so Secrets deleted while the
    /// watch was down disappear too.
    relisting: Option<HashMap<Key, SecretSummary>>,
}

#[derive(Clone)]
pub struct SecretIndex {
    state: Arc<Mutex<State>>,
    ready: watch::Sender<bool>,
}

impl Default for SecretIndex {
    fn default() -> Self {
        Self {
            state: Default::default(),
            ready: watch::Sender::new(false),
        }
    }
}

impl SecretIndex {
    pub fn get(&self, namespace: &str, name: &str) -> Option<SecretSummary> {
        super::lock::lock(&self.state)
            .secrets
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// The Secrets held in one namespace, as bare metadata (name and namespace).
    pub fn in_namespace(&self, namespace: &str) -> Vec<PartialObjectMeta<Secret>> {
        super::lock::lock(&self.state)
            .secrets
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(ns, name)| PartialObjectMeta {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect()
    }

    /// Resolves once the first full list is in.
    pub async fn wait_until_ready(&self) {
        let _ = self.ready.subscribe().wait_for(|ready| *ready).await;
    }

    /// Apply one watch event.
    pub fn apply(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        let mut state = super::lock::lock(&self.state);
        match event {
            watcher::Event::Apply(s) => {
                state.secrets.insert(key(s), summary(s));
            }
            watcher::Event::Delete(s) => {
                state.secrets.remove(&key(s));
            }
            watcher::Event::Init => state.relisting = Some(HashMap::new()),
            watcher::Event::InitApply(s) => {
                state
                    .relisting
                    .get_or_insert_default()
                    .insert(key(s), summary(s));
            }
            watcher::Event::InitDone => {
                state.secrets = state.relisting.take().unwrap_or_default();
                state.secrets.shrink_to_fit();
                self.ready.send_replace(true);
            }
        }
    }
}

fn key(s: &PartialObjectMeta<Secret>) -> Key {
    (s.namespace().unwrap_or_default(), s.name_any())
}

fn summary(s: &PartialObjectMeta<Secret>) -> SecretSummary {
    SecretSummary {
        resource_version: s.resource_version(),
        record: secret::read_record(&s.metadata).map(Arc::new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;
    use watcher::Event;

    fn secret(name: &str, version: &str) -> PartialObjectMeta<Secret> {
        PartialObjectMeta {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn applies_and_deletes_are_tracked() {
        let index = SecretIndex::default();
        index.apply(&Event::Apply(secret("a", "1")));
        index.apply(&Event::Apply(secret("a", "2")));
        let a = index.get("ns", "a").unwrap();
        assert_eq!(a.resource_version.as_deref(), Some("2"));
        assert_eq!(a.record, None, "no annotations, no record");
        index.apply(&Event::Delete(secret("a", "3")));
        assert_eq!(index.get("ns", "a"), None);
    }

    #[test]
    fn a_relist_replaces_everything_once_complete() {
        let index = SecretIndex::default();
        index.apply(&Event::Apply(secret("gone", "1")));
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(secret("kept", "5")));
        assert!(
            index.get("ns", "gone").is_some(),
            "the old view stays until the list ends"
        );
        index.apply(&Event::InitDone);
        assert_eq!(index.get("ns", "gone"), None);
        assert!(index.get("ns", "kept").is_some());
    }

    #[tokio::test]
    async fn ready_after_the_first_full_list() {
        let index = SecretIndex::default();
        let waiting = tokio::spawn({
            let index = index.clone();
            async move { index.wait_until_ready().await }
        });
        index.apply(&Event::Init);
        index.apply(&Event::InitDone);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("ready")
            .unwrap();
    }
}
