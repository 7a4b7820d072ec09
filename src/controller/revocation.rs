//! Revoking one recorded token where, and by whom, it was minted, and only once a lookup there
//! shows it carries this resource's tag: token ids come from a Secret's annotations, which
//! anyone who may edit the Secret controls. A 404 counts as "gone" only from a lookup that
//! could have seen the token (its owner's own list, or token-management as an admin of the
//! workspace that minted it), never from another workspace or identity.

use std::sync::Arc;

use databricks_client::{Error as ApiError, TokenInfo};

use super::context::Context;
use super::error::Error;
use crate::databricks::{self, Owner};
use crate::schedule::EpochMillis;
use crate::secret::TokenOrigin;
use crate::workspace::{ResolvedWorkspace, WorkspaceError};

pub use super::plan::RevocationOutcome as Outcome;

/// Which API reaches a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `token/list` and `token/delete`, as the token's owner.
    Own,
    /// token-management get and delete, as an admin of the workspace.
    Admin,
}

/// How to reach a token from its recorded origin (None: a record written before origins were
/// kept, so the current owner is assumed, as it was then) and the identity the client
/// authenticates as (asked only when the origin names an identity).
pub fn route(
    origin: Option<&TokenOrigin>,
    current_owner: &Owner,
    client_identity: Option<&str>,
) -> Route {
    match origin {
        None => match current_owner {
            Owner::Caller => Route::Own,
            Owner::ServicePrincipal(_) => Route::Admin,
        },
        Some(o) if o.application_id.is_some() => Route::Admin,
        Some(o) => match (o.identity.as_deref(), client_identity) {
            (Some(minted_by), Some(client)) if minted_by != client => Route::Admin,
            _ => Route::Own,
        },
    }
}

/// What a lookup where the token was minted says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Absent,
    Ours,
    Foreign,
}

pub fn found(info: Option<&TokenInfo>, uid: &str) -> Found {
    match info {
        None => Found::Absent,
        Some(t) if databricks::is_tagged_for(t, uid) => Found::Ours,
        Some(_) => Found::Foreign,
    }
}

/// Whether the credential was refused or may not do this: retrying will not help until someone
/// changes a credential or permission.
fn is_refusal(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::PermissionDenied { .. } | ApiError::Unauthenticated { .. }
    )
}

/// Revokes the recorded tokens of one resource.
pub struct Revoker<'a> {
    pub ctx: &'a Context,
    /// The resource's namespace (tenancy: which workspaces it may use).
    pub namespace: &'a str,
    pub uid: &'a str,
    /// The workspace the resource uses now, and the owner of the tokens it mints now.
    pub current: Arc<ResolvedWorkspace>,
    pub owner: &'a Owner,
}

impl Revoker<'_> {
    /// Revoke `token_id` where it was minted. `not_before`: a token list taken since then shows
    /// the token if it is alive (any moment after its mint, e.g. its revoke-after).
    pub async fn revoke(
        &self,
        token_id: &str,
        origin: Option<&TokenOrigin>,
        not_before: EpochMillis,
    ) -> Result<Outcome, Error> {
        let ws = match self.workspace_for(origin).await? {
            Ok(ws) => ws,
            Err(why) => return Ok(Outcome::Blocked(why)),
        };
        let minted_by_identity = origin.is_some_and(|o| o.application_id.is_none());
        let client_identity = if minted_by_identity {
            match ws.identity().await {
                Ok(id) => Some(id),
                Err(e) if is_refusal(&e) => {
                    return Ok(Outcome::Blocked(format!(
                        "the credential of {} was refused: {e}",
                        ws.key
                    )));
                }
                Err(e) => return Err(Error::databricks("read identity")(e)),
            }
        } else {
            None
        };
        let result = match route(origin, self.owner, client_identity.as_deref()) {
            Route::Own => self.revoke_own(&ws, token_id, not_before).await,
            Route::Admin => self
                .revoke_as_admin(&ws, token_id)
                .await
                .map_err(Error::databricks("revoke token")),
        };
        match result {
            Err(Error::Databricks { source, .. }) if is_refusal(&source) => {
                Ok(Outcome::Blocked(format!(
                    "the credential of {} at {} may not revoke it: {source}",
                    ws.key, ws.host
                )))
            }
            other => other,
        }
    }

    /// The workspace that minted the token, at the host it was minted at: the recorded workspace
    /// object with its current credentials, or the current workspace when it is at that host.
    /// Err(Ok(why)) is a block, not a failure.
    async fn workspace_for(
        &self,
        origin: Option<&TokenOrigin>,
    ) -> Result<Result<Arc<ResolvedWorkspace>, String>, Error> {
        let Some(o) = origin else {
            return Ok(Ok(self.current.clone()));
        };
        if o.workspace == self.current.key && o.host == self.current.host {
            return Ok(Ok(self.current.clone()));
        }
        match self
            .ctx
            .workspaces
            .at_host(&o.workspace, self.namespace, &o.host)
            .await
        {
            Ok(ws) => Ok(Ok(ws)),
            Err(e @ WorkspaceError::Kube { .. }) => Err(e.into()),
            Err(_) if o.host == self.current.host => Ok(Ok(self.current.clone())),
            Err(e) => Ok(Err(format!(
                "it was minted through {} at {}, and {e}",
                o.workspace, o.host
            ))),
        }
    }

    async fn revoke_own(
        &self,
        ws: &Arc<ResolvedWorkspace>,
        token_id: &str,
        not_before: EpochMillis,
    ) -> Result<Outcome, Error> {
        let snapshot = self
            .ctx
            .inventory
            .snapshot(ws, &Owner::Caller, not_before)
            .await?;
        let info = snapshot.tokens.iter().find(|t| t.token_id == token_id);
        match found(info, self.uid) {
            Found::Absent => Ok(Outcome::Gone),
            Found::Foreign => Ok(Outcome::Foreign),
            Found::Ours => match ws.client.delete_token(token_id).await {
                Ok(()) => Ok(Outcome::Revoked),
                Err(ApiError::NotFound { .. }) => Ok(Outcome::Gone),
                Err(e) => Err(Error::databricks("revoke token")(e)),
            },
        }
    }

    async fn revoke_as_admin(
        &self,
        ws: &Arc<ResolvedWorkspace>,
        token_id: &str,
    ) -> Result<Outcome, ApiError> {
        let info = match ws.client.get_managed_token(token_id).await {
            Ok(info) => Some(info),
            Err(ApiError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        match found(info.as_ref(), self.uid) {
            Found::Absent => Ok(Outcome::Gone),
            Found::Foreign => Ok(Outcome::Foreign),
            Found::Ours => match ws.client.delete_managed_token(token_id).await {
                Ok(()) => Ok(Outcome::Revoked),
                Err(ApiError::NotFound { .. }) => Ok(Outcome::Gone),
                Err(e) => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::WorkspaceKind;
    use crate::workspace::WorkspaceKey;

    fn origin(application_id: Option<&str>, identity: Option<&str>) -> TokenOrigin {
        TokenOrigin {
            workspace: WorkspaceKey {
                kind: WorkspaceKind::DatabricksWorkspace,
                namespace: Some("ns".into()),
                name: "ws".into(),
            },
            host: "https://h".into(),
            application_id: application_id.map(String::from),
            identity: identity.map(String::from),
        }
    }

    const SP: &str = "8a4f9d1e-52f6-4c3a-9a57-1c8b0c0f5b21";

    #[test]
    fn a_token_is_reached_as_its_owner_or_through_token_management() {
        let sp = Owner::ServicePrincipal(SP.into());
        let cases = [
            // Records from before origins were kept: as the current owner, as then.
            (None, Owner::Caller, None, Route::Own),
            (None, sp.clone(), None, Route::Admin),
            // On-behalf-of tokens belong to a service principal: only an admin reaches them,
            // whatever the resource asks for now.
            (
                Some(origin(Some(SP), None)),
                Owner::Caller,
                None,
                Route::Admin,
            ),
            (Some(origin(Some(SP), None)), sp.clone(), None, Route::Admin),
            // The credential's own token: as that identity while it is the same one...
            (
                Some(origin(None, Some("1"))),
                Owner::Caller,
                Some("1"),
                Route::Own,
            ),
            (
                Some(origin(None, Some("1"))),
                sp.clone(),
                Some("1"),
                Route::Own,
            ),
            // ...and through token-management once the credential is another identity's.
            (
                Some(origin(None, Some("1"))),
                Owner::Caller,
                Some("2"),
                Route::Admin,
            ),
            (
                Some(origin(None, None)),
                Owner::Caller,
                Some("2"),
                Route::Own,
            ),
        ];
        for (origin, owner, client, want) in cases {
            assert_eq!(
                route(origin.as_ref(), &owner, client),
                want,
                "{origin:?} {owner:?} {client:?}"
            );
        }
    }

    fn info(comment: &str) -> TokenInfo {
        serde_json::from_value(serde_json::json!({"token_id": "t", "comment": comment})).unwrap()
    }

    #[test]
    fn only_a_token_tagged_for_this_resource_is_revoked() {
        assert_eq!(found(None, "u1"), Found::Absent);
        assert_eq!(
            found(Some(&info("[dbtoken.dev/uid=u1] x")), "u1"),
            Found::Ours
        );
        assert_eq!(
            found(Some(&info("x [dbtoken.dev/uid=u1]")), "u1"),
            Found::Ours
        );
        assert_eq!(found(Some(&info("bootstrap")), "u1"), Found::Foreign);
        assert_eq!(
            found(Some(&info("[dbtoken.dev/uid=u2]")), "u1"),
            Found::Foreign
        );
    }
}
