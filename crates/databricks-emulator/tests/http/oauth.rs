//! Databricks OAuth M2M (discovery, client credentials) and the Entra-like token endpoints.

use databricks_emulator::{AZURE_DATABRICKS_RESOURCE, EmulatorConfig};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{World, reply, world, world_with};

const TOKEN: &str = "/oidc/v1/token";
const M2M_FORM: &[(&str, &str)] = &[("grant_type", "client_credentials"), ("scope", "all-apis")];

async fn m2m_basic(
    w: &World,
    id: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> crate::support::Reply {
    let r = w
        .http
        .post(w.url(TOKEN))
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap();
    reply(r).await
}

fn v2_scope() -> String {
    format!("{AZURE_DATABRICKS_RESOURCE}/.default")
}

#[tokio::test]
async fn discovery_points_at_the_token_endpoint() {
    let w = world().await;
    let r = w
        .call(
            Method::GET,
            "/oidc/.well-known/oauth-authorization-server",
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["token_endpoint"], w.url("/oidc/v1/token"));
    assert_eq!(r.body["issuer"], w.url("/oidc"));
    assert!(r.body["authorization_endpoint"].is_string());
}

#[tokio::test]
async fn client_credentials_with_basic_auth_give_a_bearer_for_the_service_principal() {
    let w = world().await;
    let sp = w.emulator.add_service_principal("etl", false);
    let r = m2m_basic(&w, &sp.application_id, &sp.client_secret, M2M_FORM).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 3600);
    let access = r.body["access_token"].as_str().unwrap();
    assert!(w.emulator.accepts(access));
    assert_eq!(w.emulator.access_tokens(), vec![access.to_string()]);
    let me = w.get("/api/2.0/preview/scim/v2/Me", access).await;
    assert_eq!(me.body["userName"], sp.application_id.as_str());
    assert_eq!(me.body["id"], sp.id.to_string());
}

#[tokio::test]
async fn client_credentials_in_the_form_body_work_too() {
    let w = world().await;
    let sp = w.emulator.add_service_principal("etl", false);
    let r = w
        .form(
            TOKEN,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "all-apis"),
                ("client_id", &sp.application_id),
                ("client_secret", &sp.client_secret),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn a_service_principal_mints_its_own_pat_with_an_oauth_token() {
    let w = world().await;
    let sp = w.emulator.add_service_principal("etl", false);
    let access = m2m_basic(&w, &sp.application_id, &sp.client_secret, M2M_FORM).await;
    let access = access.body["access_token"].as_str().unwrap().to_string();
    let (value, _) = w.create(&access, json!({"lifetime_seconds": 60})).await;
    let live = w.emulator.live_tokens();
    let pat = live.iter().find(|t| t.owner_id == sp.id).unwrap();
    assert_eq!(pat.owner_name, sp.application_id);
    assert!(w.emulator.accepts(&value));
    assert!(
        !w.emulator.minted_values().contains(&access),
        "access tokens are not PATs"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_401_invalid_client() {
    let w = world().await;
    let sp = w.emulator.add_service_principal("etl", false);
    let r = m2m_basic(&w, &sp.application_id, "wrong", M2M_FORM).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"], "invalid_client");
    let r = m2m_basic(&w, "unknown-client", &sp.client_secret, M2M_FORM).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_wrong_grant_or_scope_is_400() {
    let w = world().await;
    let sp = w.emulator.add_service_principal("etl", false);
    let grant = m2m_basic(
        &w,
        &sp.application_id,
        &sp.client_secret,
        &[("grant_type", "password"), ("scope", "all-apis")],
    )
    .await;
    assert_eq!(
        (grant.status, grant.body["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("unsupported_grant_type"))
    );
    let scope = m2m_basic(
        &w,
        &sp.application_id,
        &sp.client_secret,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "all-apis clusters:nuke"),
        ],
    )
    .await;
    assert_eq!(
        (scope.status, scope.body["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_scope"))
    );
    let none = m2m_basic(
        &w,
        &sp.application_id,
        &sp.client_secret,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(none.body["error"], "invalid_scope");
}

#[tokio::test]
async fn the_granted_scope_is_the_one_asked_for_and_counted() {
    let w = world().await;
    let sp = w.emulator.add_service_principal("etl", false);
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "all-apis sql"),
    ];
    let r = m2m_basic(&w, &sp.application_id, &sp.client_secret, &form).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["scope"], "all-apis sql");
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(w.emulator.issued_for_scope("all-apis sql"), 1);
    assert_eq!(w.emulator.issued_for_scope("all-apis"), 0);
}

#[tokio::test]
async fn an_access_token_expires_on_the_workspace_clock() {
    let w = world_with(EmulatorConfig {
        access_token_seconds: 60,
        ..EmulatorConfig::default()
    })
    .await;
    let sp = w.emulator.add_service_principal("etl", false);
    let r = m2m_basic(&w, &sp.application_id, &sp.client_secret, M2M_FORM).await;
    assert_eq!(r.body["expires_in"], 60);
    let access = r.body["access_token"].as_str().unwrap().to_string();
    w.emulator.set_clock_offset_ms(59_000);
    assert!(w.emulator.accepts(&access), "a second left");
    w.emulator.set_clock_offset_ms(60_001);
    assert!(!w.emulator.accepts(&access), "expired");
    let me = w.get("/api/2.0/preview/scim/v2/Me", &access).await;
    assert_eq!(me.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn with_pats_turned_off_no_pat_is_created_or_accepted_and_oauth_still_works() {
    let w = world_with(EmulatorConfig {
        tokens_enabled: false,
        ..EmulatorConfig::default()
    })
    .await;
    let sp = w.emulator.add_service_principal("etl", false);
    let r = m2m_basic(&w, &sp.application_id, &sp.client_secret, M2M_FORM).await;
    let access = r.body["access_token"].as_str().unwrap().to_string();
    let own = w
        .post(
            "/api/2.0/token/create",
            &access,
            json!({"lifetime_seconds": 3600}),
        )
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    assert_eq!(own.error_code(), "PERMISSION_DENIED");
    assert!(own.message().contains("disabled"), "{}", own.message());
    let admin_sp = w.emulator.add_service_principal("admin-bot", true);
    let r = m2m_basic(
        &w,
        &admin_sp.application_id,
        &admin_sp.client_secret,
        M2M_FORM,
    )
    .await;
    let admin_access = r.body["access_token"].as_str().unwrap().to_string();
    let obo = w
        .post(
            "/api/2.0/token-management/on-behalf-of/tokens",
            &admin_access,
            json!({"application_id": sp.application_id}),
        )
        .await;
    assert_eq!(obo.status, StatusCode::FORBIDDEN);
    assert!(obo.message().contains("disabled"), "{}", obo.message());
    let me = w.get("/api/2.0/preview/scim/v2/Me", &w.admin.pat).await;
    assert_eq!(me.status, StatusCode::FORBIDDEN, "no PAT authenticates");
    assert!(!w.emulator.accepts(&w.admin.pat));
    let me = w.get("/api/2.0/preview/scim/v2/Me", &access).await;
    assert_eq!(me.status, StatusCode::OK, "OAuth is unaffected");
    // Turned back on, existing PATs work again (nothing was deleted).
    let mut settings = w.emulator.settings();
    settings.tokens_enabled = true;
    w.emulator.set_settings(settings);
    assert!(w.emulator.accepts(&w.admin.pat));
}

#[tokio::test]
async fn an_access_token_stops_working_when_it_expires() {
    let w = world_with(EmulatorConfig {
        access_token_seconds: 1,
        ..EmulatorConfig::default()
    })
    .await;
    let sp = w.emulator.add_service_principal("etl", false);
    let r = m2m_basic(&w, &sp.application_id, &sp.client_secret, M2M_FORM).await;
    assert_eq!(r.body["expires_in"], 1);
    let access = r.body["access_token"].as_str().unwrap().to_string();
    crate::support::eventually(
        "the access token expires",
        std::time::Duration::from_secs(5),
        async || w.get("/api/2.0/token/list", &access).await.status == StatusCode::FORBIDDEN,
    )
    .await;
}

async fn entra_world() -> (
    World,
    databricks_emulator::SeededServicePrincipal,
    databricks_emulator::SeededEntraApp,
) {
    let w = world().await;
    let sp = w.emulator.add_service_principal("azure-bot", false);
    let app = w.emulator.add_entra_app("tenant-1", &sp.application_id);
    (w, sp, app)
}

#[tokio::test]
async fn entra_v2_client_credentials_give_a_bearer_for_the_mapped_service_principal() {
    let (w, sp, app) = entra_world().await;
    assert_eq!(w.emulator.entra_authority(), w.emulator.base_url());
    let scope = v2_scope();
    let r = w
        .form(
            "/tenant-1/oauth2/v2.0/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &app.client_id),
                ("client_secret", &app.client_secret),
                ("scope", &scope),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 3600, "v2 sends numbers");
    let access = r.body["access_token"].as_str().unwrap();
    let me = w.get("/api/2.0/preview/scim/v2/Me", access).await;
    assert_eq!(me.body["userName"], sp.application_id.as_str());
    let (value, _) = w.create(access, json!({"lifetime_seconds": 60})).await;
    assert!(w.emulator.accepts(&value), "an Entra SP mints its own PAT");
}

#[tokio::test]
async fn entra_v1_with_resource_sends_string_numbers() {
    let (w, _, app) = entra_world().await;
    let r = w
        .form(
            "/tenant-1/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &app.client_id),
                ("client_secret", &app.client_secret),
                ("resource", AZURE_DATABRICKS_RESOURCE),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["expires_in"], "3600");
    assert_eq!(r.body["resource"], AZURE_DATABRICKS_RESOURCE);
    assert!(w.emulator.accepts(r.body["access_token"].as_str().unwrap()));
}

/// Ask the Entra-like endpoint with the seeded app's credentials, altered by `change`, and
/// check the refusal's status, OAuth error and AADSTS code.
async fn entra_refusal(
    path: &str,
    change: impl FnOnce(&mut Vec<(&'static str, String)>),
    status: StatusCode,
    error: &str,
    code: u64,
) {
    let (w, _, app) = entra_world().await;
    let mut form = vec![
        ("grant_type", "client_credentials".to_string()),
        ("client_id", app.client_id.clone()),
        ("client_secret", app.client_secret.clone()),
        ("scope", v2_scope()),
        ("resource", AZURE_DATABRICKS_RESOURCE.to_string()),
    ];
    change(&mut form);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = w.form(path, &form).await;
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["error"], error);
    assert_eq!(r.body["error_codes"], json!([code]));
    let description = r.body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}:")),
        "{description}"
    );
    assert!(r.body["trace_id"].is_string() && r.body["correlation_id"].is_string());
    assert!(w.emulator.access_tokens().is_empty());
}

fn set(form: &mut [(&'static str, String)], key: &str, value: &str) {
    for (k, v) in form.iter_mut() {
        if *k == key {
            *v = value.to_string();
        }
    }
}

const V2: &str = "/tenant-1/oauth2/v2.0/token";

#[tokio::test]
async fn entra_refuses_a_wrong_secret_with_401_invalid_client() {
    let change = |f: &mut Vec<_>| set(f, "client_secret", "wrong");
    entra_refusal(
        V2,
        change,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7000215,
    )
    .await;
}

#[tokio::test]
async fn entra_refuses_an_unknown_application() {
    let change = |f: &mut Vec<_>| set(f, "client_id", "someone-else");
    entra_refusal(
        V2,
        change,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700016,
    )
    .await;
}

#[tokio::test]
async fn entra_refuses_an_unknown_tenant() {
    let path = "/tenant-2/oauth2/v2.0/token";
    entra_refusal(
        path,
        |_| {},
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
    )
    .await;
}

#[tokio::test]
async fn entra_refuses_a_scope_without_default_suffix() {
    let change = |f: &mut Vec<_>| set(f, "scope", "all-apis");
    entra_refusal(
        V2,
        change,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        1002012,
    )
    .await;
}

#[tokio::test]
async fn entra_refuses_a_scope_for_another_resource() {
    let change = |f: &mut Vec<_>| set(f, "scope", "https://graph.microsoft.com/.default");
    entra_refusal(
        V2,
        change,
        StatusCode::BAD_REQUEST,
        "invalid_resource",
        500011,
    )
    .await;
}

#[tokio::test]
async fn entra_v1_refuses_another_resource() {
    let change = |f: &mut Vec<_>| set(f, "resource", "https://management.azure.com/");
    let path = "/tenant-1/oauth2/token";
    entra_refusal(
        path,
        change,
        StatusCode::BAD_REQUEST,
        "invalid_resource",
        500011,
    )
    .await;
}

#[tokio::test]
async fn entra_refuses_another_grant_type() {
    let change = |f: &mut Vec<_>| set(f, "grant_type", "password");
    entra_refusal(
        V2,
        change,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        70003,
    )
    .await;
}
