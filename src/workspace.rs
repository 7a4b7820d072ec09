//! Finding the workspace a `DatabricksToken` may use, and a Databricks client for it.
//!
//! Tenancy lives here: a token may use a `DatabricksWorkspace` of its own namespace, or a
//! `ClusterDatabricksWorkspace` whose allow-list admits its namespace. A namespaced workspace's
//! credentials are only ever read from its own namespace. Before a mint, the workspace's token
//! policy (`crate::tenancy`) decides whose tokens the resource may get.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use databricks_client::{
    ClientConfig, Credentials, RequestObserver, SecretString, WorkspaceClient,
};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Resource, ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};

use crate::crd::{
    AllowedServicePrincipal, ClusterDatabricksWorkspace, DatabricksToken, DatabricksWorkspace,
    OwnIdentityTokens, RateLimit, SecretRef, WorkspaceAuth, WorkspaceKind, WorkspaceStatus,
    condition_types, find_condition, reasons,
};
use crate::tenancy::{self, Refusal, Verdict};

pub use crate::crd::WorkspaceKey;

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{0} not found")]
    NotFound(WorkspaceKey),
    #[error(
        "ClusterDatabricksWorkspace {workspace} does not admit namespace {namespace} (spec.allowedNamespaces)"
    )]
    NamespaceNotAllowed {
        workspace: String,
        namespace: String,
    },
    #[error(
        "{0} is being deleted: no new DatabricksToken may start using it (tokens that already use it keep working until they are deleted)"
    )]
    Deleting(WorkspaceKey),
    #[error("credential Secret {namespace}/{name} of {workspace} not found")]
    SecretMissing {
        workspace: WorkspaceKey,
        namespace: String,
        name: String,
    },
    #[error(
        "credential Secret {namespace}/{name} of {workspace} has no key {key:?} (or it is empty)"
    )]
    SecretKeyMissing {
        workspace: WorkspaceKey,
        namespace: String,
        name: String,
        key: String,
    },
    #[error(
        "{0}: spec.auth must set exactly one of pat, oauthM2M, azureServicePrincipal, workloadIdentity"
    )]
    NoAuth(WorkspaceKey),
    #[error("reading credential Secret {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("{workspace}: {source}")]
    Client {
        workspace: WorkspaceKey,
        source: databricks_client::Error,
    },
    #[error(
        "ClusterDatabricksWorkspace {workspace} does not allow namespace {namespace} to mint tokens for service principal {application_id} (spec.allowedServicePrincipals)"
    )]
    ServicePrincipalNotAllowed {
        workspace: String,
        namespace: String,
        application_id: String,
    },
    #[error(
        "{workspace} refuses tokens owned by its own credential ({why}): anyone holding such a token could list and revoke that identity's tokens, the workspace credential included. Set spec.onBehalfOf.applicationId to a service principal (or the workspace may set spec.ownIdentityTokens: Allow)"
    )]
    OwnIdentityTokenRefused {
        workspace: WorkspaceKey,
        why: &'static str,
    },
    #[error("{workspace}: checking whether its credential is a workspace admin: {source}")]
    AdminCheck {
        workspace: WorkspaceKey,
        source: databricks_client::Error,
    },
}

impl WorkspaceError {
    /// CamelCase reason for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            WorkspaceError::NotFound(_) => reasons::WORKSPACE_NOT_FOUND,
            WorkspaceError::NamespaceNotAllowed { .. } => reasons::NAMESPACE_NOT_ALLOWED,
            WorkspaceError::Deleting(_) => reasons::WORKSPACE_DELETING,
            WorkspaceError::SecretMissing { .. } => reasons::CREDENTIAL_SECRET_MISSING,
            WorkspaceError::SecretKeyMissing { .. } => reasons::CREDENTIAL_KEY_MISSING,
            WorkspaceError::NoAuth(_) => reasons::INVALID_WORKSPACE_AUTH,
            WorkspaceError::Kube { .. } => reasons::KUBERNETES_ERROR,
            WorkspaceError::Client { .. } => reasons::INVALID_WORKSPACE_CONFIG,
            WorkspaceError::ServicePrincipalNotAllowed { .. } => {
                reasons::SERVICE_PRINCIPAL_NOT_ALLOWED
            }
            WorkspaceError::OwnIdentityTokenRefused { .. } => reasons::OWN_IDENTITY_TOKEN_REFUSED,
            WorkspaceError::AdminCheck { .. } => reasons::ADMIN_CHECK_FAILED,
        }
    }
}

/// How clients are built, from the operator's flags.
#[derive(Clone)]
pub struct ClientSettings {
    pub insecure_allow_http: bool,
    pub entra_authority_host: String,
    pub observer: Option<Arc<dyn RequestObserver>>,
    /// How long a built client (and the credentials it read) is reused before re-reading the Secret.
    pub credential_ttl: Duration,
}

/// A workspace ready to call.
pub struct ResolvedWorkspace {
    pub key: WorkspaceKey,
    pub host: String,
    pub client: WorkspaceClient,
    /// Who the credential authenticates as (SCIM `Me`), asked once per client and only when
    /// needed: a client is rebuilt when the workspace or its credential changes.
    me: tokio::sync::OnceCell<databricks_client::CurrentUser>,
}

impl ResolvedWorkspace {
    async fn me(&self) -> Result<&databricks_client::CurrentUser, databricks_client::Error> {
        self.me.get_or_try_init(|| self.client.current_user()).await
    }

    /// Who the credential authenticates as (the SCIM id).
    pub async fn identity(&self) -> Result<String, databricks_client::Error> {
        self.me().await.map(|me| me.id.clone())
    }

    async fn credential_is_admin(&self) -> Result<bool, WorkspaceError> {
        self.me()
            .await
            .map(|me| me.is_workspace_admin())
            .map_err(|source| WorkspaceError::AdminCheck {
                workspace: self.key.clone(),
                source,
            })
    }
}

/// The policy fields of the workspace a token resolved to.
pub struct Policy<'a> {
    /// None: a namespaced workspace, which has no allow-list of service principals.
    pub allowed_service_principals: Option<&'a [AllowedServicePrincipal]>,
    pub own_identity_tokens: OwnIdentityTokens,
}

struct Cached {
    generation: Option<i64>,
    built_at: Instant,
    workspace: Arc<ResolvedWorkspace>,
}

/// The workspace objects (from watch caches) and one client per workspace.
pub struct Workspaces {
    kube: kube::Client,
    namespaced: Store<DatabricksWorkspace>,
    cluster: Store<ClusterDatabricksWorkspace>,
    settings: ClientSettings,
    /// By workspace and host: a workspace whose host changed still reaches the old one for
    /// revocations.
    cache: Mutex<HashMap<(WorkspaceKey, String), Cached>>,
}

/// The parts both workspace kinds share.
pub struct WorkspaceView<'a> {
    pub host: &'a str,
    pub auth: &'a WorkspaceAuth,
    pub rate_limit: Option<&'a RateLimit>,
    pub generation: Option<i64>,
}

/// Where a credential Secret lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretLocation {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for SecretLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Both workspace kinds, as resolution, status checks, watches and deletion protection see
/// them. A `DatabricksWorkspace` serves its own namespace with credentials from that namespace;
/// a `ClusterDatabricksWorkspace` serves the namespaces it admits, with credentials from the
/// namespace its spec names.
pub trait WorkspaceObject:
    Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: WorkspaceKind;
    fn key(&self) -> WorkspaceKey;
    fn view(&self) -> WorkspaceView<'_>;
    fn policy(&self) -> Policy<'_>;
    /// Where its credential Secrets are read.
    fn credential_namespace(&self) -> String;
    /// Whether a token of `namespace` may use it.
    fn admits(&self, namespace: &str) -> bool;
    fn status(&self) -> Option<&WorkspaceStatus>;
    fn api(&self, client: kube::Client) -> Api<Self>;

    /// The credential Secret the spec names, if its auth method uses one.
    fn credential(&self) -> Option<SecretLocation> {
        Some(SecretLocation {
            namespace: self.credential_namespace(),
            name: self.view().auth.secret_ref()?.name.clone(),
        })
        .filter(|l| !l.namespace.is_empty())
    }

    /// The status of its Ready condition ("True", "False", "Unknown"; empty when none).
    fn ready_status(&self) -> String {
        self.status()
            .and_then(|s| find_condition(&s.conditions, condition_types::READY))
            .map(|c| format!("{:?}", c.status))
            .unwrap_or_default()
    }
}

impl WorkspaceObject for DatabricksWorkspace {
    const KIND: WorkspaceKind = WorkspaceKind::DatabricksWorkspace;
    fn key(&self) -> WorkspaceKey {
        WorkspaceKey {
            kind: Self::KIND,
            namespace: self.namespace(),
            name: self.name_any(),
        }
    }
    fn view(&self) -> WorkspaceView<'_> {
        WorkspaceView {
            host: &self.spec.host,
            auth: &self.spec.auth,
            rate_limit: self.spec.rate_limit.as_ref(),
            generation: self.metadata.generation,
        }
    }
    fn policy(&self) -> Policy<'_> {
        Policy {
            allowed_service_principals: None,
            own_identity_tokens: self.spec.own_identity_tokens,
        }
    }
    fn credential_namespace(&self) -> String {
        self.namespace().unwrap_or_default()
    }
    fn admits(&self, namespace: &str) -> bool {
        self.namespace().as_deref() == Some(namespace)
    }
    fn status(&self) -> Option<&WorkspaceStatus> {
        self.status.as_ref()
    }
    fn api(&self, client: kube::Client) -> Api<Self> {
        Api::namespaced(client, &self.namespace().unwrap_or_default())
    }
}

impl WorkspaceObject for ClusterDatabricksWorkspace {
    const KIND: WorkspaceKind = WorkspaceKind::ClusterDatabricksWorkspace;
    fn key(&self) -> WorkspaceKey {
        WorkspaceKey {
            kind: Self::KIND,
            namespace: None,
            name: self.name_any(),
        }
    }
    fn view(&self) -> WorkspaceView<'_> {
        WorkspaceView {
            host: &self.spec.host,
            auth: &self.spec.auth,
            rate_limit: self.spec.rate_limit.as_ref(),
            generation: self.metadata.generation,
        }
    }
    fn policy(&self) -> Policy<'_> {
        Policy {
            allowed_service_principals: Some(&self.spec.allowed_service_principals),
            own_identity_tokens: self.spec.own_identity_tokens,
        }
    }
    /// Schema rules require an explicit credential namespace, so none is ever guessed.
    fn credential_namespace(&self) -> String {
        self.spec
            .auth
            .secret_ref()
            .and_then(|r| r.namespace.clone())
            .unwrap_or_default()
    }
    fn admits(&self, namespace: &str) -> bool {
        self.spec.admits(namespace)
    }
    fn status(&self) -> Option<&WorkspaceStatus> {
        self.status.as_ref()
    }
    fn api(&self, client: kube::Client) -> Api<Self> {
        Api::all(client)
    }
}

impl Workspaces {
    pub fn new(
        kube: kube::Client,
        namespaced: Store<DatabricksWorkspace>,
        cluster: Store<ClusterDatabricksWorkspace>,
        settings: ClientSettings,
    ) -> Self {
        Self {
            kube,
            namespaced,
            cluster,
            settings,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The key of the workspace a token refers to.
    pub fn key_for(token: &DatabricksToken) -> WorkspaceKey {
        let r = &token.spec.workspace_ref;
        WorkspaceKey {
            kind: r.kind,
            namespace: match r.kind {
                WorkspaceKind::DatabricksWorkspace => token.namespace(),
                WorkspaceKind::ClusterDatabricksWorkspace => None,
            },
            name: r.name.clone(),
        }
    }

    /// The workspace `token` may use, with a client, or why it may not.
    pub async fn for_token(
        &self,
        token: &DatabricksToken,
    ) -> Result<Arc<ResolvedWorkspace>, WorkspaceError> {
        let key = Self::key_for(token);
        let token_ns = token.namespace().unwrap_or_default();
        self.resolve(&key, &token_ns, None).await
    }

    /// Like [`Workspaces::for_token`], and the workspace's token policy allows `token`: its
    /// `onBehalfOf` service principal is on a cluster workspace's allow-list for its namespace,
    /// or, without `onBehalfOf`, `ownIdentityTokens` allows the credential's own identity.
    /// Revocation never goes through here: a policy never blocks a revoke.
    pub async fn for_minting(
        &self,
        token: &DatabricksToken,
    ) -> Result<Arc<ResolvedWorkspace>, WorkspaceError> {
        let resolved = self.for_token(token).await?;
        let token_ns = token.namespace().unwrap_or_default();
        let key = &resolved.key;
        let not_found = || WorkspaceError::NotFound(key.clone());
        match key.kind {
            WorkspaceKind::DatabricksWorkspace => {
                let ws = self
                    .namespaced_object(key, &token_ns)
                    .ok_or_else(not_found)?;
                enforce(token, &token_ns, &ws.policy(), &resolved).await?;
            }
            WorkspaceKind::ClusterDatabricksWorkspace => {
                let ws = self.cluster_object(key).ok_or_else(not_found)?;
                enforce(token, &token_ns, &ws.policy(), &resolved).await?;
            }
        }
        Ok(resolved)
    }

    /// A client for `host` with the credentials of workspace `key`, as a token of `token_ns`
    /// may use it (same tenancy rules as [`Self::for_token`]): to revoke a token where it was
    /// minted when the workspace now points elsewhere.
    pub async fn at_host(
        &self,
        key: &WorkspaceKey,
        token_ns: &str,
        host: &str,
    ) -> Result<Arc<ResolvedWorkspace>, WorkspaceError> {
        self.resolve(key, token_ns, Some(host)).await
    }

    async fn resolve(
        &self,
        key: &WorkspaceKey,
        token_ns: &str,
        host: Option<&str>,
    ) -> Result<Arc<ResolvedWorkspace>, WorkspaceError> {
        let not_found = || WorkspaceError::NotFound(key.clone());
        match key.kind {
            WorkspaceKind::DatabricksWorkspace => {
                // A namespaced workspace serves its own namespace only.
                let ws = self
                    .namespaced_object(key, token_ns)
                    .ok_or_else(not_found)?;
                self.client_at(ws.as_ref(), host).await
            }
            WorkspaceKind::ClusterDatabricksWorkspace => {
                let ws = self.cluster_object(key).ok_or_else(not_found)?;
                if !ws.admits(token_ns) {
                    return Err(WorkspaceError::NamespaceNotAllowed {
                        workspace: key.name.clone(),
                        namespace: token_ns.to_string(),
                    });
                }
                self.client_at(ws.as_ref(), host).await
            }
        }
    }

    /// The namespaced workspace `key` as a token of `token_ns` may see it (its own namespace).
    fn namespaced_object(
        &self,
        key: &WorkspaceKey,
        token_ns: &str,
    ) -> Option<Arc<DatabricksWorkspace>> {
        if key.namespace.as_deref().is_some_and(|ns| ns != token_ns) {
            return None;
        }
        self.namespaced
            .get(&ObjectRef::new(&key.name).within(token_ns))
    }

    fn cluster_object(&self, key: &WorkspaceKey) -> Option<Arc<ClusterDatabricksWorkspace>> {
        self.cluster.get(&ObjectRef::new(&key.name))
    }

    /// The workspace to revoke `token`'s tokens through, and whether the token's namespace is
    /// admitted. Unlike [`Self::for_token`], a namespace that a ClusterDatabricksWorkspace no
    /// longer admits still gets the workspace: tokens minted while it was admitted must not be
    /// stranded. The caller then revokes only tokens that carry the resource's own tag.
    pub async fn for_revocation(
        &self,
        token: &DatabricksToken,
    ) -> Result<(Arc<ResolvedWorkspace>, bool), WorkspaceError> {
        match self.for_token(token).await {
            Ok(ws) => Ok((ws, true)),
            Err(WorkspaceError::NamespaceNotAllowed { .. }) => {
                let key = Self::key_for(token);
                let ws = self
                    .cluster_object(&key)
                    .ok_or(WorkspaceError::NotFound(key))?;
                Ok((self.for_object(ws.as_ref()).await?, false))
            }
            Err(e) => Err(e),
        }
    }

    /// Every workspace a token of `namespace` may use, with its host: the namespace's own and the
    /// cluster workspaces that admit it.
    pub fn usable_by(&self, namespace: &str) -> Vec<(WorkspaceKey, String)> {
        fn admitting<K: WorkspaceObject>(
            store: &Store<K>,
            namespace: &str,
        ) -> Vec<(WorkspaceKey, String)> {
            store
                .state()
                .into_iter()
                .filter(|w| w.admits(namespace))
                .map(|w| (w.key(), w.view().host.to_string()))
                .collect()
        }
        let mut usable = admitting(&self.namespaced, namespace);
        usable.extend(admitting(&self.cluster, namespace));
        usable
    }

    /// The cached workspace objects of both kinds (deletion protection reads them).
    pub fn stores(
        &self,
    ) -> (
        &Store<DatabricksWorkspace>,
        &Store<ClusterDatabricksWorkspace>,
    ) {
        (&self.namespaced, &self.cluster)
    }

    /// Whether the workspace `key` is being deleted (as far as the cache knows).
    pub fn is_deleting(&self, key: &WorkspaceKey) -> bool {
        let deleting = |meta: &kube::api::ObjectMeta| meta.deletion_timestamp.is_some();
        match (&key.kind, &key.namespace) {
            (WorkspaceKind::DatabricksWorkspace, Some(ns)) => self
                .namespaced
                .get(&ObjectRef::new(&key.name).within(ns))
                .is_some_and(|w| deleting(&w.metadata)),
            _ => self
                .cluster
                .get(&ObjectRef::new(&key.name))
                .is_some_and(|w| deleting(&w.metadata)),
        }
    }

    /// A workspace object, at its own host.
    pub async fn for_object<K: WorkspaceObject>(
        &self,
        ws: &K,
    ) -> Result<Arc<ResolvedWorkspace>, WorkspaceError> {
        self.client_at(ws, None).await
    }

    /// A namespaced workspace, at its own host (kept for callers outside the controllers).
    pub async fn for_namespaced(
        &self,
        ws: &DatabricksWorkspace,
    ) -> Result<Arc<ResolvedWorkspace>, WorkspaceError> {
        self.for_object(ws).await
    }

    /// A cluster workspace, at its own host (kept for callers outside the controllers).
    pub async fn for_cluster(
        &self,
        ws: &ClusterDatabricksWorkspace,
    ) -> Result<Arc<ResolvedWorkspace>, WorkspaceError> {
        self.for_object(ws).await
    }

    async fn client_at<K: WorkspaceObject>(
        &self,
        ws: &K,
        host: Option<&str>,
    ) -> Result<Arc<ResolvedWorkspace>, WorkspaceError> {
        let mut view = ws.view();
        if let Some(host) = host {
            view.host = host;
        }
        self.client_for(&ws.key(), &view, &ws.credential_namespace())
            .await
    }

    /// Forget the cached client, so the next use re-reads the credentials (after an auth failure).
    pub fn invalidate(&self, key: &WorkspaceKey) {
        self.lock().retain(|(k, _), _| k != key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(WorkspaceKey, String), Cached>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn client_for(
        &self,
        key: &WorkspaceKey,
        view: &WorkspaceView<'_>,
        secret_ns: &str,
    ) -> Result<Arc<ResolvedWorkspace>, WorkspaceError> {
        let host = view.host.trim_end_matches('/').to_string();
        let cache_key = (key.clone(), host.clone());
        if let Some(c) = self.lock().get(&cache_key)
            && c.generation == view.generation
            && c.built_at.elapsed() < self.settings.credential_ttl
        {
            return Ok(c.workspace.clone());
        }
        let credentials = match crate::workload_identity::credentials(
            &self.kube,
            key,
            view.auth,
            &host,
            &self.settings.entra_authority_host,
        ) {
            Some(federated) => federated.map_err(|source| WorkspaceError::Client {
                workspace: key.clone(),
                source,
            })?,
            None => self.read_credentials(key, view.auth, secret_ns).await?,
        };
        let mut config = ClientConfig::new(host.clone(), credentials);
        config.allow_http = self.settings.insecure_allow_http;
        config.observer = self.settings.observer.clone();
        if let Some(limit) = view.rate_limit {
            if let Some(rps) = limit.requests_per_second {
                config.requests_per_second = f64::from(rps);
            }
            if let Some(c) = limit.max_concurrent_requests {
                config.max_concurrency = c as usize;
            }
        }
        let client = WorkspaceClient::new(config).map_err(|source| WorkspaceError::Client {
            workspace: key.clone(),
            source,
        })?;
        let workspace = Arc::new(ResolvedWorkspace {
            key: key.clone(),
            host,
            client,
            me: tokio::sync::OnceCell::new(),
        });
        self.lock().insert(
            cache_key,
            Cached {
                generation: view.generation,
                built_at: Instant::now(),
                workspace: workspace.clone(),
            },
        );
        Ok(workspace)
    }

    async fn read_credentials(
        &self,
        key: &WorkspaceKey,
        auth: &WorkspaceAuth,
        secret_ns: &str,
    ) -> Result<Credentials, WorkspaceError> {
        if let Some(pat) = &auth.pat {
            let token = self
                .secret_value(key, &pat.secret_ref, secret_ns, &pat.token_key)
                .await?;
            return Ok(Credentials::Pat {
                token: SecretString::from(token),
            });
        }
        if let Some(m2m) = &auth.oauth_m2m {
            let client_id = self
                .secret_value(key, &m2m.secret_ref, secret_ns, &m2m.client_id_key)
                .await?;
            let secret = self
                .secret_value(key, &m2m.secret_ref, secret_ns, &m2m.client_secret_key)
                .await?;
            return Ok(Credentials::OAuthM2M {
                client_id,
                client_secret: SecretString::from(secret),
            });
        }
        if let Some(az) = &auth.azure_service_principal
            && let Some(secret_ref) = &az.secret_ref
        {
            let client_id = self
                .secret_value(key, secret_ref, secret_ns, &az.client_id_key)
                .await?;
            let secret = self
                .secret_value(key, secret_ref, secret_ns, &az.client_secret_key)
                .await?;
            return Ok(Credentials::AzureServicePrincipal {
                tenant_id: az.tenant_id.clone(),
                client_id,
                client_secret: SecretString::from(secret),
                authority_host: az
                    .authority_host
                    .clone()
                    .unwrap_or_else(|| self.settings.entra_authority_host.clone()),
            });
        }
        Err(WorkspaceError::NoAuth(key.clone()))
    }

    /// One key of a credential Secret, trimmed of the trailing newline files usually carry.
    async fn secret_value(
        &self,
        key: &WorkspaceKey,
        secret_ref: &SecretRef,
        namespace: &str,
        data_key: &str,
    ) -> Result<String, WorkspaceError> {
        let api: Api<Secret> = Api::namespaced(self.kube.clone(), namespace);
        let secret = api
            .get_opt(&secret_ref.name)
            .await
            .map_err(|source| WorkspaceError::Kube {
                namespace: namespace.into(),
                name: secret_ref.name.clone(),
                source,
            })?
            .ok_or_else(|| WorkspaceError::SecretMissing {
                workspace: key.clone(),
                namespace: namespace.into(),
                name: secret_ref.name.clone(),
            })?;
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(data_key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| WorkspaceError::SecretKeyMissing {
                workspace: key.clone(),
                namespace: namespace.into(),
                name: secret_ref.name.clone(),
                key: data_key.into(),
            })
    }
}

/// Apply the token policy, asking Databricks whether the credential is an admin only when the
/// decision depends on it.
async fn enforce(
    token: &DatabricksToken,
    namespace: &str,
    policy: &Policy<'_>,
    resolved: &ResolvedWorkspace,
) -> Result<(), WorkspaceError> {
    let mut request = tenancy::Request {
        namespace,
        on_behalf_of: token
            .spec
            .on_behalf_of
            .as_ref()
            .map(|o| o.application_id.as_str()),
        allowed_service_principals: policy.allowed_service_principals,
        own_identity_tokens: policy.own_identity_tokens,
        credential_is_admin: None,
    };
    let mut verdict = tenancy::decide(&request);
    if verdict == Verdict::NeedsAdminCheck {
        request.credential_is_admin = Some(resolved.credential_is_admin().await?);
        verdict = tenancy::decide(&request);
    }
    match verdict {
        Verdict::Allowed => Ok(()),
        Verdict::Refused(Refusal::ServicePrincipalNotAllowed { application_id }) => {
            Err(WorkspaceError::ServicePrincipalNotAllowed {
                workspace: resolved.key.name.clone(),
                namespace: namespace.to_string(),
                application_id,
            })
        }
        Verdict::Refused(Refusal::OwnIdentityDenied) => {
            Err(WorkspaceError::OwnIdentityTokenRefused {
                workspace: resolved.key.clone(),
                why: "spec.ownIdentityTokens: Deny",
            })
        }
        // Not reached once the admin check is answered; refuse rather than mint unchecked.
        Verdict::Refused(Refusal::OwnIdentityIsAdmin) | Verdict::NeedsAdminCheck => {
            Err(WorkspaceError::OwnIdentityTokenRefused {
                workspace: resolved.key.clone(),
                why: "a workspace admin, refused by spec.ownIdentityTokens: DenyIfAdmin, the default",
            })
        }
    }
}
