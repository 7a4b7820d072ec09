//! The workspace REST API: token, token-management and SCIM Me endpoints with the real JSON
//! shapes, behind fault injection, authentication and request counting.

use std::collections::HashMap;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, Method, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use crate::{
    Shared,
    faults::Outcome,
    respond::{self, Dialect},
    state::{ApiError, Identity, State as Workspace},
};

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
        .route("/.well-known/databricks-config", get(host_metadata))
}

/// Unknown paths and methods, answered like the service does.
pub async fn not_found(method: Method, uri: Uri) -> Response {
    respond::api_error(ApiError::new(
        404,
        "ENDPOINT_NOT_FOUND",
        format!("No API found for '{method} {}'", uri.path()),
    ))
}

/// A JSON object body; an empty body reads as `{}`.
fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(ApiError::new(
            400,
            "MALFORMED_REQUEST",
            "Invalid JSON given in the body of the request - expected a map",
        )),
    }
}

/// Faults, authentication, the operation, counting: the path of every workspace API call.
async fn handle(
    app: &Shared,
    endpoint: &'static str,
    method: &Method,
    headers: &HeaderMap,
    op: impl FnOnce(&mut Workspace, Identity) -> Result<Value, ApiError>,
) -> Response {
    let is_create = matches!(endpoint, "token/create" | "obo/create");
    let (within_limit, decision) = {
        let mut st = app.lock();
        (st.within_limit(), st.faults.decide(endpoint, is_create))
    };
    if !within_limit {
        let response = respond::fault(Dialect::Databricks, Outcome::RateLimited(Some(1)));
        app.lock().record(endpoint, method.as_str(), 429);
        return response;
    }
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    let response = match decision.outcome {
        Some(o @ (Outcome::Error(_) | Outcome::HtmlError(_) | Outcome::RateLimited(_))) => {
            respond::fault(Dialect::Databricks, o)
        }
        drop => {
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let result = {
                let mut st = app.lock();
                st.authenticate(auth).and_then(|who| op(&mut st, who))
            };
            if result.is_ok() && !decision.delay_after_create.is_zero() {
                tokio::time::sleep(decision.delay_after_create).await;
            }
            match (result, drop) {
                (Ok(_), Some(o)) => respond::fault(Dialect::Databricks, o),
                (Ok(v), _) => Json(v).into_response(),
                (Err(e), _) => respond::api_error(e),
            }
        }
    };
    app.lock().record(
        endpoint,
        method.as_str(),
        respond::counted_status(&response),
    );
    response
}

async fn token_create(
    State(app): State<Shared>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&app, "token/create", &method, &headers, |st, who| {
        st.create_token(&who, &who, &parse_body(&body)?)
    })
    .await
}

async fn token_list(State(app): State<Shared>, method: Method, headers: HeaderMap) -> Response {
    handle(&app, "token/list", &method, &headers, |st, who| {
        Ok(st.list_own(&who))
    })
    .await
}

async fn token_delete(
    State(app): State<Shared>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&app, "token/delete", &method, &headers, |st, who| {
        let body = parse_body(&body)?;
        let id = body.get("token_id").and_then(Value::as_str).unwrap_or("");
        if id.is_empty() {
            return Err(ApiError::new(
                400,
                "INVALID_PARAMETER_VALUE",
                "Missing required field: token_id",
            ));
        }
        st.delete_own(&who, id)
    })
    .await
}

async fn managed_list(
    State(app): State<Shared>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    handle(
        &app,
        "token-management/list",
        &method,
        &headers,
        |st, who| {
            Workspace::require_admin(&who)?;
            let by_id = match q.get("created_by_id") {
                Some(v) => Some(v.parse().map_err(|_| {
                    ApiError::new(
                        400,
                        "INVALID_PARAMETER_VALUE",
                        format!("Invalid value for created_by_id: '{v}' is not a number"),
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
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    handle(
        &app,
        "token-management/get",
        &method,
        &headers,
        |st, who| {
            Workspace::require_admin(&who)?;
            st.get_managed(&id)
        },
    )
    .await
}

async fn managed_delete(
    State(app): State<Shared>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    handle(
        &app,
        "token-management/delete",
        &method,
        &headers,
        |st, who| {
            Workspace::require_admin(&who)?;
            st.delete_managed(&id)
        },
    )
    .await
}

async fn obo_create(
    State(app): State<Shared>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&app, "obo/create", &method, &headers, |st, who| {
        Workspace::require_admin(&who)?;
        let body = parse_body(&body)?;
        st.create_obo_token(&who, &body)
    })
    .await
}

/// Id of the workspace's built-in `admins` group.
const ADMINS_GROUP_ID: &str = "1000000000000001";

async fn scim_me(State(app): State<Shared>, method: Method, headers: HeaderMap) -> Response {
    handle(&app, "scim/me", &method, &headers, |_, who| {
        Ok(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": who.id.to_string(),
            "userName": who.user_name,
            "displayName": who.display_name,
            "active": true,
            "emails": if who.is_service_principal {
                json!([])
            } else {
                json!([{"type": "work", "value": who.user_name, "primary": true}])
            },
            // Direct group memberships: workspace admins are members of `admins`.
            "groups": if who.is_admin {
                json!([{"display": "admins", "type": "direct", "value": ADMINS_GROUP_ID, "$ref": format!("Groups/{ADMINS_GROUP_ID}")}])
            } else {
                json!([])
            },
        }))
    })
    .await
}

/// Host metadata: newer SDKs read the OIDC root from here (best effort) before any auth.
async fn host_metadata(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let workspace_id = {
        let mut st = app.lock();
        st.record("host-metadata", "GET", 200);
        st.config.workspace_id
    };
    let base = crate::oauth::base_url(&headers);
    Json(json!({
        "oidc_endpoint": format!("{base}/oidc"),
        "workspace_id": workspace_id.to_string(),
    }))
    .into_response()
}
