//! Deletion order: a workspace, and the Secret holding its credentials, stay until no
//! `DatabricksToken` still needs them to revoke its tokens.
//!
//! Deleting a namespace, or `kubectl delete -f` of a file holding everything, deletes the
//! credential Secret, the workspace and the tokens at the same moment; revoking needs the first
//! two. Three finalizers form a chain, so any order of deletion works:
//!
//! | finalizer | on | removed when |
//! |---|---|---|
//! | `dbtoken.dev/revoke-tokens` | DatabricksToken | its tokens are revoked (`cleanup`) |
//! | `dbtoken.dev/workspace-in-use` | both workspace kinds | no DatabricksToken naming it still has the first |
//! | `dbtoken.dev/credential-in-use` | the credential Secret | no workspace still holding the second names it |
//!
//! A workspace records the Secret it protects in an annotation, so that a Secret it stopped
//! naming (a changed `secretRef`) is released as well. A workspace being deleted takes no new
//! user: a token that never held the first finalizer is refused (`WorkspaceDeleting`).

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use tracing::{debug, info};

use super::context::Context;
use super::error::Error;
use super::finalizer::{self, CREDENTIAL_FINALIZER, WORKSPACE_FINALIZER};
use crate::crd::DatabricksToken;
use crate::workspace::{WorkspaceKey, WorkspaceObject, Workspaces};

/// On a workspace: the credential Secret (`namespace/name`) it keeps from going away.
pub const ANN_PROTECTED_CREDENTIAL: &str = "dbtoken.dev/protected-credential";

/// How soon a workspace being deleted looks again for tokens still finalizing (a cache read).
const WAIT_FOR_TOKENS: Duration = Duration::from_secs(2);

pub use crate::workspace::SecretLocation;

/// A location as the protected-credential annotation records it: `namespace/name`.
fn parse_location(text: &str) -> Option<SecretLocation> {
    let (namespace, name) = text.split_once('/')?;
    (!namespace.is_empty() && !name.is_empty()).then(|| SecretLocation {
        namespace: namespace.into(),
        name: name.into(),
    })
}

/// What one workspace object holds on to, as the decisions need it.
#[derive(Clone, Debug)]
pub struct Holder {
    pub key: WorkspaceKey,
    /// The Secret its spec names and the one its annotation records (they differ after a change).
    pub secrets: Vec<SecretLocation>,
    /// Deleted, and its finalizer gone: it holds nothing any more.
    pub released: bool,
}

/// What to do with a workspace's finalizers.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not being deleted: keep the finalizers in place.
    Protect,
    /// Being deleted; this many DatabricksTokens still revoke through it.
    Wait(usize),
    /// Being deleted and nothing needs it: release its Secret, then the workspace.
    Release,
    /// Released already.
    Nothing,
}

pub fn decide(deleting: bool, has_finalizer: bool, dependents: usize) -> Decision {
    match (deleting, has_finalizer) {
        (false, _) => Decision::Protect,
        (true, false) => Decision::Nothing,
        (true, true) if dependents > 0 => Decision::Wait(dependents),
        (true, true) => Decision::Release,
    }
}

/// Whether a workspace other than `me` still holds `secret`.
pub fn needed_by_others(secret: &SecretLocation, me: &WorkspaceKey, holders: &[Holder]) -> bool {
    holders
        .iter()
        .any(|h| &h.key != me && !h.released && h.secrets.contains(secret))
}

fn has_finalizer<K: Resource>(obj: &K, finalizer: &str) -> bool {
    obj.meta()
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

fn recorded_credential<K: Resource>(ws: &K) -> Option<SecretLocation> {
    ws.meta()
        .annotations
        .as_ref()?
        .get(ANN_PROTECTED_CREDENTIAL)
        .and_then(|v| parse_location(v))
}

fn holder<K: WorkspaceObject>(ws: &K) -> Holder {
    let mut secrets: Vec<SecretLocation> = ws.credential().into_iter().collect();
    if let Some(recorded) = recorded_credential(ws)
        && !secrets.contains(&recorded)
    {
        secrets.push(recorded);
    }
    Holder {
        key: ws.key(),
        secrets,
        released: ws.meta().deletion_timestamp.is_some() && !has_finalizer(ws, WORKSPACE_FINALIZER),
    }
}

/// Every workspace object the operator knows, from the token controller's caches.
fn holders(ctx: &Context) -> Vec<Holder> {
    let (namespaced, cluster) = ctx.workspaces.stores();
    namespaced
        .state()
        .iter()
        .map(|w| holder(w.as_ref()))
        .chain(cluster.state().iter().map(|w| holder(w.as_ref())))
        .collect()
}

/// A token that may still revoke through the workspace `key`: the one it names, or one where
/// it may have left a token (`status.pendingSweeps`).
fn depends_on(token: &DatabricksToken, key: &WorkspaceKey) -> bool {
    let pending = token
        .status
        .as_ref()
        .is_some_and(|s| s.pending_sweeps.iter().any(|p| p.workspace == *key));
    has_finalizer(token, finalizer::FINALIZER) && (Workspaces::key_for(token) == *key || pending)
}

/// Keep a workspace that is in use, and its credential Secret, from going away before the
/// tokens revoked through them; release a Secret it no longer names.
pub async fn protect<K: WorkspaceObject>(ws: &K, ctx: &Context) -> Result<(), Error> {
    let current = ws.credential();
    if let Some(secret) = &current
        && hold_secret(ctx, secret).await?
    {
        // A stale view of a workspace already finalized would hold its Secret for ever: its
        // finalize has released it. Look at the live object once, only when a hold was added.
        let live = ws
            .api(ctx.kube.clone())
            .get_metadata_opt(&ws.name_any())
            .await
            .map_err(Error::kube("read workspace"))?;
        if live.is_none_or(|m| m.metadata.deletion_timestamp.is_some()) {
            if !needed_by_others(secret, &ws.key(), &holders(ctx)) {
                release_secret(ctx, secret).await?;
            }
            return Ok(());
        }
    }
    let recorded = recorded_credential(ws);
    if recorded == current && has_finalizer(ws, WORKSPACE_FINALIZER) {
        return Ok(());
    }
    if let Some(old) = recorded.as_ref().filter(|r| Some(*r) != current.as_ref())
        && !needed_by_others(old, &ws.key(), &holders(ctx))
    {
        release_secret(ctx, old).await?;
    }
    let mut finalizers = ws.finalizers().to_vec();
    if !has_finalizer(ws, WORKSPACE_FINALIZER) {
        finalizers.push(WORKSPACE_FINALIZER.into());
    }
    // resourceVersion makes this conditional: a concurrent change makes it fail and retry.
    let patch = serde_json::json!({"metadata": {
        "finalizers": finalizers,
        "annotations": {ANN_PROTECTED_CREDENTIAL: current.map(|c| c.to_string())},
        "resourceVersion": ws.resource_version(),
    }});
    ws.api(ctx.kube.clone())
        .patch(
            &ws.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(Error::kube("add workspace finalizer"))?;
    Ok(())
}

/// Where the deletion of a workspace stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Finalized {
    /// This many DatabricksTokens still revoke through it; look again after the delay.
    Waiting(usize, Duration),
    /// Its finalizer is gone (now or before).
    Released,
}

/// A workspace being deleted: wait for the tokens that revoke through it, then let go of its
/// credential Secret and of the workspace itself.
pub async fn finalize<K: WorkspaceObject>(
    ws: &K,
    ctx: &Context,
    namespaces: &[String],
) -> Result<Finalized, Error> {
    let key = ws.key();
    let cached = ctx
        .tokens
        .state()
        .iter()
        .filter(|t| depends_on(t, &key))
        .count();
    let decision = match decide(true, has_finalizer(ws, WORKSPACE_FINALIZER), cached) {
        // The cache may not show yet a token that has just taken its finalizer: ask once.
        Decision::Release => decide(true, true, listed_dependents(ctx, &key, namespaces).await?),
        other => other,
    };
    match decision {
        Decision::Nothing | Decision::Protect => return Ok(Finalized::Released),
        Decision::Wait(tokens) => {
            debug!(workspace = %key, tokens, "workspace deletion waits for its tokens to be revoked");
            return Ok(Finalized::Waiting(tokens, WAIT_FOR_TOKENS));
        }
        Decision::Release => {}
    }
    let holders = holders(ctx);
    for secret in holder(ws).secrets {
        if !needed_by_others(&secret, &key, &holders) {
            release_secret(ctx, &secret).await?;
        }
    }
    let remaining: Vec<&String> = ws
        .finalizers()
        .iter()
        .filter(|f| *f != WORKSPACE_FINALIZER)
        .collect();
    let patch = serde_json::json!({"metadata": {
        "finalizers": remaining, "resourceVersion": ws.resource_version(),
    }});
    match ws
        .api(ctx.kube.clone())
        .patch(
            &ws.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(Error::kube("remove workspace finalizer")(e)),
    }
    info!(workspace = %key, "no token revokes through this workspace any more; released it");
    Ok(Finalized::Released)
}

/// Tokens that still revoke through `key`, read from the API server rather than the cache.
async fn listed_dependents(
    ctx: &Context,
    key: &WorkspaceKey,
    namespaces: &[String],
) -> Result<usize, Error> {
    let apis: Vec<Api<DatabricksToken>> = match &key.namespace {
        Some(ns) => vec![Api::namespaced(ctx.kube.clone(), ns)],
        None if namespaces.is_empty() => vec![Api::all(ctx.kube.clone())],
        None => namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.kube.clone(), ns))
            .collect(),
    };
    let mut count = 0;
    for api in apis {
        let tokens = api
            .list(&ListParams::default())
            .await
            .map_err(Error::kube("list DatabricksTokens"))?;
        count += tokens.items.iter().filter(|t| depends_on(t, key)).count();
    }
    Ok(count)
}

fn secrets_in(ctx: &Context, secret: &SecretLocation) -> Api<Secret> {
    Api::namespaced(ctx.kube.clone(), &secret.namespace)
}

/// Put the credential finalizer on a Secret (metadata only: its value is not read here); true
/// when this call added it.
async fn hold_secret(ctx: &Context, secret: &SecretLocation) -> Result<bool, Error> {
    let api = secrets_in(ctx, secret);
    let Some(meta) = api
        .get_metadata_opt(&secret.name)
        .await
        .map_err(Error::kube("read credential Secret"))?
    else {
        // Missing: the workspace's Ready condition says so; nothing to hold yet.
        return Ok(false);
    };
    // No finalizer can be added to an object being deleted.
    if has_finalizer(&meta, CREDENTIAL_FINALIZER) || meta.metadata.deletion_timestamp.is_some() {
        return Ok(false);
    }
    let mut finalizers = meta.finalizers().to_vec();
    finalizers.push(CREDENTIAL_FINALIZER.into());
    let patch = serde_json::json!({"metadata": {
        "finalizers": finalizers, "resourceVersion": meta.resource_version(),
    }});
    api.patch(&secret.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube("add credential Secret finalizer"))?;
    Ok(true)
}

async fn release_secret(ctx: &Context, secret: &SecretLocation) -> Result<(), Error> {
    let api = secrets_in(ctx, secret);
    let Some(meta) = api
        .get_metadata_opt(&secret.name)
        .await
        .map_err(Error::kube("read credential Secret"))?
    else {
        return Ok(());
    };
    if !has_finalizer(&meta, CREDENTIAL_FINALIZER) {
        return Ok(());
    }
    let remaining: Vec<&String> = meta
        .finalizers()
        .iter()
        .filter(|f| *f != CREDENTIAL_FINALIZER)
        .collect();
    let patch = serde_json::json!({"metadata": {
        "finalizers": remaining, "resourceVersion": meta.resource_version(),
    }});
    match api
        .patch(&secret.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube("remove credential Secret finalizer")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::WorkspaceKind;

    fn key(name: &str) -> WorkspaceKey {
        WorkspaceKey {
            kind: WorkspaceKind::DatabricksWorkspace,
            namespace: Some("team-a".into()),
            name: name.into(),
        }
    }

    fn secret(name: &str) -> SecretLocation {
        SecretLocation {
            namespace: "team-a".into(),
            name: name.into(),
        }
    }

    fn holder(name: &str, secrets: &[&str], released: bool) -> Holder {
        Holder {
            key: key(name),
            secrets: secrets.iter().map(|s| secret(s)).collect(),
            released,
        }
    }

    #[test]
    fn decisions() {
        use Decision::*;
        for (deleting, has_finalizer, dependents, expected) in [
            (false, false, 0, Protect),
            (false, true, 3, Protect),
            (true, true, 2, Wait(2)),
            (true, true, 0, Release),
            (true, false, 0, Nothing),
            (true, false, 5, Nothing),
        ] {
            assert_eq!(
                decide(deleting, has_finalizer, dependents),
                expected,
                "deleting={deleting} finalizer={has_finalizer} dependents={dependents}"
            );
        }
    }

    #[test]
    fn a_secret_is_kept_while_another_live_workspace_names_it() {
        let me = key("prod");
        let shared = secret("admin");
        for (others, needed) in [
            (vec![], false),
            (vec![holder("prod", &["admin"], false)], false),
            (vec![holder("staging", &["admin"], false)], true),
            (vec![holder("staging", &["admin"], true)], false),
            (vec![holder("staging", &["other"], false)], false),
            (vec![holder("staging", &["other", "admin"], false)], true),
        ] {
            assert_eq!(
                needed_by_others(&shared, &me, &others),
                needed,
                "{others:?}"
            );
        }
    }

    #[test]
    fn recorded_locations_round_trip() {
        let s = secret("admin");
        assert_eq!(parse_location(&s.to_string()), Some(s));
        assert_eq!(parse_location("no-slash"), None);
        assert_eq!(parse_location("/name"), None);
        assert_eq!(parse_location("ns/"), None);
    }
}
