//! The inspection and control API under `/_emulator/`, for the demo and non-Rust tests
//! (Rust tests use [`crate::EmulatorHandle`] directly). No authentication; not counted in stats.
//!
//! - `POST /_emulator/users` {user_name, is_admin} -> {id, user_name, pat}
//! - `POST /_emulator/service-principals` {display_name, is_admin} -> {id, application_id, client_secret}
//! - `POST /_emulator/entra-apps` {tenant_id, sp_application_id} -> {tenant_id, client_id, client_secret}
//! - `POST /_emulator/service-principals/{application_id}/federation-policies` (FederationPolicy:
//!   {issuer, audiences, subject, jwks_json?}) -> 204
//! - `POST /_emulator/entra-apps/{client_id}/federated-credentials` (same shape) -> 204
//! - `PUT /_emulator/issuers` {issuer, jwks_json} -> 204: the keys an issuer publishes, for
//!   policies without a pasted JWKS
//! - `GET /_emulator/tokens` -> {tokens: [LiveToken]} (never values)
//! - `POST /_emulator/tokens` (SeedToken) -> {token_id}: place a token outside any API call
//! - `POST /_emulator/tokens/{id}/revoke` -> {revoked: bool}
//! - `GET /_emulator/minted-values`, `GET /_emulator/access-tokens` -> {values: [...]}
//! - `POST /_emulator/accepts` {token_value} -> {accepts: bool}
//! - `GET|PUT|DELETE /_emulator/faults` (Faults JSON), `POST /_emulator/faults/rules` (one FaultRule)
//! - `GET|PUT /_emulator/settings` (EmulatorConfig JSON; omitted fields take defaults)
//! - `PUT /_emulator/clock` {offset_ms} -> {now_ms}: shift the workspace's clock, keeping the
//!   other settings
//! - `GET /_emulator/stats` -> {requests: [{endpoint, method, status, count}]}

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    EmulatorConfig, SeedToken, Shared,
    faults::{FaultRule, Faults},
    federation::FederationPolicy,
};

#[derive(Deserialize)]
struct IssuerKeys {
    issuer: String,
    jwks_json: String,
}

#[derive(Deserialize)]
struct NewUser {
    user_name: String,
    #[serde(default)]
    is_admin: bool,
}

#[derive(Deserialize)]
struct NewServicePrincipal {
    display_name: String,
    #[serde(default)]
    is_admin: bool,
}

#[derive(Deserialize)]
struct NewEntraApp {
    tenant_id: String,
    sp_application_id: String,
}

#[derive(Deserialize)]
struct Clock {
    offset_ms: i64,
}

#[derive(Deserialize)]
struct Check {
    token_value: String,
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/_emulator/users", post(add_user))
        .route("/_emulator/service-principals", post(add_sp))
        .route("/_emulator/entra-apps", post(add_entra_app))
        .route(
            "/_emulator/service-principals/{application_id}/federation-policies",
            post(add_federation_policy),
        )
        .route(
            "/_emulator/entra-apps/{client_id}/federated-credentials",
            post(add_entra_credential),
        )
        .route("/_emulator/issuers", put(publish_issuer_keys))
        .route(
            "/_emulator/tokens",
            get(|State(s): State<Shared>| async move {
                Json(json!({"tokens": s.lock().live_tokens()}))
            })
            .post(
                |State(s): State<Shared>, Json(seed): Json<SeedToken>| async move {
                    Json(json!({"token_id": s.lock().seed_token(&seed)}))
                },
            ),
        )
        .route("/_emulator/tokens/{id}/revoke", post(revoke))
        .route(
            "/_emulator/minted-values",
            get(|State(s): State<Shared>| async move {
                Json(json!({"values": s.lock().minted_values()}))
            }),
        )
        .route(
            "/_emulator/access-tokens",
            get(|State(s): State<Shared>| async move {
                Json(json!({"values": s.lock().access_tokens()}))
            }),
        )
        .route("/_emulator/accepts", post(accepts))
        .route(
            "/_emulator/faults",
            put(set_faults)
                .delete(clear_faults)
                .get(|State(s): State<Shared>| async move { Json(s.lock().faults.current()) }),
        )
        .route("/_emulator/faults/rules", post(add_fault))
        .route(
            "/_emulator/settings",
            put(set_settings)
                .get(|State(s): State<Shared>| async move { Json(s.lock().config.clone()) }),
        )
        .route("/_emulator/clock", put(set_clock))
        .route(
            "/_emulator/stats",
            get(|State(s): State<Shared>| async move { Json(s.lock().stats()) }),
        )
}

async fn add_user(State(s): State<Shared>, Json(u): Json<NewUser>) -> Response {
    Json(s.lock().add_user(&u.user_name, u.is_admin)).into_response()
}

async fn add_sp(State(s): State<Shared>, Json(sp): Json<NewServicePrincipal>) -> Response {
    Json(
        s.lock()
            .add_service_principal(&sp.display_name, sp.is_admin),
    )
    .into_response()
}

async fn add_entra_app(State(s): State<Shared>, Json(a): Json<NewEntraApp>) -> Response {
    match s.lock().add_entra_app(&a.tenant_id, &a.sp_application_id) {
        Some(app) => Json(app).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "no such service principal"})),
        )
            .into_response(),
    }
}

async fn add_federation_policy(
    State(s): State<Shared>,
    Path(application_id): Path<String>,
    Json(p): Json<FederationPolicy>,
) -> Response {
    s.lock()
        .federation
        .add_service_principal_policy(&application_id, p);
    StatusCode::NO_CONTENT.into_response()
}

async fn add_entra_credential(
    State(s): State<Shared>,
    Path(client_id): Path<String>,
    Json(p): Json<FederationPolicy>,
) -> Response {
    s.lock().federation.add_entra_credential(&client_id, p);
    StatusCode::NO_CONTENT.into_response()
}

async fn publish_issuer_keys(State(s): State<Shared>, Json(k): Json<IssuerKeys>) -> Response {
    s.lock()
        .federation
        .publish_issuer_keys(&k.issuer, &k.jwks_json);
    StatusCode::NO_CONTENT.into_response()
}

async fn revoke(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    Json(json!({"revoked": s.lock().revoke(&id)})).into_response()
}

async fn accepts(State(s): State<Shared>, Json(c): Json<Check>) -> Response {
    Json(json!({"accepts": s.lock().accepts(&c.token_value)})).into_response()
}

async fn set_faults(State(s): State<Shared>, Json(f): Json<Faults>) -> Response {
    s.lock().faults.set(f);
    StatusCode::NO_CONTENT.into_response()
}

async fn add_fault(State(s): State<Shared>, Json(rule): Json<FaultRule>) -> Response {
    s.lock().faults.add(rule);
    StatusCode::NO_CONTENT.into_response()
}

async fn clear_faults(State(s): State<Shared>) -> Response {
    s.lock().faults.set(Faults::default());
    StatusCode::NO_CONTENT.into_response()
}

async fn set_settings(State(s): State<Shared>, Json(c): Json<EmulatorConfig>) -> Response {
    s.lock().config = c;
    StatusCode::NO_CONTENT.into_response()
}

async fn set_clock(State(s): State<Shared>, Json(c): Json<Clock>) -> Response {
    let mut st = s.lock();
    st.config.clock_offset_ms = c.offset_ms;
    Json(json!({"now_ms": st.now()})).into_response()
}
