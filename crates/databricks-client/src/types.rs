//! Request and response shapes of the token and token-management APIs.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::SecretString;

/// Body of `POST /api/2.0/token/create` (and, with `application_id`, of the on-behalf-of create).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct CreateTokenRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

/// A token's public description. Times are epoch milliseconds; `expiry_time` is -1 for tokens
/// that never expire.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct TokenInfo {
    pub token_id: String,
    #[serde(default)]
    pub creation_time: i64,
    #[serde(default = "no_expiry")]
    pub expiry_time: i64,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub created_by_id: Option<i64>,
    #[serde(default)]
    pub created_by_username: Option<String>,
    #[serde(default)]
    pub owner_id: Option<i64>,
}

fn no_expiry() -> i64 {
    -1
}

/// A freshly minted token: the value (shown once by Databricks) and its description.
#[derive(Clone)]
pub struct CreatedToken {
    pub value: SecretString,
    pub info: TokenInfo,
}

impl fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedToken")
            .field("value", &"<redacted>")
            .field("info", &self.info)
            .finish()
    }
}

impl From<CreateTokenResponse> for CreatedToken {
    fn from(r: CreateTokenResponse) -> Self {
        CreatedToken {
            value: SecretString::from(r.token_value),
            info: r.token_info,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CreateTokenResponse {
    pub token_value: String,
    pub token_info: TokenInfo,
}

#[derive(Deserialize)]
pub(crate) struct ListTokensResponse {
    #[serde(default)]
    pub token_infos: Vec<TokenInfo>,
}

#[derive(Deserialize)]
pub(crate) struct GetTokenResponse {
    pub token_info: TokenInfo,
}

/// Filters of `GET /api/2.0/token-management/tokens`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedTokenFilter {
    pub created_by_id: Option<i64>,
    pub created_by_username: Option<String>,
}

impl ManagedTokenFilter {
    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(id) = self.created_by_id {
            query.push(("created_by_id", id.to_string()));
        }
        if let Some(name) = &self.created_by_username {
            query.push(("created_by_username", name.clone()));
        }
        query
    }
}

/// Who the credentials authenticate as (SCIM `Me`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct CurrentUser {
    pub id: String,
    #[serde(rename = "userName", default)]
    pub user_name: Option<String>,
    #[serde(rename = "displayName", default)]
    pub display_name: Option<String>,
    /// The groups the identity belongs to directly.
    #[serde(default)]
    pub groups: Vec<GroupRef>,
}

/// A group in a SCIM user's `groups`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct GroupRef {
    #[serde(default)]
    pub display: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// The built-in group of workspace admins.
pub const ADMINS_GROUP: &str = "admins";

impl CurrentUser {
    /// Member of the workspace's `admins` group: may manage every token of the workspace.
    pub fn is_workspace_admin(&self) -> bool {
        self.groups
            .iter()
            .any(|g| g.display.as_deref() == Some(ADMINS_GROUP))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_request_omits_unset_fields() {
        let body = serde_json::to_string(&CreateTokenRequest {
            lifetime_seconds: Some(60),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(body, r#"{"lifetime_seconds":60}"#);
    }

    #[test]
    fn token_info_reads_management_fields_and_defaults_expiry() {
        let info: TokenInfo = serde_json::from_str(
            r#"{"token_id":"t1","creation_time":5,"comment":"c","created_by_id":7,"created_by_username":"a@b","owner_id":9,"workspace_id":1}"#,
        )
        .unwrap();
        assert_eq!(info.expiry_time, -1);
        assert_eq!(info.owner_id, Some(9));
        assert_eq!(info.created_by_username.as_deref(), Some("a@b"));
    }

    #[test]
    fn scim_me_tells_a_workspace_admin_by_the_admins_group() {
        let admin: CurrentUser = serde_json::from_str(
            r#"{"id":"1","userName":"a@b","groups":[{"display":"users","value":"9"},{"display":"admins","value":"8","$ref":"Groups/8"}]}"#,
        )
        .unwrap();
        assert!(admin.is_workspace_admin());
        let user: CurrentUser =
            serde_json::from_str(r#"{"id":"2","groups":[{"display":"users","value":"9"}]}"#)
                .unwrap();
        assert!(!user.is_workspace_admin());
        let bare: CurrentUser = serde_json::from_str(r#"{"id":"3"}"#).unwrap();
        assert!(!bare.is_workspace_admin());
    }

    #[test]
    fn created_token_debug_hides_the_value() {
        let t = CreatedToken {
            value: SecretString::from("the-value"),
            info: serde_json::from_str(r#"{"token_id":"t"}"#).unwrap(),
        };
        let text = format!("{t:?}");
        assert!(
            !text.contains("the-value") && text.contains("<redacted>"),
            "{text}"
        );
    }
}
