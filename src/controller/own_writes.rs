//! The Secrets this process wrote, by resourceVersion. The watch event a write produces would
//! otherwise trigger a second reconcile of a resource that is already in place, and at scale
//! that second reconcile (reading a cache that may not yet show the status written after the
//! Secret) doubles the reconciles and adds writes.

use std::{collections::HashMap, sync::Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::{Resource, ResourceExt};

#[derive(Default)]
pub struct OwnWrites {
    /// (namespace, name) -> resourceVersion of the last write; one entry per Secret at most.
    written: Mutex<HashMap<(String, String), String>>,
}

impl OwnWrites {
    /// Remember the Secret the API server returned for a write of this process.
    pub fn record(&self, written: &Secret) {
        let Some(version) = written.resource_version() else {
            return;
        };
        super::lock::lock(&self.written).insert(key(written), version);
    }

    /// Whether a watched Secret is exactly the result of this process's last write to it.
    /// Any event for the Secret settles its entry: later events are someone else's change.
    pub fn is_echo(&self, seen: &impl Resource) -> bool {
        let Some(version) = super::lock::lock(&self.written).remove(&key(seen)) else {
            return false;
        };
        seen.resource_version().as_deref() == Some(version.as_str())
    }
}

fn key(secret: &impl Resource) -> (String, String) {
    (secret.namespace().unwrap_or_default(), secret.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn secret(version: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("s".into()),
                namespace: Some("ns".into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_echo_of_a_write_is_recognised_once() {
        let own = OwnWrites::default();
        own.record(&secret("7"));
        assert!(own.is_echo(&secret("7")));
        assert!(!own.is_echo(&secret("7")), "a second event is not an echo");
    }

    #[test]
    fn a_later_change_by_someone_else_is_not_an_echo() {
        let own = OwnWrites::default();
        own.record(&secret("7"));
        assert!(!own.is_echo(&secret("8")));
        assert!(
            !own.is_echo(&secret("7")),
            "the entry is settled by the first event"
        );
    }

    #[test]
    fn unknown_secrets_are_not_echoes() {
        assert!(!OwnWrites::default().is_echo(&secret("1")));
    }
}
