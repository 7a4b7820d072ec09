//! Token management (admin): on-behalf-of creates, workspace-wide list with filters, get, delete.

use databricks_client::{CreateTokenRequest, Error, ManagedTokenFilter};
use databricks_emulator::EmulatorConfig;

use crate::support::{client, config, emulator, pat, user_client};

fn request(comment: &str) -> CreateTokenRequest {
    CreateTokenRequest {
        lifetime_seconds: Some(3_600),
        comment: Some(comment.into()),
        scopes: None,
    }
}

#[tokio::test]
async fn obo_create_mints_a_token_owned_by_the_service_principal() {
    let emulator = emulator().await;
    let (admin_id, admin) = user_client(&emulator, "admin@example.com", true);
    let sp = emulator.add_service_principal("etl", false);
    let created = admin
        .create_obo_token(&sp.application_id, &request("etl job"))
        .await
        .unwrap();
    assert_eq!(created.info.comment.as_deref(), Some("etl job"));
    let live = emulator
        .live_tokens()
        .into_iter()
        .find(|t| t.token_id == created.info.token_id)
        .unwrap();
    assert_eq!((live.owner_id, live.created_by_id), (sp.id, admin_id));
    let as_sp = client(config(&emulator.base_url(), pat(created.value.expose())));
    assert_eq!(
        as_sp.current_user().await.unwrap().user_name.as_deref(),
        Some(sp.application_id.as_str())
    );
}

#[tokio::test]
async fn obo_for_an_unknown_application_is_not_found() {
    let emulator = emulator().await;
    let (_, admin) = user_client(&emulator, "admin@example.com", true);
    let err = admin
        .create_obo_token("00000000-0000-0000-0000-000000000000", &request("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(!err.create_outcome_uncertain());
}

#[tokio::test]
async fn obo_disabled_in_the_workspace_is_permission_denied() {
    let emulator = emulator().await;
    emulator.set_settings(EmulatorConfig {
        obo_enabled: false,
        ..EmulatorConfig::default()
    });
    let (_, admin) = user_client(&emulator, "admin@example.com", true);
    let sp = emulator.add_service_principal("etl", false);
    let err = admin
        .create_obo_token(&sp.application_id, &request("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("not enabled"), "{err}");
}

#[tokio::test]
async fn managed_list_filters_by_creator_id_and_user_name() {
    let emulator = emulator().await;
    let (admin_id, admin) = user_client(&emulator, "admin@example.com", true);
    let (_, bob) = user_client(&emulator, "bob@example.com", false);
    let sp = emulator.add_service_principal("etl", false);
    let by_admin = admin
        .create_obo_token(&sp.application_id, &request("obo"))
        .await
        .unwrap();
    let by_bob = bob.create_token(&request("bob's")).await.unwrap();

    let all = admin
        .list_managed_tokens(&ManagedTokenFilter::default())
        .await
        .unwrap();
    let ids: Vec<&str> = all.iter().map(|t| t.token_id.as_str()).collect();
    assert!(
        ids.contains(&by_admin.info.token_id.as_str())
            && ids.contains(&by_bob.info.token_id.as_str())
    );

    let filter = ManagedTokenFilter {
        created_by_id: Some(admin_id),
        created_by_username: None,
    };
    let mine = admin.list_managed_tokens(&filter).await.unwrap();
    assert!(
        mine.iter().all(|t| t.created_by_id == Some(admin_id)),
        "{mine:?}"
    );
    assert!(mine.iter().any(|t| t.token_id == by_admin.info.token_id));

    let filter = ManagedTokenFilter {
        created_by_id: None,
        created_by_username: Some("bob@example.com".into()),
    };
    let bobs = admin.list_managed_tokens(&filter).await.unwrap();
    assert!(bobs.iter().any(|t| t.token_id == by_bob.info.token_id));
    assert!(
        bobs.iter()
            .all(|t| t.created_by_username.as_deref() == Some("bob@example.com")),
        "{bobs:?}"
    );
    assert!(!bobs.iter().any(|t| t.token_id == by_admin.info.token_id));
}

#[tokio::test]
async fn managed_get_returns_creator_and_owner() {
    let emulator = emulator().await;
    let (admin_id, admin) = user_client(&emulator, "admin@example.com", true);
    let sp = emulator.add_service_principal("etl", false);
    let created = admin
        .create_obo_token(&sp.application_id, &request("obo"))
        .await
        .unwrap();
    let info = admin
        .get_managed_token(&created.info.token_id)
        .await
        .unwrap();
    assert_eq!(info.token_id, created.info.token_id);
    assert_eq!(info.owner_id, Some(sp.id));
    assert_eq!(info.created_by_id, Some(admin_id));
    assert_eq!(
        info.created_by_username.as_deref(),
        Some("admin@example.com")
    );
    assert_eq!(info.expiry_time, created.info.expiry_time);
}

#[tokio::test]
async fn managed_get_of_an_unknown_token_is_not_found() {
    let emulator = emulator().await;
    let (_, admin) = user_client(&emulator, "admin@example.com", true);
    let err = admin.get_managed_token("no-such-token").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(emulator.stats().count("token-management/get"), 1);
}

#[tokio::test]
async fn managed_delete_revokes_and_a_second_delete_is_not_found() {
    let emulator = emulator().await;
    let (_, admin) = user_client(&emulator, "admin@example.com", true);
    let (_, bob) = user_client(&emulator, "bob@example.com", false);
    let created = bob.create_token(&request("bob's")).await.unwrap();
    admin
        .delete_managed_token(&created.info.token_id)
        .await
        .unwrap();
    assert!(!emulator.accepts(created.value.expose()));
    let err = admin
        .delete_managed_token(&created.info.token_id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn non_admins_are_denied_token_management() {
    let emulator = emulator().await;
    let (_, bob) = user_client(&emulator, "bob@example.com", false);
    let own = bob.create_token(&request("bob's")).await.unwrap();
    let sp = emulator.add_service_principal("etl", false);
    let errors = [
        bob.list_managed_tokens(&ManagedTokenFilter::default())
            .await
            .unwrap_err(),
        bob.get_managed_token(&own.info.token_id).await.unwrap_err(),
        bob.delete_managed_token(&own.info.token_id)
            .await
            .unwrap_err(),
        bob.create_obo_token(&sp.application_id, &request("x"))
            .await
            .unwrap_err(),
    ];
    for err in errors {
        assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
        assert_eq!(err.error_code(), "PERMISSION_DENIED");
        assert!(!err.is_retryable() && !err.create_outcome_uncertain());
    }
    assert!(emulator.accepts(own.value.expose()));
}

#[tokio::test]
async fn a_visited_list_sees_every_token_once_like_the_whole_list() {
    use databricks_emulator::{FaultRule, Faults, SeedToken};
    let emulator = emulator().await;
    let (admin_id, admin) = user_client(&emulator, "admin@example.com", true);
    for i in 0..250 {
        emulator.seed_token(&SeedToken {
            owner_id: admin_id,
            created_by_id: None,
            comment: format!("seeded {i} with \"quotes\" and ] brackets"),
            lifetime_seconds: (i % 2 == 0).then_some(3_600 + i),
        });
    }
    let whole = admin
        .list_managed_tokens(&ManagedTokenFilter::default())
        .await
        .unwrap();
    // One 503 first: the retried list is read from the start, nothing counted twice.
    emulator.set_faults(Faults::new(vec![FaultRule {
        error_rate: 1.0,
        limit: Some(1),
        ..FaultRule::on("token-management/list")
    }]));
    let visited = admin
        .visit_managed_tokens(&ManagedTokenFilter::default(), Vec::new, |seen, t| {
            seen.push(t)
        })
        .await
        .unwrap();
    assert_eq!(visited, whole);
    assert_eq!(visited.len(), 251, "250 seeded and the bootstrap PAT");
    assert_eq!(
        emulator.stats().count_status("token-management/list", 503),
        1
    );
}
