//! The few Databricks operations the controller needs, for both ways of owning a token: the
//! workspace identity's own tokens (token API) or a service principal's tokens minted on its
//! behalf (token-management API). Also the comment tag that marks tokens as ours.

use databricks_client::{
    CreateTokenRequest, CreatedToken, Error, ManagedTokenFilter, TokenInfo, WorkspaceClient,
};

/// Whose token a `DatabricksToken` holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The identity the workspace credentials authenticate as.
    Caller,
    /// A service principal, by application id.
    ServicePrincipal(String),
}

/// The marker appended to every token comment, so the orphan sweep can find the tokens of a
/// resource even when a crash lost track of them.
pub fn tag(uid: &str) -> String {
    format!("[dbtoken.dev/uid={uid}]")
}

/// The comment sent to Databricks: the user's comment followed by the tag.
pub fn tagged_comment(user_comment: Option<&str>, uid: &str) -> String {
    match user_comment.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => format!("{c} {}", tag(uid)),
        None => tag(uid),
    }
}

/// Whether a token's comment carries this resource's tag.
pub fn is_tagged_for(info: &TokenInfo, uid: &str) -> bool {
    info.comment
        .as_deref()
        .is_some_and(|c| c.contains(&tag(uid)))
}

pub async fn mint(
    client: &WorkspaceClient,
    owner: &Owner,
    request: &CreateTokenRequest,
) -> Result<CreatedToken, Error> {
    match owner {
        Owner::Caller => client.create_token(request).await,
        Owner::ServicePrincipal(app_id) => client.create_obo_token(app_id, request).await,
    }
}

/// The live tokens the operator can see for this owner. On-behalf-of tokens are listed only
/// as far as `creator` (the operator's identity id) created them: the workspace's other
/// tokens are not the operator's business, and listing them all costs a fleet's worth.
pub async fn list(
    client: &WorkspaceClient,
    owner: &Owner,
    creator: Option<i64>,
) -> Result<Vec<TokenInfo>, Error> {
    match owner {
        Owner::Caller => client.list_tokens().await,
        Owner::ServicePrincipal(_) => {
            let filter = ManagedTokenFilter {
                created_by_id: creator,
                created_by_username: None,
            };
            client.list_managed_tokens(&filter).await
        }
    }
}

/// What a revocation found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoked {
    Now,
    /// Already gone (revoked, expired): counts as done.
    AlreadyGone,
}

/// Revoke a token; one that is already gone counts as revoked.
pub async fn revoke(
    client: &WorkspaceClient,
    owner: &Owner,
    token_id: &str,
) -> Result<Revoked, Error> {
    let result = match owner {
        Owner::Caller => client.delete_token(token_id).await,
        Owner::ServicePrincipal(_) => client.delete_managed_token(token_id).await,
    };
    match result {
        Ok(()) => Ok(Revoked::Now),
        Err(Error::NotFound { .. }) => Ok(Revoked::AlreadyGone),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(comment: Option<&str>) -> TokenInfo {
        TokenInfo {
            token_id: "t".into(),
            creation_time: 0,
            expiry_time: -1,
            comment: comment.map(String::from),
            scopes: None,
            created_by_id: None,
            created_by_username: None,
            owner_id: None,
        }
    }

    #[test]
    fn comment_carries_user_text_and_tag() {
        assert_eq!(
            tagged_comment(Some("reports job"), "u1"),
            "reports job [dbtoken.dev/uid=u1]"
        );
        assert_eq!(tagged_comment(Some("  "), "u1"), "[dbtoken.dev/uid=u1]");
        assert_eq!(tagged_comment(None, "u1"), "[dbtoken.dev/uid=u1]");
    }

    #[test]
    fn tag_matches_only_the_same_uid() {
        assert!(is_tagged_for(&info(Some("x [dbtoken.dev/uid=u1]")), "u1"));
        assert!(!is_tagged_for(&info(Some("x [dbtoken.dev/uid=u12]")), "u1"));
        assert!(!is_tagged_for(&info(None), "u1"));
    }
}
