//! The workspace REST API: token, token-management, SCIM Me, OAuth (Databricks and Entra-like)
//! endpoints with the real JSON shapes, behind fault injection and request counting.

use std::collections::HashMap;

use axum::{
    Form, Json, Router,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine;
use serde_json::{Value, json};

use crate::{
    Shared,
    state::{ApiError, Identity, State as Workspace},
};

pub const AZURE_DATABRICKS_RESOURCE: &str = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d";

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/2.0/token/create", post(token_create))
        .route("/api/2.0/token/list", get(token_list))
        .route("/api/2.0/token/delete", post(token_delete))
        .route("/api/2.0/token-management/tokens", get(managed_list))
        .route(
            "/api/2.0/token-management/tokens/{id}",
            get(managed_get).delete(managed_delete),
        )
        .route(
            "/api/2.0/token-management/on-behalf-of/tokens",
            post(obo_create),
        )
        .route("/api/2.0/preview/scim/v2/Me", get(scim_me))
        .route(
            "/oidc/.well-known/oauth-authorization-server",
            get(oidc_discovery),
        )
        .route("/oidc/v1/token", post(oidc_token))
        .route("/{tenant}/oauth2/v2.0/token", post(entra_token_v2))
        .route("/{tenant}/oauth2/token", post(entra_token_v1))
        .route("/.well-known/databricks-config", get(host_metadata))
}

fn error_response(e: ApiError) -> Response {
    (
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(e.body),
    )
        .into_response()
}

/// A response whose body breaks off: the client sees the connection fail after the server acted.
fn dropped_response() -> Response {
    let stream = futures::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other(
            "dropped by fault injection",
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

/// Faults, authentication, the operation, counting: the path of every workspace API call.
async fn handle(
    app: &Shared,
    endpoint: &'static str,
    headers: &HeaderMap,
    is_create: bool,
    op: impl FnOnce(&mut Workspace, Identity) -> Result<Value, ApiError>,
) -> Response {
    let decision = app.lock().faults.decide(endpoint);
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    if let Some(retry_after) = decision.rate_limited {
        app.lock().count(endpoint, 429);
        let mut r = error_response(ApiError::new(
            429,
            "REQUEST_LIMIT_EXCEEDED",
            "Too many requests. Please retry later.",
        ));
        if let Some(s) = retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, s.into());
        }
        return r;
    }
    if let Some(status) = decision.error_status {
        app.lock().count(endpoint, status);
        let code = if status == 503 {
            "TEMPORARILY_UNAVAILABLE"
        } else {
            "INTERNAL_ERROR"
        };
        return error_response(ApiError::new(
            status,
            code,
            "Injected fault: the service is unavailable",
        ));
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let result = {
        let mut st = app.lock();
        let result = st.authenticate(auth).and_then(|who| op(&mut st, who));
        let status = match &result {
            Ok(_) if is_create && decision.drop_response => 0,
            Ok(_) => 200,
            Err(e) => e.status,
        };
        st.count(endpoint, status);
        result
    };
    match result {
        Ok(_) if is_create && decision.drop_response => dropped_response(),
        Ok(v) => Json(v).into_response(),
        Err(e) => error_response(e),
    }
}

async fn token_create(
    State(app): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    handle(&app, "token/create", &headers, true, |st, who| {
        st.create_token(&who, &who, &body)
    })
    .await
}

async fn token_list(State(app): State<Shared>, headers: HeaderMap) -> Response {
    handle(&app, "token/list", &headers, false, |st, who| {
        Ok(st.list_own(&who))
    })
    .await
}

async fn token_delete(
    State(app): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let id = body
        .get("token_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    handle(&app, "token/delete", &headers, false, move |st, who| {
        if id.is_empty() {
            return Err(ApiError::new(
                400,
                "INVALID_PARAMETER_VALUE",
                "token_id is required",
            ));
        }
        st.delete_own(&who, &id)
    })
    .await
}

async fn managed_list(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    handle(
        &app,
        "token-management/list",
        &headers,
        false,
        move |st, who| {
            Workspace::require_admin(&who)?;
            let by_id = match q.get("created_by_id") {
                Some(v) => Some(v.parse().map_err(|_| {
                    ApiError::new(
                        400,
                        "INVALID_PARAMETER_VALUE",
                        "created_by_id must be a number",
                    )
                })?),
                None => None,
            };
            Ok(st.list_managed(by_id, q.get("created_by_username").map(String::as_str)))
        },
    )
    .await
}

async fn managed_get(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    handle(
        &app,
        "token-management/get",
        &headers,
        false,
        move |st, who| {
            Workspace::require_admin(&who)?;
            st.get_managed(&id)
        },
    )
    .await
}

async fn managed_delete(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    handle(
        &app,
        "token-management/delete",
        &headers,
        false,
        move |st, who| {
            Workspace::require_admin(&who)?;
            st.delete_managed(&id)
        },
    )
    .await
}

async fn obo_create(
    State(app): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    handle(&app, "obo/create", &headers, true, move |st, who| {
        Workspace::require_admin(&who)?;
        if !st.config.obo_enabled {
            return Err(ApiError::new(
                403,
                "PERMISSION_DENIED",
                "On-behalf-of token creation for service principals is not enabled for this workspace",
            ));
        }
        let app_id = body.get("application_id").and_then(Value::as_str).unwrap_or("");
        let sp = st.service_principal(app_id).ok_or_else(|| {
            ApiError::new(404, "RESOURCE_DOES_NOT_EXIST", format!("Service principal with application ID {app_id} does not exist"))
        })?;
        st.create_token(&sp, &who, &body)
    })
    .await
}

async fn scim_me(State(app): State<Shared>, headers: HeaderMap) -> Response {
    handle(&app, "scim/me", &headers, false, |_, who| {
        Ok(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": who.id.to_string(),
            "userName": who.user_name,
            "displayName": who.display_name,
            "active": true,
        }))
    })
    .await
}

/// Host metadata: newer SDKs read the OIDC root from here before an OAuth exchange.
async fn host_metadata(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    Json(json!({"oidc_endpoint": format!("{base}/oidc"), "workspace_id": "1234567890123456"}))
        .into_response()
}

async fn oidc_discovery(State(app): State<Shared>, headers: HeaderMap) -> Response {
    app.lock().count("oidc/discovery", 200);
    let base = base_url(&headers);
    Json(json!({
        "issuer": format!("{base}/oidc"),
        "authorization_endpoint": format!("{base}/oidc/v1/authorize"),
        "token_endpoint": format!("{base}/oidc/v1/token"),
        "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
        "scopes_supported": ["all-apis", "offline_access"],
    }))
    .into_response()
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn oidc_token(
    State(app): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let decision = app.lock().faults.decide("oidc/token");
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    let (id, secret) = basic_credentials(&headers)
        .or_else(|| {
            Some((
                form.get("client_id")?.clone(),
                form.get("client_secret")?.clone(),
            ))
        })
        .unwrap_or_default();
    let mut st = app.lock();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        st.count("oidc/token", 400);
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    if !form
        .get("scope")
        .is_some_and(|s| s.split(' ').any(|x| x == "all-apis"))
    {
        st.count("oidc/token", 400);
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope must include all-apis",
        );
    }
    match st.oauth_exchange(&id, &secret) {
        Some((token, seconds)) => {
            st.count("oidc/token", 200);
            Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": seconds, "scope": "all-apis"})).into_response()
        }
        None => {
            st.count("oidc/token", 401);
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed",
            )
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

async fn entra_token_v2(
    State(app): State<Shared>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let scope_ok = form.get("scope").is_some_and(|s| {
        s.split(' ')
            .any(|x| x == format!("{AZURE_DATABRICKS_RESOURCE}/.default"))
    });
    entra_token(&app, &tenant, &form, scope_ok).await
}

async fn entra_token_v1(
    State(app): State<Shared>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let resource_ok = form
        .get("resource")
        .is_some_and(|r| r == AZURE_DATABRICKS_RESOURCE);
    entra_token(&app, &tenant, &form, resource_ok).await
}

async fn entra_token(
    app: &Shared,
    tenant: &str,
    form: &HashMap<String, String>,
    target_ok: bool,
) -> Response {
    let decision = app.lock().faults.decide("entra/token");
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    let mut st = app.lock();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        st.count("entra/token", 400);
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.",
        );
    }
    if !target_ok {
        st.count("entra/token", 400);
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS70011: The provided value for scope or resource is not valid.",
        );
    }
    let id = form.get("client_id").map(String::as_str).unwrap_or("");
    let secret = form.get("client_secret").map(String::as_str).unwrap_or("");
    match st.entra_exchange(tenant, id, secret) {
        Ok((token, seconds)) => {
            st.count("entra/token", 200);
            Json(json!({"token_type": "Bearer", "expires_in": seconds, "ext_expires_in": seconds, "access_token": token})).into_response()
        }
        Err(error) => {
            st.count("entra/token", 401);
            let description = match error {
                "invalid_client" => "AADSTS7000215: Invalid client secret provided.",
                "invalid_tenant" => "AADSTS90002: Tenant not found.",
                _ => "AADSTS700016: Application not found in the directory.",
            };
            oauth_error(StatusCode::UNAUTHORIZED, error, description)
        }
    }
}
