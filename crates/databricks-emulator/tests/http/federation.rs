//! Workload identity federation: RFC 8693 token exchange at `/oidc/v1/token` under a service
//! principal federation policy, and the federated client assertion at the Entra endpoint.

use std::sync::OnceLock;

use databricks_emulator::{
    AZURE_DATABRICKS_RESOURCE, ENTRA_DEFAULT_AUDIENCE, FederationPolicy, test_issuer::TestIssuer,
};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Reply, World, reply, world};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const SUBJECT: &str = "system:serviceaccount:team-a:databricks";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// One key per test process: generating RSA keys is the slow part.
fn issuer() -> &'static TestIssuer {
    static ISSUER_KEY: OnceLock<TestIssuer> = OnceLock::new();
    ISSUER_KEY.get_or_init(|| TestIssuer::generate(ISSUER))
}

fn other_key() -> &'static TestIssuer {
    static OTHER: OnceLock<TestIssuer> = OnceLock::new();
    OTHER.get_or_init(|| TestIssuer::generate(ISSUER))
}

fn policy(audience: &str, subject: &str, pasted: bool) -> FederationPolicy {
    FederationPolicy {
        issuer: ISSUER.into(),
        audiences: vec![audience.into()],
        subject: subject.into(),
        jwks_json: pasted.then(|| issuer().jwks_json()),
    }
}

async fn exchange(w: &World, client_id: &str, subject_token: &str) -> Reply {
    let r = w
        .http
        .post(w.url("/oidc/v1/token"))
        .form(&[
            ("grant_type", EXCHANGE),
            ("subject_token", subject_token),
            ("subject_token_type", JWT),
            ("scope", "all-apis"),
            ("client_id", client_id),
        ])
        .send()
        .await
        .unwrap();
    reply(r).await
}

fn audience(w: &World) -> String {
    w.url("/oidc/v1/token")
}

/// A world with a service principal trusting `SUBJECT` at the token endpoint's audience.
async fn federated() -> (World, String) {
    let w = world().await;
    let sp = w.emulator.add_service_principal("etl", false);
    w.emulator
        .add_federation_policy(&sp.application_id, policy(&audience(&w), SUBJECT, true));
    (w, sp.application_id)
}

fn description(r: &Reply) -> &str {
    r.body["error_description"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_token_matching_the_policy_is_exchanged_for_the_service_principals_bearer() {
    let (w, app_id) = federated().await;
    let jwt = issuer().service_account_token(SUBJECT, &audience(&w), 600);
    let r = exchange(&w, &app_id, &jwt).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 3600);
    let bearer = r.body["access_token"].as_str().unwrap();
    let me = w.get("/api/2.0/preview/scim/v2/Me", bearer).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["userName"], app_id);
}

#[tokio::test]
async fn the_issuers_published_keys_serve_a_policy_without_a_pasted_jwks() {
    let w = world().await;
    let sp = w.emulator.add_service_principal("etl", false);
    w.emulator
        .add_federation_policy(&sp.application_id, policy(&audience(&w), SUBJECT, false));
    let jwt = issuer().service_account_token(SUBJECT, &audience(&w), 600);
    let r = exchange(&w, &sp.application_id, &jwt).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        description(&r).contains("signing keys of issuer"),
        "{}",
        r.body
    );

    // Over the control API, as the demo and the Python SDK test publish them.
    let put = w
        .call(
            Method::PUT,
            "/_emulator/issuers",
            None,
            Some(json!({"issuer": ISSUER, "jwks_json": issuer().jwks_json()})),
        )
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    let r = exchange(&w, &sp.application_id, &jwt).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn another_namespaces_service_account_matches_no_policy() {
    let (w, app_id) = federated().await;
    let jwt = issuer().service_account_token(
        "system:serviceaccount:team-b:databricks",
        &audience(&w),
        600,
    );
    let r = exchange(&w, &app_id, &jwt).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["error"], "invalid_request");
    assert!(
        description(&r).contains("No federation policy")
            && description(&r).contains("system:serviceaccount:team-b:databricks"),
        "{}",
        r.body
    );
    assert!(w.emulator.access_tokens().is_empty());
}

#[tokio::test]
async fn a_wrong_audience_or_issuer_matches_no_policy() {
    let (w, app_id) = federated().await;
    let wrong_aud = issuer().service_account_token(SUBJECT, "https://kubernetes.default.svc", 600);
    let r = exchange(&w, &app_id, &wrong_aud).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        description(&r).contains("No federation policy"),
        "{}",
        r.body
    );

    let now = databricks_emulator::test_issuer::TestIssuer::generate("https://elsewhere");
    let wrong_iss = now.service_account_token(SUBJECT, &audience(&w), 600);
    let r = exchange(&w, &app_id, &wrong_iss).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        description(&r).contains("iss: 'https://elsewhere'"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_refused() {
    let (w, app_id) = federated().await;
    let forged = other_key().service_account_token(SUBJECT, &audience(&w), 600);
    let r = exchange(&w, &app_id, &forged).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(description(&r).contains("signature"), "{}", r.body);
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_token_is_refused_on_the_workspaces_clock() {
    let (w, app_id) = federated().await;
    let expired = issuer().service_account_token(SUBJECT, &audience(&w), -5);
    let r = exchange(&w, &app_id, &expired).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(description(&r).contains("expired"), "{}", r.body);

    // Valid by the host's clock, expired by the workspace's.
    let fresh = issuer().service_account_token(SUBJECT, &audience(&w), 600);
    w.emulator.set_clock_offset_ms(601_000);
    let r = exchange(&w, &app_id, &fresh).await;
    assert!(description(&r).contains("expired"), "{}", r.body);
    w.emulator.set_clock_offset_ms(-120_000);
    let r = exchange(&w, &app_id, &fresh).await;
    assert!(description(&r).contains("not valid before"), "{}", r.body);
}

#[tokio::test]
async fn an_unknown_service_principal_is_401_invalid_client() {
    let (w, _) = federated().await;
    let jwt = issuer().service_account_token(SUBJECT, &audience(&w), 600);
    let r = exchange(&w, "00000000-0000-0000-0000-000000000000", &jwt).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.body["error"], "invalid_client");
}

#[tokio::test]
async fn a_malformed_exchange_request_is_400() {
    let (w, app_id) = federated().await;
    let r = exchange(&w, &app_id, "not-a-jwt").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(description(&r).contains("not a JWT"), "{}", r.body);
    let jwt = issuer().service_account_token(SUBJECT, &audience(&w), 600);
    let r = exchange(&w, "", &jwt).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(description(&r).contains("client_id"), "{}", r.body);
}

#[tokio::test]
async fn a_federated_client_assertion_stands_in_for_the_entra_client_secret() {
    let w = world().await;
    let sp = w.emulator.add_service_principal("etl", false);
    let app = w.emulator.add_entra_app("tenant-1", &sp.application_id);
    w.emulator.add_entra_federated_credential(
        &app.client_id,
        policy(ENTRA_DEFAULT_AUDIENCE, SUBJECT, true),
    );
    let assertion_call = |assertion: String| {
        let w = &w;
        let client_id = app.client_id.clone();
        async move {
            let r = w
                .http
                .post(w.url("/tenant-1/oauth2/v2.0/token"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                    ("scope", &format!("{AZURE_DATABRICKS_RESOURCE}/.default")),
                ])
                .send()
                .await
                .unwrap();
            reply(r).await
        }
    };
    let good = issuer().service_account_token(SUBJECT, ENTRA_DEFAULT_AUDIENCE, 600);
    let r = assertion_call(good).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let me = w
        .get(
            "/api/2.0/preview/scim/v2/Me",
            r.body["access_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(me.body["userName"], sp.application_id);

    let other_ns = issuer().service_account_token(
        "system:serviceaccount:team-b:databricks",
        ENTRA_DEFAULT_AUDIENCE,
        600,
    );
    let r = assertion_call(other_ns).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["error_codes"], json!([70021]));

    let expired = issuer().service_account_token(SUBJECT, ENTRA_DEFAULT_AUDIENCE, -5);
    let r = assertion_call(expired).await;
    assert_eq!(r.body["error_codes"], json!([700024]), "{}", r.body);
}

#[tokio::test]
async fn policies_and_federated_credentials_can_be_added_over_the_control_api() {
    let w = world().await;
    let sp = w.emulator.add_service_principal("etl", false);
    let app = w.emulator.add_entra_app("tenant-1", &sp.application_id);
    let body = |aud: &str| {
        json!({"issuer": ISSUER, "audiences": [aud], "subject": SUBJECT,
               "jwks_json": issuer().jwks_json()})
    };
    let policy_path = format!(
        "/_emulator/service-principals/{}/federation-policies",
        sp.application_id
    );
    let r = w
        .call(Method::POST, &policy_path, None, Some(body(&audience(&w))))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let credential_path = format!(
        "/_emulator/entra-apps/{}/federated-credentials",
        app.client_id
    );
    let r = w
        .call(
            Method::POST,
            &credential_path,
            None,
            Some(body(ENTRA_DEFAULT_AUDIENCE)),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let jwt = issuer().service_account_token(SUBJECT, &audience(&w), 600);
    let r = exchange(&w, &sp.application_id, &jwt).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let assertion = issuer().service_account_token(SUBJECT, ENTRA_DEFAULT_AUDIENCE, 600);
    let scope = format!("{AZURE_DATABRICKS_RESOURCE}/.default");
    let r = w
        .http
        .post(w.url("/tenant-1/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", app.client_id.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let r = reply(r).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
