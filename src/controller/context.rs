//! What every reconcile shares: clients, caches, bookkeeping and the settings they run with.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use futures::future;
use kube::{
    ResourceExt,
    runtime::{
        events::Reporter,
        reflector::{ObjectRef, Store},
    },
};

use super::settings::Settings;
use super::{
    backoff, credential_watch, failure_events, inventory, lock::lock, own_writes,
    replacements::Replacements, secret_index, verification::Verifications,
};
use crate::crd::DatabricksToken;
use crate::metrics::Metrics;
use crate::schedule::EpochMillis;
use crate::workspace::{WorkspaceKey, Workspaces};

/// Field manager for every server-side apply of the operator.
pub const FIELD_MANAGER: &str = "databricks-token-operator";

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
    pub backoff: backoff::Backoff,
    /// Shared by every caller of a workspace, so a failing one is probed once per step.
    pub workspace_backoff: backoff::WorkspaceBackoff<WorkspaceKey>,
    /// When each resource minted a replacement for a token taken out of its Secret.
    pub replacements: Replacements,
    /// When each resource was last checked against Databricks.
    pub verifications: Verifications,
    /// When this process started: a token list taken since then shows what a previous
    /// process may have minted and not recorded.
    pub started_at: EpochMillis,
    /// Secrets this process wrote, so the watch event of its own write triggers nothing.
    pub own_writes: Arc<own_writes::OwnWrites>,
    /// Workspace objects this process has looked at.
    pub workspaces_seen: Mutex<HashSet<String>>,
    /// Asks the workspace controllers for a check now (a refused call, a credential change).
    pub workspace_triggers: credential_watch::WorkspaceTriggers,
    /// When each failing token's failure was last published as an event.
    pub failure_events: failure_events::FailureEvents,
    /// Resolves once the Secret and workspace caches hold their first full list. Shared, because
    /// a store's readiness future wakes only its latest waiter, and reconciles wait concurrently.
    pub caches_ready: future::Shared<future::BoxFuture<'static, ()>>,
}

impl Context {
    /// True the first time this process sees the workspace `key`.
    pub fn first_sight_of_workspace(&self, key: String) -> bool {
        lock(&self.workspaces_seen).insert(key)
    }

    /// Start the backoff of these tokens over.
    pub fn reset_backoff_of(
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
        self.verifications.forget(&uid);
        self.replacements.forget(&uid);
        self.backoff.reset(&uid);
        self.failure_events.clear(&uid);
        self.metrics
            .forget_token(&token.namespace().unwrap_or_default(), &token.name_any());
    }
}
