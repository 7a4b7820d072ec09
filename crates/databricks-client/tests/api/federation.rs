//! Workload identity federation through the client: a subject token exchanged at the
//! workspace's token endpoint or presented to Entra as a client assertion, re-exchanged before
//! the access token expires, and refusals sorted into reasons a person can act on.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use databricks_client::{
    Credentials, Error, SecretString,
    federation::{
        ENTRA_TOKEN_EXCHANGE_AUDIENCE, FEDERATION_POLICY_MISMATCH, SubjectTokenFuture,
        SubjectTokenSource, SubjectTokens, TOKEN_EXCHANGE_REFUSED,
    },
};
use databricks_emulator::{
    EmulatorConfig, EmulatorHandle, FederationPolicy, test_issuer::TestIssuer,
};

use crate::support::{client, config, emulator, eventually};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const SUBJECT: &str = "system:serviceaccount:team-a:databricks";

fn issuer() -> &'static TestIssuer {
    static KEY: OnceLock<TestIssuer> = OnceLock::new();
    KEY.get_or_init(|| TestIssuer::generate(ISSUER))
}

/// Signs a fresh token per call, as the TokenRequest API would, and counts the calls.
struct Signer {
    subject: String,
    audience: String,
    lifetime_s: i64,
    calls: AtomicUsize,
}

impl SubjectTokenSource for Signer {
    fn subject_token(&self) -> SubjectTokenFuture<'_> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let jwt = issuer().service_account_token(&self.subject, &self.audience, self.lifetime_s);
        Box::pin(async move { Ok(SecretString::from(jwt)) })
    }
    fn describe(&self) -> String {
        format!("test signer for {}", self.subject)
    }
}

fn signer(subject: &str, audience: &str, lifetime_s: i64) -> Arc<Signer> {
    Arc::new(Signer {
        subject: subject.into(),
        audience: audience.into(),
        lifetime_s,
        calls: AtomicUsize::new(0),
    })
}

fn trusting(emulator: &EmulatorHandle, audience: &str) -> String {
    let sp = emulator.add_service_principal("federated", false);
    emulator.add_federation_policy(
        &sp.application_id,
        FederationPolicy {
            issuer: ISSUER.into(),
            audiences: vec![audience.into()],
            subject: SUBJECT.into(),
            jwks_json: Some(issuer().jwks_json()),
        },
    );
    sp.application_id
}

fn workload_identity(client_id: &str, source: Arc<Signer>) -> Credentials {
    Credentials::WorkloadIdentity {
        client_id: client_id.into(),
        subject: SubjectTokens(source),
    }
}

#[tokio::test]
async fn a_subject_token_is_exchanged_for_the_service_principals_identity() {
    let emulator = emulator().await;
    let audience = format!("{}/oidc/v1/token", emulator.base_url());
    let app_id = trusting(&emulator, &audience);
    let source = signer(SUBJECT, &audience, 600);
    let c = client(config(
        &emulator.base_url(),
        workload_identity(&app_id, source.clone()),
    ));
    let me = c.current_user().await.unwrap();
    assert_eq!(me.user_name.as_deref(), Some(app_id.as_str()));
    c.list_tokens().await.unwrap();
    assert_eq!(
        source.calls.load(Ordering::SeqCst),
        1,
        "the exchanged token is cached, the subject token is not fetched again"
    );
    assert_eq!(emulator.stats().count_status("oidc/token", 200), 1);
}

#[tokio::test]
async fn the_access_token_is_exchanged_again_before_it_expires() {
    let emulator = emulator().await;
    emulator.set_settings(EmulatorConfig {
        access_token_seconds: 2,
        ..EmulatorConfig::default()
    });
    let audience = format!("{}/oidc/v1/token", emulator.base_url());
    let app_id = trusting(&emulator, &audience);
    let source = signer(SUBJECT, &audience, 600);
    let c = client(config(
        &emulator.base_url(),
        workload_identity(&app_id, source.clone()),
    ));
    c.list_tokens().await.unwrap();
    eventually(Duration::from_secs(10), "a second exchange", || async {
        c.list_tokens().await.unwrap();
        source.calls.load(Ordering::SeqCst) >= 2
    })
    .await;
    // Every call was answered: the refresh came before the emulator stopped accepting the
    // first token.
    assert_eq!(emulator.stats().count_status("token/list", 403), 0);
}

#[tokio::test]
async fn another_subject_is_refused_as_a_federation_policy_mismatch() {
    let emulator = emulator().await;
    let audience = format!("{}/oidc/v1/token", emulator.base_url());
    let app_id = trusting(&emulator, &audience);
    let c = client(config(
        &emulator.base_url(),
        workload_identity(
            &app_id,
            signer("system:serviceaccount:team-b:databricks", &audience, 600),
        ),
    ));
    let err = c.list_tokens().await.unwrap_err();
    assert!(
        matches!(&err, Error::Federation { reason, .. } if *reason == FEDERATION_POLICY_MISMATCH),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("team-b") && text.contains(&app_id),
        "the message says whose token was refused for which service principal: {text}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_expired_subject_token_is_refused_as_such() {
    let emulator = emulator().await;
    let audience = format!("{}/oidc/v1/token", emulator.base_url());
    let app_id = trusting(&emulator, &audience);
    let c = client(config(
        &emulator.base_url(),
        workload_identity(&app_id, signer(SUBJECT, &audience, -10)),
    ));
    let err = c.list_tokens().await.unwrap_err();
    assert!(
        matches!(&err, Error::Federation { reason, .. } if *reason == TOKEN_EXCHANGE_REFUSED),
        "{err:?}"
    );
    assert!(err.to_string().contains("expired"), "{err}");
}

#[tokio::test]
async fn an_entra_service_principal_authenticates_with_a_federated_client_assertion() {
    let emulator = emulator().await;
    let sp = emulator.add_service_principal("azure-sp", false);
    let app = emulator.add_entra_app("tenant-1", &sp.application_id);
    emulator.add_entra_federated_credential(
        &app.client_id,
        FederationPolicy {
            issuer: ISSUER.into(),
            audiences: vec![ENTRA_TOKEN_EXCHANGE_AUDIENCE.into()],
            subject: SUBJECT.into(),
            jwks_json: Some(issuer().jwks_json()),
        },
    );
    let federated = |subject: &str| Credentials::AzureFederated {
        tenant_id: "tenant-1".into(),
        client_id: app.client_id.clone(),
        authority_host: emulator.entra_authority(),
        subject: SubjectTokens(signer(subject, ENTRA_TOKEN_EXCHANGE_AUDIENCE, 600)),
    };
    let c = client(config(&emulator.base_url(), federated(SUBJECT)));
    let me = c.current_user().await.unwrap();
    assert_eq!(me.user_name.as_deref(), Some(sp.application_id.as_str()));

    let other = client(config(
        &emulator.base_url(),
        federated("system:serviceaccount:team-b:databricks"),
    ));
    let err = other.current_user().await.unwrap_err();
    assert!(
        matches!(&err, Error::Federation { reason, .. } if *reason == FEDERATION_POLICY_MISMATCH),
        "{err:?}"
    );
    assert!(err.to_string().contains("AADSTS70021"), "{err}");
}

#[tokio::test]
async fn debug_output_names_the_source_not_a_token() {
    let source = signer(SUBJECT, "aud", 600);
    let creds = workload_identity("app", source);
    let text = format!("{creds:?}");
    assert!(text.contains("test signer for"), "{text}");
    assert!(!text.contains("eyJ"), "{text}");
}
