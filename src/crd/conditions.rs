//! Status conditions in the shape `kubectl` and other tools expect (`metav1.Condition`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One condition. `lastTransitionTime` only moves when `status` changes, so re-asserting the
/// same condition writes nothing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: Ready, Rotating or Degraded.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// A CamelCase reason, e.g. `TokenMinted` or the Databricks error code.
    pub reason: String,
    /// A human readable explanation. Never contains a token value.
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time at which `status` last changed.
    pub last_transition_time: String,
    /// The `.metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        now: &str,
        generation: Option<i64>,
    ) -> Self {
        Self {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.into(),
            last_transition_time: now.to_string(),
            observed_generation: generation,
        }
    }
}

/// Replace or add `new` in `conditions`, keeping the old transition time when the status is unchanged.
pub fn upsert(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = new;
        }
        None => conditions.push(new),
    }
}

/// The condition of this type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Condition types: what `kubectl wait --for=condition=...` and the docs name.
pub mod types {
    /// The Secret holds a working token (a token); the credential authenticates (a workspace).
    pub const READY: &str = "Ready";
    /// A token is being replaced, or a create's outcome is unknown (`Minting`).
    pub const ROTATING: &str = "Rotating";
    /// The last reconcile failed; the reason says why.
    pub const DEGRADED: &str = "Degraded";
    /// A workspace whose deletion waits for the tokens that still revoke through it.
    pub const DELETING: &str = "Deleting";
}

/// Condition reasons. A failure's reason is also the reason of its Warning event and the label
/// of the reconcile-error metric; Databricks API failures use the Databricks error code instead.
pub mod reasons {
    /// Ready=True of a token.
    pub const TOKEN_READY: &str = "TokenReady";
    /// Rotating=False.
    pub const IDLE: &str = "Idle";
    /// Degraded=False.
    pub const AS_EXPECTED: &str = "AsExpected";
    /// Rotating=True: the last create failed with an unknown outcome; the next reconcile lists
    /// the workspace's tokens before it mints, and revokes what the create may have left.
    pub const MINTING: &str = "Minting";
    /// Ready=True of a workspace.
    pub const AUTHENTICATED: &str = "Authenticated";
    /// Deleting=True of a workspace.
    pub const WAITING_FOR_TOKENS: &str = "WaitingForTokens";

    /// The Secret exists and is not this resource's.
    pub const SECRET_CONFLICT: &str = "SecretConflict";
    /// Someone keeps deleting or overwriting the Secret; replacement mints are backing off.
    pub const SECRET_FIGHT: &str = "SecretFight";
    /// A replaced token cannot be revoked by anything the operator can reach.
    pub const REVOCATION_BLOCKED: &str = "RevocationBlocked";
    pub const KUBERNETES_ERROR: &str = "KubernetesError";
    /// The object lacks a field the API server always sets.
    pub const INVALID_OBJECT: &str = "InvalidObject";

    pub const WORKSPACE_NOT_FOUND: &str = "WorkspaceNotFound";
    pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
    pub const WORKSPACE_DELETING: &str = "WorkspaceDeleting";
    pub const CREDENTIAL_SECRET_MISSING: &str = "CredentialSecretMissing";
    pub const CREDENTIAL_KEY_MISSING: &str = "CredentialKeyMissing";
    pub const INVALID_WORKSPACE_AUTH: &str = "InvalidWorkspaceAuth";
    pub const INVALID_WORKSPACE_CONFIG: &str = "InvalidWorkspaceConfig";
    /// `onBehalfOf` names a service principal the cluster workspace does not allow here.
    pub const SERVICE_PRINCIPAL_NOT_ALLOWED: &str = "ServicePrincipalNotAllowed";
    /// A token owned by the workspace credential itself, refused by `ownIdentityTokens`.
    pub const OWN_IDENTITY_TOKEN_REFUSED: &str = "OwnIdentityTokenRefused";
    /// Whether the credential is a workspace admin could not be read.
    pub const ADMIN_CHECK_FAILED: &str = "AdminCheckFailed";
    /// A PAT create refused because the workspace's admin turned personal access tokens off;
    /// the message says to use `type: oauth`.
    pub const PATS_DISABLED: &str = "PersonalAccessTokensDisabled";
    /// A `type: oauth` token whose workspace authenticates with something other than
    /// Databricks OAuth (a PAT, an Entra service principal): no access token can be issued.
    pub const OAUTH_UNAVAILABLE: &str = "OAuthNotAvailable";
}

/// Reasons of the Normal and Warning events on a `DatabricksToken` (failures use the condition
/// reason, see [`reasons`]).
pub mod event_reasons {
    pub const MINTED: &str = "Minted";
    pub const ROTATED: &str = "Rotated";
    /// A replaced token revoked after its grace period, or all tokens at deletion.
    pub const REVOKED: &str = "Revoked";
    /// A token tagged for the resource that nothing records (an interrupted mint), revoked.
    pub const ORPHAN_REVOKED: &str = "OrphanRevoked";
    /// A token id read from the Secret is not this resource's, so it was left alone.
    pub const FOREIGN_TOKEN_IGNORED: &str = "ForeignTokenIgnored";
    /// Deleted with `deletionPolicy: Retain`.
    pub const RETAINED: &str = "Retained";
    /// Deleted after its workspace was: its tokens expire by themselves.
    pub const REVOKE_SKIPPED: &str = "RevokeSkipped";
    pub const NOTHING_TO_REVOKE: &str = "NothingToRevoke";
    /// A `type: oauth` token's first access token.
    pub const ISSUED: &str = "Issued";
    /// A `type: oauth` token's access token replaced (renewal, a deleted Secret, ...).
    pub const RENEWED: &str = "Renewed";
    pub const ROLLOUT_RESTARTED: &str = "RolloutRestarted";
    pub const ROLLOUT_RESTART_FAILED: &str = "RolloutRestartFailed";
}

/// Actions of the events on a `DatabricksToken`.
pub mod event_actions {
    pub const MINT: &str = "Mint";
    pub const REVOKE: &str = "Revoke";
    pub const DELETE: &str = "Delete";
    pub const RECONCILE: &str = "Reconcile";
    pub const ROLLOUT_RESTART: &str = "RolloutRestart";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_keeps_transition_time_when_status_is_unchanged() {
        let mut conditions = vec![Condition::new(
            "Ready",
            ConditionStatus::True,
            "A",
            "",
            "t1",
            None,
        )];
        upsert(
            &mut conditions,
            Condition::new("Ready", ConditionStatus::True, "B", "m", "t2", None),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, "t1");
        assert_eq!(conditions[0].reason, "B");
    }

    #[test]
    fn upsert_moves_transition_time_when_status_changes() {
        let mut conditions = vec![Condition::new(
            "Ready",
            ConditionStatus::True,
            "A",
            "",
            "t1",
            None,
        )];
        upsert(
            &mut conditions,
            Condition::new("Ready", ConditionStatus::False, "B", "", "t2", None),
        );
        assert_eq!(conditions[0].last_transition_time, "t2");
    }

    #[test]
    fn upsert_appends_new_types() {
        let mut conditions = vec![];
        upsert(
            &mut conditions,
            Condition::new("Degraded", ConditionStatus::True, "X", "", "t", None),
        );
        assert_eq!(
            find(&conditions, "Degraded").map(|c| c.status),
            Some(ConditionStatus::True)
        );
    }
}
