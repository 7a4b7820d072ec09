//! Several workspaces (one emulator each) and several identities: a token is owned by one
//! identity in one workspace, and a delete sent anywhere else revokes nothing.

use databricks_emulator::{Emulator, EmulatorConfig};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Reply, reply, world, world_with};

const DELETE: &str = "/api/2.0/token/delete";
const MANAGED: &str = "/api/2.0/token-management/tokens";

#[tokio::test]
async fn token_delete_of_another_identitys_token_is_404_and_revokes_nothing() {
    let w = world().await;
    let (value, info) = w
        .create(&w.user.pat, json!({"lifetime_seconds": 600}))
        .await;
    let id = info["token_id"].as_str().unwrap();

    // token/delete acts on the caller's own tokens only, admin or not.
    let r = w.post(DELETE, &w.admin.pat, json!({"token_id": id})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "RESOURCE_DOES_NOT_EXIST");
    assert_eq!(r.message(), format!("No valid token with ID {id} found."));
    assert!(w.emulator.accepts(&value), "the user's token still works");
    assert!(w.emulator.live_tokens().iter().any(|t| t.token_id == id));
}

#[tokio::test]
async fn a_non_admin_cannot_delete_another_identitys_token_through_token_management() {
    let w = world().await;
    let (value, info) = w
        .create(&w.admin.pat, json!({"lifetime_seconds": 600}))
        .await;
    let path = format!("{MANAGED}/{}", info["token_id"].as_str().unwrap());
    let r = w.delete(&path, &w.user.pat).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "PERMISSION_DENIED");
    assert!(w.emulator.accepts(&value));
}

#[tokio::test]
async fn deletes_through_another_workspace_are_404_and_revoke_nothing() {
    let first = world().await;
    let second = world().await;
    let (value, info) = first
        .create(&first.admin.pat, json!({"lifetime_seconds": 600}))
        .await;
    let id = info["token_id"].as_str().unwrap();

    // The first workspace's credential is not valid in the second one.
    let r = second
        .post(DELETE, &first.admin.pat, json!({"token_id": id}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The second workspace's admin does not know the token at all.
    let r = second
        .post(DELETE, &second.admin.pat, json!({"token_id": id}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = second
        .delete(&format!("{MANAGED}/{id}"), &second.admin.pat)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "RESOURCE_DOES_NOT_EXIST");

    assert!(
        first.emulator.accepts(&value),
        "still valid where it was minted"
    );
    assert!(!second.emulator.accepts(&value));
}

async fn oauth_bearer(w: &crate::support::World, client_id: &str, secret: &str) -> String {
    let r: Reply = reply(
        w.http
            .post(w.url("/oidc/v1/token"))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "all-apis")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_account_service_principal_assigned_to_two_workspaces_owns_separate_tokens() {
    let first = world().await;
    let second = world_with(EmulatorConfig {
        workspace_id: 42,
        ..EmulatorConfig::default()
    })
    .await;
    let sp = first.emulator.add_service_principal("deployer", true);
    let here = second
        .emulator
        .assign_service_principal(&sp, "deployer", true);
    assert_eq!(here.application_id, sp.application_id);

    let bearer_1 = oauth_bearer(&first, &sp.application_id, &sp.client_secret).await;
    let bearer_2 = oauth_bearer(&second, &sp.application_id, &sp.client_secret).await;
    let (_, info) = first
        .create(&bearer_1, json!({"lifetime_seconds": 600}))
        .await;
    let id = info["token_id"].as_str().unwrap();

    // Same identity, other workspace: its token/delete does not reach the first workspace.
    let r = second
        .post(DELETE, &bearer_2, json!({"token_id": id}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        first
            .emulator
            .live_tokens()
            .iter()
            .any(|t| t.token_id == id)
    );
    // Through the right workspace it is revoked.
    let r = first.post(DELETE, &bearer_1, json!({"token_id": id})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        !first
            .emulator
            .live_tokens()
            .iter()
            .any(|t| t.token_id == id)
    );

    let listed = second.get(MANAGED, &second.admin.pat).await;
    assert!(
        listed.body["token_infos"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["workspace_id"] == 42)
    );
}

#[tokio::test]
async fn host_metadata_reports_the_configured_workspace_id() {
    let emulator = Emulator::start(EmulatorConfig {
        workspace_id: 7,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let body: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/databricks-config",
        emulator.base_url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(body["workspace_id"], "7");
}
