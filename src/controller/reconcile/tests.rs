//! One reconcile against an in-memory API server and the Databricks emulator: the exact calls,
//! in order. These are the figures BENCHMARKS.md counts (one create and four Kubernetes writes
//! per mint, nothing for a token that is fine).

use databricks_client::{ClientConfig, CreateTokenRequest, Credentials, WorkspaceClient};

use super::*;
use crate::controller::fixtures::World;
use crate::crd::{ConditionStatus, condition_types, find_condition, reasons};

#[tokio::test]
async fn a_first_mint_writes_the_secret_before_status() {
    let world = World::new().await;
    let token = World::token();
    reconcile_inner(&token, &world.ctx)
        .await
        .expect("reconcile");
    assert_eq!(
        world.calls.take(),
        [
            "PATCH databrickstokens/t",
            "databricks scim/me",
            "GET secrets/t",
            "databricks token/create",
            "POST secrets",
            "POST events",
            "PATCH databrickstokens/t/status",
        ]
    );
    let secret = world.secret("t").expect("the Secret");
    let value = secret.data.as_ref().unwrap()["token"].0.clone();
    assert!(world.emulator.accepts(&String::from_utf8(value).unwrap()));
}

#[tokio::test]
async fn a_token_that_is_fine_makes_no_call() {
    let world = World::new().await;
    let mut token = World::token();
    reconcile_inner(&token, &world.ctx)
        .await
        .expect("first mint");
    world.observe_writes(&mut token);
    world.calls.take();

    let action = reconcile_inner(&token, &world.ctx)
        .await
        .expect("reconcile");
    assert_eq!(world.calls.take(), Vec::<String>::new());
    assert_ne!(action, Action::await_change(), "it wakes for its renewal");
}

#[tokio::test]
async fn an_uncertain_create_lists_before_minting_and_revokes_what_it_left() {
    let world = World::new().await;
    // The earlier create did reach Databricks: a token tagged for this resource exists.
    let client = WorkspaceClient::new({
        let mut c = ClientConfig::new(
            world.emulator.base_url(),
            Credentials::Pat {
                token: world.pat.clone().into(),
            },
        );
        c.allow_http = true;
        c
    })
    .unwrap();
    let left = client
        .create_token(&CreateTokenRequest {
            lifetime_seconds: Some(3600),
            comment: Some(crate::databricks::tagged_comment(None, "uid-1")),
            scopes: None,
        })
        .await
        .unwrap();
    let mut token = World::token();
    token.metadata.finalizers = Some(vec![finalizer::FINALIZER.into()]);
    token.status = Some(
        serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Rotating", "status": "True", "reason": "Minting",
                            "message": "", "lastTransitionTime": "2026-01-01T00:00:00.000Z"}]
        }))
        .unwrap(),
    );
    assert!(status::is_minting(&token));

    reconcile_inner(&token, &world.ctx)
        .await
        .expect("reconcile");
    assert_eq!(
        world.calls.take(),
        [
            "databricks scim/me",
            "GET secrets/t",
            "databricks token/list",
            "databricks token/create",
            "POST secrets",
            "POST events",
            "databricks token/delete",
            "POST events",
            "PATCH databrickstokens/t/status",
        ]
    );
    let live: Vec<String> = world
        .emulator
        .live_tokens()
        .into_iter()
        .map(|t| t.token_id)
        .collect();
    assert!(!live.contains(&left.info.token_id), "the orphan is revoked");
    world.observe_writes(&mut token);
    let minted = token.status.as_ref().unwrap().token_id.clone().unwrap();
    assert!(live.contains(&minted), "the new token lives");
    let rotating = find_condition(
        &token.status.as_ref().unwrap().conditions,
        condition_types::ROTATING,
    )
    .unwrap();
    assert_eq!(
        (rotating.status, rotating.reason.as_str()),
        (ConditionStatus::False, reasons::IDLE)
    );
}
