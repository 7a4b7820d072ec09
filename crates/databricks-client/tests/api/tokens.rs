//! The caller's own tokens: create, list, delete, SCIM Me, and their errors.

use databricks_client::{CreateTokenRequest, Error};
use databricks_emulator::EmulatorConfig;

use crate::support::{client, config, emulator, pat, user_client};

fn request(comment: &str, lifetime_seconds: u64) -> CreateTokenRequest {
    CreateTokenRequest {
        lifetime_seconds: Some(lifetime_seconds),
        comment: Some(comment.into()),
        scopes: None,
    }
}

#[tokio::test]
async fn current_user_names_the_authenticated_identity() {
    let emulator = emulator().await;
    let (id, alice) = user_client(&emulator, "alice@example.com", false);
    let me = alice.current_user().await.unwrap();
    assert_eq!(me.id, id.to_string());
    assert_eq!(me.user_name.as_deref(), Some("alice@example.com"));
}

#[tokio::test]
async fn create_returns_a_working_token_with_its_info() {
    let emulator = emulator().await;
    let (_, alice) = user_client(&emulator, "alice@example.com", false);
    let req = CreateTokenRequest {
        scopes: Some(vec!["sql".into()]),
        ..request("job a", 3_600)
    };
    let created = alice.create_token(&req).await.unwrap();
    assert!(emulator.accepts(created.value.expose()));
    assert_eq!(created.info.comment.as_deref(), Some("job a"));
    assert_eq!(created.info.scopes, Some(vec!["sql".to_string()]));
    // Creation and expiry may come from two clock reads a millisecond apart.
    let lifetime_ms = created.info.expiry_time - created.info.creation_time;
    assert!(
        (3_599_000..=3_601_000).contains(&lifetime_ms),
        "{lifetime_ms}"
    );
    let as_new_token = client(config(&emulator.base_url(), pat(created.value.expose())));
    assert_eq!(
        as_new_token
            .current_user()
            .await
            .unwrap()
            .user_name
            .as_deref(),
        Some("alice@example.com")
    );
}

#[tokio::test]
async fn created_token_debug_hides_the_value() {
    let emulator = emulator().await;
    let (_, alice) = user_client(&emulator, "alice@example.com", false);
    let created = alice.create_token(&request("x", 600)).await.unwrap();
    let text = format!("{created:?}");
    assert!(!text.contains(created.value.expose()), "{text}");
    assert!(text.contains(&created.info.token_id));
}

#[tokio::test]
async fn list_shows_the_callers_tokens_only() {
    let emulator = emulator().await;
    let (_, alice) = user_client(&emulator, "alice@example.com", false);
    let (_, bob) = user_client(&emulator, "bob@example.com", false);
    let a = alice.create_token(&request("alice's", 600)).await.unwrap();
    let b = bob.create_token(&request("bob's", 600)).await.unwrap();
    let ids: Vec<String> = alice
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.token_id)
        .collect();
    assert!(ids.contains(&a.info.token_id));
    assert!(!ids.contains(&b.info.token_id));
    let listed = alice
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.token_id == a.info.token_id)
        .unwrap();
    assert_eq!(listed.comment.as_deref(), Some("alice's"));
    assert_eq!(listed.expiry_time, a.info.expiry_time);
}

#[tokio::test]
async fn delete_revokes_the_token() {
    let emulator = emulator().await;
    let (_, alice) = user_client(&emulator, "alice@example.com", false);
    let created = alice.create_token(&request("short", 600)).await.unwrap();
    alice.delete_token(&created.info.token_id).await.unwrap();
    assert!(!emulator.accepts(created.value.expose()));
    let ids: Vec<String> = alice
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.token_id)
        .collect();
    assert!(!ids.contains(&created.info.token_id));
}

#[tokio::test]
async fn deleting_an_unknown_token_is_not_found_and_not_retried() {
    let emulator = emulator().await;
    let (_, alice) = user_client(&emulator, "alice@example.com", false);
    let err = alice.delete_token("no-such-token").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(err.error_code(), "RESOURCE_DOES_NOT_EXIST");
    assert!(err.to_string().contains("no-such-token"));
    assert_eq!(emulator.stats().count("token/delete"), 1);
}

#[tokio::test]
async fn a_revoked_credential_is_unauthenticated_and_not_retried() {
    let emulator = emulator().await;
    let (_, alice) = user_client(&emulator, "alice@example.com", false);
    let created = alice
        .create_token(&request("soon revoked", 600))
        .await
        .unwrap();
    let with_revoked = client(config(&emulator.base_url(), pat(created.value.expose())));
    assert!(emulator.revoke(&created.info.token_id));
    let err = with_revoked.list_tokens().await.unwrap_err();
    assert!(matches!(err, Error::Unauthenticated { .. }), "{err:?}");
    assert_eq!(err.error_code(), "403");
    assert!(!err.to_string().contains(created.value.expose()));
    assert_eq!(emulator.stats().count_status("token/list", 403), 1);
}

#[tokio::test]
async fn a_lifetime_above_the_workspace_maximum_is_lifetime_exceeded() {
    let emulator = emulator().await;
    emulator.set_settings(EmulatorConfig {
        max_token_lifetime_days: 1,
        ..EmulatorConfig::default()
    });
    let (_, alice) = user_client(&emulator, "alice@example.com", false);
    let err = alice
        .create_token(&request("too long", 2 * 86_400))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LifetimeExceeded { .. }), "{err:?}");
    assert!(!err.is_retryable() && !err.create_outcome_uncertain());
    alice.create_token(&request("fits", 86_400)).await.unwrap();
}

#[tokio::test]
async fn an_invalid_lifetime_is_invalid_parameter() {
    let emulator = emulator().await;
    let (_, alice) = user_client(&emulator, "alice@example.com", false);
    let err = alice.create_token(&request("zero", 0)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { .. }), "{err:?}");
    assert_eq!(err.error_code(), "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn the_token_quota_is_quota_exceeded() {
    let emulator = emulator().await;
    // The bootstrap PAT is the first live token of the user.
    emulator.set_settings(EmulatorConfig {
        quota_per_owner: 2,
        ..EmulatorConfig::default()
    });
    let (_, alice) = user_client(&emulator, "alice@example.com", false);
    alice.create_token(&request("second", 600)).await.unwrap();
    let err = alice
        .create_token(&request("third", 600))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::QuotaExceeded { .. }), "{err:?}");
    assert_eq!(err.error_code(), "QUOTA_EXCEEDED");
    assert!(!err.is_retryable());
    assert_eq!(emulator.stats().count("token/create"), 2);
}
