//! token-management (admins only): list with filters, get, delete, on-behalf-of create.

use databricks_emulator::EmulatorConfig;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{ids, is_token_value, world};

const OBO: &str = "/api/2.0/token-management/on-behalf-of/tokens";
const LIST: &str = "/api/2.0/token-management/tokens";

fn one(id: &serde_json::Value) -> String {
    format!("{LIST}/{}", id.as_str().unwrap())
}

#[tokio::test]
async fn non_admins_get_permission_denied_on_every_endpoint() {
    let w = world().await;
    let (_, info) = w
        .create(&w.admin.pat, json!({"lifetime_seconds": 60}))
        .await;
    let sp = w.emulator.add_service_principal("etl", false);
    let replies = [
        w.get(LIST, &w.user.pat).await,
        w.get(&one(&info["token_id"]), &w.user.pat).await,
        w.delete(&one(&info["token_id"]), &w.user.pat).await,
        w.post(
            OBO,
            &w.user.pat,
            json!({"application_id": sp.application_id}),
        )
        .await,
    ];
    for r in replies {
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.error_code(), "PERMISSION_DENIED");
    }
    assert_eq!(
        w.emulator.live_tokens().len(),
        3,
        "nothing minted or revoked"
    );
}

#[tokio::test]
async fn list_shows_every_owners_tokens_with_management_fields() {
    let w = world().await;
    let (_, info) = w
        .create(&w.user.pat, json!({"lifetime_seconds": 60, "comment": "c"}))
        .await;
    let r = w.get(LIST, &w.admin.pat).await;
    assert_eq!(r.status, StatusCode::OK);
    let entry = r.body["token_infos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["token_id"] == info["token_id"])
        .unwrap()
        .clone();
    assert_eq!(entry["owner_id"], w.user.id);
    assert_eq!(entry["created_by_id"], w.user.id);
    assert_eq!(entry["created_by_username"], "user@example.com");
    assert_eq!(entry["comment"], "c");
    assert!(entry["workspace_id"].is_i64());
    assert_eq!(entry["expiry_time"], info["expiry_time"]);
    assert_eq!(ids(&r.body).len(), 3, "two bootstrap PATs and the new one");
}

#[tokio::test]
async fn list_filters_by_creator_id_and_username() {
    let w = world().await;
    w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    w.create(&w.admin.pat, json!({"lifetime_seconds": 60}))
        .await;
    let by_id = w
        .get(&format!("{LIST}?created_by_id={}", w.user.id), &w.admin.pat)
        .await;
    let by_name = w
        .get(
            &format!("{LIST}?created_by_username=user%40example.com"),
            &w.admin.pat,
        )
        .await;
    for r in [&by_id, &by_name] {
        let infos = r.body["token_infos"].as_array().unwrap();
        assert_eq!(infos.len(), 2, "{}", r.body);
        assert!(infos.iter().all(|t| t["created_by_id"] == w.user.id));
    }
    let bad = w
        .get(&format!("{LIST}?created_by_id=abc"), &w.admin.pat)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error_code(), "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn get_returns_token_info_and_404_for_unknown_ids() {
    let w = world().await;
    let (_, info) = w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    let r = w.get(&one(&info["token_id"]), &w.admin.pat).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["token_info"]["token_id"], info["token_id"]);
    assert_eq!(r.body["token_info"]["owner_id"], w.user.id);
    let missing = w.get(&format!("{LIST}/ffff"), &w.admin.pat).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "RESOURCE_DOES_NOT_EXIST");
}

#[tokio::test]
async fn delete_revokes_any_owners_token_then_404s() {
    let w = world().await;
    let (value, info) = w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    let r = w.delete(&one(&info["token_id"]), &w.admin.pat).await;
    assert_eq!((r.status, r.body.clone()), (StatusCode::OK, json!({})));
    assert!(!w.emulator.accepts(&value));
    let again = w.delete(&one(&info["token_id"]), &w.admin.pat).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.error_code(), "RESOURCE_DOES_NOT_EXIST");
}

#[tokio::test]
async fn obo_create_mints_a_token_owned_by_the_service_principal() {
    let w = world().await;
    let sp = w.emulator.add_service_principal("etl", false);
    let r = w
        .post(
            OBO,
            &w.admin.pat,
            json!({"application_id": sp.application_id, "lifetime_seconds": 300, "comment": "obo"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let value = r.body["token_value"].as_str().unwrap();
    assert!(is_token_value(value));
    let info = &r.body["token_info"];
    assert_eq!(info["owner_id"], sp.id);
    assert_eq!(info["created_by_id"], w.admin.id);
    assert_eq!(info["created_by_username"], "admin@example.com");
    assert_eq!(info["comment"], "obo");
    let span = info["expiry_time"].as_i64().unwrap() - info["creation_time"].as_i64().unwrap();
    assert_eq!(span, 300_000);
    let me = w.get("/api/2.0/preview/scim/v2/Me", value).await;
    assert_eq!(
        me.body["userName"],
        sp.application_id.as_str(),
        "the value acts as the SP"
    );
    let own = w.get("/api/2.0/token/list", value).await;
    assert!(ids(&own.body).contains(&info["token_id"].as_str().unwrap().to_string()));
}

#[tokio::test]
async fn obo_for_an_unknown_application_is_refused() {
    let w = world().await;
    let r = w
        .post(
            OBO,
            &w.admin.pat,
            json!({"application_id": "00000000-0000-0000-0000-000000000000"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "RESOURCE_DOES_NOT_EXIST");
    let r = w.post(OBO, &w.admin.pat, json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn obo_when_disabled_says_it_is_not_enabled() {
    let w = world().await;
    w.emulator.set_settings(EmulatorConfig {
        obo_enabled: false,
        ..EmulatorConfig::default()
    });
    let sp = w.emulator.add_service_principal("etl", false);
    let r = w
        .post(
            OBO,
            &w.admin.pat,
            json!({"application_id": sp.application_id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "PERMISSION_DENIED");
    assert!(
        r.message().contains("is not enabled for this workspace"),
        "{}",
        r.message()
    );
}

#[tokio::test]
async fn obo_tokens_count_against_the_service_principals_quota() {
    let w = world().await;
    w.emulator.set_settings(EmulatorConfig {
        quota_per_owner: 1,
        ..EmulatorConfig::default()
    });
    let sp = w.emulator.add_service_principal("etl", false);
    let body = json!({"application_id": sp.application_id, "lifetime_seconds": 60});
    assert_eq!(
        w.post(OBO, &w.admin.pat, body.clone()).await.status,
        StatusCode::OK
    );
    let r = w.post(OBO, &w.admin.pat, body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "QUOTA_EXCEEDED");
}
