//! Why a reconcile failed, with the reason shown in conditions, events and metrics.

use std::time::Duration;

use crate::crd::reasons;
use crate::schedule::EpochMillis;
use crate::workspace::WorkspaceError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),

    #[error("Databricks {action} failed: {source}")]
    Databricks {
        action: &'static str,
        source: databricks_client::Error,
    },

    #[error(
        "Databricks refused to create a personal access token: personal access tokens are disabled in this workspace ({source}); set `type: oauth` on this DatabricksToken for a short-lived OAuth access token instead"
    )]
    PatsDisabled { source: databricks_client::Error },

    #[error(
        "type oauth needs a workspace that authenticates with Databricks OAuth (auth.oauthM2M or auth.workloadIdentity); {workspace} uses another kind of credential"
    )]
    OAuthUnavailable { workspace: String },

    /// The workspace refuses tokens of its own identity, and an access token of type oauth is
    /// always one (onBehalfOf is not available for it).
    #[error(
        "type oauth holds an access token of {workspace}'s own identity, which it refuses ({why}): anyone holding it could act as the workspace credential. Authenticate the workspace as a service principal that is not a workspace admin, or set spec.ownIdentityTokens: Allow on the workspace"
    )]
    OAuthOwnIdentityRefused {
        workspace: String,
        why: &'static str,
    },

    #[error("Kubernetes {action} failed: {source}")]
    Kube {
        action: &'static str,
        source: kube::Error,
    },

    #[error(
        "Secret {name} exists and is not owned by this DatabricksToken; refusing to overwrite it (choose another spec.secret.name or delete that Secret)"
    )]
    SecretConflict { name: String },

    #[error("object has no {0}")]
    MissingField(&'static str),

    #[error(
        "cannot revoke replaced token {token_id} yet: {why}; it stays recorded until it can be revoked or expires"
    )]
    RevocationBlocked { token_id: String, why: String },
    /// An earlier call to the workspace failed; its backoff keeps this one from being sent.
    /// Shown as that failure, so waiting and probing resources report the same words.
    #[error("{message}")]
    WorkspaceBackingOff {
        reason: String,
        message: String,
        until: EpochMillis,
    },

    /// The Secret keeps losing its token (deleted or overwritten) and replacements are spent.
    #[error(
        "Secret {name} keeps losing its token ({}); {count} replacement tokens minted in the last hour, the next not before {}",
        changed_by.as_deref().map_or_else(|| "deleted or overwritten".to_string(), |m| format!("last changed by {m}")),
        crate::secret::format_time(*until)
    )]
    ReplacementsExhausted {
        name: String,
        changed_by: Option<String>,
        count: usize,
        until: EpochMillis,
    },
}

/// The action of a PAT create (own or on-behalf-of), as failures name it.
pub const CREATE_TOKEN: &str = "create token";

impl Error {
    /// A failed Databricks call. A PAT create refused because PATs are off in the workspace
    /// gets its own kind, so the condition says what to do.
    pub fn databricks(action: &'static str) -> impl FnOnce(databricks_client::Error) -> Error {
        move |source| {
            if action == CREATE_TOKEN && crate::databricks::pat_creation_disabled(&source) {
                Error::PatsDisabled { source }
            } else {
                Error::Databricks { action, source }
            }
        }
    }

    pub fn kube(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Kube { action, source }
    }

    /// A short reason: the Databricks `error_code` for API errors (e.g. `QUOTA_EXCEEDED`),
    /// otherwise a CamelCase name.
    pub fn reason(&self) -> String {
        match self {
            Error::Workspace(e) => e.reason().to_string(),
            Error::Databricks { source, .. } => {
                let code = source.error_code();
                if code.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    code.to_string()
                } else {
                    format!("HTTP_{code}")
                }
            }
            Error::PatsDisabled { .. } => reasons::PATS_DISABLED.into(),
            Error::OAuthUnavailable { .. } => reasons::OAUTH_UNAVAILABLE.into(),
            Error::OAuthOwnIdentityRefused { .. } => reasons::OWN_IDENTITY_TOKEN_REFUSED.into(),
            Error::Kube { .. } => reasons::KUBERNETES_ERROR.into(),
            Error::SecretConflict { .. } => reasons::SECRET_CONFLICT.into(),
            Error::MissingField(_) => reasons::INVALID_OBJECT.into(),
            Error::RevocationBlocked { .. } => reasons::REVOCATION_BLOCKED.into(),
            Error::WorkspaceBackingOff { reason, .. } => reason.clone(),
            Error::ReplacementsExhausted { .. } => reasons::SECRET_FIGHT.into(),
        }
    }

    /// A server-requested delay (429 Retry-After), honoured by the error policy.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Databricks { source, .. } => source.retry_after(),
            _ => None,
        }
    }

    /// A create whose outcome is unknown: a token may exist that the Secret does not hold.
    pub fn mint_uncertain(&self) -> bool {
        matches!(self, Error::Databricks { source, .. } if source.create_outcome_uncertain())
    }

    /// A write lost a race with another change (HTTP 409): the cache was behind. Retried
    /// shortly from the newer object; not a failure worth a condition or an event.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(s), .. } if s.code == 409)
    }

    /// The workspace as a whole failed (unreachable, 5xx, rate limited, credentials refused),
    /// as opposed to this one request being wrong: every call to it backs off together.
    pub fn is_workspace_failure(&self) -> bool {
        match self {
            Error::Databricks { source, .. } => source.is_retryable() || self.is_auth_failure(),
            _ => false,
        }
    }

    /// When the next attempt is scheduled regardless of backoff (a workspace's or a budget's).
    pub fn wait_until(&self) -> Option<EpochMillis> {
        match self {
            Error::WorkspaceBackingOff { until, .. }
            | Error::ReplacementsExhausted { until, .. } => Some(*until),
            _ => None,
        }
    }

    /// Databricks refused the call (401/403): the workspace's credential may be revoked or lack
    /// rights, which the workspace's own check tells apart.
    pub fn is_refused(&self) -> bool {
        self.is_auth_failure()
            || matches!(
                self,
                Error::Databricks {
                    source: databricks_client::Error::PermissionDenied { .. },
                    ..
                }
            )
    }

    /// The credentials were refused: the cached client must re-read them.
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            Error::Databricks {
                source: databricks_client::Error::Unauthenticated { .. }
                    | databricks_client::Error::AuthFlow { .. }
                    | databricks_client::Error::Federation { .. },
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn databricks(source: databricks_client::Error) -> Error {
        Error::databricks("list tokens")(source)
    }

    fn unavailable() -> databricks_client::Error {
        databricks_client::Error::Unavailable {
            status: 502,
            code: "BAD_GATEWAY".into(),
            message: "HTTP 502 Bad Gateway".into(),
            retry_after: None,
            uncertain: false,
        }
    }

    #[test]
    fn reasons_are_error_codes_or_names() {
        assert_eq!(databricks(unavailable()).reason(), "BAD_GATEWAY");
        let numeric = databricks(databricks_client::Error::Unauthenticated {
            code: "403".into(),
            message: "Invalid access token.".into(),
        });
        assert_eq!(numeric.reason(), "HTTP_403");
        assert_eq!(
            Error::SecretConflict { name: "s".into() }.reason(),
            "SecretConflict"
        );
        let waiting = Error::WorkspaceBackingOff {
            reason: "BAD_GATEWAY".into(),
            message: "m".into(),
            until: 5,
        };
        assert_eq!(waiting.reason(), "BAD_GATEWAY", "the cause, not the wait");
        assert_eq!(waiting.wait_until(), Some(5));
    }

    #[test]
    fn workspace_failures_are_transient_or_refused_credentials() {
        assert!(databricks(unavailable()).is_workspace_failure());
        assert!(
            databricks(databricks_client::Error::Transport {
                message: "connection refused".into(),
                uncertain: false
            })
            .is_workspace_failure()
        );
        assert!(
            databricks(databricks_client::Error::Unauthenticated {
                code: "UNAUTHENTICATED".into(),
                message: "m".into()
            })
            .is_workspace_failure()
        );
        for one_request in [
            databricks_client::Error::QuotaExceeded {
                code: "QUOTA_EXCEEDED".into(),
                message: "m".into(),
            },
            databricks_client::Error::NotFound {
                code: "NOT_FOUND".into(),
                message: "m".into(),
            },
        ] {
            assert!(!databricks(one_request).is_workspace_failure());
        }
        assert!(!Error::SecretConflict { name: "s".into() }.is_workspace_failure());
    }

    #[test]
    fn an_exhausted_replacement_budget_names_who_changed_the_secret() {
        let e = Error::ReplacementsExhausted {
            name: "reports".into(),
            changed_by: Some("argocd".into()),
            count: 4,
            until: 0,
        };
        assert_eq!(e.reason(), "SecretFight");
        assert_eq!(
            e.to_string(),
            "Secret reports keeps losing its token (last changed by argocd); 4 replacement tokens minted in the last hour, the next not before 1970-01-01T00:00:00.000Z"
        );
    }

    fn denied(message: &str) -> databricks_client::Error {
        databricks_client::Error::PermissionDenied {
            code: "PERMISSION_DENIED".into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_pat_create_refused_because_pats_are_off_has_its_own_reason_and_says_what_to_do() {
        let e = Error::databricks(CREATE_TOKEN)(denied(
            "Personal access tokens are disabled for this workspace. Use OAuth instead.",
        ));
        assert_eq!(e.reason(), reasons::PATS_DISABLED);
        assert!(e.to_string().contains("`type: oauth`"), "{e}");
    }

    #[test]
    fn other_permission_refusals_keep_the_databricks_code() {
        let obo_off = Error::databricks(CREATE_TOKEN)(denied(
            "On-behalf-of token creation for service principals is not enabled for this workspace",
        ));
        assert_eq!(obo_off.reason(), "PERMISSION_DENIED");
        let no_right =
            Error::databricks(CREATE_TOKEN)(denied("User does not have permission to use tokens."));
        assert_eq!(no_right.reason(), "PERMISSION_DENIED");
        let not_a_create = Error::databricks("list tokens")(denied(
            "Personal access tokens are disabled for this workspace.",
        ));
        assert_eq!(not_a_create.reason(), "PERMISSION_DENIED");
    }

    #[test]
    fn every_error_has_the_reason_the_api_documents() {
        use crate::workspace::{WorkspaceError, WorkspaceKey};
        let key = WorkspaceKey {
            kind: crate::crd::WorkspaceKind::DatabricksWorkspace,
            namespace: Some("ns".into()),
            name: "ws".into(),
        };
        let kube_error = kube::Error::Api(
            kube::core::Status::failure("boom", "InternalError")
                .with_code(500)
                .boxed(),
        );
        let table: Vec<(Error, &str)> = vec![
            (
                WorkspaceError::NotFound(key.clone()).into(),
                reasons::WORKSPACE_NOT_FOUND,
            ),
            (
                WorkspaceError::Deleting(key.clone()).into(),
                reasons::WORKSPACE_DELETING,
            ),
            (
                WorkspaceError::NoAuth(key).into(),
                reasons::INVALID_WORKSPACE_AUTH,
            ),
            (
                Error::kube("write Secret")(kube_error),
                reasons::KUBERNETES_ERROR,
            ),
            (
                Error::SecretConflict { name: "s".into() },
                reasons::SECRET_CONFLICT,
            ),
            (Error::MissingField("metadata.uid"), reasons::INVALID_OBJECT),
            (
                Error::RevocationBlocked {
                    token_id: "id".into(),
                    why: "w".into(),
                },
                reasons::REVOCATION_BLOCKED,
            ),
            (
                Error::ReplacementsExhausted {
                    name: "s".into(),
                    changed_by: None,
                    count: 4,
                    until: 0,
                },
                reasons::SECRET_FIGHT,
            ),
            (
                databricks(databricks_client::Error::QuotaExceeded {
                    code: "QUOTA_EXCEEDED".into(),
                    message: "m".into(),
                }),
                "QUOTA_EXCEEDED",
            ),
        ];
        for (error, reason) in table {
            assert_eq!(error.reason(), reason, "{error}");
        }
    }
}
