//! Workload identity: a workspace authenticates as a service principal whose federation policy
//! trusts a Kubernetes ServiceAccount, so no Secret holds a Databricks or Entra credential.
//!
//! For each exchange the operator asks the API server for a fresh, short-lived token of that
//! ServiceAccount (TokenRequest: `create` on `serviceaccounts/token`) and sends it; the exchanged
//! Databricks or Entra access token is cached by the client until shortly before it expires.
//!
//! One exception to "fresh each time": Kubernetes creates nothing in a terminating namespace,
//! TokenRequests included, yet deleting a namespace must first revoke the tokens minted through
//! its workspace. So the last ServiceAccount token (one hour) is kept in memory, and used only
//! when the API server refuses a new one because the namespace is being deleted. It is never
//! written anywhere, and goes when it expires or the process ends. A DatabricksWorkspace uses a ServiceAccount of its own namespace, so a
//! federation policy naming `system:serviceaccount:<ns>:<name>` binds a service principal to
//! one team's namespace, enforced by Databricks as well as by the operator.

use databricks_client::{
    Credentials, Error, SecretString,
    federation::{
        ENTRA_TOKEN_EXCHANGE_AUDIENCE, SubjectTokenFuture, SubjectTokenSource, SubjectTokens,
    },
};
use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
};
use kube::{Api, api::PostParams};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use crate::crd::{WorkloadIdentityAuth, WorkspaceAuth, WorkspaceKey, WorkspaceKind};

/// Condition reason: the workspace's ServiceAccount does not exist.
pub const SERVICE_ACCOUNT_NOT_FOUND: &str = "ServiceAccountNotFound";
/// Condition reason: the operator may not request tokens for the ServiceAccount (RBAC:
/// `create` on `serviceaccounts/token`).
pub const TOKEN_REQUEST_FORBIDDEN: &str = "TokenRequestForbidden";

/// Condition reason: the namespace is being deleted, Kubernetes issues no new ServiceAccount
/// tokens there, and no earlier one is at hand (e.g. the operator restarted meanwhile).
pub const NAMESPACE_TERMINATING: &str = "ServiceAccountNamespaceTerminating";

/// Lifetime asked for each ServiceAccount token (a kubelet's projected tokens live as long). A
/// new one is requested for every exchange; this bounds how long the last one can still serve
/// the revocations of a namespace being deleted.
const TOKEN_SECONDS: i64 = 3600;
/// The last token is offered only with at least this long left, so it is not refused as
/// expired on arrival.
const FALLBACK_MARGIN_SECONDS: i64 = 60;

/// Credentials for `auth` if it uses workload identity (None: it reads a credential Secret).
/// `host` is the workspace URL without a trailing slash (the default audience derives from it).
pub fn credentials(
    kube: &kube::Client,
    key: &WorkspaceKey,
    auth: &WorkspaceAuth,
    host: &str,
    default_entra_authority: &str,
) -> Option<Result<Credentials, Error>> {
    if let Some(wi) = &auth.workload_identity {
        let audience = wi
            .audience
            .clone()
            .unwrap_or_else(|| default_audience(host));
        return Some(source(kube, key, wi, audience).map(|subject| {
            Credentials::WorkloadIdentity {
                client_id: wi.client_id.clone(),
                subject,
            }
        }));
    }
    let az = auth.azure_service_principal.as_ref()?;
    let wi = az.workload_identity.as_ref()?;
    let audience = wi
        .audience
        .clone()
        .unwrap_or_else(|| ENTRA_TOKEN_EXCHANGE_AUDIENCE.to_string());
    Some(source(kube, key, wi, audience).map(|subject| {
        Credentials::AzureFederated {
            tenant_id: az.tenant_id.clone(),
            client_id: wi.client_id.clone(),
            authority_host: az
                .authority_host
                .clone()
                .unwrap_or_else(|| default_entra_authority.to_string()),
            subject,
        }
    }))
}

/// The audience the Databricks SDKs request for a workspace: its token endpoint. (A policy
/// created without audiences defaults to the account id, which the operator cannot know: the
/// policy must list this URL, or `audience` must name what the policy lists.)
pub fn default_audience(host: &str) -> String {
    format!("{}/oidc/v1/token", host.trim_end_matches('/'))
}

/// The namespace whose ServiceAccount a workspace uses: a DatabricksWorkspace's own, whatever
/// the spec says (schema rules refuse another); a ClusterDatabricksWorkspace's named one.
pub fn service_account_namespace(key: &WorkspaceKey, wi: &WorkloadIdentityAuth) -> Option<String> {
    match key.kind {
        WorkspaceKind::DatabricksWorkspace => key.namespace.clone(),
        WorkspaceKind::ClusterDatabricksWorkspace => wi.service_account_ref.namespace.clone(),
    }
}

fn source(
    kube: &kube::Client,
    key: &WorkspaceKey,
    wi: &WorkloadIdentityAuth,
    audience: String,
) -> Result<SubjectTokens, Error> {
    let namespace = service_account_namespace(key, wi).ok_or_else(|| Error::Config {
        message: format!("{key}: workloadIdentity.serviceAccountRef.namespace is required"),
    })?;
    Ok(SubjectTokens(Arc::new(ServiceAccountTokens {
        kube: kube.clone(),
        namespace,
        name: wi.service_account_ref.name.clone(),
        audience,
    })))
}

/// Fresh tokens of one ServiceAccount, for one audience.
struct ServiceAccountTokens {
    kube: kube::Client,
    namespace: String,
    name: String,
    audience: String,
}

impl SubjectTokenSource for ServiceAccountTokens {
    fn subject_token(&self) -> SubjectTokenFuture<'_> {
        Box::pin(async move {
            let api: Api<ServiceAccount> = Api::namespaced(self.kube.clone(), &self.namespace);
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![self.audience.clone()],
                    expiration_seconds: Some(TOKEN_SECONDS),
                    bound_object_ref: None,
                },
                ..Default::default()
            };
            let answer = match api
                .create_token_request(&self.name, &PostParams::default(), &request)
                .await
            {
                Ok(answer) => answer,
                Err(e) if namespace_terminating(&e) => return self.last_or_terminating(),
                Err(e) => return Err(self.failure(&e)),
            };
            let status = answer
                .status
                .filter(|s| !s.token.is_empty())
                .ok_or_else(|| Error::Federation {
                    reason: databricks_client::federation::TOKEN_EXCHANGE_REFUSED,
                    message: format!("the API server returned no token for {}", self.describe()),
                })?;
            let token = SecretString::from(status.token);
            let expires = status.expiration_timestamp.0.as_second();
            last_tokens().remember(self.key(), token.clone(), expires);
            Ok(token)
        })
    }

    fn describe(&self) -> String {
        format!(
            "ServiceAccount {}/{} (audience {})",
            self.namespace, self.name, self.audience
        )
    }
}

impl ServiceAccountTokens {
    fn key(&self) -> TokenKey {
        (
            self.namespace.clone(),
            self.name.clone(),
            self.audience.clone(),
        )
    }

    /// The namespace is terminating: the last token if it still has time left.
    fn last_or_terminating(&self) -> Result<SecretString, Error> {
        last_tokens()
            .usable(&self.key(), crate::now_millis() / 1000)
            .ok_or_else(|| Error::Federation {
                reason: NAMESPACE_TERMINATING,
                message: format!(
                    "namespace {} is being deleted and Kubernetes issues no new tokens for ServiceAccount {}/{} there; no earlier one is left (the operator restarted, or the last is over {TOKEN_SECONDS} s old): tokens minted through this workspace stay until they expire, unless the namespace's deletion is undone",
                    self.namespace, self.namespace, self.name
                ),
            })
    }

    fn failure(&self, e: &kube::Error) -> Error {
        let status = match e {
            kube::Error::Api(s) => Some(s.code),
            _ => None,
        };
        match failure_reason(status) {
            Some(reason) => Error::Federation {
                reason,
                message: match reason {
                    SERVICE_ACCOUNT_NOT_FOUND => format!(
                        "ServiceAccount {}/{} does not exist: create it, and a federation policy trusting system:serviceaccount:{}:{}",
                        self.namespace, self.name, self.namespace, self.name
                    ),
                    _ => format!(
                        "the operator may not request tokens for ServiceAccount {}/{} (RBAC: create on serviceaccounts/token in namespace {}): {e}",
                        self.namespace, self.name, self.namespace
                    ),
                },
            },
            // The API server is unreachable or failing: try again later, like an outage.
            None => Error::Transport {
                message: format!("TokenRequest for {}: {e}", self.describe()),
                uncertain: false,
            },
        }
    }
}

/// A refusal by the NamespaceLifecycle admission: nothing new is created in a terminating
/// namespace.
fn namespace_terminating(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 403
                && (s
                    .details
                    .as_ref()
                    .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
                    || s.message.contains("because it is being terminated"))
        }
        _ => false,
    }
}

/// (namespace, ServiceAccount, audience).
type TokenKey = (String, String, String);

/// The last ServiceAccount token per (namespace, name, audience), with its expiry (epoch s).
#[derive(Default)]
struct LastTokens(Mutex<HashMap<TokenKey, (SecretString, i64)>>);

impl LastTokens {
    fn remember(&self, key: TokenKey, token: SecretString, expires: i64) {
        self.lock().insert(key, (token, expires));
    }

    fn usable(&self, key: &TokenKey, now: i64) -> Option<SecretString> {
        let mut map = self.lock();
        map.retain(|_, (_, expires)| *expires > now);
        map.get(key)
            .filter(|(_, expires)| *expires - FALLBACK_MARGIN_SECONDS > now)
            .map(|(t, _)| t.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, (SecretString, i64)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn last_tokens() -> &'static LastTokens {
    static LAST: OnceLock<LastTokens> = OnceLock::new();
    LAST.get_or_init(LastTokens::default)
}

/// The reason a failed TokenRequest gets from its HTTP status; None: retry later.
fn failure_reason(status: Option<u16>) -> Option<&'static str> {
    match status {
        Some(404) => Some(SERVICE_ACCOUNT_NOT_FOUND),
        Some(401 | 403) => Some(TOKEN_REQUEST_FORBIDDEN),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ServiceAccountRef;

    fn wi(namespace: Option<&str>) -> WorkloadIdentityAuth {
        WorkloadIdentityAuth {
            client_id: "app".into(),
            audience: None,
            service_account_ref: ServiceAccountRef {
                name: "databricks".into(),
                namespace: namespace.map(Into::into),
            },
        }
    }

    fn key(kind: WorkspaceKind, namespace: Option<&str>) -> WorkspaceKey {
        WorkspaceKey {
            kind,
            namespace: namespace.map(Into::into),
            name: "ws".into(),
        }
    }

    #[test]
    fn a_namespaced_workspace_always_uses_its_own_namespace() {
        let k = key(WorkspaceKind::DatabricksWorkspace, Some("team-a"));
        assert_eq!(
            service_account_namespace(&k, &wi(None)).as_deref(),
            Some("team-a")
        );
        assert_eq!(
            service_account_namespace(&k, &wi(Some("team-b"))).as_deref(),
            Some("team-a"),
            "another namespace's ServiceAccount is never used, whatever the spec says"
        );
    }

    #[test]
    fn a_cluster_workspace_uses_the_namespace_it_names() {
        let k = key(WorkspaceKind::ClusterDatabricksWorkspace, None);
        assert_eq!(
            service_account_namespace(&k, &wi(Some("platform"))).as_deref(),
            Some("platform")
        );
        assert_eq!(service_account_namespace(&k, &wi(None)), None);
    }

    #[test]
    fn the_default_audience_is_the_workspace_token_endpoint() {
        assert_eq!(
            default_audience("https://adb-1.2.azuredatabricks.net/"),
            "https://adb-1.2.azuredatabricks.net/oidc/v1/token"
        );
    }

    #[test]
    fn the_last_token_serves_only_while_it_has_a_minute_left() {
        let last = LastTokens::default();
        let key = ("ns".to_string(), "sa".to_string(), "aud".to_string());
        assert!(last.usable(&key, 0).is_none());
        last.remember(key.clone(), SecretString::from("jwt".to_string()), 1000);
        assert!(last.usable(&key, 939).is_some());
        assert!(last.usable(&key, 940).is_none());
        let other = ("ns".to_string(), "sa".to_string(), "other-aud".to_string());
        assert!(last.usable(&other, 0).is_none());
        assert!(last.usable(&key, 1000).is_none());
        assert!(last.lock().is_empty(), "expired tokens are dropped");
    }

    #[test]
    fn token_request_failures_get_their_own_reasons() {
        assert_eq!(failure_reason(Some(404)), Some(SERVICE_ACCOUNT_NOT_FOUND));
        assert_eq!(failure_reason(Some(403)), Some(TOKEN_REQUEST_FORBIDDEN));
        assert_eq!(failure_reason(Some(401)), Some(TOKEN_REQUEST_FORBIDDEN));
        assert_eq!(failure_reason(Some(500)), None);
        assert_eq!(failure_reason(None), None);
    }
}
