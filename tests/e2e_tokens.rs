//! End to end: the operator process against a real kube-apiserver and the Databricks emulator.
//! Each test has its own namespace, emulator and operator (watching only that namespace).

mod support;

use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::operator::eventually;
use support::world::{WAIT, World, condition_is, condition_reason};

fn spec(lifetime: &str) -> serde_json::Value {
    json!({"workspaceRef": {"name": "ws"}, "lifetime": lifetime})
}

#[tokio::test]
async fn a_new_token_lands_in_its_secret_and_the_emulator_accepts_it() {
    let mut w = World::new("mint").await;
    w.start_operator();
    w.create_token(
        "reports",
        json!({"workspaceRef": {"name": "ws"}, "lifetime": "1h", "comment": "reports job"}),
    )
    .await;
    let t = w.wait_ready("reports").await;

    let status = t.status.clone().unwrap();
    let token_id = status.token_id.clone().expect("status.tokenId");
    let value = w.secret_value("reports", "token").await.expect("token key");
    assert!(
        w.emulator.accepts(&value),
        "the Secret's token must authenticate"
    );
    assert_eq!(
        w.secret_value("reports", "DATABRICKS_TOKEN")
            .await
            .as_deref(),
        Some(value.as_str())
    );
    assert_eq!(
        w.secret_value("reports", "host").await,
        Some(w.emulator.base_url())
    );

    let live = w.emulator.live_tokens();
    let minted = live
        .iter()
        .find(|l| l.token_id == token_id)
        .expect("token live in Databricks");
    let uid = t.metadata.uid.clone().unwrap();
    assert_eq!(
        minted.comment.as_deref(),
        Some(format!("[dbtoken.dev/uid={uid}] reports job").as_str())
    );
    assert!(status.expiry_time.is_some() && status.renewal_time.is_some());
    assert_eq!(status.secret_name.as_deref(), Some("reports"));
    assert!(
        !serde_json::to_string(&status).unwrap().contains(&value),
        "status must not hold the value"
    );
    assert_eq!(
        live.len(),
        2,
        "only the admin PAT and the minted token exist"
    );
}

#[tokio::test]
async fn a_short_lifetime_rotates_and_revokes_the_old_token_after_the_grace_period() {
    let mut w = World::new("rotate").await;
    w.start_operator();
    w.create_token(
        "short",
        json!({"workspaceRef": {"name": "ws"}, "lifetime": "20s", "renewBefore": "14s", "rotation": {"gracePeriod": "3s"}}),
    )
    .await;
    let first = w
        .wait_ready("short")
        .await
        .status
        .unwrap()
        .token_id
        .unwrap();
    let first_value = w.secret_value("short", "token").await.unwrap();

    let rotated = w.wait_replaced("short", &first, "a new tokenId").await;
    let status = rotated.status.unwrap();
    assert_ne!(status.token_id.as_deref(), Some(first.as_str()));
    let second_value = w.secret_value("short", "token").await.unwrap();
    assert_ne!(first_value, second_value);
    assert!(w.emulator.accepts(&second_value));
    assert!(status.last_rotation_time.is_some());

    w.wait_revoked(&first).await;
    assert!(!w.emulator.accepts(&first_value));
    assert!(
        w.emulator
            .accepts(&w.secret_value("short", "token").await.unwrap())
    );
}

#[tokio::test]
async fn the_rotate_requested_at_annotation_rotates_once() {
    let mut w = World::new("manual").await;
    w.start_operator();
    w.create_token("m", spec("1h")).await;
    let first = w.wait_ready("m").await.status.unwrap().token_id.unwrap();

    let patch = json!({"metadata": {"annotations": {"dbtoken.dev/rotate-requested-at": "2026-11-23T10:00:00Z"}}});
    w.tokens()
        .patch("m", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let t = w
        .wait_replaced("m", &first, "rotation after the request")
        .await;
    let second = t.status.unwrap().token_id.unwrap();
    // The previous token is still valid during its grace period (5s by default in tests), then revoked.
    w.wait_revoked(&first).await;
    // Handled once: no further rotation for the same request.
    let still = w
        .tokens()
        .get("m")
        .await
        .unwrap()
        .status
        .unwrap()
        .token_id
        .unwrap();
    assert_eq!(still, second);
}

#[tokio::test]
async fn a_deleted_secret_gets_a_new_token_and_the_old_one_is_revoked() {
    let mut w = World::new("secretdel").await;
    w.start_operator();
    w.create_token("d", spec("1h")).await;
    let first = w.wait_ready("d").await.status.unwrap().token_id.unwrap();

    w.secrets()
        .delete("d", &DeleteParams::default())
        .await
        .unwrap();
    let value = eventually("Secret re-created", WAIT, || async {
        w.secret_value("d", "token").await
    })
    .await;
    assert!(w.emulator.accepts(&value));
    let t = w
        .wait_replaced("d", &first, "status shows the new token")
        .await;
    assert!(
        t.status
            .unwrap()
            .previous_tokens
            .iter()
            .any(|p| p.token_id == first)
            || !w.live_token_ids().contains(&first)
    );
    w.wait_revoked(&first).await;
}

#[tokio::test]
async fn an_altered_secret_value_is_replaced_with_a_fresh_token() {
    let mut w = World::new("altered").await;
    w.start_operator();
    w.create_token("a", spec("1h")).await;
    let first = w.wait_ready("a").await.status.unwrap().token_id.unwrap();

    let patch = json!({"stringData": {"token": "not-a-token"}});
    w.secrets()
        .patch("a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let value = eventually("token key restored with a valid token", WAIT, || async {
        w.secret_value("a", "token")
            .await
            .filter(|v| v != "not-a-token")
    })
    .await;
    assert!(w.emulator.accepts(&value));
    // The Secret is written first, status follows: wait for it to mirror the new token.
    w.wait_replaced("a", &first, "status shows the replacement")
        .await;
}

#[tokio::test]
async fn a_token_revoked_in_databricks_is_minted_again() {
    let mut w = World::new("revoked").await;
    w.start_operator();
    w.create_token("r", spec("1h")).await;
    let first = w.wait_ready("r").await.status.unwrap().token_id.unwrap();

    assert!(w.emulator.revoke(&first));
    let t = w
        .wait_replaced("r", &first, "re-minted after outside revocation")
        .await;
    let value = w.secret_value("r", "token").await.unwrap();
    assert!(w.emulator.accepts(&value));
    assert!(
        t.status.unwrap().previous_tokens.is_empty(),
        "a revoked token needs no grace period"
    );
}

#[tokio::test]
async fn deleting_with_revoke_revokes_every_token_and_removes_the_secret() {
    let mut w = World::new("delrevoke").await;
    w.start_operator();
    w.create_token("x", spec("1h")).await;
    let id = w.wait_ready("x").await.status.unwrap().token_id.unwrap();

    w.delete_token_and_wait("x").await;
    assert!(
        !w.live_token_ids().contains(&id),
        "the token must be revoked"
    );
    assert!(
        w.secrets().get_opt("x").await.unwrap().is_none(),
        "the Secret must be deleted"
    );
}

#[tokio::test]
async fn deleting_with_retain_keeps_the_token_and_the_secret() {
    let mut w = World::new("delretain").await;
    w.start_operator();
    w.create_token(
        "k",
        json!({"workspaceRef": {"name": "ws"}, "lifetime": "1h", "deletionPolicy": "Retain"}),
    )
    .await;
    let id = w.wait_ready("k").await.status.unwrap().token_id.unwrap();

    w.delete_token_and_wait("k").await;
    assert!(w.live_token_ids().contains(&id));
    let secret = w.secrets().get("k").await.unwrap();
    assert!(
        secret
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "detached from the deleted owner"
    );
    assert!(
        w.emulator
            .accepts(&w.secret_value("k", "token").await.unwrap())
    );
}

#[tokio::test]
async fn on_behalf_of_mints_a_token_owned_by_the_service_principal() {
    let mut w = World::new("obo").await;
    let sp = w.emulator.add_service_principal("etl-bot", false);
    w.start_operator();
    w.create_token("sp", json!({"workspaceRef": {"name": "ws"}, "lifetime": "1h", "onBehalfOf": {"applicationId": sp.application_id}})).await;
    let id = w.wait_ready("sp").await.status.unwrap().token_id.unwrap();
    let live = w.emulator.live_tokens();
    let minted = live.iter().find(|t| t.token_id == id).expect("live");
    assert_eq!(minted.owner_id, sp.id, "owned by the service principal");
    assert!(
        w.emulator
            .accepts(&w.secret_value("sp", "token").await.unwrap())
    );

    w.tokens()
        .delete("sp", &DeleteParams::default())
        .await
        .unwrap();
    w.wait_revoked(&id).await;
}

#[tokio::test]
async fn an_oauth_m2m_workspace_mints_the_service_principals_own_token() {
    let mut w = World::new("m2m").await;
    let sp = w.emulator.add_service_principal("m2m-bot", false);
    w.create_secret(
        "m2m",
        &[
            ("client_id", &sp.application_id),
            ("client_secret", &sp.client_secret),
        ],
    )
    .await;
    w.apply_workspace(
        "ws-m2m",
        json!({"oauthM2M": {"secretRef": {"name": "m2m"}}}),
    )
    .await;
    w.start_operator();
    w.create_token(
        "t",
        json!({"workspaceRef": {"name": "ws-m2m"}, "lifetime": "1h"}),
    )
    .await;
    let id = w.wait_ready("t").await.status.unwrap().token_id.unwrap();
    let live = w.emulator.live_tokens();
    assert_eq!(
        live.iter().find(|t| t.token_id == id).unwrap().owner_id,
        sp.id
    );
    assert!(
        w.emulator
            .accepts(&w.secret_value("t", "token").await.unwrap())
    );
}

#[tokio::test]
async fn an_azure_service_principal_workspace_mints_with_an_entra_token() {
    let mut w = World::new("entra").await;
    let sp = w.emulator.add_service_principal("azure-bot", false);
    let app = w.emulator.add_entra_app("tenant-1", &sp.application_id);
    w.create_secret(
        "entra",
        &[
            ("client_id", &app.client_id),
            ("client_secret", &app.client_secret),
        ],
    )
    .await;
    let authority = w.emulator.entra_authority();
    w.apply_workspace(
        "ws-az",
        json!({"azureServicePrincipal": {"tenantId": "tenant-1", "authorityHost": authority, "secretRef": {"name": "entra"}}}),
    )
    .await;
    w.start_operator();
    w.create_token(
        "t",
        json!({"workspaceRef": {"name": "ws-az"}, "lifetime": "1h"}),
    )
    .await;
    let id = w.wait_ready("t").await.status.unwrap().token_id.unwrap();
    assert_eq!(
        w.emulator
            .live_tokens()
            .iter()
            .find(|t| t.token_id == id)
            .unwrap()
            .owner_id,
        sp.id
    );
}

#[tokio::test]
async fn bad_credentials_degrade_with_a_clear_message_and_a_bounded_call_rate() {
    let mut w = World::new("badcreds").await;
    w.create_secret("wrong", &[("token", "dapi-not-a-real-token")])
        .await;
    w.apply_workspace("ws-bad", json!({"pat": {"secretRef": {"name": "wrong"}}}))
        .await;
    w.create_secret("empty", &[("other", "x")]).await;
    w.apply_workspace("ws-nokey", json!({"pat": {"secretRef": {"name": "empty"}}}))
        .await;
    w.start_operator();
    w.create_token(
        "bad",
        json!({"workspaceRef": {"name": "ws-bad"}, "lifetime": "1h"}),
    )
    .await;
    w.create_token(
        "nokey",
        json!({"workspaceRef": {"name": "ws-nokey"}, "lifetime": "1h"}),
    )
    .await;

    let t = w
        .wait_token("bad", "Degraded", |t| condition_is(t, "Degraded", "True"))
        .await;
    let (reason, message) = condition_reason(&t, "Degraded").unwrap();
    assert!(
        reason.contains("403") || reason.contains("UNAUTHENTICATED") || reason.contains("Invalid"),
        "{reason}"
    );
    assert!(message.contains("Invalid access token"), "{message}");
    assert!(condition_is(&t, "Ready", "False"));

    let t = w
        .wait_token("nokey", "Degraded", |t| condition_is(t, "Degraded", "True"))
        .await;
    let (reason, message) = condition_reason(&t, "Degraded").unwrap();
    assert_eq!(reason, "CredentialKeyMissing");
    assert!(
        message.contains("empty") && message.contains("\"token\""),
        "names Secret and key: {message}"
    );

    // Exponential backoff: over 10 s a failing token is retried a handful of times, not hundreds.
    let before = w.emulator.stats().total_requests();
    tokio::time::sleep(Duration::from_secs(10)).await; // a measurement window, not synchronisation
    let calls = w.emulator.stats().total_requests() - before;
    assert!(
        calls <= 12,
        "{calls} Databricks calls in 10 s with bad credentials"
    );
}

#[tokio::test]
async fn an_existing_secret_of_someone_else_is_never_overwritten() {
    let mut w = World::new("conflict").await;
    w.create_secret("taken", &[("token", "user-data")]).await;
    w.start_operator();
    w.create_token(
        "c",
        json!({"workspaceRef": {"name": "ws"}, "lifetime": "1h", "secret": {"name": "taken"}}),
    )
    .await;
    let t = w
        .wait_token("c", "Degraded", |t| condition_is(t, "Degraded", "True"))
        .await;
    assert_eq!(
        condition_reason(&t, "Degraded").unwrap().0,
        "SecretConflict"
    );
    assert_eq!(
        w.secret_value("taken", "token").await.as_deref(),
        Some("user-data")
    );
}

#[tokio::test]
async fn a_restarted_operator_mints_nothing_and_writes_nothing() {
    let mut w = World::new("restart").await;
    w.start_operator();
    for i in 0..5 {
        w.create_token(&format!("t{i}"), spec("1h")).await;
    }
    for i in 0..5 {
        w.wait_ready(&format!("t{i}")).await;
    }
    w.operator.as_mut().unwrap().terminate();
    let before = w.resource_versions().await;
    let calls_before = w.emulator.stats().total_requests();

    w.start_operator();
    // Wait until the new process has reconciled everything (its metric shows each token ready).
    eventually(
        "restarted operator observed 5 ready tokens",
        WAIT,
        || async {
            let m = w.operator.as_ref().unwrap().metrics().await;
            let ready = m
                .lines()
                .filter(|l| l.starts_with("dbtoken_token_ready{") && l.ends_with(" 1"));
            (ready.count() == 5).then_some(())
        },
    )
    .await;
    assert_eq!(
        before,
        w.resource_versions().await,
        "no DatabricksToken or Secret writes"
    );
    assert_eq!(
        w.emulator.stats().total_requests(),
        calls_before,
        "no Databricks calls"
    );
}

/// A process that added the finalizer and minted, then died before writing the Secret, leaves a
/// tagged token behind. The next process reads the token list before minting and revokes it.
#[tokio::test]
async fn a_token_minted_by_a_process_that_died_before_the_secret_is_revoked() {
    let mut w = World::new("diedmid").await;
    let created = w.create_token("d", spec("1h")).await;
    let uid = created.metadata.uid.clone().unwrap();
    // The dead process's two steps: its finalizer, then its create (tagged with the uid).
    let finalizer =
        json!({"metadata": {"finalizers": [databricks_token_operator::controller::FINALIZER]}});
    w.tokens()
        .patch("d", &PatchParams::default(), &Patch::Merge(&finalizer))
        .await
        .unwrap();
    let left: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/2.0/token/create", w.emulator.base_url()))
        .bearer_auth(&w.admin_pat)
        .json(&json!({"lifetime_seconds": 3600, "comment": format!("[dbtoken.dev/uid={uid}]")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let left_id = left["token_info"]["token_id"].as_str().unwrap().to_string();

    w.start_operator();
    let current = w.wait_ready("d").await.status.unwrap().token_id.unwrap();
    assert_ne!(current, left_id);
    w.wait_revoked(&left_id).await;
    let tagged: Vec<String> = w
        .emulator
        .live_tokens()
        .into_iter()
        .filter(|t| t.comment.as_deref().is_some_and(|c| c.contains(&uid)))
        .map(|t| t.token_id)
        .collect();
    assert_eq!(tagged, vec![current], "only the Secret's token is live");
}
