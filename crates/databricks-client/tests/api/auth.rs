//! Databricks OAuth M2M and Entra ID service principals: happy paths, refused credentials, the
//! shared token cache, refresh, and what is (not) written to logs.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use databricks_client::{CreateTokenRequest, Credentials, Error};
use databricks_emulator::{EmulatorConfig, EmulatorHandle};
use serde_json::json;

use crate::support::{Reply, StubRequest, client, config, emulator, eventually, stub};

fn m2m(client_id: &str, client_secret: &str) -> Credentials {
    Credentials::OAuthM2M {
        client_id: client_id.into(),
        client_secret: client_secret.to_string().into(),
    }
}

fn entra(
    emulator_or_authority: &str,
    tenant_id: &str,
    client_id: &str,
    client_secret: &str,
) -> Credentials {
    Credentials::AzureServicePrincipal {
        tenant_id: tenant_id.into(),
        client_id: client_id.into(),
        client_secret: client_secret.to_string().into(),
        authority_host: emulator_or_authority.into(),
    }
}

fn request(comment: &str) -> CreateTokenRequest {
    CreateTokenRequest {
        lifetime_seconds: Some(600),
        comment: Some(comment.into()),
        scopes: None,
    }
}

fn entra_app(emulator: &EmulatorHandle, tenant: &str) -> (String, Credentials) {
    let sp = emulator.add_service_principal("azure-sp", false);
    let app = emulator.add_entra_app(tenant, &sp.application_id);
    (
        sp.application_id,
        entra(
            &emulator.entra_authority(),
            &app.tenant_id,
            &app.client_id,
            &app.client_secret,
        ),
    )
}

#[tokio::test]
async fn oauth_m2m_service_principal_mints_and_lists_its_tokens() {
    let emulator = emulator().await;
    let sp = emulator.add_service_principal("operator", false);
    let c = client(config(
        &emulator.base_url(),
        m2m(&sp.application_id, &sp.client_secret),
    ));
    assert_eq!(
        c.current_user().await.unwrap().user_name.as_deref(),
        Some(sp.application_id.as_str())
    );
    let created = c.create_token(&request("m2m")).await.unwrap();
    assert!(
        c.list_tokens()
            .await
            .unwrap()
            .iter()
            .any(|t| t.token_id == created.info.token_id)
    );
    let live = emulator
        .live_tokens()
        .into_iter()
        .find(|t| t.token_id == created.info.token_id)
        .unwrap();
    assert_eq!(live.owner_id, sp.id);
}

#[tokio::test]
async fn oauth_m2m_with_a_wrong_secret_is_an_auth_flow_error() {
    let emulator = emulator().await;
    let sp = emulator.add_service_principal("operator", false);
    let c = client(config(
        &emulator.base_url(),
        m2m(&sp.application_id, "wrong-secret-value"),
    ));
    let err = c.list_tokens().await.unwrap_err();
    assert!(matches!(err, Error::AuthFlow { .. }), "{err:?}");
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert!(!err.to_string().contains("wrong-secret-value"));
    assert!(!err.is_retryable());
    let stats = emulator.stats();
    assert_eq!(stats.count("oidc/token"), 1);
    assert_eq!(stats.count("token/list"), 0);
}

#[tokio::test]
async fn entra_service_principal_mints_its_own_token() {
    let emulator = emulator().await;
    let (application_id, credentials) = entra_app(&emulator, "tenant-1");
    let c = client(config(&emulator.base_url(), credentials));
    assert_eq!(
        c.current_user().await.unwrap().user_name.as_deref(),
        Some(application_id.as_str())
    );
    let created = c.create_token(&request("entra")).await.unwrap();
    assert!(emulator.accepts(created.value.expose()));
    assert_eq!(emulator.stats().count("entra/token"), 1);
}

#[tokio::test]
async fn entra_with_a_wrong_secret_is_an_auth_flow_error() {
    let emulator = emulator().await;
    let sp = emulator.add_service_principal("azure-sp", false);
    let app = emulator.add_entra_app("tenant-1", &sp.application_id);
    let credentials = entra(
        &emulator.entra_authority(),
        "tenant-1",
        &app.client_id,
        "not-the-secret",
    );
    let err = client(config(&emulator.base_url(), credentials))
        .current_user()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuthFlow { .. }), "{err:?}");
    assert!(
        err.to_string().contains("invalid_client") && err.to_string().contains("AADSTS"),
        "{err}"
    );
    assert!(!err.to_string().contains("not-the-secret"));
    assert_eq!(emulator.stats().count("scim/me"), 0);
}

#[tokio::test]
async fn entra_with_the_wrong_tenant_is_an_auth_flow_error() {
    let emulator = emulator().await;
    let sp = emulator.add_service_principal("azure-sp", false);
    let app = emulator.add_entra_app("tenant-1", &sp.application_id);
    let credentials = entra(
        &emulator.entra_authority(),
        "tenant-2",
        &app.client_id,
        &app.client_secret,
    );
    let err = client(config(&emulator.base_url(), credentials))
        .current_user()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuthFlow { .. }), "{err:?}");
    assert!(!err.to_string().contains(&app.client_secret));
}

#[tokio::test]
async fn concurrent_calls_share_one_oauth_exchange() {
    let emulator = emulator().await;
    let sp = emulator.add_service_principal("operator", false);
    let c = client(config(
        &emulator.base_url(),
        m2m(&sp.application_id, &sp.client_secret),
    ));
    let calls: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn({
                let c = c.clone();
                async move { c.list_tokens().await }
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    c.current_user().await.unwrap();
    let stats = emulator.stats();
    assert_eq!(stats.count_status("token/list", 200), 20);
    assert_eq!(stats.count("oidc/token"), 1);
    assert_eq!(stats.count("oidc/discovery"), 1);
}

#[tokio::test]
async fn concurrent_calls_share_one_entra_exchange() {
    let emulator = emulator().await;
    let (_, credentials) = entra_app(&emulator, "tenant-1");
    let c = client(config(&emulator.base_url(), credentials));
    let calls: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn({
                let c = c.clone();
                async move { c.current_user().await }
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(emulator.stats().count("entra/token"), 1);
}

#[tokio::test]
async fn a_short_lived_access_token_is_replaced_before_it_expires() {
    let emulator = emulator().await;
    emulator.set_settings(EmulatorConfig {
        access_token_seconds: 2,
        ..EmulatorConfig::default()
    });
    let sp = emulator.add_service_principal("operator", false);
    let c = client(config(
        &emulator.base_url(),
        m2m(&sp.application_id, &sp.client_secret),
    ));
    eventually(Duration::from_secs(10), "a second OAuth exchange", || {
        let c = c.clone();
        let emulator = emulator.clone();
        async move {
            c.list_tokens().await.unwrap();
            emulator.stats().count("oidc/token") >= 2
        }
    })
    .await;
    assert_eq!(emulator.stats().count_status("token/list", 403), 0);
}

/// A Databricks-like server whose first OAuth access token is refused by the API
/// (`refuse_all`: every token is).
fn revoking_workspace(refuse_all: bool) -> impl Fn(&StubRequest) -> Reply + Send + Sync + 'static {
    let issued = AtomicUsize::new(0);
    move |req| match req.path.as_str() {
        "/oidc/.well-known/oauth-authorization-server" => Reply::json(
            200,
            json!({"token_endpoint": format!("{}/oidc/v1/token", req.base_url)}),
        ),
        "/oidc/v1/token" => {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            Reply::json(
                200,
                json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": 3600}),
            )
        }
        _ if refuse_all || req.authorization.as_deref() == Some("Bearer tok-1") => Reply::json(
            403,
            json!({"error_code": 403, "message": "Invalid access token."}),
        ),
        _ => Reply::json(200, json!({"id": "7", "userName": "sp"})),
    }
}

#[tokio::test]
async fn a_refused_cached_oauth_token_is_exchanged_again_once() {
    let server = stub(revoking_workspace(false)).await;
    let c = client(config(&server.base_url, m2m("id", "secret")));
    assert_eq!(c.current_user().await.unwrap().id, "7");
    assert_eq!(server.log.count("/oidc/v1/token"), 2);
    assert_eq!(server.log.count("/api/2.0/preview/scim/v2/Me"), 2);
    assert_eq!(server.log.count("/oidc/.well-known"), 1);
}

#[tokio::test]
async fn a_burst_of_refusals_costs_one_new_exchange() {
    let server = stub(revoking_workspace(false)).await;
    let c = client(config(&server.base_url, m2m("id", "secret")));
    let calls: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn({
                let c = c.clone();
                async move { c.current_user().await }
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(server.log.count("/oidc/v1/token"), 2);
}

#[tokio::test]
async fn a_token_refused_after_a_fresh_exchange_is_unauthenticated() {
    let server = stub(revoking_workspace(true)).await;
    let c = client(config(&server.base_url, m2m("id", "secret")));
    let err = c.current_user().await.unwrap_err();
    assert!(matches!(err, Error::Unauthenticated { .. }), "{err:?}");
    assert_eq!(server.log.count("/api/2.0/preview/scim/v2/Me"), 2);
    assert_eq!(server.log.count("/oidc/v1/token"), 2);
}

#[tokio::test]
async fn an_entra_outage_is_retried() {
    let calls = AtomicUsize::new(0);
    let server = stub(move |req| match req.path.as_str() {
        "/tenant-1/oauth2/v2.0/token" if calls.fetch_add(1, Ordering::SeqCst) == 0 => {
            Reply::json(503, json!({"error": "temporarily_unavailable", "error_description": "AADSTS50196: busy"}))
        }
        "/tenant-1/oauth2/v2.0/token" => {
            assert_eq!(req.method, "POST");
            assert!(req.body.contains("grant_type=client_credentials"), "{}", req.body);
            assert!(req.body.contains("scope=2ff814a6-3304-4ab8-85cb-cd0e6f879c1d%2F.default"), "{}", req.body);
            Reply::json(200, json!({"access_token": "entra-token", "token_type": "Bearer", "expires_in": "3599"}))
        }
        _ => Reply::json(200, json!({"id": "7", "userName": "sp"})),
    })
    .await;
    let credentials = entra(&server.base_url, "tenant-1", "app", "secret");
    let c = client(config(&server.base_url, credentials));
    assert_eq!(c.current_user().await.unwrap().id, "7");
    assert_eq!(server.log.count("/tenant-1/oauth2/v2.0/token"), 2);
}

#[tokio::test]
async fn issued_access_tokens_are_fresh_each_time_with_the_scope_asked_for() {
    let emulator = emulator().await;
    let sp = emulator.add_service_principal("bi", false);
    let c = client(config(
        &emulator.base_url(),
        m2m(&sp.application_id, &sp.client_secret),
    ));
    assert!(c.issues_oauth_tokens());
    let first = c.issue_access_token("all-apis sql").await.unwrap();
    let second = c.issue_access_token("all-apis sql").await.unwrap();
    assert_ne!(first.value, second.value, "never the cached one");
    assert_eq!(first.lifetime, Duration::from_secs(3600));
    assert_eq!(first.scope.as_deref(), Some("all-apis sql"));
    assert!(emulator.accepts(first.value.expose()));
    assert_eq!(emulator.issued_for_scope("all-apis sql"), 2);
    assert!(!format!("{first:?}").contains(first.value.expose()));
    // The client's own bearer is another token, cached apart.
    c.current_user().await.unwrap();
    assert_eq!(emulator.issued_for_scope("all-apis"), 1);
}

#[tokio::test]
async fn only_databricks_oauth_credentials_issue_access_tokens() {
    let emulator = emulator().await;
    let admin = emulator.add_user("admin@example.com", true);
    let c = client(config(
        &emulator.base_url(),
        Credentials::Pat {
            token: admin.pat.clone().into(),
        },
    ));
    assert!(!c.issues_oauth_tokens());
    let e = c.issue_access_token("all-apis").await.unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
}

#[tokio::test]
async fn a_token_that_is_not_a_bearer_token_is_refused() {
    let server = stub(|r| match r.path.as_str() {
        "/oidc/.well-known/oauth-authorization-server" => Reply::json(
            200,
            json!({"token_endpoint": format!("{}/oidc/v1/token", r.base_url)}),
        ),
        _ => Reply::json(
            200,
            json!({"access_token": "eyJmac", "token_type": "mac", "expires_in": 3600}),
        ),
    })
    .await;
    let c = client(config(&server.base_url, m2m("id", "secret")));
    let e = c.issue_access_token("all-apis").await.unwrap_err();
    assert!(matches!(e, Error::AuthFlow { .. }), "{e:?}");
    assert!(!e.to_string().contains("eyJmac"), "{e}");
}
