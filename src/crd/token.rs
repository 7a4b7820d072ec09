//! `DatabricksToken`: one Databricks personal access token kept alive in one Secret.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema, core::Duration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;
use crate::time::Timestamp;

/// A duration such as `720h`, `90m` or `1h30m`: Go's syntax with each unit at most once, largest
/// first, and few enough digits that no value overflows CEL's `duration()` (at most about
/// 1.7 million hours in all). `[.]` rather than an escaped dot, so the same text is a valid CEL
/// string literal in the rules that guard `duration()` with it.
macro_rules! duration_regex {
    () => {
        concat!(
            "^([0-9]{1,6}([.][0-9]{1,9})?h)?",
            "([0-9]{1,7}([.][0-9]{1,9})?m)?",
            "([0-9]{1,9}([.][0-9]{1,9})?s)?",
            "([0-9]{1,12}([.][0-9]{1,9})?ms)?",
            "([0-9]{1,12}([.][0-9]{1,9})?(us|µs))?",
            "([0-9]{1,12}([.][0-9]{1,9})?ns)?$"
        )
    };
}

/// CEL: whether the string at `$path` is a duration `duration()` converts without error. Every
/// rule that converts checks this first, so a bad value gets its field's message alone.
macro_rules! is_duration {
    ($path:literal) => {
        concat!(
            "(",
            $path,
            " != '' && ",
            $path,
            ".matches('",
            duration_regex!(),
            "'))"
        )
    };
}

/// What token to mint, for whom, how long it lives and when it is rotated, and which Secret
/// holds it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dbtoken.dev",
    version = "v1alpha1",
    kind = "DatabricksToken",
    namespaced,
    shortname = "dbtoken",
    category = "databricks",
    doc = "A Databricks personal access token that the operator mints into a Secret and rotates before it expires, keeping the previous one valid for a grace period. Pods mount the Secret (DATABRICKS_HOST / DATABRICKS_TOKEN).",
    status = "DatabricksTokenStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    // Degraded but still Ready (the Secret's token lives, rotation keeps failing) must show.
    printcolumn = r#"{"name":"Degraded","type":"string","jsonPath":".status.conditions[?(@.type==\"Degraded\")].status"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".status.expiryTime"}"#,
    printcolumn = r#"{"name":"Renews","type":"string","jsonPath":".status.renewalTime"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".status.secretName","priority":1}"#,
    printcolumn = r#"{"name":"Token","type":"string","jsonPath":".status.shortTokenId","priority":1}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Degraded\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Degraded\")].message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
// Type oauth: Databricks decides the lifetime and nothing is revoked, so the PAT-only fields
// are refused rather than silently ignored; a pat needs its lifetime.
#[x_kube(validation = Rule::new("self.type == 'oauth' || has(self.lifetime)").message("lifetime is required for type pat (e.g. 720h)"))]
#[x_kube(validation = Rule::new("self.type != 'oauth' || !has(self.lifetime)").message("lifetime must not be set for type oauth: Databricks grants OAuth access tokens their lifetime (about an hour)"))]
#[x_kube(validation = Rule::new("self.type != 'oauth' || !has(self.renewBefore)").message("renewBefore is not available for type oauth (the lifetime is Databricks'): use renewBeforePercentage"))]
#[x_kube(validation = Rule::new("self.type != 'oauth' || !has(self.onBehalfOf)").message("onBehalfOf is not available for type oauth: the access token belongs to the workspace's own service principal"))]
#[x_kube(validation = Rule::new("self.type != 'oauth' || !has(self.comment)").message("comment is not available for type oauth: OAuth access tokens carry no comment"))]
#[x_kube(validation = Rule::new("self.type != 'oauth' || !has(self.rotation)").message("rotation is not available for type oauth: a replaced access token is not revoked (it expires by itself within the hour), and pods should read the Secret as a mounted file, not be restarted hourly"))]
#[x_kube(validation = Rule::new("self.type != 'oauth' || !has(self.scopes) || self.scopes.all(s, s.matches('^[-a-zA-Z0-9._:/]+$'))").message("scopes of type oauth must be OAuth scope names (letters, digits and . _ : / -; no spaces), e.g. all-apis or sql"))]
#[x_kube(validation = Rule::new("!(has(self.renewBefore) && has(self.renewBeforePercentage))").message("set at most one of renewBefore and renewBeforePercentage"))]
// Each rule that converts with duration() first checks the text is a duration: an unparsable
// value gets the pattern's message alone, not also a type-conversion error per rule.
#[x_kube(validation = Rule::new(concat!("!has(self.renewBefore) || !has(self.lifetime) || !", is_duration!("self.renewBefore"), " || !", is_duration!("self.lifetime"), " || duration(self.renewBefore) < duration(self.lifetime)")).message("renewBefore must be shorter than lifetime"))]
#[x_kube(validation = Rule::new(concat!("!has(self.rotation) || !has(self.rotation.gracePeriod) || !has(self.renewBefore) || !", is_duration!("self.rotation.gracePeriod"), " || !", is_duration!("self.renewBefore"), " || duration(self.rotation.gracePeriod) <= duration(self.renewBefore)")).message("rotation.gracePeriod must not exceed renewBefore: the previous token would outlive its own expiry"))]
// The renewal window without renewBefore: renewBeforePercentage of the lifetime, 33 by default
// (schedule::DEFAULT_RENEW_BEFORE_PERCENT), compared in whole seconds.
#[x_kube(validation = Rule::new(concat!("!has(self.rotation) || !has(self.rotation.gracePeriod) || has(self.renewBefore) || !has(self.lifetime) || !", is_duration!("self.rotation.gracePeriod"), " || !", is_duration!("self.lifetime"), " || duration(self.rotation.gracePeriod).getSeconds() * 100 <= duration(self.lifetime).getSeconds() * (has(self.renewBeforePercentage) ? self.renewBeforePercentage : 33)")).message("rotation.gracePeriod must fit in the renewal window (renewBeforePercentage of the lifetime, one third by default): the previous token would expire before a longer grace period ends"))]
pub struct DatabricksTokenSpec {
    /// The workspace (and credentials) to mint the token with.
    pub workspace_ref: WorkspaceRef,

    /// `pat` (default): a personal access token with the lifetime asked for, revoked after
    /// rotation. `oauth`: a short-lived Databricks OAuth access token of the workspace's own
    /// service principal (workspace auth `oauthM2M` or `workloadIdentity`), for workspaces where
    /// PATs are disabled; renewed at 2/3 of the lifetime Databricks grants (about an hour),
    /// nothing to revoke. Cannot be changed: create a new DatabricksToken instead.
    #[serde(default, rename = "type")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("type cannot be changed: create a new DatabricksToken (and delete this one) to switch between pat and oauth"))]
    pub token_type: TokenType,

    /// Mint the token for a service principal via the token-management on-behalf-of API
    /// (needs workspace admin credentials). Without it the token belongs to the workspace's
    /// authenticated identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<OnBehalfOf>,

    /// How long each minted token lives, as a Go duration (e.g. `720h`). At least 10s and at
    /// most 730 days (17520h); the workspace's own maximum may be lower. Required for type
    /// `pat`; not set for type `oauth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(is_duration!("self")).message("lifetime must be a duration like 720h or 30m (units h, m, s; largest first)"))]
    #[x_kube(validation = Rule::new(concat!("!", is_duration!("self"), " || duration(self) >= duration('10s')")).message("lifetime must be at least 10s"))]
    #[x_kube(validation = Rule::new(concat!("!", is_duration!("self"), " || duration(self) <= duration('17520h')")).message("lifetime must be at most 17520h (730 days), the Databricks maximum"))]
    #[schemars(extend("maxLength" = 32))]
    pub lifetime: Option<Duration>,

    /// Rotate this long before the token expires (e.g. `240h`). Defaults to one third of the
    /// lifetime (renewal at 2/3 of the lifetime). Mutually exclusive with renewBeforePercentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(is_duration!("self")).message("renewBefore must be a duration like 240h or 30m (units h, m, s; largest first)"))]
    #[x_kube(validation = Rule::new(concat!("!", is_duration!("self"), " || duration(self) > duration('0s')")).message("renewBefore must be longer than 0s: a token renewed at its expiry leaves workloads without a valid one"))]
    #[schemars(extend("maxLength" = 32))]
    pub renew_before: Option<Duration>,

    /// Rotate when this percentage of the lifetime remains (1-99). Mutually exclusive with
    /// renewBefore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 99))]
    pub renew_before_percentage: Option<u8>,

    /// Comment stored on the token in Databricks. The operator appends
    /// `[dbtoken.dev/uid=<uid>]` to find its own tokens again, so the comment itself may not
    /// contain that tag (in any case or spacing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    #[x_kube(validation = Rule::new(r"!self.matches('(?i)dbtoken\\s*[.]\\s*dev\\s*/\\s*uid')").message("comment must not contain the operator's tag [dbtoken.dev/uid=...]: the operator adds it itself, and a copied tag would make another resource revoke this one's tokens"))]
    pub comment: Option<String>,

    /// OAuth scopes to restrict the token to. Type `pat`: passed to the token create API when
    /// set. Type `oauth`: the `scope` asked of the token endpoint (default `all-apis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 50), inner(length(max = 256)))]
    #[x_kube(validation = Rule::new("self.all(s, s != '')").message("scopes must not contain empty strings"))]
    pub scopes: Option<Vec<String>>,

    /// The Secret the token is written to.
    #[serde(default)]
    pub secret: SecretTemplate,

    /// How rotations hand over from the old token to the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationSpec>,

    /// What happens to the tokens and the Secret when this resource is deleted: `Revoke`
    /// (default) revokes every token of this resource and deletes the Secret; `Retain` leaves both.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A duration as the schema accepts it: decimal numbers with units h, m, s, ms, us, ns, each
/// unit at most once and largest first.
pub const DURATION_PATTERN: &str = duration_regex!();

/// Which kind of token the Secret holds.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// A Databricks personal access token.
    #[default]
    Pat,
    /// A Databricks OAuth access token of the workspace's service principal.
    #[serde(rename = "oauth")]
    OAuth,
}

/// Which workspace object to use.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceRef {
    /// `DatabricksWorkspace` (same namespace) or `ClusterDatabricksWorkspace`.
    #[serde(default)]
    pub kind: WorkspaceKind,
    /// Name of the workspace object.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self != ''").message("workspaceRef.name must not be empty"))]
    pub name: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WorkspaceKind {
    #[default]
    DatabricksWorkspace,
    ClusterDatabricksWorkspace,
}

/// Identifies one workspace object.
#[derive(JsonSchema, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkspaceKey {
    pub kind: WorkspaceKind,
    /// None for cluster-scoped workspaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for WorkspaceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{:?} {ns}/{}", self.kind, self.name),
            None => write!(f, "{:?} {}", self.kind, self.name),
        }
    }
}

/// Where a token was minted and who owns it: what revoking it needs, whatever changed since in
/// the resource or its workspace.
#[derive(JsonSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenOrigin {
    pub workspace: WorkspaceKey,
    pub host: String,
    /// The service principal it was minted for (on-behalf-of); None: the credential's own token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    /// Who the workspace credential authenticated as when it minted its own token (SCIM id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// The service principal a token is minted for.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OnBehalfOf {
    /// Application ID (UUID) of the Databricks service principal.
    #[schemars(length(max = 36))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')").message("onBehalfOf.applicationId must be a UUID"))]
    pub application_id: String,
}

/// Where and how the token is written. No two values may land on the same key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.tokenKey != self.hostKey").message("secret.tokenKey and secret.hostKey must differ: the host would overwrite the token"))]
#[x_kube(validation = Rule::new("!self.envKeys || !(self.tokenKey in ['DATABRICKS_HOST', 'DATABRICKS_TOKEN'] || self.hostKey in ['DATABRICKS_HOST', 'DATABRICKS_TOKEN'])").message("secret.envKeys writes DATABRICKS_HOST and DATABRICKS_TOKEN itself: give tokenKey and hostKey other names, or set envKeys: false"))]
#[x_kube(validation = Rule::new("!has(self.databricksCfgProfile) || !(self.tokenKey == '.databrickscfg' || self.hostKey == '.databrickscfg')").message("secret.databricksCfgProfile writes the .databrickscfg key itself: give tokenKey and hostKey other names"))]
pub struct SecretTemplate {
    /// Secret name; defaults to the DatabricksToken's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') && size(self) <= 253").message("secret.name must be a valid Secret name (DNS subdomain)"))]
    pub name: Option<String>,
    /// Key holding the token value.
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$')").message("secret.tokenKey must be a valid Secret key"))]
    pub token_key: String,
    /// Key holding the workspace URL.
    #[serde(default = "default_host_key")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$')").message("secret.hostKey must be a valid Secret key"))]
    pub host_key: String,
    /// Also write `DATABRICKS_HOST` and `DATABRICKS_TOKEN`, for `envFrom`.
    #[serde(default = "default_true")]
    pub env_keys: bool,
    /// Also write a `.databrickscfg` file with this profile name (e.g. `DEFAULT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[-_a-zA-Z0-9]+$')").message("secret.databricksCfgProfile must be letters, digits, '-' or '_'"))]
    pub databricks_cfg_profile: Option<String>,
    /// Extra labels on the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for SecretTemplate {
    fn default() -> Self {
        Self {
            name: None,
            token_key: default_token_key(),
            host_key: default_host_key(),
            env_keys: true,
            databricks_cfg_profile: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }
}

fn default_token_key() -> String {
    "token".to_string()
}
fn default_host_key() -> String {
    "host".to_string()
}
fn default_true() -> bool {
    true
}

/// How a rotation hands over.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RotationSpec {
    /// How long the previous token stays valid after the Secret holds the new one (default: the
    /// operator's `--default-grace-period`, 1h; capped at the previous token's own expiry). It
    /// must fit in the renewal window, the time between renewal and expiry: `renewBefore`, or
    /// `renewBeforePercentage` of the lifetime, one third of the lifetime by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(is_duration!("self")).message("rotation.gracePeriod must be a duration like 1h or 10m (units h, m, s; largest first)"))]
    #[schemars(extend("maxLength" = 32))]
    pub grace_period: Option<Duration>,
    /// Workloads whose pod template gets a restart annotation after each rotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub rollout_restart_targets: Vec<RolloutTarget>,
}

/// A Deployment, StatefulSet or DaemonSet in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTarget {
    /// Deployment, StatefulSet or DaemonSet.
    pub kind: RolloutKind,
    /// Its name, in the DatabricksToken's namespace.
    pub name: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    #[default]
    Revoke,
    Retain,
}

/// Observed state. It mirrors the Secret's annotations, which are the source of truth, and
/// never holds a token value.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabricksTokenStatus {
    /// Ready, Rotating and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Databricks id of the token currently in the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The first characters of tokenId, for `kubectl get -o wide`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_token_id: Option<String>,
    /// Name of the Secret holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// When the current token expires (RFC 3339).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::time::lenient"
    )]
    pub expiry_time: Option<Timestamp>,
    /// When the operator will rotate the current token (RFC 3339).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::time::lenient"
    )]
    pub renewal_time: Option<Timestamp>,
    /// When the token was last replaced (RFC 3339).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::time::lenient"
    )]
    pub last_rotation_time: Option<Timestamp>,
    /// Replaced tokens still valid, and when each is revoked.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::time::skip_unreadable"
    )]
    pub previous_tokens: Vec<PreviousToken>,
    /// The `.metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Secret's `.metadata.resourceVersion` when the operator last wrote or checked it. Any
    /// other version means someone else changed the Secret, and the operator reads it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_resource_version: Option<String>,
    /// Workspaces, and token owners there, where this resource may hold a token its Secret does
    /// not record: a create there was interrupted, or the resource moved away from there. Each is
    /// listed and cleared of such tokens before it is dropped from here. Neither `applicationId`
    /// nor `identity`: any owner the workspace credential minted for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_sweeps: Vec<TokenOrigin>,
}

/// A replaced token waiting out its grace period.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PreviousToken {
    /// Databricks id of the replaced token.
    pub token_id: String,
    /// RFC 3339 time after which the operator revokes it.
    pub revoke_after: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status exactly as versions with string times wrote it.
    fn stored_status() -> serde_json::Value {
        serde_json::json!({
            "tokenId": "abc",
            "expiryTime": "2023-11-14T22:13:20.123Z",
            "renewalTime": "2023-11-14T20:00:00.000Z",
            "lastRotationTime": "2023-11-13T22:13:20.000Z",
            "previousTokens": [{"tokenId": "old", "revokeAfter": "2023-11-14T22:23:20.500Z"}],
        })
    }

    #[test]
    fn a_stored_status_reads_typed_and_writes_back_byte_identical() {
        let status: DatabricksTokenStatus = serde_json::from_value(stored_status()).unwrap();
        assert_eq!(
            status.expiry_time.map(Timestamp::as_millis),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            status.previous_tokens[0].revoke_after.as_millis(),
            1_700_000_600_500
        );
        // Every string compared exactly: the same text goes back to the API server.
        assert_eq!(serde_json::to_value(&status).unwrap(), stored_status());
    }

    #[test]
    fn a_hand_edited_status_with_unreadable_times_still_reads() {
        let status: DatabricksTokenStatus = serde_json::from_value(serde_json::json!({
            "tokenId": "abc",
            "expiryTime": "tomorrow",
            "renewalTime": "2023-11-14T20:00:00Z",
            "previousTokens": [
                {"tokenId": "bad", "revokeAfter": "later"},
                {"tokenId": "good", "revokeAfter": "2023-11-14T22:23:20Z"},
            ],
        }))
        .unwrap();
        assert_eq!(status.token_id.as_deref(), Some("abc"));
        assert_eq!(status.expiry_time, None);
        assert_eq!(
            status.renewal_time,
            Some(Timestamp::from_millis(1_699_992_000_000))
        );
        let ids: Vec<&str> = status
            .previous_tokens
            .iter()
            .map(|p| p.token_id.as_str())
            .collect();
        assert_eq!(ids, ["good"]);
    }
}
