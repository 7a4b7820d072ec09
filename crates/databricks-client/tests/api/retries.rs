//! Retries under injected faults: reads and deletes retry through 429/5xx (honouring
//! Retry-After) within the attempt cap and deadline; creates retry only when the server
//! certainly did not act, and otherwise report an uncertain outcome after exactly one attempt.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use databricks_client::{
    ClientConfig, CreateTokenRequest, Endpoint, Error, RetryPolicy, WorkspaceClient,
};
use databricks_emulator::{DropMode, EmulatorHandle, FaultRule, Faults, Latency};

use crate::support::{Recorder, client, config, emulator, pat};

fn fault(endpoint: &str, rule: FaultRule) -> Faults {
    Faults::new(vec![FaultRule {
        endpoint: endpoint.into(),
        ..rule
    }])
}

/// The same fault, for the next request only.
fn once(endpoint: &str, rule: FaultRule) -> Faults {
    fault(
        endpoint,
        FaultRule {
            limit: Some(1),
            ..rule
        },
    )
}

fn errors(status: u16) -> FaultRule {
    FaultRule {
        error_rate: 1.0,
        error_status: Some(status),
        ..FaultRule::default()
    }
}

fn rate_limited(retry_after_seconds: Option<u64>) -> FaultRule {
    FaultRule {
        rate_limit_rate: 1.0,
        retry_after_seconds,
        ..FaultRule::default()
    }
}

fn dropped(mode: DropMode) -> FaultRule {
    FaultRule {
        drop_response_after_create_rate: 1.0,
        drop_mode: mode,
        ..FaultRule::default()
    }
}

fn request(comment: &str) -> CreateTokenRequest {
    CreateTokenRequest {
        lifetime_seconds: Some(600),
        comment: Some(comment.into()),
        scopes: None,
    }
}

/// A client for a new admin, observed by `recorder`.
fn observed(emulator: &EmulatorHandle, recorder: Arc<Recorder>) -> WorkspaceClient {
    let admin = emulator.add_user("admin@example.com", true);
    client(ClientConfig {
        observer: Some(recorder),
        ..config(&emulator.base_url(), pat(&admin.pat))
    })
}

fn tokens_with_comment(emulator: &EmulatorHandle, comment: &str) -> usize {
    emulator
        .live_tokens()
        .iter()
        .filter(|t| t.comment.as_deref() == Some(comment))
        .count()
}

#[tokio::test]
async fn reads_retry_through_a_503() {
    let emulator = emulator().await;
    let recorder = Arc::new(Recorder::default());
    let c = observed(&emulator, recorder.clone());
    emulator.set_faults(once("token/list", errors(503)));
    c.list_tokens().await.unwrap();
    assert_eq!(recorder.outcomes(Endpoint::TokenList), ["503", "200"]);
    assert_eq!(emulator.stats().count_status("token/list", 503), 1);
}

#[tokio::test]
async fn reads_retry_through_500_and_429() {
    let emulator = emulator().await;
    for (endpoint, rule, seen) in [
        ("scim/me", errors(500), "500"),
        ("scim/me", rate_limited(None), "429"),
    ] {
        let recorder = Arc::new(Recorder::default());
        let c = observed(&emulator, recorder.clone());
        emulator.set_faults(once(endpoint, rule));
        c.current_user().await.unwrap();
        assert_eq!(recorder.outcomes(Endpoint::CurrentUser), [seen, "200"]);
    }
}

#[tokio::test]
async fn a_429_retry_waits_for_retry_after() {
    let emulator = emulator().await;
    let recorder = Arc::new(Recorder::default());
    let c = observed(&emulator, recorder.clone());
    emulator.set_faults(once("token/list", rate_limited(Some(1))));
    c.list_tokens().await.unwrap();
    let seen: Vec<_> = recorder
        .seen()
        .into_iter()
        .filter(|s| s.endpoint == Endpoint::TokenList)
        .collect();
    assert_eq!(
        seen.iter().map(|s| s.outcome.as_str()).collect::<Vec<_>>(),
        ["429", "200"]
    );
    // Backoff alone is at most 20 ms in these tests; only Retry-After explains a full second.
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
}

#[tokio::test]
async fn reads_give_up_after_the_attempt_cap() {
    let emulator = emulator().await;
    let c = observed(&emulator, Arc::default());
    emulator.set_faults(fault("token-management/list", errors(503)));
    let err = c
        .list_managed_tokens(&Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable() && !err.create_outcome_uncertain());
    assert_eq!(
        emulator.stats().count_status("token-management/list", 503),
        5
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_ends_the_call_with_the_hint() {
    let emulator = emulator().await;
    let admin = emulator.add_user("admin@example.com", true);
    let retry = RetryPolicy {
        overall_deadline: Duration::from_secs(5),
        ..crate::support::fast_retry()
    };
    let c = client(ClientConfig {
        retry,
        ..config(&emulator.base_url(), pat(&admin.pat))
    });
    emulator.set_faults(fault("token/list", rate_limited(Some(30))));
    let started = Instant::now();
    let err = c.list_tokens().await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(emulator.stats().count("token/list"), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn deletes_retry_through_a_503() {
    let emulator = emulator().await;
    let recorder = Arc::new(Recorder::default());
    let c = observed(&emulator, recorder.clone());
    let created = c.create_token(&request("to delete")).await.unwrap();
    emulator.set_faults(once("token/delete", errors(503)));
    c.delete_token(&created.info.token_id).await.unwrap();
    assert_eq!(recorder.outcomes(Endpoint::TokenDelete), ["503", "200"]);
    assert!(!emulator.accepts(created.value.expose()));
}

#[tokio::test]
async fn managed_reads_and_deletes_retry_through_a_429() {
    let emulator = emulator().await;
    let recorder = Arc::new(Recorder::default());
    let c = observed(&emulator, recorder.clone());
    let created = c.create_token(&request("managed")).await.unwrap();
    emulator.set_faults(once("token-management/get", rate_limited(None)));
    c.get_managed_token(&created.info.token_id).await.unwrap();
    emulator.set_faults(once("token-management/delete", rate_limited(None)));
    c.delete_managed_token(&created.info.token_id)
        .await
        .unwrap();
    assert_eq!(recorder.outcomes(Endpoint::ManagedGet), ["429", "200"]);
    assert_eq!(recorder.outcomes(Endpoint::ManagedDelete), ["429", "200"]);
    assert!(!emulator.accepts(created.value.expose()));
}

#[tokio::test]
async fn create_is_not_retried_after_a_5xx() {
    for status in [500, 503] {
        let emulator = emulator().await;
        let c = observed(&emulator, Arc::default());
        emulator.set_faults(fault("token/create", errors(status)));
        let err = c.create_token(&request("uncertain")).await.unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(err.create_outcome_uncertain(), "{status}: {err:?}");
        assert!(err.is_retryable());
        assert_eq!(emulator.stats().count("token/create"), 1, "{status}");
    }
}

#[tokio::test]
async fn obo_create_is_not_retried_after_a_500() {
    let emulator = emulator().await;
    let c = observed(&emulator, Arc::default());
    let sp = emulator.add_service_principal("etl", false);
    emulator.set_faults(fault("obo/create", errors(500)));
    let err = c
        .create_obo_token(&sp.application_id, &request("uncertain"))
        .await
        .unwrap_err();
    assert!(err.create_outcome_uncertain(), "{err:?}");
    assert_eq!(emulator.stats().count("obo/create"), 1);
}

#[tokio::test]
async fn a_create_whose_response_is_lost_is_uncertain_and_not_retried() {
    let emulator = emulator().await;
    let recorder = Arc::new(Recorder::default());
    let c = observed(&emulator, recorder.clone());
    emulator.set_faults(fault("token/create", dropped(DropMode::Close)));
    let err = c.create_token(&request("lost response")).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.create_outcome_uncertain());
    assert_eq!(recorder.outcomes(Endpoint::TokenCreate), ["transport"]);
    assert_eq!(emulator.stats().count("token/create"), 1);
    // The server did mint it: exactly the case the orphan sweep exists for.
    assert_eq!(tokens_with_comment(&emulator, "lost response"), 1);
}

#[tokio::test]
async fn a_create_answered_by_a_proxy_error_after_minting_is_uncertain() {
    for (mode, status) in [(DropMode::BadGateway, 502), (DropMode::GatewayTimeout, 504)] {
        let emulator = emulator().await;
        let c = observed(&emulator, Arc::default());
        emulator.set_faults(fault("token/create", dropped(mode)));
        let err = c.create_token(&request("proxy error")).await.unwrap_err();
        assert!(
            matches!(err, Error::Unavailable { status: s, .. } if s == status),
            "{err:?}"
        );
        assert!(err.create_outcome_uncertain());
        assert_eq!(emulator.stats().count("token/create"), 1);
        assert_eq!(tokens_with_comment(&emulator, "proxy error"), 1);
    }
}

#[tokio::test]
async fn an_obo_create_whose_response_is_lost_is_uncertain() {
    let emulator = emulator().await;
    let c = observed(&emulator, Arc::default());
    let sp = emulator.add_service_principal("etl", false);
    emulator.set_faults(fault("obo/create", dropped(DropMode::Close)));
    let err = c
        .create_obo_token(&sp.application_id, &request("lost obo"))
        .await
        .unwrap_err();
    assert!(err.create_outcome_uncertain(), "{err:?}");
    assert_eq!(emulator.stats().count("obo/create"), 1);
    assert_eq!(tokens_with_comment(&emulator, "lost obo"), 1);
}

#[tokio::test]
async fn a_create_that_times_out_is_uncertain_and_not_retried() {
    let emulator = emulator().await;
    let admin = emulator.add_user("admin@example.com", true);
    let recorder = Arc::new(Recorder::default());
    let c = client(ClientConfig {
        request_timeout: Duration::from_millis(300),
        observer: Some(recorder.clone()),
        ..config(&emulator.base_url(), pat(&admin.pat))
    });
    emulator.set_faults(fault(
        "token/create",
        FaultRule {
            latency_ms: Some(Latency::Fixed(3_000)),
            ..FaultRule::default()
        },
    ));
    let err = c.create_token(&request("slow")).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.create_outcome_uncertain());
    assert_eq!(recorder.outcomes(Endpoint::TokenCreate), ["transport"]);
}

#[tokio::test]
async fn create_is_retried_after_a_429_and_mints_once() {
    let emulator = emulator().await;
    let recorder = Arc::new(Recorder::default());
    let c = observed(&emulator, recorder.clone());
    emulator.set_faults(once("token/create", rate_limited(None)));
    c.create_token(&request("after 429")).await.unwrap();
    assert_eq!(recorder.outcomes(Endpoint::TokenCreate), ["429", "200"]);
    assert_eq!(tokens_with_comment(&emulator, "after 429"), 1);
}

#[tokio::test]
async fn create_is_retried_when_the_connection_is_refused() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let recorder = Arc::new(Recorder::default());
    let c = client(ClientConfig {
        observer: Some(recorder.clone()),
        ..config(&format!("http://127.0.0.1:{port}"), pat("unused"))
    });
    let err = c.create_token(&request("never sent")).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(!err.create_outcome_uncertain());
    assert_eq!(recorder.outcomes(Endpoint::TokenCreate), ["transport"; 5]);
}

/// A host that keeps failing gets one attempt per call once a call has given up: the caller's
/// backoff paces it, and the client's retries would only multiply it. A success restores them.
#[tokio::test]
async fn once_a_call_gave_up_the_next_ones_make_one_attempt_until_a_success() {
    let emulator = emulator().await;
    let c = observed(&emulator, Arc::default());
    emulator.set_faults(fault("token/list", errors(502)));
    c.list_tokens().await.unwrap_err();
    assert_eq!(
        emulator.stats().count("token/list"),
        5,
        "the first call retries"
    );
    c.list_tokens().await.unwrap_err();
    assert_eq!(
        emulator.stats().count("token/list"),
        6,
        "a later call makes one attempt"
    );

    emulator.clear_faults();
    c.list_tokens().await.unwrap();
    emulator.set_faults(once("token/list", errors(502)));
    c.list_tokens().await.unwrap();
    assert_eq!(
        emulator.stats().count_status("token/list", 200),
        2,
        "after a success, a single failure is retried again"
    );
}
