//! Workspace limits: quota per owner, maximum and default lifetimes.

use databricks_emulator::EmulatorConfig;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{world, world_with};

const CREATE: &str = "/api/2.0/token/create";
const DAY_MS: i64 = 86_400_000;

fn span(info: &serde_json::Value) -> i64 {
    info["expiry_time"].as_i64().unwrap() - info["creation_time"].as_i64().unwrap()
}

#[tokio::test]
async fn the_quota_refuses_one_token_more_with_quota_exceeded() {
    let w = world_with(EmulatorConfig {
        quota_per_owner: 3,
        ..EmulatorConfig::default()
    })
    .await;
    // The bootstrap PAT is the first of three.
    for _ in 0..2 {
        w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    }
    let r = w
        .post(CREATE, &w.user.pat, json!({"lifetime_seconds": 60}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "QUOTA_EXCEEDED");
    assert_eq!(
        w.emulator
            .live_tokens()
            .iter()
            .filter(|t| t.owner_id == w.user.id)
            .count(),
        3
    );
    // Another owner is not affected.
    w.create(&w.admin.pat, json!({"lifetime_seconds": 60}))
        .await;
}

#[tokio::test]
async fn revoking_frees_quota() {
    let w = world_with(EmulatorConfig {
        quota_per_owner: 2,
        ..EmulatorConfig::default()
    })
    .await;
    let (_, info) = w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    assert_eq!(
        w.post(CREATE, &w.user.pat, json!({})).await.status,
        StatusCode::BAD_REQUEST
    );
    w.post(
        "/api/2.0/token/delete",
        &w.user.pat,
        json!({"token_id": info["token_id"]}),
    )
    .await;
    w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
}

#[tokio::test]
async fn the_default_quota_is_600_live_tokens() {
    let w = world().await;
    for _ in 0..599 {
        w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    }
    let r = w
        .post(CREATE, &w.user.pat, json!({"lifetime_seconds": 60}))
        .await;
    assert_eq!(r.error_code(), "QUOTA_EXCEEDED");
}

#[tokio::test]
async fn a_lifetime_over_the_maximum_is_invalid_and_names_the_maximum() {
    let w = world().await;
    let r = w
        .post(
            CREATE,
            &w.user.pat,
            json!({"lifetime_seconds": 730 * 86_400 + 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "INVALID_PARAMETER_VALUE");
    assert!(
        r.message().contains("maximum lifetime of 730 days"),
        "{}",
        r.message()
    );
    let (_, info) = w
        .create(&w.user.pat, json!({"lifetime_seconds": 730 * 86_400}))
        .await;
    assert_eq!(span(&info), 730 * DAY_MS, "exactly the maximum is allowed");
}

#[tokio::test]
async fn a_lower_workspace_maximum_applies_to_obo_too() {
    let w = world_with(EmulatorConfig {
        max_token_lifetime_days: 1,
        ..EmulatorConfig::default()
    })
    .await;
    let sp = w.emulator.add_service_principal("etl", false);
    let r = w
        .post(
            "/api/2.0/token-management/on-behalf-of/tokens",
            &w.admin.pat,
            json!({"application_id": sp.application_id, "lifetime_seconds": 2 * 86_400}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.message().contains("maximum lifetime of 1 days"),
        "{}",
        r.message()
    );
}

#[tokio::test]
async fn a_non_positive_lifetime_is_invalid() {
    let w = world().await;
    for lifetime in [json!(0), json!(-5), json!("soon")] {
        let r = w
            .post(CREATE, &w.user.pat, json!({"lifetime_seconds": lifetime}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{lifetime}");
        assert_eq!(r.error_code(), "INVALID_PARAMETER_VALUE");
    }
    assert_eq!(w.emulator.stats().count_status("token/create", 400), 3);
}

#[tokio::test]
async fn no_lifetime_means_two_years() {
    let w = world().await;
    let (_, info) = w.create(&w.user.pat, json!({"comment": "default"})).await;
    assert_eq!(span(&info), 730 * DAY_MS);
}

#[tokio::test]
async fn no_lifetime_is_capped_by_a_lower_maximum() {
    let w = world_with(EmulatorConfig {
        max_token_lifetime_days: 90,
        ..EmulatorConfig::default()
    })
    .await;
    let (_, info) = w.create(&w.user.pat, json!({})).await;
    assert_eq!(span(&info), 90 * DAY_MS);
}

#[tokio::test]
async fn a_configured_default_lifetime_applies() {
    let w = world_with(EmulatorConfig {
        default_lifetime_seconds: Some(3600),
        ..EmulatorConfig::default()
    })
    .await;
    let (_, info) = w.create(&w.user.pat, json!({})).await;
    assert_eq!(span(&info), 3_600_000);
}

#[tokio::test]
async fn settings_change_applies_to_the_next_request() {
    let w = world().await;
    w.create(&w.user.pat, json!({"lifetime_seconds": 5 * 86_400}))
        .await;
    w.emulator.set_settings(EmulatorConfig {
        max_token_lifetime_days: 2,
        ..w.emulator.settings()
    });
    let r = w
        .post(CREATE, &w.user.pat, json!({"lifetime_seconds": 5 * 86_400}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn over_the_request_limit_a_call_gets_429_with_retry_after_and_changes_nothing() {
    let w = world_with(EmulatorConfig {
        requests_per_second: Some(3),
        ..EmulatorConfig::default()
    })
    .await;
    let before = w.emulator.live_tokens().len();
    let mut statuses = vec![];
    for _ in 0..6 {
        let r = w
            .post(CREATE, &w.user.pat, json!({"lifetime_seconds": 60}))
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.error_code(), "REQUEST_LIMIT_EXCEEDED");
        }
        statuses.push(r.status);
    }
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        refused >= 2,
        "a burst over 3/s is refused in part: {statuses:?}"
    );
    assert_eq!(
        w.emulator.live_tokens().len(),
        before + 6 - refused,
        "a refused create mints nothing"
    );
    assert_eq!(
        w.emulator.stats().count_status("token/create", 429),
        refused as u64,
        "refusals are counted"
    );
}
