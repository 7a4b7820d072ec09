//! A local Databricks workspace emulator, faithful to the wire format of the token and
//! token-management APIs, SCIM Me, Databricks OAuth (M2M) and an Entra-like token endpoint, with
//! fault injection. Rust tests run it in-process; the `databricks-emulator` binary serves the
//! demo and the official Python SDK test.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use databricks_emulator::{Emulator, EmulatorConfig, FaultRule, Faults};
//! let emulator = Emulator::start(EmulatorConfig::default()).await?;
//! let admin = emulator.add_user("admin@example.com", true);
//! // Point a client at emulator.base_url() with `Authorization: Bearer {admin.pat}`.
//! emulator.set_faults(Faults::new(vec![FaultRule {
//!     error_rate: 1.0,
//!     limit: Some(1),
//!     ..FaultRule::on("token/create")
//! }]));
//! # let _ = admin; Ok(()) }
//! ```
//!
//! Wire endpoints: `POST /api/2.0/token/create`, `GET /api/2.0/token/list`,
//! `POST /api/2.0/token/delete`, `GET /api/2.0/token-management/tokens`,
//! `GET|DELETE /api/2.0/token-management/tokens/{id}`,
//! `POST /api/2.0/token-management/on-behalf-of/tokens`, `GET /api/2.0/preview/scim/v2/Me`,
//! `GET /.well-known/databricks-config`, `GET /oidc/.well-known/oauth-authorization-server`,
//! `POST /oidc/v1/token`, `POST /{tenant}/oauth2/v2.0/token`, `POST /{tenant}/oauth2/token`.
//! `/oidc/v1/token` also takes RFC 8693 token exchange (workload identity federation) and the
//! Entra endpoints a federated `client_assertion`, judged by per-principal federation policies
//! ([`EmulatorHandle::add_federation_policy`]; see the `federation` module).
//! Several workspaces are several emulators, each with its own host, identities, workspace id
//! and clock offset ([`EmulatorConfig::clock_offset_ms`]); an account-level service principal
//! can be assigned to more than one ([`EmulatorHandle::assign_service_principal`]).
//! Control API: `/_emulator/...` (see the `admin` module), mirroring [`EmulatorHandle`].

mod admin;
mod api;
mod faults;
mod federation;
mod oauth;
mod rate_limit;
mod respond;
mod server;
mod state;
pub mod test_issuer;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
};

pub use faults::{DropMode, FaultRule, Faults, Latency};
pub use federation::{ENTRA_DEFAULT_AUDIENCE, FederationPolicy};
pub use oauth::AZURE_DATABRICKS_RESOURCE;
pub use state::{
    EmulatorConfig, LiveToken, RequestCount, SeedToken, SeededEntraApp, SeededServicePrincipal,
    SeededUser, Stats, WORKSPACE_ID,
};

/// Endpoint names used by fault rules and stats.
pub const ENDPOINTS: &[&str] = &[
    "token/create",
    "token/list",
    "token/delete",
    "token-management/list",
    "token-management/get",
    "token-management/delete",
    "obo/create",
    "scim/me",
    "host-metadata",
    "oidc/discovery",
    "oidc/token",
    "entra/token",
];

#[derive(Clone)]
pub(crate) struct Shared(Arc<Mutex<state::State>>);

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, state::State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Emulator;

impl Emulator {
    /// Serve on 127.0.0.1 with a free port, in the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<EmulatorHandle> {
        Self::serve(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Serve on `addr`, in the current tokio runtime.
    pub async fn serve(
        addr: SocketAddr,
        config: EmulatorConfig,
    ) -> std::io::Result<EmulatorHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Shared(Arc::new(Mutex::new(state::State::new(config))));
        let app = api::routes()
            .merge(oauth::routes())
            .merge(admin::routes())
            .fallback(api::not_found)
            .method_not_allowed_fallback(api::not_found)
            .with_state(shared.clone());
        let server = tokio::spawn(server::run(listener, app));
        Ok(EmulatorHandle {
            shared,
            addr,
            _server: Arc::new(AbortOnDrop(server)),
        })
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Control and inspection of a running emulator. The server stops when the last clone drops.
#[derive(Clone)]
pub struct EmulatorHandle {
    shared: Shared,
    addr: SocketAddr,
    _server: Arc<AbortOnDrop>,
}

impl EmulatorHandle {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// A user with a non-expiring PAT (the bootstrap credential, comment "bootstrap").
    pub fn add_user(&self, user_name: &str, is_admin: bool) -> SeededUser {
        self.shared.lock().add_user(user_name, is_admin)
    }
    /// A Databricks-managed service principal with an OAuth secret (client_id = application_id).
    pub fn add_service_principal(
        &self,
        display_name: &str,
        is_admin: bool,
    ) -> SeededServicePrincipal {
        self.shared
            .lock()
            .add_service_principal(display_name, is_admin)
    }
    /// Assign an account-level service principal (seeded in another emulator, i.e. another
    /// workspace) to this workspace: the same OAuth client credentials authenticate here, as
    /// its own workspace identity.
    pub fn assign_service_principal(
        &self,
        sp: &SeededServicePrincipal,
        display_name: &str,
        is_admin: bool,
    ) -> SeededServicePrincipal {
        self.shared
            .lock()
            .assign_service_principal(sp, display_name, is_admin)
    }
    /// Entra ID credentials (in `tenant_id`) that authenticate as the given service principal.
    ///
    /// # Panics
    /// When no service principal has `sp_application_id` (a mistake in the calling test).
    pub fn add_entra_app(&self, tenant_id: &str, sp_application_id: &str) -> SeededEntraApp {
        self.shared
            .lock()
            .add_entra_app(tenant_id, sp_application_id)
            .expect("add_entra_app: unknown service principal")
    }
    /// A federation policy of the service principal `application_id`: subject tokens that match
    /// it may be exchanged for its OAuth tokens at `/oidc/v1/token` (RFC 8693).
    pub fn add_federation_policy(&self, application_id: &str, policy: FederationPolicy) {
        self.shared
            .lock()
            .federation
            .add_service_principal_policy(application_id, policy);
    }
    /// A federated identity credential of the Entra app `client_id`: client assertions that
    /// match it stand in for the client secret.
    pub fn add_entra_federated_credential(&self, client_id: &str, policy: FederationPolicy) {
        self.shared
            .lock()
            .federation
            .add_entra_credential(client_id, policy);
    }
    /// The JWKS `issuer` publishes, used by policies without a pasted `jwks_json` (in place of
    /// fetching the issuer's discovery document; see the `federation` module).
    pub fn publish_issuer_keys(&self, issuer: &str, jwks_json: &str) {
        self.shared
            .lock()
            .federation
            .publish_issuer_keys(issuer, jwks_json);
    }
    /// Authority host of the Entra-like token endpoint (this emulator).
    pub fn entra_authority(&self) -> String {
        self.base_url()
    }
    /// Place a token as if created earlier, outside any API call and quota (see [`SeedToken`]).
    pub fn seed_token(&self, seed: &SeedToken) -> String {
        self.shared.lock().seed_token(seed)
    }
    pub fn live_tokens(&self) -> Vec<LiveToken> {
        self.shared.lock().live_tokens()
    }
    /// Every PAT value ever minted (bootstrap PATs included), for leak checks.
    pub fn minted_values(&self) -> Vec<String> {
        self.shared.lock().minted_values()
    }
    /// Every OAuth and Entra access token handed out, for leak checks.
    pub fn access_tokens(&self) -> Vec<String> {
        self.shared.lock().access_tokens()
    }
    /// Databricks OAuth access tokens issued with exactly `scope` (space-separated as
    /// requested), by client credentials or token exchange.
    pub fn issued_for_scope(&self, scope: &str) -> u64 {
        self.shared.lock().issued_for_scope(scope)
    }
    /// Whether this bearer would authenticate now.
    pub fn accepts(&self, token_value: &str) -> bool {
        self.shared.lock().accepts(token_value)
    }
    /// Revoke outside any API call (as an admin in the UI would).
    pub fn revoke(&self, token_id: &str) -> bool {
        self.shared.lock().revoke(token_id)
    }
    /// Replace the fault rules (and reseed the RNG from `faults.seed`).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults.set(faults);
    }
    pub fn clear_faults(&self) {
        self.shared.lock().faults.set(Faults::default());
    }
    /// Add one rule, keeping the current ones and how often they have fired.
    pub fn add_fault(&self, rule: FaultRule) {
        self.shared.lock().faults.add(rule);
    }
    pub fn faults(&self) -> Faults {
        self.shared.lock().faults.current()
    }
    /// Change workspace settings (limits, OBO, lifetimes); applies to the next request.
    pub fn set_settings(&self, config: EmulatorConfig) {
        self.shared.lock().config = config;
    }
    pub fn settings(&self) -> EmulatorConfig {
        self.shared.lock().config.clone()
    }
    /// Shift this workspace's clock from the host's by `offset_ms` (positive: ahead); applies to
    /// the next request. Token lifetimes stay what they were: only reported times move.
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.shared.lock().config.clock_offset_ms = offset_ms;
    }
    /// The workspace's clock now, in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.shared.lock().now()
    }
    /// Request counts by (endpoint, method, status); endpoint names as in [`ENDPOINTS`].
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats()
    }
}
