//! Token endpoints: Databricks OAuth M2M (OIDC discovery + client credentials) and an
//! Entra-like authority (v2.0 with `scope`, v1 with `resource`, as the SDKs use).

use std::collections::HashMap;

use axum::{
    Form, Json, Router,
    extract::{Path, State},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine;
use serde_json::json;

use crate::{
    Shared,
    respond::{self, Dialect},
    state::{EntraRefusal, FederatedRefusal, now_ms},
};

/// RFC 8693 token exchange, the grant of workload identity federation.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 7523 client assertion (a federated credential instead of a client secret at Entra).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Scopes the token endpoint grants. A request naming any other is refused (`invalid_scope`).
/// Which APIs a narrower scope (e.g. `sql`) opens is not modelled: every issued token
/// authenticates every call.
pub const SUPPORTED_SCOPES: &[&str] = &[
    "all-apis",
    "sql",
    "offline_access",
    "openid",
    "profile",
    "email",
];

/// The requested `scope` (space-separated), or why the endpoint refuses it (`invalid_scope`).
fn checked_scope(form: &HashMap<String, String>) -> Result<String, String> {
    let requested = form.get("scope").map(String::as_str).unwrap_or("").trim();
    let scopes: Vec<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
    if scopes.is_empty() {
        return Err("scope is required (e.g. all-apis)".into());
    }
    if let Some(unknown) = scopes.iter().find(|s| !SUPPORTED_SCOPES.contains(s)) {
        return Err(format!("Invalid scope requested: {unknown}"));
    }
    Ok(scopes.join(" "))
}

/// The Azure Databricks first-party application (the Entra resource / scope).
pub const AZURE_DATABRICKS_RESOURCE: &str = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d";

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/oidc/.well-known/oauth-authorization-server",
            get(oidc_discovery),
        )
        .route("/oidc/v1/token", post(oidc_token))
        .route("/{tenant}/oauth2/v2.0/token", post(entra_token_v2))
        .route("/{tenant}/oauth2/token", post(entra_token_v1))
}

/// The emulator's own base URL as the client addressed it.
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn oidc_discovery(State(app): State<Shared>, headers: HeaderMap) -> Response {
    app.lock().record("oidc/discovery", "GET", 200);
    let base = base_url(&headers);
    Json(json!({
        "issuer": format!("{base}/oidc"),
        "authorization_endpoint": format!("{base}/oidc/v1/authorize"),
        "token_endpoint": format!("{base}/oidc/v1/token"),
        "jwks_uri": format!("{base}/oidc/jwks.json"),
        "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
        "response_types_supported": ["code"],
        "scopes_supported": SUPPORTED_SCOPES,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
    }))
    .into_response()
}

/// Faults for a token endpoint: latency, then maybe an error in its dialect.
async fn injected(app: &Shared, endpoint: &str, dialect: Dialect) -> Option<Response> {
    let decision = app.lock().faults.decide(endpoint, false);
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    decision.outcome.map(|o| respond::fault(dialect, o))
}

fn counted(app: &Shared, endpoint: &str, response: Response) -> Response {
    app.lock()
        .record(endpoint, "POST", respond::counted_status(&response));
    response
}

async fn oidc_token(
    State(app): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let response = match injected(&app, "oidc/token", Dialect::OAuth).await {
        Some(r) => r,
        None => oidc_exchange(&app, &headers, &form),
    };
    counted(&app, "oidc/token", response)
}

fn oidc_exchange(app: &Shared, headers: &HeaderMap, form: &HashMap<String, String>) -> Response {
    if form.get("grant_type").map(String::as_str) == Some(TOKEN_EXCHANGE_GRANT) {
        return token_exchange(app, form);
    }
    let (id, secret) = basic_credentials(headers)
        .or_else(|| {
            Some((
                form.get("client_id")?.clone(),
                form.get("client_secret")?.clone(),
            ))
        })
        .unwrap_or_default();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return respond::oauth_error(
            400,
            "unsupported_grant_type",
            "grant_type must be client_credentials or urn:ietf:params:oauth:grant-type:token-exchange",
        );
    }
    let scope = match checked_scope(form) {
        Ok(scope) => scope,
        Err(why) => return respond::oauth_error(400, "invalid_scope", &why),
    };
    match app.lock().oauth_exchange(&id, &secret, &scope) {
        Some((token, seconds)) => Json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": seconds,
            "scope": scope,
        }))
        .into_response(),
        None => respond::oauth_error(401, "invalid_client", "Client authentication failed"),
    }
}

/// Workload identity federation: a JWT from an outside issuer for the service principal
/// `client_id`, under one of its federation policies. Refusals use the OAuth error body; the
/// exact status and words of the real service are unverified (RFC 8693 says `invalid_request`).
fn token_exchange(app: &Shared, form: &HashMap<String, String>) -> Response {
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if field("subject_token_type") != JWT_TOKEN_TYPE {
        return respond::oauth_error(
            400,
            "invalid_request",
            &format!("subject_token_type must be {JWT_TOKEN_TYPE}"),
        );
    }
    if field("subject_token").is_empty() {
        return respond::oauth_error(400, "invalid_request", "subject_token is required");
    }
    let scope = match checked_scope(form) {
        Ok(scope) => scope,
        Err(why) => return respond::oauth_error(400, "invalid_scope", &why),
    };
    let client_id = field("client_id");
    if client_id.is_empty() {
        // Account-wide federation policies map a token to a user; the emulator has none.
        return respond::oauth_error(
            400,
            "invalid_request",
            "client_id is required: no account federation policy is configured",
        );
    }
    let exchanged = app
        .lock()
        .federated_exchange(client_id, field("subject_token"), &scope);
    match exchanged {
        Ok((token, seconds)) => Json(json!({
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": seconds,
            "scope": scope,
        }))
        .into_response(),
        Err(FederatedRefusal::UnknownServicePrincipal) => respond::oauth_error(
            401,
            "invalid_client",
            &format!("Service principal {client_id} does not exist"),
        ),
        Err(FederatedRefusal::Refused(r)) => {
            respond::oauth_error(400, "invalid_request", &r.databricks_description(client_id))
        }
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// Which token endpoint version was called: they name the target and type `expires_in` apart.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EntraVersion {
    /// `scope=<resource>/.default`; numbers in the response.
    V2,
    /// `resource=<resource>`; strings in the response (as AAD v1 sends them).
    V1,
}

async fn entra_token_v2(
    State(app): State<Shared>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    entra_token(&app, &tenant, &form, EntraVersion::V2).await
}

async fn entra_token_v1(
    State(app): State<Shared>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    entra_token(&app, &tenant, &form, EntraVersion::V1).await
}

async fn entra_token(
    app: &Shared,
    tenant: &str,
    form: &HashMap<String, String>,
    version: EntraVersion,
) -> Response {
    let response = match injected(app, "entra/token", Dialect::Entra).await {
        Some(r) => r,
        None => entra_exchange(app, tenant, form, version),
    };
    counted(app, "entra/token", response)
}

fn entra_exchange(
    app: &Shared,
    tenant: &str,
    form: &HashMap<String, String>,
    version: EntraVersion,
) -> Response {
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return respond::entra_error(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if let Some(refusal) = target_refusal(form, version) {
        return refusal;
    }
    let id = form.get("client_id").map(String::as_str).unwrap_or("");
    let exchanged = match form.get("client_assertion_type").map(String::as_str) {
        Some(JWT_BEARER_ASSERTION) => {
            let assertion = form
                .get("client_assertion")
                .map(String::as_str)
                .unwrap_or("");
            app.lock().entra_assertion_exchange(tenant, id, assertion)
        }
        Some(other) => {
            return respond::entra_error(
                400,
                "invalid_request",
                50027,
                &format!("Unsupported client_assertion_type '{other}'."),
            );
        }
        None => {
            let secret = form.get("client_secret").map(String::as_str).unwrap_or("");
            app.lock().entra_exchange(tenant, id, secret)
        }
    };
    match exchanged {
        Ok((token, seconds)) => entra_success(version, token, seconds),
        Err(EntraRefusal::UnknownTenant) => respond::entra_error(
            400,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        ),
        Err(EntraRefusal::UnknownApplication) => respond::entra_error(
            400,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{id}' was not found in the directory."),
        ),
        Err(EntraRefusal::BadSecret) => respond::entra_error(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
        ),
        Err(EntraRefusal::Assertion(r)) => {
            let (code, description) = r.entra_code_and_description();
            respond::entra_error(400, "invalid_request", code, &description)
        }
    }
}

/// The requested audience must be Azure Databricks.
fn target_refusal(form: &HashMap<String, String>, version: EntraVersion) -> Option<Response> {
    let (given, ok) = match version {
        EntraVersion::V2 => {
            let scope = form.get("scope").map(String::as_str).unwrap_or("");
            let ok = scope
                .split(' ')
                .any(|s| s == format!("{AZURE_DATABRICKS_RESOURCE}/.default"));
            if !ok && !scope.ends_with("/.default") {
                return Some(respond::entra_error(
                    400,
                    "invalid_scope",
                    1002012,
                    &format!(
                        "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                ));
            }
            (scope, ok)
        }
        EntraVersion::V1 => {
            let resource = form.get("resource").map(String::as_str).unwrap_or("");
            (resource, resource == AZURE_DATABRICKS_RESOURCE)
        }
    };
    (!ok).then(|| {
        respond::entra_error(
            400,
            "invalid_resource",
            500011,
            &format!("The resource principal named {given} was not found in the tenant."),
        )
    })
}

fn entra_success(version: EntraVersion, token: String, seconds: u64) -> Response {
    match version {
        EntraVersion::V2 => Json(json!({
            "token_type": "Bearer",
            "expires_in": seconds,
            "ext_expires_in": seconds,
            "access_token": token,
        })),
        EntraVersion::V1 => {
            let now = now_ms() / 1000;
            Json(json!({
                "token_type": "Bearer",
                "expires_in": seconds.to_string(),
                "ext_expires_in": seconds.to_string(),
                "expires_on": (now + seconds as i64).to_string(),
                "not_before": now.to_string(),
                "resource": AZURE_DATABRICKS_RESOURCE,
                "access_token": token,
            }))
        }
    }
    .into_response()
}
