//! Per-workspace snapshots of the live token list, shared by every resource of that workspace,
//! so verifying N tokens costs one list call rather than N.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use databricks_client::TokenInfo;

use super::error::Error;
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
    slots: Mutex<HashMap<(WorkspaceKey, String, bool), Slot>>,
}

impl Inventory {
    /// Who the workspace credentials authenticate as, as the numeric id token lists filter on
    /// (SCIM Me, read once per client by `ResolvedWorkspace::identity`).
    async fn identity_id(workspace: &ResolvedWorkspace) -> Result<i64, Error> {
        let id = workspace
            .identity()
            .await
            .map_err(Error::databricks("read the operator's identity"))?;
        id.parse::<i64>().map_err(|_| Error::Databricks {
            action: "read the operator's identity",
            source: databricks_client::Error::Other {
                status: 200,
                code: "UNEXPECTED_RESPONSE".into(),
                message: format!("SCIM Me id {id:?} is not a number"),
            },
        })
    }

    /// A snapshot of the tokens visible for `owner`, taken no earlier than `not_before`.
    /// Concurrent callers for the same workspace (object and host) share one request.
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
                .entry((workspace.key.clone(), workspace.host.clone(), managed))
                .or_default()
                .clone()
        };
        let mut guard = slot.lock().await;
        if let Some(snap) = guard.as_ref().filter(|s| s.taken_at >= not_before) {
            return Ok(snap.clone());
        }
        let creator = match owner {
            Owner::Caller => None,
            Owner::ServicePrincipal(_) => Some(Self::identity_id(workspace).await?),
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
