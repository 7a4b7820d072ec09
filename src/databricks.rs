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

impl Owner {
    /// Whose token `token` holds: its `onBehalfOf` service principal, else the caller.
    pub fn of(token: &crate::crd::DatabricksToken) -> Owner {
        match &token.spec.on_behalf_of {
            Some(obo) => Owner::ServicePrincipal(obo.application_id.clone()),
            None => Owner::Caller,
        }
    }
}

const TAG_OPEN: &str = "[dbtoken.dev/uid=";

/// The marker placed in every token comment, so the orphan sweep can find the tokens of a
/// resource even when a crash lost track of them.
pub fn tag(uid: &str) -> String {
    format!("{TAG_OPEN}{uid}]")
}

/// The comment sent to Databricks: the tag first, where a comment cut short keeps it, then the
/// user's comment with any tag-like text defused, so that only the tag the operator placed
/// counts.
pub fn tagged_comment(user_comment: Option<&str>, uid: &str) -> String {
    match user_comment.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => format!("{} {}", tag(uid), c.replace(TAG_OPEN, "(dbtoken.dev/uid=")),
        None => tag(uid),
    }
}

/// The uid of the resource whose operator placed the tag in `comment`. Today's layout puts it
/// first; comments written by earlier versions end with it (after the user's text, which may
/// quote other tags, so the last one is the operator's and the first one is not trusted there).
pub fn tag_owner(comment: &str) -> Option<&str> {
    let legacy = comment
        .strip_suffix(']')
        .and_then(|c| c.rsplit_once(TAG_OPEN))
        .filter(|(before, uid)| (before.is_empty() || before.ends_with(' ')) && is_uid(uid));
    if let Some((_, uid)) = legacy {
        return Some(uid);
    }
    let (uid, rest) = comment.strip_prefix(TAG_OPEN)?.split_once(']')?;
    (is_uid(uid) && (rest.is_empty() || rest.starts_with(' '))).then_some(uid)
}

fn is_uid(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Whether a token's comment carries this resource's tag, as the operator placed it.
pub fn is_tagged_for(info: &TokenInfo, uid: &str) -> bool {
    info.comment
        .as_deref()
        .and_then(tag_owner)
        .is_some_and(|owner| owner == uid)
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

/// Whether a PAT create failed because the workspace's admin turned personal access tokens off
/// (workspace setting "Personal Access Tokens"). Databricks' exact words are unverified: a
/// permission refusal whose message says tokens are disabled. The on-behalf-of switch ("... is
/// not enabled for this workspace") is another matter and does not match.
pub fn pat_creation_disabled(error: &databricks_client::Error) -> bool {
    let databricks_client::Error::PermissionDenied { message, .. } = error else {
        return false;
    };
    let message = message.to_ascii_lowercase();
    message.contains("token") && message.contains("disabled")
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
    fn comment_leads_with_the_tag_then_the_user_text() {
        assert_eq!(
            tagged_comment(Some("reports job"), "u1"),
            "[dbtoken.dev/uid=u1] reports job"
        );
        assert_eq!(tagged_comment(Some("  "), "u1"), "[dbtoken.dev/uid=u1]");
        assert_eq!(tagged_comment(None, "u1"), "[dbtoken.dev/uid=u1]");
    }

    #[test]
    fn tag_matches_only_the_same_uid() {
        assert!(is_tagged_for(&info(Some("[dbtoken.dev/uid=u1] x")), "u1"));
        assert!(!is_tagged_for(&info(Some("[dbtoken.dev/uid=u12] x")), "u1"));
        assert!(!is_tagged_for(&info(None), "u1"));
    }

    #[test]
    fn tags_in_todays_and_the_earlier_layout_are_found() {
        for (comment, owner) in [
            ("[dbtoken.dev/uid=u1]", Some("u1")),
            ("[dbtoken.dev/uid=u1] nightly", Some("u1")),
            // Written by earlier versions: the user's text, then the tag.
            ("nightly [dbtoken.dev/uid=u1]", Some("u1")),
            ("bootstrap", None),
            ("", None),
            ("nightly[dbtoken.dev/uid=u1]", None),
            ("[dbtoken.dev/uid=u1]nightly", None),
            ("[dbtoken.dev/uid=]", None),
            ("see [dbtoken.dev/uid=u1] here", None),
        ] {
            assert_eq!(tag_owner(comment), owner, "{comment:?}");
        }
    }

    #[test]
    fn a_tag_quoted_in_the_users_text_is_not_the_operators() {
        // Earlier versions appended their tag after a user comment that quoted another one.
        assert_eq!(
            tag_owner("copied [dbtoken.dev/uid=u1] [dbtoken.dev/uid=u2]"),
            Some("u2")
        );
        assert_eq!(
            tag_owner("[dbtoken.dev/uid=u1] x [dbtoken.dev/uid=u2]"),
            Some("u2")
        );
        // Today the user's text cannot carry a tag at all.
        let comment = tagged_comment(Some("copied [dbtoken.dev/uid=u1]"), "u2");
        assert_eq!(tag_owner(&comment), Some("u2"));
        assert!(!comment.contains("[dbtoken.dev/uid=u1]"));
        let nested = tagged_comment(Some("[dbtoken.dev/uid=[dbtoken.dev/uid=u1]u1]"), "u2");
        assert_eq!(nested.matches(TAG_OPEN).count(), 1, "{nested}");
    }

    #[test]
    fn a_truncated_comment_keeps_its_tag() {
        let uid = "0b8f3c52-7d4e-4a61-9c1a-3f2e5d6b7a80";
        let comment = tagged_comment(Some(&"long text ".repeat(100)), uid);
        for keep in [tag(uid).len(), tag(uid).len() + 1, 100, 255, 500] {
            let cut: String = comment.chars().take(keep).collect();
            let cut = cut.trim_end();
            assert_eq!(tag_owner(cut), Some(uid), "cut to {keep}: {cut:?}");
        }
    }
}
