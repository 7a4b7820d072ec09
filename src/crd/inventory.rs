//! `spec.inventory` and `status.inventory` of both workspace kinds: the periodic listing of every
//! token in the workspace, classified, with orphan revocation and an explicit cleanup policy.

use kube::{KubeSchema, core::Duration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Periodic listing of every token in the workspace through token management (the workspace
/// credential must be a workspace admin), classified into status counts and metrics.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InventorySpec {
    /// How often the workspace's tokens are listed (one list call each time, whatever their
    /// number), as a Go duration. Default 1h; at least 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(is_duration!("self")).message("inventory.interval must be a duration like 1h or 15m (units h, m, s; largest first)"))]
    #[x_kube(validation = Rule::new(concat!("!", is_duration!("self"), " || duration(self) >= duration('10s')")).message("inventory.interval must be at least 10s"))]
    pub interval: Option<Duration>,
    /// Tokens expiring within this window count as expiring soon. Default 720h (30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(is_duration!("self")).message("inventory.expiryWarningWindow must be a duration like 720h (units h, m, s; largest first)"))]
    #[x_kube(validation = Rule::new(concat!("!", is_duration!("self"), " || duration(self) > duration('0s')")).message("inventory.expiryWarningWindow must be longer than 0s"))]
    pub expiry_warning_window: Option<Duration>,
    /// Whose tokens are counted: each entry an identity id (the `owner_id` token management
    /// reports, digits only) or the user name / application id that created the token. Empty:
    /// every token of the workspace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 256)))]
    pub owners: Vec<String>,
    /// What happens to orphans (tokens this operator tagged for a DatabricksToken that no longer
    /// exists, minted with this workspace's credential): `Revoke` (default) revokes each with an
    /// event; `Report` only counts them.
    #[serde(default)]
    pub orphans: OrphanPolicy,
    /// A `dbtoken_inventory_token_expiry_timestamp_seconds` series per token with an expiry
    /// (labels: token id, owner, class). Off by default: one series per token.
    #[serde(default)]
    pub per_token_metrics: bool,
    /// Revocation of tokens this operator did not mint: only those the rules name, each by
    /// owner and comment text. Without it such tokens are never touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<CleanupPolicy>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OrphanPolicy {
    #[default]
    Revoke,
    Report,
}

/// Which unmanaged tokens to revoke: a token matches when one rule names its owner and its
/// comment contains that rule's text.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CleanupPolicy {
    /// `DryRun` only reports the matching tokens (status and one event); `Revoke` revokes each,
    /// with an event per token.
    pub mode: CleanupMode,
    #[schemars(length(min = 1, max = 20))]
    pub rules: Vec<CleanupRule>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupMode {
    DryRun,
    Revoke,
}

/// One rule: whose tokens, and what their comment contains. Both are required, so no rule can
/// reach every token of the workspace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CleanupRule {
    /// Owners as in `inventory.owners` (identity id, or creating user name / application id).
    #[schemars(length(min = 1, max = 100), inner(length(min = 1, max = 256)))]
    #[x_kube(validation = Rule::new("self.all(o, o != '*')").message("cleanup rules must name owners: '*' is not allowed"))]
    pub owners: Vec<String>,
    /// Text the token's comment must contain (case-sensitive), e.g. `temp-`.
    #[schemars(length(min = 1, max = 256))]
    pub comment_contains: String,
}

/// What the last inventory found.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InventoryStatus {
    /// When the last complete list was read (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_inventory_time: Option<String>,
    /// Tokens counted (after the owners filter).
    #[serde(default)]
    pub total: u64,
    /// Tagged by this operator for a DatabricksToken that exists.
    #[serde(default)]
    pub managed: u64,
    /// Tagged by this operator (with this credential) for a DatabricksToken that no longer exists.
    #[serde(default)]
    pub orphaned: u64,
    /// Orphans revoked by the last inventory.
    #[serde(default)]
    pub orphans_revoked: u64,
    /// Not minted by this operator, expiring within the warning window.
    #[serde(default)]
    pub expiring_soon: u64,
    /// Not minted by this operator, never expiring.
    #[serde(default)]
    pub never_expiring: u64,
    /// Not minted by this operator, past their expiry on the operator's clock.
    #[serde(default)]
    pub expired: u64,
    /// Not minted by this operator, expiring after the warning window.
    #[serde(default)]
    pub other: u64,
    /// The cleanup policy's result in the last inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<CleanupStatus>,
    /// Why the last inventory failed, if it did (the counts are from the last success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The `.metadata.generation` the last inventory ran with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The tokens a cleanup policy matched, and what was done to them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CleanupStatus {
    /// `DryRun` or `Revoke`: the mode the last inventory ran with.
    pub mode: String,
    /// Tokens the rules matched.
    pub matched: u64,
    /// Tokens revoked (0 in a dry run).
    pub revoked: u64,
    /// The matched token ids, sorted, at most the first 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_ids: Vec<String>,
}

/// The most token ids `CleanupStatus` lists.
pub const CLEANUP_IDS_SHOWN: usize = 100;

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use crate::crd::{ClusterDatabricksWorkspace, DatabricksWorkspace};

    #[test]
    fn both_workspace_kinds_show_the_inventory_counts_in_wide_output_only() {
        for crd in [
            DatabricksWorkspace::crd(),
            ClusterDatabricksWorkspace::crd(),
        ] {
            let version = &crd.spec.versions[0];
            let wide: Vec<(&str, &str)> = version
                .additional_printer_columns
                .iter()
                .flatten()
                .filter(|c| c.priority == Some(1))
                .map(|c| (c.name.as_str(), c.json_path.as_str()))
                .collect();
            assert_eq!(
                wide,
                [
                    ("Tokens", ".status.inventory.total"),
                    ("Orphaned", ".status.inventory.orphaned"),
                    ("Expiring", ".status.inventory.expiringSoon"),
                    ("NeverExpiring", ".status.inventory.neverExpiring"),
                    ("Inventoried", ".status.inventory.lastInventoryTime"),
                ],
                "{}",
                crd.spec.names.kind
            );
            // Every path names a field the status schema has.
            let schema = serde_json::to_value(&version.schema).unwrap_or_default();
            let inventory = &schema["openAPIV3Schema"]["properties"]["status"]["properties"]["inventory"]
                ["properties"];
            for (_, path) in wide {
                let field = path.rsplit('.').next().unwrap_or_default();
                assert!(inventory.get(field).is_some(), "{path} in {inventory}");
            }
        }
    }
}
