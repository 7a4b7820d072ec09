//! The /_emulator/ control API, which mirrors the handle for the demo and the Python tests.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{World, world};

async fn admin(
    w: &World,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> crate::support::Reply {
    w.call(method, path, None, body).await
}

#[tokio::test]
async fn seeding_returns_working_credentials() {
    let w = world().await;
    let user = admin(
        &w,
        Method::POST,
        "/_emulator/users",
        Some(json!({"user_name": "a@b.c", "is_admin": true})),
    )
    .await;
    assert_eq!(user.status, StatusCode::OK);
    let pat = user.body["pat"].as_str().unwrap();
    assert_eq!(
        w.get("/api/2.0/token-management/tokens", pat).await.status,
        StatusCode::OK
    );

    let sp = admin(
        &w,
        Method::POST,
        "/_emulator/service-principals",
        Some(json!({"display_name": "bot"})),
    )
    .await;
    let app_id = sp.body["application_id"].as_str().unwrap();
    assert!(sp.body["client_secret"].is_string() && sp.body["id"].is_i64());

    let app = admin(
        &w,
        Method::POST,
        "/_emulator/entra-apps",
        Some(json!({"tenant_id": "t", "sp_application_id": app_id})),
    )
    .await;
    assert_eq!(app.status, StatusCode::OK);
    assert_eq!(app.body["tenant_id"], "t");
    let unknown = admin(
        &w,
        Method::POST,
        "/_emulator/entra-apps",
        Some(json!({"tenant_id": "t", "sp_application_id": "nope"})),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tokens_minted_values_accepts_and_revoke_mirror_the_handle() {
    let w = world().await;
    let (value, info) = w
        .create(&w.user.pat, json!({"lifetime_seconds": 60, "comment": "c"}))
        .await;
    let id = info["token_id"].as_str().unwrap();
    let tokens = admin(&w, Method::GET, "/_emulator/tokens", None).await;
    let listed = tokens.body["tokens"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    let entry = listed.iter().find(|t| t["token_id"] == id).unwrap();
    assert_eq!(entry["owner_name"], "user@example.com");
    assert_eq!(entry["comment"], "c");
    assert!(
        !tokens.body.to_string().contains(&value),
        "no values in the token list"
    );

    let minted = admin(&w, Method::GET, "/_emulator/minted-values", None).await;
    assert!(
        minted.body["values"]
            .as_array()
            .unwrap()
            .contains(&json!(value))
    );

    let accepts = admin(
        &w,
        Method::POST,
        "/_emulator/accepts",
        Some(json!({"token_value": value})),
    )
    .await;
    assert_eq!(accepts.body, json!({"accepts": true}));
    let revoked = admin(
        &w,
        Method::POST,
        &format!("/_emulator/tokens/{id}/revoke"),
        None,
    )
    .await;
    assert_eq!(revoked.body, json!({"revoked": true}));
    let accepts = admin(
        &w,
        Method::POST,
        "/_emulator/accepts",
        Some(json!({"token_value": value})),
    )
    .await;
    assert_eq!(accepts.body, json!({"accepts": false}));
}

#[tokio::test]
async fn faults_can_be_put_read_and_deleted() {
    let w = world().await;
    let rule = json!({"rules": [{"endpoint": "token/list", "error_rate": 1.0, "error_status": 500, "latency_ms": [1, 2]}], "seed": 3});
    assert_eq!(
        admin(&w, Method::PUT, "/_emulator/faults", Some(rule))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let current = admin(&w, Method::GET, "/_emulator/faults", None).await;
    assert_eq!(current.body["rules"][0]["error_status"], 500);
    assert_eq!(
        w.get("/api/2.0/token/list", &w.user.pat).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        admin(&w, Method::DELETE, "/_emulator/faults", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        w.get("/api/2.0/token/list", &w.user.pat).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_rule_can_be_added_to_the_current_ones() {
    let w = world().await;
    let rule = json!({"endpoint": "token/list", "rate_limit_rate": 1.0, "limit": 1});
    let r = admin(&w, Method::POST, "/_emulator/faults/rules", Some(rule)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        w.get("/api/2.0/token/list", &w.user.pat).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        w.get("/api/2.0/token/list", &w.user.pat).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn settings_and_stats_are_exposed() {
    let w = world().await;
    let settings = admin(&w, Method::GET, "/_emulator/settings", None).await;
    assert_eq!(settings.body["quota_per_owner"], 600);
    assert_eq!(settings.body["max_token_lifetime_days"], 730);
    let put = admin(
        &w,
        Method::PUT,
        "/_emulator/settings",
        Some(json!({"obo_enabled": false})),
    )
    .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    assert!(!w.emulator.settings().obo_enabled);
    assert_eq!(
        w.emulator.settings().quota_per_owner,
        600,
        "omitted fields take defaults"
    );

    w.get("/api/2.0/token/list", &w.user.pat).await;
    let stats = admin(&w, Method::GET, "/_emulator/stats", None).await;
    assert_eq!(
        stats.body["requests"],
        json!([{"endpoint": "token/list", "method": "GET", "status": 200, "count": 1}])
    );
}

#[tokio::test]
async fn the_control_api_is_not_counted_as_workspace_traffic() {
    let w = world().await;
    admin(&w, Method::GET, "/_emulator/tokens", None).await;
    assert_eq!(w.emulator.stats().total_requests(), 0);
}

#[tokio::test]
async fn the_clock_offset_can_be_set_over_http() {
    let w = world().await;
    let r = admin(
        &w,
        Method::PUT,
        "/_emulator/clock",
        Some(json!({"offset_ms": -300_000})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let reported = r.body["now_ms"].as_i64().unwrap();
    assert!((reported - (crate::support::now_ms() - 300_000)).abs() < 1_000);
    let settings = w.emulator.settings();
    assert_eq!(settings.clock_offset_ms, -300_000);
    assert_eq!(settings.quota_per_owner, 600, "other settings kept");
}

#[tokio::test]
async fn seeded_tokens_are_listed_as_created_earlier_by_whoever_is_named() {
    let w = world().await;
    let admin_user = admin(
        &w,
        Method::POST,
        "/_emulator/users",
        Some(json!({"user_name": "admin@x.y", "is_admin": true})),
    )
    .await;
    let pat = admin_user.body["pat"].as_str().unwrap().to_string();
    let owner = admin(
        &w,
        Method::POST,
        "/_emulator/users",
        Some(json!({"user_name": "old@x.y"})),
    )
    .await
    .body["id"]
        .as_i64()
        .unwrap();
    let never = admin(
        &w,
        Method::POST,
        "/_emulator/tokens",
        Some(json!({"owner_id": owner, "comment": "laptop"})),
    )
    .await;
    assert_eq!(never.status, StatusCode::OK);
    let expiring = admin(
        &w,
        Method::POST,
        "/_emulator/tokens",
        Some(json!({"owner_id": owner, "created_by_id": admin_user.body["id"], "comment": "ci", "lifetime_seconds": 3600})),
    )
    .await;
    let gone = admin(
        &w,
        Method::POST,
        "/_emulator/tokens",
        Some(json!({"owner_id": owner, "lifetime_seconds": -1})),
    )
    .await;
    let listed = w.get("/api/2.0/token-management/tokens", &pat).await.body;
    let find = |id: &Value| {
        listed["token_infos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| &t["token_id"] == id)
            .cloned()
    };
    let never = find(&never.body["token_id"]).expect("listed");
    assert_eq!(
        (
            never["expiry_time"].as_i64(),
            never["created_by_username"].as_str()
        ),
        (Some(-1), Some("old@x.y"))
    );
    let expiring = find(&expiring.body["token_id"]).expect("listed");
    assert_eq!(
        expiring["expiry_time"].as_i64().unwrap() - expiring["creation_time"].as_i64().unwrap(),
        3_600_000
    );
    assert_eq!(expiring["created_by_username"], "admin@x.y");
    assert!(find(&gone.body["token_id"]).is_none(), "already expired");
}
