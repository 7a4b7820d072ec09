//! Fault injection over HTTP: 5xx with Databricks bodies, 429 with and without Retry-After,
//! latency, creates whose response is lost after the token was minted, limits and seeds.

use std::time::{Duration, Instant};

use databricks_emulator::{DropMode, FaultRule, Faults, Latency};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::world;

const CREATE: &str = "/api/2.0/token/create";

#[tokio::test]
async fn an_injected_503_has_a_temporarily_unavailable_body() {
    let w = world().await;
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        error_rate: 1.0,
        ..FaultRule::on("token/list")
    }]));
    let r = w.get("/api/2.0/token/list", &w.user.pat).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.error_code(), "TEMPORARILY_UNAVAILABLE");
    assert!(!r.message().is_empty());
    assert_eq!(
        w.emulator.stats().count_request("token/list", "GET", 503),
        1
    );
}

#[tokio::test]
async fn an_injected_500_is_internal_error_and_mints_nothing() {
    let w = world().await;
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        error_rate: 1.0,
        error_status: Some(500),
        ..FaultRule::on("token/create")
    }]));
    let r = w
        .post(CREATE, &w.user.pat, json!({"lifetime_seconds": 60}))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.error_code(), "INTERNAL_ERROR");
    assert_eq!(w.emulator.live_tokens().len(), 2, "only the bootstrap PATs");
}

#[tokio::test]
async fn a_rule_for_one_endpoint_leaves_the_others_alone() {
    let w = world().await;
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        error_rate: 1.0,
        ..FaultRule::on("token/create")
    }]));
    assert_eq!(
        w.get("/api/2.0/token/list", &w.user.pat).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rate_limiting_is_429_with_retry_after_when_configured() {
    let w = world().await;
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        rate_limit_rate: 1.0,
        retry_after_seconds: Some(7),
        ..FaultRule::on("*")
    }]));
    let r = w
        .get("/api/2.0/token-management/tokens", &w.admin.pat)
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error_code(), "REQUEST_LIMIT_EXCEEDED");
    assert_eq!(r.headers["retry-after"], "7");
    assert_eq!(r.body["details"][0]["retry_delay"], "7s");
}

#[tokio::test]
async fn rate_limiting_without_retry_after_sends_no_header() {
    let w = world().await;
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        rate_limit_rate: 1.0,
        ..FaultRule::on("token/delete")
    }]));
    let r = w
        .post(
            "/api/2.0/token/delete",
            &w.user.pat,
            json!({"token_id": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.get("retry-after").is_none());
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let w = world().await;
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        latency_ms: Some(Latency::Fixed(300)),
        ..FaultRule::on("token/list")
    }]));
    let start = Instant::now();
    let r = w.get("/api/2.0/token/list", &w.user.pat).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_dropped_create_closes_the_connection_but_the_token_exists() {
    let w = world().await;
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        drop_response_after_create_rate: 1.0,
        ..FaultRule::on("token/create")
    }]));
    let sent = w
        .http
        .post(w.url(CREATE))
        .bearer_auth(&w.user.pat)
        .json(&json!({"lifetime_seconds": 60, "comment": "lost"}))
        .send()
        .await;
    let err = sent.expect_err("the connection closes without a response");
    assert!(!err.is_status(), "{err}");
    let lost: Vec<_> = w
        .emulator
        .live_tokens()
        .into_iter()
        .filter(|t| t.comment.as_deref() == Some("lost"))
        .collect();
    assert_eq!(lost.len(), 1, "the create was committed");
    assert_eq!(
        w.emulator.stats().count_request("token/create", "POST", 0),
        1
    );
    let listed = w.get("/api/2.0/token/list", &w.user.pat).await;
    assert!(crate::support::ids(&listed.body).contains(&lost[0].token_id));
}

#[tokio::test]
async fn a_dropped_create_can_look_like_a_gateway_error_without_the_token() {
    let w = world().await;
    for (mode, status) in [
        (DropMode::BadGateway, StatusCode::BAD_GATEWAY),
        (DropMode::GatewayTimeout, StatusCode::GATEWAY_TIMEOUT),
    ] {
        w.emulator.set_faults(Faults::new(vec![FaultRule {
            drop_response_after_create_rate: 1.0,
            drop_mode: mode,
            ..FaultRule::on("token/create")
        }]));
        let minted_before = w.emulator.minted_values().len();
        let r = w
            .http
            .post(w.url(CREATE))
            .bearer_auth(&w.user.pat)
            .json(&json!({"lifetime_seconds": 60}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
        let text = r.text().await.unwrap();
        let minted = w.emulator.minted_values();
        assert_eq!(minted.len(), minted_before + 1);
        assert!(!text.contains(minted.last().unwrap().as_str()));
    }
}

#[tokio::test]
async fn drops_apply_to_obo_creates_too() {
    let w = world().await;
    let sp = w.emulator.add_service_principal("etl", false);
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        drop_response_after_create_rate: 1.0,
        drop_mode: DropMode::GatewayTimeout,
        ..FaultRule::on("obo/create")
    }]));
    let r = w
        .post(
            "/api/2.0/token-management/on-behalf-of/tokens",
            &w.admin.pat,
            json!({"application_id": sp.application_id, "lifetime_seconds": 60}),
        )
        .await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(w.emulator.live_tokens().iter().any(|t| t.owner_id == sp.id));
}

#[tokio::test]
async fn a_failed_create_is_not_dropped_it_answers_its_error() {
    let w = world().await;
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        drop_response_after_create_rate: 1.0,
        ..FaultRule::on("token/create")
    }]));
    let r = w
        .post(CREATE, &w.user.pat, json!({"lifetime_seconds": -1}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_limited_rule_fails_only_the_next_n_requests() {
    let w = world().await;
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        error_rate: 1.0,
        limit: Some(2),
        ..FaultRule::on("token/create")
    }]));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            w.post(CREATE, &w.user.pat, json!({"lifetime_seconds": 60}))
                .await
                .status,
        );
    }
    assert_eq!(
        statuses,
        vec![
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::OK
        ]
    );
}

#[tokio::test]
async fn clearing_faults_restores_normal_answers() {
    let w = world().await;
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        error_rate: 1.0,
        ..FaultRule::on("*")
    }]));
    assert_eq!(
        w.get("/api/2.0/token/list", &w.user.pat).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    w.emulator.clear_faults();
    assert_eq!(w.emulator.faults(), Faults::default());
    assert_eq!(
        w.get("/api/2.0/token/list", &w.user.pat).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_seed_makes_the_fault_sequence_repeatable() {
    let w = world().await;
    let faults = Faults::new(vec![FaultRule {
        error_rate: 0.5,
        ..FaultRule::on("token/list")
    }])
    .seeded(7);
    let mut runs = Vec::new();
    for _ in 0..2 {
        w.emulator.set_faults(faults.clone());
        let mut statuses = Vec::new();
        for _ in 0..30 {
            statuses.push(
                w.get("/api/2.0/token/list", &w.user.pat)
                    .await
                    .status
                    .as_u16(),
            );
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&200) && runs[0].contains(&503));
}

#[tokio::test]
async fn oauth_token_endpoints_fail_in_their_own_dialect() {
    let w = world().await;
    let sp = w.emulator.add_service_principal("etl", false);
    let app = w.emulator.add_entra_app("t", &sp.application_id);
    w.emulator.set_faults(Faults::new(vec![
        FaultRule {
            error_rate: 1.0,
            ..FaultRule::on("oidc/token")
        },
        FaultRule {
            rate_limit_rate: 1.0,
            retry_after_seconds: Some(1),
            ..FaultRule::on("entra/token")
        },
    ]));
    let oidc = w
        .form(
            "/oidc/v1/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "all-apis"),
                ("client_id", &sp.application_id),
                ("client_secret", &sp.client_secret),
            ],
        )
        .await;
    assert_eq!(oidc.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(oidc.body["error"], "server_error");
    let scope = format!(
        "{}/.default",
        databricks_emulator::AZURE_DATABRICKS_RESOURCE
    );
    let entra = w
        .form(
            "/t/oauth2/v2.0/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", &scope),
                ("client_id", &app.client_id),
                ("client_secret", &app.client_secret),
            ],
        )
        .await;
    assert_eq!(entra.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(entra.headers["retry-after"], "1");
    assert!(entra.body["error_codes"].is_array());
    assert!(w.emulator.access_tokens().is_empty());
}
