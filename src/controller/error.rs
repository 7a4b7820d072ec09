//! Why a reconcile failed, with the reason shown in conditions, events and metrics.

use std::time::Duration;

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
}

impl Error {
    pub fn databricks(action: &'static str) -> impl FnOnce(databricks_client::Error) -> Error {
        move |source| Error::Databricks { action, source }
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
            Error::Kube { .. } => "KubernetesError".into(),
            Error::SecretConflict { .. } => "SecretConflict".into(),
            Error::MissingField(_) => "InvalidObject".into(),
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
                    | databricks_client::Error::AuthFlow { .. },
                ..
            }
        )
    }
}
