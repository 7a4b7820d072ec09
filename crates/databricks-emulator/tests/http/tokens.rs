//! POST /api/2.0/token/create, GET /api/2.0/token/list, POST /api/2.0/token/delete.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{ids, is_token_value, now_ms, world};

#[tokio::test]
async fn create_returns_a_dapi_value_and_token_info_in_epoch_ms() {
    let w = world().await;
    let before = now_ms();
    let r = w
        .post(
            "/api/2.0/token/create",
            &w.user.pat,
            json!({"lifetime_seconds": 600, "comment": "ci"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(is_token_value(r.body["token_value"].as_str().unwrap()));
    let info = &r.body["token_info"];
    let id = info["token_id"].as_str().unwrap();
    assert!(
        id.len() >= 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    let created = info["creation_time"].as_i64().unwrap();
    assert!(created >= before && created <= now_ms());
    assert_eq!(info["expiry_time"].as_i64().unwrap() - created, 600_000);
    assert_eq!(info["comment"], "ci");
    assert!(info.get("scopes").is_none(), "no scopes asked, none echoed");
}

#[tokio::test]
async fn create_echoes_scopes() {
    let w = world().await;
    let (_, info) = w
        .create(
            &w.user.pat,
            json!({"lifetime_seconds": 60, "scopes": ["sql", "jobs"]}),
        )
        .await;
    assert_eq!(info["scopes"], json!(["sql", "jobs"]));
}

#[tokio::test]
async fn create_accepts_lifetime_as_a_string() {
    let w = world().await;
    let (_, info) = w
        .create(&w.user.pat, json!({"lifetime_seconds": "120"}))
        .await;
    let span = info["expiry_time"].as_i64().unwrap() - info["creation_time"].as_i64().unwrap();
    assert_eq!(span, 120_000);
}

#[tokio::test]
async fn every_created_value_and_id_is_distinct() {
    let w = world().await;
    let mut values = std::collections::HashSet::new();
    let mut token_ids = std::collections::HashSet::new();
    for _ in 0..20 {
        let (v, info) = w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
        values.insert(v);
        token_ids.insert(info["token_id"].as_str().unwrap().to_string());
    }
    assert_eq!((values.len(), token_ids.len()), (20, 20));
}

#[tokio::test]
async fn list_shows_only_the_callers_live_tokens() {
    let w = world().await;
    let (_, mine) = w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    let (_, theirs) = w
        .create(&w.admin.pat, json!({"lifetime_seconds": 60}))
        .await;
    let r = w.get("/api/2.0/token/list", &w.user.pat).await;
    assert_eq!(r.status, StatusCode::OK);
    let listed = ids(&r.body);
    assert!(listed.contains(&mine["token_id"].as_str().unwrap().to_string()));
    assert!(!listed.contains(&theirs["token_id"].as_str().unwrap().to_string()));
    // The bootstrap PAT is one of the user's tokens, as any PAT is.
    assert_eq!(listed.len(), 2);
    let entry = &r.body["token_infos"][1];
    assert!(
        entry.get("token_value").is_none(),
        "list never returns values"
    );
    assert!(entry.get("creation_time").is_some() && entry.get("expiry_time").is_some());
}

#[tokio::test]
async fn list_marks_a_token_without_expiry_with_minus_one() {
    let w = world().await;
    let r = w.get("/api/2.0/token/list", &w.user.pat).await;
    let bootstrap = &r.body["token_infos"][0];
    assert_eq!(bootstrap["comment"], "bootstrap");
    assert_eq!(bootstrap["expiry_time"], -1);
}

#[tokio::test]
async fn delete_revokes_and_the_token_leaves_the_list() {
    let w = world().await;
    let (value, info) = w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    let id = info["token_id"].as_str().unwrap();
    let r = w
        .post(
            "/api/2.0/token/delete",
            &w.user.pat,
            json!({"token_id": id}),
        )
        .await;
    assert_eq!((r.status, r.body.clone()), (StatusCode::OK, json!({})));
    assert!(!ids(&w.get("/api/2.0/token/list", &w.user.pat).await.body).contains(&id.to_string()));
    assert!(!w.emulator.accepts(&value));
}

#[tokio::test]
async fn delete_of_an_unknown_id_is_resource_does_not_exist() {
    let w = world().await;
    let r = w
        .post(
            "/api/2.0/token/delete",
            &w.user.pat,
            json!({"token_id": "abc123"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "RESOURCE_DOES_NOT_EXIST");
    assert_eq!(r.message(), "No valid token with ID abc123 found.");
    assert_eq!(
        r.body["details"][0]["@type"],
        "type.googleapis.com/google.rpc.RequestInfo"
    );
}

#[tokio::test]
async fn delete_of_another_owners_token_is_not_found_and_keeps_it() {
    let w = world().await;
    let (value, info) = w
        .create(&w.admin.pat, json!({"lifetime_seconds": 60}))
        .await;
    let r = w
        .post(
            "/api/2.0/token/delete",
            &w.user.pat,
            json!({"token_id": info["token_id"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "RESOURCE_DOES_NOT_EXIST");
    assert!(w.emulator.accepts(&value));
}

#[tokio::test]
async fn delete_twice_is_not_found_the_second_time() {
    let w = world().await;
    let (_, info) = w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    let body = json!({"token_id": info["token_id"]});
    let first = w
        .post("/api/2.0/token/delete", &w.user.pat, body.clone())
        .await;
    let second = w.post("/api/2.0/token/delete", &w.user.pat, body).await;
    assert_eq!(
        (first.status, second.status),
        (StatusCode::OK, StatusCode::NOT_FOUND)
    );
}

#[tokio::test]
async fn delete_without_token_id_is_invalid_parameter_value() {
    let w = world().await;
    let r = w
        .post("/api/2.0/token/delete", &w.user.pat, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn a_malformed_body_is_malformed_request() {
    let w = world().await;
    let r = w
        .http
        .post(w.url("/api/2.0/token/create"))
        .bearer_auth(&w.user.pat)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let r = crate::support::reply(r).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "MALFORMED_REQUEST");
    assert_eq!(w.emulator.live_tokens().len(), 2, "nothing minted");
}

#[tokio::test]
async fn an_empty_create_body_uses_the_defaults() {
    let w = world().await;
    let r = w
        .call(
            Method::POST,
            "/api/2.0/token/create",
            Some(&w.user.pat),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["token_info"]["comment"], "");
}

#[tokio::test]
async fn an_unknown_endpoint_is_endpoint_not_found() {
    let w = world().await;
    let r = w.get("/api/2.0/token/nope", &w.user.pat).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "ENDPOINT_NOT_FOUND");
    let r = w.get("/api/2.0/token/create", &w.user.pat).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "wrong method reads as no such API"
    );
    assert!(
        r.message().contains("GET /api/2.0/token/create"),
        "{}",
        r.message()
    );
}

#[tokio::test]
async fn requests_are_counted_by_endpoint_method_and_status() {
    let w = world().await;
    w.create(&w.user.pat, json!({"lifetime_seconds": 60})).await;
    w.post(
        "/api/2.0/token/delete",
        &w.user.pat,
        json!({"token_id": "x"}),
    )
    .await;
    let stats = w.emulator.stats();
    assert_eq!(stats.count_request("token/create", "POST", 200), 1);
    assert_eq!(stats.count_status("token/delete", 404), 1);
    assert_eq!(stats.count("token/list"), 0);
    assert_eq!(stats.total_requests(), 2);
}
