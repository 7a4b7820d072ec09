//! The workspace's state: identities, tokens, OAuth sessions, settings and request counts, and
//! the rules real Databricks applies to them (quota, maximum lifetime, admin-only APIs).

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, distr::Alphanumeric};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{faults::FaultState, federation::Federation};

/// The emulated workspace's id unless configured otherwise.
pub const WORKSPACE_ID: i64 = 1_234_567_890_123_456;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Workspace settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct EmulatorConfig {
    /// The workspace's maxTokenLifetimeDays (1..730).
    pub max_token_lifetime_days: u32,
    /// Lifetime of a token created without one; None: the documented default of two years.
    pub default_lifetime_seconds: Option<u64>,
    /// Live tokens allowed per owner.
    pub quota_per_owner: usize,
    /// Whether on-behalf-of tokens for service principals may be created.
    pub obo_enabled: bool,
    /// The workspace setting "Personal Access Tokens" (`enableTokensConfig`). Off, as the docs
    /// describe it: nobody can create a PAT (own or on-behalf-of) and no PAT authenticates;
    /// tokens are kept and work again once it is back on. OAuth is unaffected.
    pub tokens_enabled: bool,
    /// Lifetime of OAuth and Entra access tokens.
    pub access_token_seconds: u64,
    /// The workspace's request limit for its REST API (requests per second over all callers);
    /// None: unlimited. See `rate_limit`.
    pub requests_per_second: Option<u32>,
    /// The workspace's id (token-management answers and host metadata); several emulators
    /// play several workspaces.
    pub workspace_id: i64,
    /// How far this workspace's clock is from the host's, in milliseconds (positive: ahead).
    /// Every time it reports (creation, expiry) and every expiry check uses the offset clock,
    /// as a real Databricks clock is never the cluster's.
    pub clock_offset_ms: i64,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            max_token_lifetime_days: 730,
            default_lifetime_seconds: None,
            quota_per_owner: 600,
            obo_enabled: true,
            tokens_enabled: true,
            access_token_seconds: 3600,
            requests_per_second: None,
            workspace_id: WORKSPACE_ID,
            clock_offset_ms: 0,
        }
    }
}

#[derive(Clone)]
pub struct Identity {
    pub id: i64,
    /// userName for users, the application id for service principals.
    pub user_name: String,
    pub display_name: String,
    pub is_admin: bool,
    pub is_service_principal: bool,
    pub client_secret: Option<String>,
}

#[derive(Clone)]
pub struct Token {
    pub token_id: String,
    pub value: String,
    pub owner_id: i64,
    pub created_by_id: i64,
    pub comment: String,
    pub scopes: Option<Vec<String>>,
    pub creation_time: i64,
    /// -1: never expires.
    pub expiry_time: i64,
    /// Epoch ms of the start of the (UTC) day the token last authenticated.
    pub last_used_day: Option<i64>,
}

impl Token {
    fn alive(&self, now: i64) -> bool {
        self.expiry_time < 0 || self.expiry_time > now
    }
}

/// A live token as the inspection API shows it (never with its value).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LiveToken {
    pub token_id: String,
    pub owner_id: i64,
    pub owner_name: String,
    pub created_by_id: i64,
    pub comment: Option<String>,
    pub creation_time: i64,
    pub expiry_time: i64,
    pub scopes: Option<Vec<String>>,
}

/// A token placed in the workspace as if someone had created it earlier (an old never-expiring
/// PAT, another tool's token): no API call, no quota, any lifetime.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SeedToken {
    pub owner_id: i64,
    /// Defaults to the owner (a user's own PAT).
    #[serde(default)]
    pub created_by_id: Option<i64>,
    #[serde(default)]
    pub comment: String,
    /// Seconds from now until it expires (negative: already past on this workspace's clock,
    /// so it is not listed); None: it never expires.
    #[serde(default)]
    pub lifetime_seconds: Option<i64>,
}

/// A seeded user and its bootstrap PAT. Debug is redacted.
#[derive(Clone, Serialize, Deserialize)]
pub struct SeededUser {
    pub id: i64,
    pub user_name: String,
    pub pat: String,
}

/// A Databricks-managed service principal and its OAuth secret. Debug is redacted.
#[derive(Clone, Serialize, Deserialize)]
pub struct SeededServicePrincipal {
    pub id: i64,
    pub application_id: String,
    pub client_secret: String,
}

/// Entra client credentials mapped to a workspace service principal. Debug is redacted.
#[derive(Clone, Serialize, Deserialize)]
pub struct SeededEntraApp {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Clone)]
struct EntraApp {
    tenant_id: String,
    client_secret: String,
    identity_id: i64,
}

impl std::fmt::Debug for SeededUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededUser")
            .field("id", &self.id)
            .field("user_name", &self.user_name)
            .field("pat", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for SeededServicePrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededServicePrincipal")
            .field("id", &self.id)
            .field("application_id", &self.application_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for SeededEntraApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededEntraApp")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// An error answered in the Databricks shape.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub body: Value,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"error_code": code, "message": message.into()}),
        }
    }
    /// Legacy numeric error_code, as sent for missing or invalid credentials.
    pub fn numeric(status: u16, message: &str) -> Self {
        Self {
            status,
            body: json!({"error_code": status, "message": message}),
        }
    }
}

/// Requests of one (endpoint, method, status). Status 0: the connection was closed without a
/// response (a dropped create).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestCount {
    pub endpoint: String,
    pub method: String,
    pub status: u16,
    pub count: u64,
}

/// Request counts by (endpoint, method, status), in that order.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    pub requests: Vec<RequestCount>,
}

impl Stats {
    /// Requests of every endpoint, method and status.
    pub fn total_requests(&self) -> u64 {
        self.requests.iter().map(|r| r.count).sum()
    }
    /// Requests to `endpoint`, any method or status.
    pub fn count(&self, endpoint: &str) -> u64 {
        self.sum(|r| r.endpoint == endpoint)
    }
    /// Requests to `endpoint` answered with `status`.
    pub fn count_status(&self, endpoint: &str, status: u16) -> u64 {
        self.sum(|r| r.endpoint == endpoint && r.status == status)
    }
    /// Requests to `endpoint` with `method` (e.g. "POST") answered with `status`.
    pub fn count_request(&self, endpoint: &str, method: &str, status: u16) -> u64 {
        self.sum(|r| r.endpoint == endpoint && r.method == method && r.status == status)
    }
    fn sum(&self, keep: impl Fn(&RequestCount) -> bool) -> u64 {
        self.requests
            .iter()
            .filter(|r| keep(r))
            .map(|r| r.count)
            .sum()
    }
}

pub struct State {
    pub config: EmulatorConfig,
    identities: HashMap<i64, Identity>,
    tokens: HashMap<String, Token>,
    by_value: HashMap<String, String>,
    /// OAuth / Entra access token -> (identity id, expiry ms).
    sessions: HashMap<String, (i64, i64)>,
    entra_apps: HashMap<String, EntraApp>,
    minted: Vec<String>,
    next_id: i64,
    pub faults: FaultState,
    /// The request limit's bucket, made on first use from `config.requests_per_second`.
    limit: Option<crate::rate_limit::Bucket>,
    counts: BTreeMap<(String, String, u16), u64>,
    /// OAuth and Entra access tokens handed out, for leak checks.
    access_tokens: Vec<String>,
    /// Databricks OAuth access tokens issued, by the scope they were granted.
    issued_by_scope: BTreeMap<String, u64>,
    /// Federation policies and the issuers' keys (workload identity).
    pub federation: Federation,
}

fn random_hex(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect()
}

pub(crate) fn random_uuid() -> String {
    let h = random_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn random_secret() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
}

impl State {
    pub fn new(config: EmulatorConfig) -> Self {
        Self {
            config,
            identities: HashMap::new(),
            tokens: HashMap::new(),
            by_value: HashMap::new(),
            sessions: HashMap::new(),
            entra_apps: HashMap::new(),
            minted: Vec::new(),
            next_id: 1_000_000_000_000_001,
            faults: FaultState::default(),
            limit: None,
            counts: BTreeMap::new(),
            access_tokens: Vec::new(),
            issued_by_scope: BTreeMap::new(),
            federation: Federation::default(),
        }
    }

    /// Whether a REST call arriving now is within the workspace's request limit.
    pub fn within_limit(&mut self) -> bool {
        let Some(per_second) = self.config.requests_per_second else {
            self.limit = None;
            return true;
        };
        let now = std::time::Instant::now();
        self.limit
            .get_or_insert_with(|| crate::rate_limit::Bucket::new(per_second, now))
            .admit(now)
    }

    /// The workspace's own clock: the host's, shifted by the configured offset.
    pub fn now(&self) -> i64 {
        now_ms().saturating_add(self.config.clock_offset_ms)
    }

    pub fn record(&mut self, endpoint: &str, method: &str, status: u16) {
        *self
            .counts
            .entry((endpoint.to_string(), method.to_string(), status))
            .or_default() += 1;
    }

    pub fn stats(&self) -> Stats {
        Stats {
            requests: self
                .counts
                .iter()
                .map(|((endpoint, method, status), count)| RequestCount {
                    endpoint: endpoint.clone(),
                    method: method.clone(),
                    status: *status,
                    count: *count,
                })
                .collect(),
        }
    }

    pub fn access_tokens(&self) -> Vec<String> {
        self.access_tokens.clone()
    }

    fn new_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn add_user(&mut self, user_name: &str, is_admin: bool) -> SeededUser {
        let id = self.new_id();
        self.identities.insert(
            id,
            Identity {
                id,
                user_name: user_name.into(),
                display_name: user_name.into(),
                is_admin,
                is_service_principal: false,
                client_secret: None,
            },
        );
        // The bootstrap PAT never expires, like an old token created before lifetimes were enforced.
        let pat = self.mint(id, id, "bootstrap".into(), None, None);
        SeededUser {
            id,
            user_name: user_name.into(),
            pat: pat.value,
        }
    }

    pub fn add_service_principal(
        &mut self,
        display_name: &str,
        is_admin: bool,
    ) -> SeededServicePrincipal {
        let application_id = random_uuid();
        let client_secret = format!("dose{}", random_hex(32));
        self.insert_service_principal(display_name, is_admin, application_id, client_secret)
    }

    /// An account-level service principal assigned to this workspace too: the same application
    /// id and OAuth secret as in the workspace it was first created in, its own id here.
    pub fn assign_service_principal(
        &mut self,
        sp: &SeededServicePrincipal,
        display_name: &str,
        is_admin: bool,
    ) -> SeededServicePrincipal {
        self.insert_service_principal(
            display_name,
            is_admin,
            sp.application_id.clone(),
            sp.client_secret.clone(),
        )
    }

    fn insert_service_principal(
        &mut self,
        display_name: &str,
        is_admin: bool,
        application_id: String,
        client_secret: String,
    ) -> SeededServicePrincipal {
        let id = self.new_id();
        self.identities.insert(
            id,
            Identity {
                id,
                user_name: application_id.clone(),
                display_name: display_name.into(),
                is_admin,
                is_service_principal: true,
                client_secret: Some(client_secret.clone()),
            },
        );
        SeededServicePrincipal {
            id,
            application_id,
            client_secret,
        }
    }

    pub fn add_entra_app(
        &mut self,
        tenant_id: &str,
        sp_application_id: &str,
    ) -> Option<SeededEntraApp> {
        let identity_id = self
            .identities
            .values()
            .find(|i| i.user_name == sp_application_id)?
            .id;
        let client_id = random_uuid();
        let client_secret = random_secret();
        self.entra_apps.insert(
            client_id.clone(),
            EntraApp {
                tenant_id: tenant_id.into(),
                client_secret: client_secret.clone(),
                identity_id,
            },
        );
        Some(SeededEntraApp {
            tenant_id: tenant_id.into(),
            client_id,
            client_secret,
        })
    }

    fn mint(
        &mut self,
        owner_id: i64,
        created_by_id: i64,
        comment: String,
        scopes: Option<Vec<String>>,
        lifetime_seconds: Option<i64>,
    ) -> Token {
        let now = self.now();
        let token = Token {
            token_id: random_hex(64),
            value: format!("dapi{}", random_hex(32)),
            owner_id,
            created_by_id,
            comment,
            scopes,
            creation_time: now,
            // One clock reading, so expiry - creation is exactly the lifetime.
            expiry_time: lifetime_seconds.map_or(-1, |s| now + s * 1000),
            last_used_day: None,
        };
        self.by_value
            .insert(token.value.clone(), token.token_id.clone());
        self.tokens.insert(token.token_id.clone(), token.clone());
        self.minted.push(token.value.clone());
        token
    }

    /// Place a token as described (see [`SeedToken`]); returns its id. Its value is recorded
    /// like any other (leak checks) but not returned: nobody in a test holds it.
    pub fn seed_token(&mut self, seed: &SeedToken) -> String {
        let creator = seed.created_by_id.unwrap_or(seed.owner_id);
        let mut token = self.mint(seed.owner_id, creator, seed.comment.clone(), None, None);
        if let Some(seconds) = seed.lifetime_seconds {
            token.expiry_time = token.creation_time + seconds * 1000;
            self.tokens.insert(token.token_id.clone(), token.clone());
        }
        token.token_id
    }

    /// The identity behind a bearer credential, if it is live.
    pub fn authenticate(&mut self, header: Option<&str>) -> Result<Identity, ApiError> {
        let now = self.now();
        let bearer = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                ApiError::numeric(
                    401,
                    "Credential was not sent or was of an unsupported type for this API.",
                )
            })?;
        let pats_work = self.config.tokens_enabled;
        let identity_id = if let Some(id) = self.by_value.get(bearer) {
            self.tokens
                .get_mut(id)
                .filter(|t| pats_work && t.alive(now))
                .map(|t| {
                    t.last_used_day = Some(now - now.rem_euclid(86_400_000));
                    t.owner_id
                })
        } else {
            self.sessions
                .get(bearer)
                .filter(|(_, exp)| *exp > now)
                .map(|(id, _)| *id)
        };
        identity_id
            .and_then(|id| self.identities.get(&id).cloned())
            .ok_or_else(|| ApiError::numeric(403, "Invalid access token."))
    }

    pub fn accepts(&self, value: &str) -> bool {
        let now = self.now();
        self.by_value
            .get(value)
            .and_then(|id| self.tokens.get(id))
            .is_some_and(|t| self.config.tokens_enabled && t.alive(now))
            || self.sessions.get(value).is_some_and(|(_, exp)| *exp > now)
    }

    /// The lifetime a create asks for, checked against the workspace's limits.
    /// Over the maximum: 400 INVALID_PARAMETER_VALUE naming the maximum. The real code is
    /// unverified (one third-party page says MAX_TOKEN_LIFETIME_EXCEEDED); clients should key on
    /// the status and the message, as the SDKs do.
    fn checked_lifetime(&self, lifetime_seconds: Option<i64>) -> Result<i64, ApiError> {
        let max_seconds = i64::from(self.config.max_token_lifetime_days) * 86_400;
        let seconds = match lifetime_seconds {
            Some(s) if s <= 0 => {
                return Err(ApiError::new(
                    400,
                    "INVALID_PARAMETER_VALUE",
                    "lifetime_seconds must be a positive number of seconds",
                ));
            }
            Some(s) => s,
            None => self
                .config
                .default_lifetime_seconds
                .map(|s| s as i64)
                .unwrap_or(2 * 365 * 86_400)
                .min(max_seconds),
        };
        if seconds > max_seconds {
            return Err(ApiError::new(
                400,
                "INVALID_PARAMETER_VALUE",
                format!(
                    "Token lifetime of {seconds} seconds exceeds the maximum lifetime of {} days allowed by this workspace (maxTokenLifetimeDays)",
                    self.config.max_token_lifetime_days
                ),
            ));
        }
        Ok(seconds)
    }

    /// `POST /api/2.0/token/create` or the on-behalf-of create, for `owner`.
    pub fn create_token(
        &mut self,
        owner: &Identity,
        creator: &Identity,
        body: &Value,
    ) -> Result<Value, ApiError> {
        if !self.config.tokens_enabled {
            return Err(pats_disabled());
        }
        let lifetime =
            match body.get("lifetime_seconds") {
                None | Some(Value::Null) => None,
                // int64 fields also arrive as JSON strings (proto3 JSON mapping).
                Some(v) => Some(v.as_i64().or_else(|| v.as_str()?.parse().ok()).ok_or_else(
                    || {
                        ApiError::new(
                            400,
                            "INVALID_PARAMETER_VALUE",
                            "lifetime_seconds must be an integer",
                        )
                    },
                )?),
            };
        let lifetime = self.checked_lifetime(lifetime)?;
        let now = self.now();
        let live = self
            .tokens
            .values()
            .filter(|t| t.owner_id == owner.id && t.alive(now))
            .count();
        if live >= self.config.quota_per_owner {
            // QUOTA_EXCEEDED is documented (SDK docs); its HTTP status is not confirmed by any
            // public source (400 here; one third-party page says 409).
            return Err(ApiError::new(
                400,
                "QUOTA_EXCEEDED",
                format!(
                    "Cannot create more than {} tokens per user in this workspace",
                    self.config.quota_per_owner
                ),
            ));
        }
        let comment = body
            .get("comment")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let scopes = body
            .get("scopes")
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        let token = self.mint(owner.id, creator.id, comment, scopes, Some(lifetime));
        // On-behalf-of answers carry the management view (owner, creator, workspace).
        let info = if owner.id == creator.id {
            self.public_info(&token)
        } else {
            self.managed_info(&token)
        };
        Ok(json!({"token_value": token.value, "token_info": info}))
    }

    /// `POST /api/2.0/token-management/on-behalf-of/tokens` by an admin.
    /// The status of the "not enabled" and "unknown application" errors is unverified.
    pub fn create_obo_token(&mut self, admin: &Identity, body: &Value) -> Result<Value, ApiError> {
        if !self.config.tokens_enabled {
            return Err(pats_disabled());
        }
        if !self.config.obo_enabled {
            return Err(ApiError::new(
                403,
                "PERMISSION_DENIED",
                "On-behalf-of token creation for service principals is not enabled for this workspace",
            ));
        }
        let app_id = body
            .get("application_id")
            .and_then(Value::as_str)
            .unwrap_or("");
        if app_id.is_empty() {
            return Err(ApiError::new(
                400,
                "INVALID_PARAMETER_VALUE",
                "Missing required field: application_id",
            ));
        }
        let sp = self.service_principal(app_id).ok_or_else(|| {
            ApiError::new(
                404,
                "RESOURCE_DOES_NOT_EXIST",
                format!("Service principal with application ID {app_id} does not exist in this workspace"),
            )
        })?;
        self.create_token(&sp, admin, body)
    }

    pub fn service_principal(&self, application_id: &str) -> Option<Identity> {
        self.identities
            .values()
            .find(|i| i.is_service_principal && i.user_name == application_id)
            .cloned()
    }

    fn public_info(&self, t: &Token) -> Value {
        let mut info = json!({
            "token_id": t.token_id,
            "creation_time": t.creation_time,
            "expiry_time": t.expiry_time,
            "comment": t.comment,
        });
        if let Some(s) = &t.scopes {
            info["scopes"] = json!(s);
        }
        info
    }

    fn managed_info(&self, t: &Token) -> Value {
        let mut info = self.public_info(t);
        let creator = self.identities.get(&t.created_by_id);
        info["created_by_id"] = json!(t.created_by_id);
        info["created_by_username"] =
            json!(creator.map(|c| c.user_name.clone()).unwrap_or_default());
        info["owner_id"] = json!(t.owner_id);
        info["workspace_id"] = json!(self.config.workspace_id);
        if let Some(day) = t.last_used_day {
            info["last_used_day"] = json!(day);
        }
        info
    }

    fn live_of(&self, owner: Option<i64>) -> Vec<&Token> {
        let now = self.now();
        let mut v: Vec<&Token> = self
            .tokens
            .values()
            .filter(|t| t.alive(now) && owner.is_none_or(|o| t.owner_id == o))
            .collect();
        v.sort_by_key(|t| (t.creation_time, t.token_id.clone()));
        v
    }

    pub fn list_own(&self, caller: &Identity) -> Value {
        let infos: Vec<Value> = self
            .live_of(Some(caller.id))
            .into_iter()
            .map(|t| self.public_info(t))
            .collect();
        json!({"token_infos": infos})
    }

    pub fn delete_own(&mut self, caller: &Identity, token_id: &str) -> Result<Value, ApiError> {
        let now = self.now();
        let found = self
            .tokens
            .get(token_id)
            .is_some_and(|t| t.owner_id == caller.id && t.alive(now));
        if !found {
            return Err(not_found(token_id));
        }
        self.remove(token_id);
        Ok(json!({}))
    }

    pub fn require_admin(caller: &Identity) -> Result<(), ApiError> {
        if caller.is_admin {
            Ok(())
        } else {
            Err(ApiError::new(
                403,
                "PERMISSION_DENIED",
                "Only Admins can access token management APIs.",
            ))
        }
    }

    pub fn list_managed(
        &self,
        created_by_id: Option<i64>,
        created_by_username: Option<&str>,
    ) -> Value {
        let infos: Vec<Value> = self
            .live_of(None)
            .into_iter()
            .filter(|t| created_by_id.is_none_or(|id| t.created_by_id == id))
            .filter(|t| {
                created_by_username.is_none_or(|name| {
                    self.identities
                        .get(&t.created_by_id)
                        .is_some_and(|c| c.user_name == name)
                })
            })
            .map(|t| self.managed_info(t))
            .collect();
        json!({"token_infos": infos})
    }

    pub fn get_managed(&self, token_id: &str) -> Result<Value, ApiError> {
        let now = self.now();
        let t = self
            .tokens
            .get(token_id)
            .filter(|t| t.alive(now))
            .ok_or_else(|| not_found(token_id))?;
        Ok(json!({"token_info": self.managed_info(t)}))
    }

    pub fn delete_managed(&mut self, token_id: &str) -> Result<Value, ApiError> {
        let now = self.now();
        if !self.tokens.get(token_id).is_some_and(|t| t.alive(now)) {
            return Err(not_found(token_id));
        }
        self.remove(token_id);
        Ok(json!({}))
    }

    fn remove(&mut self, token_id: &str) -> bool {
        match self.tokens.remove(token_id) {
            Some(t) => {
                self.by_value.remove(&t.value);
                true
            }
            None => false,
        }
    }

    pub fn revoke(&mut self, token_id: &str) -> bool {
        self.remove(token_id)
    }

    pub fn live_tokens(&self) -> Vec<LiveToken> {
        self.live_of(None)
            .into_iter()
            .map(|t| LiveToken {
                token_id: t.token_id.clone(),
                owner_id: t.owner_id,
                owner_name: self
                    .identities
                    .get(&t.owner_id)
                    .map(|i| i.user_name.clone())
                    .unwrap_or_default(),
                created_by_id: t.created_by_id,
                comment: (!t.comment.is_empty()).then(|| t.comment.clone()),
                creation_time: t.creation_time,
                expiry_time: t.expiry_time,
                scopes: t.scopes.clone(),
            })
            .collect()
    }

    pub fn minted_values(&self) -> Vec<String> {
        self.minted.clone()
    }

    /// Client credentials of a Databricks service principal -> an OAuth access token.
    pub fn oauth_exchange(
        &mut self,
        client_id: &str,
        client_secret: &str,
        scope: &str,
    ) -> Option<(String, u64)> {
        let identity = self
            .identities
            .values()
            .find(|i| {
                i.is_service_principal
                    && i.user_name == client_id
                    && i.client_secret.as_deref() == Some(client_secret)
            })?
            .id;
        self.count_issued(scope);
        Some(self.new_session(identity))
    }

    fn count_issued(&mut self, scope: &str) {
        *self.issued_by_scope.entry(scope.to_string()).or_default() += 1;
    }

    /// Databricks OAuth access tokens issued with exactly `scope` (as requested).
    pub fn issued_for_scope(&self, scope: &str) -> u64 {
        self.issued_by_scope.get(scope).copied().unwrap_or(0)
    }

    /// Entra client credentials -> an Entra access token for the mapped workspace identity.
    pub fn entra_exchange(
        &mut self,
        tenant: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Result<(String, u64), EntraRefusal> {
        let app = self.entra_app(tenant, client_id)?;
        if app.client_secret != client_secret {
            return Err(EntraRefusal::BadSecret);
        }
        let id = app.identity_id;
        Ok(self.new_session(id))
    }

    /// A subject token (RFC 8693 token exchange) -> an OAuth access token for the service
    /// principal whose federation policy accepts it.
    pub fn federated_exchange(
        &mut self,
        application_id: &str,
        subject_token: &str,
        scope: &str,
    ) -> Result<(String, u64), FederatedRefusal> {
        let identity = self
            .service_principal(application_id)
            .ok_or(FederatedRefusal::UnknownServicePrincipal)?
            .id;
        let now = self.now() / 1000;
        self.federation
            .verify_for_service_principal(application_id, subject_token, now)
            .map_err(FederatedRefusal::Refused)?;
        self.count_issued(scope);
        Ok(self.new_session(identity))
    }

    /// A federated client assertion -> an Entra access token for the mapped workspace identity.
    pub fn entra_assertion_exchange(
        &mut self,
        tenant: &str,
        client_id: &str,
        assertion: &str,
    ) -> Result<(String, u64), EntraRefusal> {
        let id = self.entra_app(tenant, client_id)?.identity_id;
        let now = self.now() / 1000;
        self.federation
            .verify_for_entra_app(client_id, assertion, now)
            .map_err(EntraRefusal::Assertion)?;
        Ok(self.new_session(id))
    }

    fn entra_app(&self, tenant: &str, client_id: &str) -> Result<&EntraApp, EntraRefusal> {
        if !self.entra_apps.values().any(|a| a.tenant_id == tenant) {
            return Err(EntraRefusal::UnknownTenant);
        }
        self.entra_apps
            .get(client_id)
            .filter(|a| a.tenant_id == tenant)
            .ok_or(EntraRefusal::UnknownApplication)
    }

    fn new_session(&mut self, identity: i64) -> (String, u64) {
        let token = format!("eyJ{}", random_secret());
        let seconds = self.config.access_token_seconds;
        self.sessions.insert(
            token.clone(),
            (identity, self.now() + seconds as i64 * 1000),
        );
        self.access_tokens.push(token.clone());
        (token, seconds)
    }
}

/// Why the Entra-like endpoint refused client credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntraRefusal {
    UnknownTenant,
    UnknownApplication,
    BadSecret,
    /// A federated client assertion that no federated credential of the app accepts.
    Assertion(crate::federation::Refusal),
}

/// Why a token exchange at the Databricks endpoint was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FederatedRefusal {
    UnknownServicePrincipal,
    Refused(crate::federation::Refusal),
}

/// A PAT create in a workspace whose admin turned personal access tokens off. The words and
/// status are the emulator's choice: no public source shows what Databricks answers (unverified).
fn pats_disabled() -> ApiError {
    ApiError::new(
        403,
        "PERMISSION_DENIED",
        "Personal access tokens are disabled for this workspace. Use OAuth instead.",
    )
}

fn not_found(token_id: &str) -> ApiError {
    ApiError::new(
        404,
        "RESOURCE_DOES_NOT_EXIST",
        format!("No valid token with ID {token_id} found."),
    )
}
