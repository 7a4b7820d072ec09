//! Per-workspace snapshots of the live token list, shared by every resource of that workspace,
//! so verifying N tokens costs one list call rather than N.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use databricks_client::TokenInfo;

use super::Error;
use crate::databricks::{self, Owner};
use crate::schedule::EpochMillis;
use crate::workspace::{ResolvedWorkspace, WorkspaceKey};

#[derive(Clone)]
pub struct Snapshot {
    /// Local time the list request was sent: tokens created before it are in the list.
    pub taken_at: EpochMillis,
    pub tokens: Arc<Vec<TokenInfo>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Snapshot>>>;

#[derive(Default)]
pub struct Inventory {
    slots: Mutex<HashMap<(WorkspaceKey, bool), Slot>>,
    /// The operator's identity id per workspace, for the client it was read with (a new
    /// client may carry other credentials).
    identities: Mutex<HashMap<WorkspaceKey, (Weak<ResolvedWorkspace>, i64)>>,
}

impl Inventory {
    /// Who the workspace credentials authenticate as (SCIM Me), read once per client.
    async fn identity_id(&self, workspace: &Arc<ResolvedWorkspace>) -> Result<i64, Error> {
        let known = self
            .identities
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&workspace.key)
            .filter(|(client, _)| std::ptr::eq(client.as_ptr(), Arc::as_ptr(workspace)))
            .map(|(_, id)| *id);
        if let Some(id) = known {
            return Ok(id);
        }
        let me = workspace
            .client
            .current_user()
            .await
            .map_err(Error::databricks("read the operator's identity"))?;
        let id = me.id.parse::<i64>().map_err(|_| Error::Databricks {
            action: "read the operator's identity",
            source: databricks_client::Error::Other {
                status: 200,
                code: "UNEXPECTED_RESPONSE".into(),
                message: format!("SCIM Me id {:?} is not a number", me.id),
            },
        })?;
        self.identities
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(workspace.key.clone(), (Arc::downgrade(workspace), id));
        Ok(id)
    }

    /// A snapshot of the tokens visible for `owner`, taken no earlier than `not_before`.
    /// Concurrent callers for the same workspace share one request.
    pub async fn snapshot(
        &self,
        workspace: &Arc<ResolvedWorkspace>,
        owner: &Owner,
        not_before: EpochMillis,
    ) -> Result<Snapshot, Error> {
        let managed = matches!(owner, Owner::ServicePrincipal(_));
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots
                .entry((workspace.key.clone(), managed))
                .or_default()
                .clone()
        };
        let mut guard = slot.lock().await;
        if let Some(snap) = guard.as_ref().filter(|s| s.taken_at >= not_before) {
            return Ok(snap.clone());
        }
        let creator = match owner {
            Owner::Caller => None,
            Owner::ServicePrincipal(_) => Some(self.identity_id(workspace).await?),
        };
        let taken_at = crate::now_millis();
        let tokens = databricks::list(&workspace.client, owner, creator)
            .await
            .map_err(Error::databricks("list tokens"))?;
        let snap = Snapshot {
            taken_at,
            tokens: Arc::new(tokens),
        };
        *guard = Some(snap.clone());
        Ok(snap)
    }
}
