//! The finalizers the operator sets: `dbtoken.dev/revoke-tokens` on a `DatabricksToken`
//! (its tokens are revoked before it goes, `cleanup`), and on workspaces and their credential
//! Secrets while tokens still revoke through them (`protection`).

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};

use super::context::Context;
use super::error::Error;
use crate::crd::DatabricksToken;
use crate::workspace::{WorkspaceError, Workspaces};

pub const FINALIZER: &str = "dbtoken.dev/revoke-tokens";
/// On a workspace that tokens still revoke through.
pub const WORKSPACE_FINALIZER: &str = "dbtoken.dev/workspace-in-use";
/// On a credential Secret that a workspace in use authenticates with.
pub const CREDENTIAL_FINALIZER: &str = "dbtoken.dev/credential-in-use";

pub fn is_set(token: &DatabricksToken) -> bool {
    token.finalizers().iter().any(|f| f == FINALIZER)
}

/// Add the finalizer before the first mint, so no token can outlive its resource unnoticed.
/// A workspace being deleted waits only for tokens holding this finalizer, so a resource that
/// has none yet may not start using it.
pub async fn ensure(token: &DatabricksToken, ctx: &Context) -> Result<(), Error> {
    if is_set(token) {
        return Ok(());
    }
    let key = Workspaces::key_for(token);
    if ctx.workspaces.is_deleting(&key) {
        return Err(WorkspaceError::Deleting(key).into());
    }
    let mut finalizers = token.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    set(token, ctx, finalizers).await
}

pub async fn set(
    token: &DatabricksToken,
    ctx: &Context,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let api: Api<DatabricksToken> =
        Api::namespaced(ctx.kube.clone(), &token.namespace().unwrap_or_default());
    // resourceVersion makes this conditional: a concurrent change makes it fail and retry.
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": token.resource_version()}
    });
    api.patch(
        &token.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::kube("update finalizers"))?;
    Ok(())
}
