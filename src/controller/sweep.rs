//! Places where a resource may hold a token its Secret does not record, and their sweep.
//!
//! The orphan sweep of the current workspace finds what a crash between "minted" and "written"
//! left there. A token can also be left where the resource no longer looks: a create whose
//! answer was lost, or a process killed in the middle of one, and then the workspace or the
//! identity changed before anyone looked again. Such places are kept in
//! `status.pendingSweeps` (written before a create at a place the Secret does not point to, and
//! after a create whose outcome is unknown), each is listed, its tokens tagged for the resource
//! and not recorded are revoked, and only then is it dropped.

use databricks_client::{Error as ApiError, ManagedTokenFilter, TokenInfo};
use kube::{ResourceExt, runtime::events::EventType};
use tracing::{info, warn};

use super::context::Context;
use super::error::Error;
use super::events;
use crate::crd::{DatabricksToken, TokenOrigin, event_actions, event_reasons};
use crate::databricks;
use crate::secret::TokenRecord;
use crate::workspace::WorkspaceKey;

/// The places to record, before a create at `target`, where a token may be left unrecorded
/// should the create's answer be lost or this process die before the Secret holds the token.
/// A create where the Secret's token was minted (the usual rotation) needs none: the record
/// points there, and the orphan sweep there finds it. A create elsewhere records `target`, and
/// the place the record leaves, whose own interrupted creates nobody would look for once the
/// resource moved. A first create (no record) records nothing: see [`first_create_in_doubt`].
pub fn to_record_before_create(
    recorded: Option<&TokenRecord>,
    target: &TokenOrigin,
    pending: &[TokenOrigin],
) -> Vec<TokenOrigin> {
    let Some(record) = recorded else {
        return Vec::new();
    };
    // A record written before origins were kept: its place is the current one, as then.
    let Some(left) = record.current.origin.as_ref() else {
        return Vec::new();
    };
    if left == target {
        return Vec::new();
    }
    let mut new = Vec::new();
    for place in [target, left] {
        if !pending.contains(place) && !new.contains(place) {
            new.push(place.clone());
        }
    }
    new
}

/// `place` added to `pending` unless it is there already.
pub fn with_place(mut pending: Vec<TokenOrigin>, place: TokenOrigin) -> Vec<TokenOrigin> {
    if !pending.contains(&place) {
        pending.push(place);
    }
    pending
}

/// Whether an earlier process may have created this resource's first token under an earlier
/// spec: it held the finalizer (which is set before any create), the Secret records no token,
/// and the spec changed since the last status was written. Then the first create's place is
/// unknown, and every workspace the namespace may use is swept once.
pub fn first_create_in_doubt(
    finalizer_was_set: bool,
    recorded: bool,
    generation: Option<i64>,
    observed_generation: Option<i64>,
) -> bool {
    finalizer_was_set && !recorded && generation.unwrap_or(1) > observed_generation.unwrap_or(1)
}

/// A place of unknown owner: the credential's own tokens and those it minted on behalf of
/// service principals.
pub fn any_owner_at(workspace: WorkspaceKey, host: String) -> TokenOrigin {
    TokenOrigin {
        workspace,
        host,
        application_id: None,
        identity: None,
    }
}

/// One token list that shows what a place may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// `token/list`: the credential identity's own tokens.
    Own,
    /// token-management, as an admin: tokens created by this identity (SCIM id).
    CreatedBy(String),
}

/// The lists that show a place's tokens, given who the workspace credential is now.
pub fn listings(place: &TokenOrigin, client_identity: &str) -> Vec<Listing> {
    match (&place.application_id, &place.identity) {
        // On-behalf-of tokens: created by the credential's identity, owned by the principal.
        (Some(_), _) => vec![Listing::CreatedBy(client_identity.to_string())],
        (None, Some(id)) if id == client_identity => vec![Listing::Own],
        // Another identity's own tokens (the credential was swapped): only an admin sees them.
        (None, Some(id)) => vec![Listing::CreatedBy(id.clone())],
        (None, None) => vec![
            Listing::Own,
            Listing::CreatedBy(client_identity.to_string()),
        ],
    }
}

/// Tokens of a list that are tagged for `uid` and that the record does not hold.
pub fn unrecorded<'a>(
    uid: &str,
    record: Option<&TokenRecord>,
    live: &'a [TokenInfo],
) -> Vec<&'a TokenInfo> {
    let recorded = |id: &str| {
        record.is_some_and(|r| {
            r.current.token_id == id || r.previous.iter().any(|p| p.token_id == id)
        })
    };
    live.iter()
        .filter(|t| databricks::is_tagged_for(t, uid) && !recorded(&t.token_id))
        .collect()
}

/// What sweeping one place found.
#[derive(Debug, PartialEq, Eq)]
pub enum Swept {
    /// Listed; these unrecorded tokens were revoked (others were gone by then).
    Done { revoked: Vec<String> },
    /// It cannot be listed now (credential refused, namespace no longer admitted): it stays
    /// pending.
    Blocked(String),
    /// Its workspace object is gone: nothing can ever list it again, and what it holds expires
    /// by itself.
    Unreachable(String),
}

/// List `place` and revoke what it holds tagged for `token` and not in `record`.
pub async fn sweep(
    ctx: &Context,
    token: &DatabricksToken,
    place: &TokenOrigin,
    record: Option<&TokenRecord>,
) -> Result<Swept, Error> {
    let uid = token.uid().unwrap_or_default();
    let namespace = token.namespace().unwrap_or_default();
    let ws = match ctx
        .workspaces
        .at_host(&place.workspace, &namespace, &place.host)
        .await
    {
        Ok(ws) => ws,
        Err(e @ crate::workspace::WorkspaceError::Kube { .. }) => return Err(e.into()),
        Err(e @ crate::workspace::WorkspaceError::NotFound(_)) => {
            return Ok(Swept::Unreachable(e.to_string()));
        }
        Err(e) => return Ok(Swept::Blocked(e.to_string())),
    };
    let me = match ws.identity().await {
        Ok(id) => id,
        Err(e) if is_refusal(&e) => return Ok(Swept::Blocked(e.to_string())),
        Err(e) => return Err(Error::databricks("read identity")(e)),
    };
    let mut revoked = Vec::new();
    for listing in listings(place, &me) {
        let live = match list(&ws.client, &listing).await {
            Ok(live) => live,
            // Not an admin: it cannot have minted on anyone's behalf, so nothing is there.
            Err(e) if is_refusal(&e) && listing != Listing::Own && place.identity.is_none() => {
                continue;
            }
            Err(e) if is_refusal(&e) => return Ok(Swept::Blocked(e.to_string())),
            Err(e) => return Err(Error::databricks("list tokens")(e)),
        };
        for t in unrecorded(&uid, record, &live) {
            let result = match listing {
                Listing::Own => ws.client.delete_token(&t.token_id).await,
                Listing::CreatedBy(_) => ws.client.delete_managed_token(&t.token_id).await,
            };
            match result {
                Ok(()) => revoked.push(t.token_id.clone()),
                Err(ApiError::NotFound { .. }) => {}
                Err(e) if is_refusal(&e) => return Ok(Swept::Blocked(e.to_string())),
                Err(e) => return Err(Error::databricks("revoke token")(e)),
            }
        }
    }
    Ok(Swept::Done { revoked })
}

async fn list(
    client: &databricks_client::WorkspaceClient,
    listing: &Listing,
) -> Result<Vec<TokenInfo>, ApiError> {
    match listing {
        Listing::Own => client.list_tokens().await,
        Listing::CreatedBy(id) => {
            let filter = ManagedTokenFilter {
                created_by_id: id.parse().ok(),
                created_by_username: None,
            };
            client.list_managed_tokens(&filter).await
        }
    }
}

fn is_refusal(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::PermissionDenied { .. } | ApiError::Unauthenticated { .. }
    )
}

/// Sweep every pending place but `skip` (the place whose list this sync already swept);
/// returns the places still pending. A failure keeps the place and is logged: the next sync
/// tries again, and the resource's own token is not held up by a place it left.
pub async fn sweep_pending(
    ctx: &Context,
    token: &DatabricksToken,
    pending: Vec<TokenOrigin>,
    record: Option<&TokenRecord>,
    skip: Option<&TokenOrigin>,
) -> Vec<TokenOrigin> {
    let mut kept = Vec::new();
    for place in pending {
        if skip == Some(&place) {
            continue;
        }
        match sweep(ctx, token, &place, record).await {
            Ok(Swept::Done { revoked }) => {
                info!(workspace = %place.workspace, host = %place.host, revoked = revoked.len(), "swept a place this resource may have left a token");
                for id in revoked {
                    announce_orphan_revoked(ctx, token, &id, Some(&place)).await;
                }
            }
            Ok(Swept::Blocked(why)) => {
                warn!(workspace = %place.workspace, host = %place.host, why = %why, "cannot sweep a place this resource may have left a token; kept pending");
                kept.push(place);
            }
            Ok(Swept::Unreachable(why)) => {
                warn!(workspace = %place.workspace, host = %place.host, why = %why, "cannot sweep a place this resource may have left a token; its tokens expire by themselves");
            }
            Err(e) => {
                warn!(workspace = %place.workspace, host = %place.host, error = %e, "sweep failed; kept pending");
                kept.push(place);
            }
        }
    }
    kept
}

/// Count and publish the revocation of an orphan: a token tagged for `token` that nothing
/// recorded, found where it was minted (`place`, when that is not the current workspace).
pub(super) async fn announce_orphan_revoked(
    ctx: &Context,
    token: &DatabricksToken,
    id: &str,
    place: Option<&TokenOrigin>,
) {
    ctx.metrics.orphan_revoked();
    ctx.metrics.revocation("orphan");
    let note = match place {
        Some(p) => format!(
            "Revoked orphaned token {id} left by an interrupted mint in {} at {}",
            p.workspace, p.host
        ),
        None => format!("Revoked orphaned token {id} left by an interrupted mint"),
    };
    events::publish(
        ctx,
        token,
        EventType::Normal,
        event_reasons::ORPHAN_REVOKED,
        event_actions::REVOKE,
        note,
    )
    .await;
}

#[cfg(test)]
mod tests;
