//! `DatabricksWorkspace` (namespaced) and `ClusterDatabricksWorkspace` (cluster-scoped): a
//! workspace URL and exactly one way to authenticate to it.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A namespace name (DNS-1123 label), as a CEL string literal.
macro_rules! dns_label_regex {
    () => {
        "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    };
}

use super::Condition;

/// The workspace URL and how the operator authenticates to it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dbtoken.dev",
    version = "v1alpha1",
    kind = "DatabricksWorkspace",
    category = "databricks",
    doc = "A Databricks workspace URL and the credential the operator authenticates with there, for the DatabricksTokens of this namespace. Ready says whether the credential currently authenticates.",
    namespaced,
    shortname = "dbws",
    status = "WorkspaceStatus",
    printcolumn = r#"{"name":"Host","type":"string","jsonPath":".spec.host"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Identity","type":"string","jsonPath":".status.identity"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Tokens","type":"integer","priority":1,"jsonPath":".status.inventory.total"}"#,
    printcolumn = r#"{"name":"Orphaned","type":"integer","priority":1,"jsonPath":".status.inventory.orphaned"}"#,
    printcolumn = r#"{"name":"Expiring","type":"integer","priority":1,"jsonPath":".status.inventory.expiringSoon"}"#,
    printcolumn = r#"{"name":"NeverExpiring","type":"integer","priority":1,"jsonPath":".status.inventory.neverExpiring"}"#,
    printcolumn = r#"{"name":"Inventoried","type":"date","priority":1,"jsonPath":".status.inventory.lastInventoryTime"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.auth.pat) || !has(self.auth.pat.secretRef.namespace)").message("a DatabricksWorkspace reads credentials from its own namespace: remove auth.pat.secretRef.namespace"))]
#[x_kube(validation = Rule::new("!has(self.auth.oauthM2M) || !has(self.auth.oauthM2M.secretRef.namespace)").message("a DatabricksWorkspace reads credentials from its own namespace: remove auth.oauthM2M.secretRef.namespace"))]
#[x_kube(validation = Rule::new("!has(self.auth.azureServicePrincipal) || !has(self.auth.azureServicePrincipal.secretRef) || !has(self.auth.azureServicePrincipal.secretRef.namespace)").message("a DatabricksWorkspace reads credentials from its own namespace: remove auth.azureServicePrincipal.secretRef.namespace"))]
#[x_kube(validation = Rule::new("!has(self.auth.workloadIdentity) || !has(self.auth.workloadIdentity.serviceAccountRef.namespace)").message("a DatabricksWorkspace uses a ServiceAccount of its own namespace: remove auth.workloadIdentity.serviceAccountRef.namespace"))]
#[x_kube(validation = Rule::new("!has(self.auth.azureServicePrincipal) || !has(self.auth.azureServicePrincipal.workloadIdentity) || !has(self.auth.azureServicePrincipal.workloadIdentity.serviceAccountRef.namespace)").message("a DatabricksWorkspace uses a ServiceAccount of its own namespace: remove auth.azureServicePrincipal.workloadIdentity.serviceAccountRef.namespace"))]
pub struct DatabricksWorkspaceSpec {
    /// Workspace URL, e.g. `https://adb-1234567890123456.7.azuredatabricks.net`. Plain
    /// `http://` is only accepted when the operator runs with `--insecure-allow-http`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#\\\\s]+/?$')").message("host must be a workspace URL like https://adb-123.4.azuredatabricks.net, without a path"))]
    pub host: String,
    /// How the operator authenticates; credentials are read from a Secret in this namespace (or,
    /// with workload identity, come from a ServiceAccount of this namespace).
    pub auth: WorkspaceAuth,
    /// Client-side limits towards this workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Whether DatabricksTokens without `onBehalfOf` may use this workspace. Such a token belongs
    /// to the credential's own identity, so every consumer holding one could list and revoke
    /// that identity's tokens, the workspace credential included. `DenyIfAdmin` (default)
    /// refuses them when the credential is a workspace admin (member of `admins`); `Allow`
    /// mints them (a credential no one else shares); `Deny` refuses them always.
    #[serde(default)]
    pub own_identity_tokens: OwnIdentityTokens,
    /// Opt-in: list every token of the workspace periodically and report them by class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<super::InventorySpec>,
}

/// The workspace URL, how the operator authenticates to it, and which namespaces may use it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dbtoken.dev",
    version = "v1alpha1",
    kind = "ClusterDatabricksWorkspace",
    category = "databricks",
    doc = "A Databricks workspace URL and the credential the operator authenticates with there, shared by the DatabricksTokens of the namespaces its allow-list admits. Ready says whether the credential currently authenticates.",
    shortname = "cdbws",
    status = "WorkspaceStatus",
    printcolumn = r#"{"name":"Host","type":"string","jsonPath":".spec.host"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Identity","type":"string","jsonPath":".status.identity"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Tokens","type":"integer","priority":1,"jsonPath":".status.inventory.total"}"#,
    printcolumn = r#"{"name":"Orphaned","type":"integer","priority":1,"jsonPath":".status.inventory.orphaned"}"#,
    printcolumn = r#"{"name":"Expiring","type":"integer","priority":1,"jsonPath":".status.inventory.expiringSoon"}"#,
    printcolumn = r#"{"name":"NeverExpiring","type":"integer","priority":1,"jsonPath":".status.inventory.neverExpiring"}"#,
    printcolumn = r#"{"name":"Inventoried","type":"date","priority":1,"jsonPath":".status.inventory.lastInventoryTime"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.auth.pat) || has(self.auth.pat.secretRef.namespace)").message("a ClusterDatabricksWorkspace must set auth.pat.secretRef.namespace"))]
#[x_kube(validation = Rule::new("!has(self.auth.oauthM2M) || has(self.auth.oauthM2M.secretRef.namespace)").message("a ClusterDatabricksWorkspace must set auth.oauthM2M.secretRef.namespace"))]
#[x_kube(validation = Rule::new("!has(self.auth.azureServicePrincipal) || !has(self.auth.azureServicePrincipal.secretRef) || has(self.auth.azureServicePrincipal.secretRef.namespace)").message("a ClusterDatabricksWorkspace must set auth.azureServicePrincipal.secretRef.namespace"))]
#[x_kube(validation = Rule::new("!has(self.auth.workloadIdentity) || has(self.auth.workloadIdentity.serviceAccountRef.namespace)").message("a ClusterDatabricksWorkspace must set auth.workloadIdentity.serviceAccountRef.namespace"))]
#[x_kube(validation = Rule::new("!has(self.auth.azureServicePrincipal) || !has(self.auth.azureServicePrincipal.workloadIdentity) || has(self.auth.azureServicePrincipal.workloadIdentity.serviceAccountRef.namespace)").message("a ClusterDatabricksWorkspace must set auth.azureServicePrincipal.workloadIdentity.serviceAccountRef.namespace"))]
pub struct ClusterDatabricksWorkspaceSpec {
    /// Workspace URL, e.g. `https://adb-1234567890123456.7.azuredatabricks.net`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#\\\\s]+/?$')").message("host must be a workspace URL like https://adb-123.4.azuredatabricks.net, without a path"))]
    pub host: String,
    /// How the operator authenticates; the credential Secret's (or workload identity
    /// ServiceAccount's) namespace is given explicitly.
    pub auth: WorkspaceAuth,
    /// Namespaces whose DatabricksTokens may use this workspace. `*` admits every namespace.
    #[schemars(length(min = 1, max = 1000), inner(length(min = 1, max = 63)))]
    #[x_kube(validation = Rule::new(concat!("self.all(n, n == '*' || n.matches('", dns_label_regex!(), "'))")).message("allowedNamespaces entries must be namespace names (lowercase letters, digits and '-', starting and ending with a letter or digit) or '*'"))]
    pub allowed_namespaces: Vec<String>,
    /// Service principals that DatabricksTokens may be minted for (`onBehalfOf`), each with the
    /// admitted namespaces allowed to use it. A token naming any other service principal is
    /// refused (`ServicePrincipalNotAllowed`): without this list a namespace could mint tokens
    /// for every service principal of the workspace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub allowed_service_principals: Vec<AllowedServicePrincipal>,
    /// Whether DatabricksTokens without `onBehalfOf` may use this workspace. Such a token belongs
    /// to the credential's own identity, so every consumer holding one could list and revoke
    /// that identity's tokens, the workspace credential included. `DenyIfAdmin` (default)
    /// refuses them when the credential is a workspace admin (member of `admins`); `Allow`
    /// mints them (a credential no one else shares); `Deny` refuses them always.
    #[serde(default)]
    pub own_identity_tokens: OwnIdentityTokens,
    /// Client-side limits towards this workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Opt-in: list every token of the workspace periodically and report them by class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<super::InventorySpec>,
}

/// One service principal and the namespaces whose DatabricksTokens may mint for it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AllowedServicePrincipal {
    /// Application ID (UUID) of the Databricks service principal.
    #[schemars(length(max = 36))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')").message("allowedServicePrincipals[].applicationId must be a UUID"))]
    pub application_id: String,
    /// Namespaces (among those allowedNamespaces admits) that may mint for it; `*` for all.
    #[schemars(length(min = 1, max = 50), inner(length(min = 1, max = 63)))]
    #[x_kube(validation = Rule::new(concat!("self.all(n, n == '*' || n.matches('", dns_label_regex!(), "'))")).message("allowedServicePrincipals[].namespaces entries must be namespace names or '*'"))]
    pub namespaces: Vec<String>,
}

/// Tokens owned by the workspace credential's own identity (a DatabricksToken without
/// `onBehalfOf`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OwnIdentityTokens {
    /// Refused when the credential is a workspace admin: every consumer would hold an admin
    /// token. Use `onBehalfOf` a service principal instead.
    #[default]
    DenyIfAdmin,
    /// Always minted (e.g. a dedicated, non-shared credential, or a deliberate choice).
    Allow,
    /// Never minted: only on-behalf-of tokens.
    Deny,
}

impl ClusterDatabricksWorkspaceSpec {
    pub fn admits(&self, namespace: &str) -> bool {
        self.allowed_namespaces
            .iter()
            .any(|n| n == "*" || n == namespace)
    }
}

/// Exactly one authentication method.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.pat), has(self.oauthM2M), has(self.azureServicePrincipal), has(self.workloadIdentity)].filter(x, x).size() == 1").message("auth must set exactly one of pat, oauthM2M, azureServicePrincipal, workloadIdentity"))]
pub struct WorkspaceAuth {
    /// A personal access token (of a user or admin) stored in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pat: Option<PatAuth>,
    /// OAuth machine-to-machine: a Databricks service principal's client id and secret.
    #[serde(default, rename = "oauthM2M", skip_serializing_if = "Option::is_none")]
    pub oauth_m2m: Option<ClientSecretAuth>,
    /// A Microsoft Entra ID service principal (Azure Databricks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_service_principal: Option<AzureServicePrincipalAuth>,
    /// No stored credential: a Databricks service principal whose federation policy trusts a
    /// Kubernetes ServiceAccount. The operator requests a short-lived token for that
    /// ServiceAccount (TokenRequest API) and exchanges it at `<host>/oidc/v1/token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentityAuth>,
}

/// A service principal that trusts a ServiceAccount's tokens (workload identity federation).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentityAuth {
    /// Application (client) id of the service principal whose federation policy (Databricks)
    /// or federated identity credential (Entra) trusts the ServiceAccount.
    #[schemars(length(min = 1, max = 64))]
    pub client_id: String,
    /// The `aud` of the ServiceAccount tokens; must be one of the policy's audiences. Default:
    /// the workspace's token endpoint `<host>/oidc/v1/token` (as the Databricks SDKs request),
    /// or `api://AzureADTokenExchange` under azureServicePrincipal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub audience: Option<String>,
    /// The ServiceAccount whose identity the operator uses. A DatabricksWorkspace may only name
    /// one in its own namespace; a ClusterDatabricksWorkspace must say which namespace.
    pub service_account_ref: ServiceAccountRef,
}

/// A ServiceAccount: `system:serviceaccount:<namespace>:<name>` is the `sub` of its tokens.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ServiceAccountRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Required for ClusterDatabricksWorkspace, not allowed for DatabricksWorkspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// A token read from `secretRef`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PatAuth {
    pub secret_ref: SecretRef,
    /// Key of the token in the Secret.
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub token_key: String,
}

/// A client id and secret read from `secretRef`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientSecretAuth {
    pub secret_ref: SecretRef,
    /// Key of the client (application) id in the Secret.
    #[serde(default = "default_client_id_key")]
    #[schemars(length(min = 1, max = 253))]
    pub client_id_key: String,
    /// Key of the client secret in the Secret.
    #[serde(default = "default_client_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub client_secret_key: String,
}

/// An Entra ID service principal: its client id and secret read from `secretRef`, or (no stored
/// secret) a federated credential trusting a ServiceAccount, in `workloadIdentity`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.workloadIdentity)").message("azureServicePrincipal must set exactly one of secretRef (client secret) and workloadIdentity (federated credential)"))]
pub struct AzureServicePrincipalAuth {
    /// Entra ID tenant (directory) id.
    #[schemars(length(min = 1, max = 64))]
    pub tenant_id: String,
    /// Entra authority host; defaults to the operator's `--entra-authority-host`
    /// (`https://login.microsoftonline.com`). Like `host`, plain `http://` is only accepted when
    /// the operator runs with `--insecure-allow-http`: the client secret is sent there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#\\\\s@]+/?$')").message("authorityHost must be a URL like https://login.microsoftonline.com, without a path"))]
    pub authority_host: Option<String>,
    /// The Secret holding the application (client) id and client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Instead of a client secret: a client assertion from the ServiceAccount's token, which a
    /// federated identity credential of the Entra app trusts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentityAuth>,
    /// Key of the application (client) id in the Secret.
    #[serde(default = "default_client_id_key")]
    #[schemars(length(min = 1, max = 253))]
    pub client_id_key: String,
    /// Key of the client secret in the Secret.
    #[serde(default = "default_client_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub client_secret_key: String,
}

/// A Secret holding credentials. A `DatabricksWorkspace` may only name a Secret in its own
/// namespace; a `ClusterDatabricksWorkspace` must say which namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret: required for ClusterDatabricksWorkspace, not allowed for
    /// DatabricksWorkspace (which always reads its own namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

impl WorkspaceAuth {
    /// The credential Secret reference of whichever method is set.
    pub fn secret_ref(&self) -> Option<&SecretRef> {
        if let Some(pat) = &self.pat {
            return Some(&pat.secret_ref);
        }
        if let Some(m2m) = &self.oauth_m2m {
            return Some(&m2m.secret_ref);
        }
        self.azure_service_principal
            .as_ref()
            .and_then(|a| a.secret_ref.as_ref())
    }

    /// The workload identity of whichever method uses one (no credential Secret).
    pub fn workload_identity(&self) -> Option<&WorkloadIdentityAuth> {
        self.workload_identity.as_ref().or_else(|| {
            self.azure_service_principal
                .as_ref()
                .and_then(|a| a.workload_identity.as_ref())
        })
    }
}

/// Client-side limits, so a fleet of tokens never floods one workspace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Requests per second, paced evenly (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub requests_per_second: Option<u32>,
    /// Requests in flight at once (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub max_concurrent_requests: Option<u32>,
}

/// Observed state of a workspace object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    /// Ready: the operator authenticated successfully.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The user name or application id the credentials authenticate as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The `.metadata.generation` last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last token inventory (`spec.inventory`), written by its own field manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<super::InventoryStatus>,
}

fn default_token_key() -> String {
    "token".to_string()
}
fn default_client_id_key() -> String {
    "client_id".to_string()
}
fn default_client_secret_key() -> String {
    "client_secret".to_string()
}
