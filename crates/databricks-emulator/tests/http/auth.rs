//! Bearer authentication on every /api route: PATs, expiry, revocation, and the legacy numeric
//! error codes for missing or bad credentials; SCIM Me as the who-am-I.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{eventually, world};

#[tokio::test]
async fn a_missing_bearer_is_401_with_a_numeric_error_code() {
    let w = world().await;
    let r = w.call(Method::GET, "/api/2.0/token/list", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), 401);
    assert!(r.body.get("details").is_none());
}

#[tokio::test]
async fn an_unknown_bearer_is_403_invalid_access_token() {
    let w = world().await;
    let r = w.get("/api/2.0/token/list", "not-a-token").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.body,
        json!({"error_code": 403, "message": "Invalid access token."})
    );
}

#[tokio::test]
async fn basic_auth_is_not_a_bearer() {
    let w = world().await;
    let r = w
        .http
        .get(w.url("/api/2.0/token/list"))
        .basic_auth("admin@example.com", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_minted_token_authenticates_as_its_owner() {
    let w = world().await;
    let (value, _) = w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    assert!(w.emulator.accepts(&value));
    let me = w.get("/api/2.0/preview/scim/v2/Me", &value).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["userName"], "user@example.com");
    assert_eq!(me.body["id"], w.user.id.to_string());
}

#[tokio::test]
async fn a_token_revoked_through_the_api_stops_authenticating() {
    let w = world().await;
    let (value, info) = w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    w.post(
        "/api/2.0/token/delete",
        &w.user.pat,
        json!({"token_id": info["token_id"]}),
    )
    .await;
    let r = w.get("/api/2.0/token/list", &value).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), 403);
}

#[tokio::test]
async fn a_token_revoked_outside_the_api_stops_authenticating() {
    let w = world().await;
    let (value, info) = w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    assert_eq!(
        w.get("/api/2.0/token/list", &value).await.status,
        StatusCode::OK
    );
    assert!(w.emulator.revoke(info["token_id"].as_str().unwrap()));
    assert!(
        !w.emulator.revoke(info["token_id"].as_str().unwrap()),
        "already gone"
    );
    assert_eq!(
        w.get("/api/2.0/token/list", &value).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_token_can_revoke_itself() {
    let w = world().await;
    let (value, info) = w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    let r = w
        .post(
            "/api/2.0/token/delete",
            &value,
            json!({"token_id": info["token_id"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!w.emulator.accepts(&value));
}

#[tokio::test]
async fn an_expired_token_stops_authenticating_and_leaves_every_list() {
    let w = world().await;
    let (value, info) = w.create(&w.user.pat, json!({"lifetime_seconds": 1})).await;
    let id = info["token_id"].as_str().unwrap().to_string();
    assert_eq!(
        w.get("/api/2.0/token/list", &value).await.status,
        StatusCode::OK
    );
    eventually("the token expires", Duration::from_secs(5), async || {
        !w.emulator.accepts(&value)
    })
    .await;
    let r = w.get("/api/2.0/token/list", &value).await;
    assert_eq!(
        r.body,
        json!({"error_code": 403, "message": "Invalid access token."})
    );
    assert!(
        !crate::support::ids(&w.get("/api/2.0/token/list", &w.user.pat).await.body).contains(&id)
    );
    assert!(w.emulator.live_tokens().iter().all(|t| t.token_id != id));
    let deleted = w
        .post(
            "/api/2.0/token/delete",
            &w.user.pat,
            json!({"token_id": id}),
        )
        .await;
    assert_eq!(
        deleted.status,
        StatusCode::NOT_FOUND,
        "an expired id is not valid"
    );
}

#[tokio::test]
async fn scim_me_describes_the_caller() {
    let w = world().await;
    let r = w.get("/api/2.0/preview/scim/v2/Me", &w.admin.pat).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["userName"], "admin@example.com");
    assert_eq!(r.body["id"], w.admin.id.to_string());
    assert_eq!(r.body["active"], true);
    assert_eq!(
        r.body["schemas"][0],
        "urn:ietf:params:scim:schemas:core:2.0:User"
    );
}

#[tokio::test]
async fn scim_me_refuses_a_bad_bearer() {
    let w = world().await;
    let r = w.get("/api/2.0/preview/scim/v2/Me", "nope").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn host_metadata_answers_without_credentials() {
    let w = world().await;
    let r = w
        .call(Method::GET, "/.well-known/databricks-config", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["oidc_endpoint"], w.url("/oidc"));
}

#[tokio::test]
async fn last_used_day_appears_once_a_token_is_used() {
    let w = world().await;
    let (value, info) = w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    let path = format!(
        "/api/2.0/token-management/tokens/{}",
        info["token_id"].as_str().unwrap()
    );
    let before = w.get(&path, &w.admin.pat).await;
    assert!(before.body["token_info"].get("last_used_day").is_none());
    w.get("/api/2.0/token/list", &value).await;
    let after = w.get(&path, &w.admin.pat).await;
    let day = after.body["token_info"]["last_used_day"].as_i64().unwrap();
    assert_eq!(day % 86_400_000, 0);
    assert!(crate::support::now_ms() - day < 86_400_000);
}
