//! Tokens of type `oauth` end to end: a workspace whose admin turned personal access tokens off
//! still serves its pods a bearer token in the same Secret, a Databricks OAuth access token of
//! the workspace's service principal, renewed before it expires. A PAT asked of such a
//! workspace says so, and what to use instead.

mod support;

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use databricks_emulator::{EmulatorConfig, SeededServicePrincipal};
use databricks_token_operator::crd::DatabricksToken;
use serde_json::json;

use support::{
    cluster::repo_root,
    operator::eventually,
    world::{WAIT, World, condition_is, condition_reason},
};

/// PATs other than the world's bootstrap admin PAT (seeded before PATs were turned off).
fn minted_pats(w: &World) -> usize {
    w.emulator
        .live_tokens()
        .iter()
        .filter(|t| t.comment.as_deref() != Some("bootstrap"))
        .count()
}

/// The scopes the tokens of these tests ask for: all APIs, and a second one so that the
/// emulator's count of tokens issued with exactly this scope is theirs alone (the operator's
/// own client asks for `all-apis`).
const SCOPE: &str = "all-apis sql";

/// A world whose workspace has PATs turned off, reached as a (non-admin) service principal
/// with OAuth M2M credentials: the workspace `m2m`.
async fn pat_less_world(
    prefix: &str,
    access_token_seconds: u64,
) -> (World, SeededServicePrincipal) {
    pat_less_world_as(prefix, access_token_seconds, false).await
}

/// The same, with the workspace's service principal a workspace admin or not (the workspace
/// keeps the default `ownIdentityTokens: DenyIfAdmin`).
async fn pat_less_world_as(
    prefix: &str,
    access_token_seconds: u64,
    admin: bool,
) -> (World, SeededServicePrincipal) {
    let config = EmulatorConfig {
        tokens_enabled: false,
        access_token_seconds,
        ..EmulatorConfig::default()
    };
    let w = World::with_emulator(prefix, config).await;
    let sp = w.emulator.add_service_principal("reports-bot", admin);
    w.create_secret(
        "databricks-sp",
        &[
            ("client_id", &sp.application_id),
            ("client_secret", &sp.client_secret),
        ],
    )
    .await;
    w.apply_workspace_spec(
        "m2m",
        json!({"auth": {"oauthM2M": {"secretRef": {"name": "databricks-sp"}}}}),
    )
    .await;
    (w, sp)
}

fn oauth_spec() -> serde_json::Value {
    json!({
        "workspaceRef": {"name": "m2m"},
        "type": "oauth",
        "scopes": ["all-apis", "sql"],
        "secret": {"databricksCfgProfile": "DEFAULT"},
    })
}

/// The official Python SDK, configured from the Secret's env-style keys only, makes one
/// authenticated call. Returns its output (never a token) or panics with it.
async fn sdk_call(python: PathBuf, host: String, token: String) -> String {
    let run = tokio::process::Command::new(python)
        .arg(repo_root().join("tests/sdk/oauth_secret.py"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("DATABRICKS_HOST", host)
        .env("DATABRICKS_TOKEN", token)
        .env("DATABRICKS_AUTH_TYPE", "pat")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the SDK call finishes within a minute")
        .expect("run tests/sdk/oauth_secret.py");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "SDK call with the Secret's token failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn status_token_id(t: &DatabricksToken) -> String {
    t.status
        .as_ref()
        .and_then(|s| s.token_id.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_pat_less_workspace_keeps_a_renewed_access_token_in_the_secret_with_no_gap() {
    // 30 s access tokens: renewed about every 20 s, so several renewals happen in the test.
    let (mut w, sp) = pat_less_world("oauth-renew", 30).await;
    let python = support::tools::python_with_sdk();
    w.start_operator();
    w.create_token("reports", oauth_spec()).await;
    let ready = w.wait_ready("reports").await;
    let status = ready.status.clone().unwrap();
    let first_id = status_token_id(&ready);
    assert!(first_id.starts_with("oauth-"), "{first_id}");
    let expiry = status.expiry_time.unwrap().as_millis();
    let renewal = status.renewal_time.unwrap().as_millis();
    let lifetime = expiry - renewal;
    // Renewal at 2/3 of the 30 s granted: 10 s before expiry (plus at most 5% jitter).
    assert!(
        (9_000..=11_500).contains(&lifetime),
        "renews {lifetime} ms before expiry"
    );

    // Every key holds the access token, and the emulator accepts it.
    let host = w.secret_value("reports", "DATABRICKS_HOST").await.unwrap();
    assert_eq!(host, w.emulator.base_url());
    let token = w.secret_value("reports", "token").await.unwrap();
    assert!(w.emulator.accepts(&token));
    assert!(
        w.emulator.access_tokens().contains(&token),
        "an OAuth access token, not a PAT"
    );
    assert_eq!(
        w.secret_value("reports", "DATABRICKS_TOKEN")
            .await
            .as_deref(),
        Some(token.as_str())
    );
    let cfg = w.secret_value("reports", ".databrickscfg").await.unwrap();
    assert!(cfg.contains(&format!("token = {token}\n")), "{cfg}");
    assert_eq!(minted_pats(&w), 0, "no PAT minted in a PAT-less workspace");

    // Sample the Secret while it is renewed: every value it ever shows is accepted at that
    // moment, and the SDK works with each one.
    let mut seen = BTreeSet::from([token.clone()]);
    let mut sdk_runs = vec![tokio::spawn(sdk_call(python.clone(), host.clone(), token))];
    let mut samples = 0;
    let started = Instant::now();
    while seen.len() < 4 {
        assert!(
            started.elapsed() < WAIT,
            "only {} distinct tokens in {WAIT:?}",
            seen.len()
        );
        let value = w.secret_value("reports", "DATABRICKS_TOKEN").await.unwrap();
        assert!(
            w.emulator.accepts(&value),
            "the Secret held a token Databricks refuses (sample {samples}, {} tokens seen)",
            seen.len()
        );
        if seen.insert(value.clone()) {
            sdk_runs.push(tokio::spawn(sdk_call(python.clone(), host.clone(), value)));
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for run in sdk_runs {
        let out = run.await.expect("SDK task");
        assert!(out.contains(&format!("as {}", sp.application_id)), "{out}");
    }

    // Status follows the Secret: the current id and expiry are the Secret's.
    let t = w
        .wait_replaced("reports", &first_id, "a renewal in status")
        .await;
    let secret = w.secrets().get("reports").await.unwrap();
    let annotations = secret.metadata.annotations.unwrap();
    let status = t.status.unwrap();
    assert!(
        status.previous_tokens.is_empty(),
        "nothing waits to be revoked"
    );
    assert!(status.last_rotation_time.is_some());
    // The Secret may have moved on again since status was read; both name an access token.
    assert!(annotations["dbtoken.dev/token-id"].starts_with("oauth-"));
    assert!(
        w.emulator.issued_for_scope(SCOPE) >= 4,
        "each token asked for the spec's scopes"
    );
    assert!(
        w.metric(r#"dbtoken_rotations_total{reason="Renewal"}"#)
            .await
            >= 3.0,
        "renewals counted like PAT rotations"
    );
}

#[tokio::test]
async fn a_restarted_operator_issues_nothing_while_the_access_token_is_fresh() {
    let (mut w, _) = pat_less_world("oauth-restart", 3600).await;
    w.start_operator();
    w.create_token("reports", oauth_spec()).await;
    w.wait_ready("reports").await;
    assert_eq!(w.emulator.issued_for_scope(SCOPE), 1);
    w.operator.as_mut().unwrap().terminate();
    let before = w.resource_versions().await;
    let value = w.secret_value("reports", "token").await;

    w.start_operator();
    eventually(
        "restarted operator observed the ready token",
        WAIT,
        || async {
            let m = w.operator.as_ref().unwrap().metrics().await;
            m.lines()
                .any(|l| l.starts_with("dbtoken_token_ready{") && l.ends_with(" 1"))
                .then_some(())
        },
    )
    .await;
    assert_eq!(w.emulator.issued_for_scope(SCOPE), 1, "no token issued");
    assert_eq!(before, w.resource_versions().await, "nothing written");
    assert_eq!(w.secret_value("reports", "token").await, value);
}

#[tokio::test]
async fn a_pat_asked_of_a_workspace_without_pats_says_to_use_type_oauth() {
    let (mut w, _) = pat_less_world("oauth-patoff", 3600).await;
    w.start_operator();
    w.create_token(
        "legacy",
        json!({"workspaceRef": {"name": "m2m"}, "lifetime": "24h"}),
    )
    .await;
    let t = w
        .wait_token("legacy", "Degraded", |t| {
            condition_is(t, "Degraded", "True")
        })
        .await;
    let (reason, message) = condition_reason(&t, "Degraded").unwrap();
    assert_eq!(reason, "PersonalAccessTokensDisabled");
    assert!(message.contains("`type: oauth`"), "{message}");
    assert!(condition_is(&t, "Ready", "False"));
    assert_eq!(minted_pats(&w), 0);
}

#[tokio::test]
async fn deleting_an_oauth_token_deletes_its_secret_and_revokes_nothing() {
    let (mut w, _) = pat_less_world("oauth-delete", 3600).await;
    w.start_operator();
    w.create_token("reports", oauth_spec()).await;
    w.wait_ready("reports").await;
    w.delete_token_and_wait("reports").await;
    eventually("Secret deleted", WAIT, || async {
        w.secrets()
            .get_opt("reports")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let stats = w.emulator.stats();
    assert_eq!(stats.count("token/delete"), 0, "no revocation attempted");
    assert_eq!(stats.count("token-management/delete"), 0);
    assert!(
        w.events_of("reports")
            .await
            .iter()
            .any(|(reason, _)| reason == "NothingToRevoke")
    );
}

#[tokio::test]
async fn an_admin_service_principal_is_refused_with_advice_that_fits_an_access_token() {
    let (mut w, _) = pat_less_world_as("oauth-admin", 3600, true).await;
    w.start_operator();
    w.create_token("reports", oauth_spec()).await;
    let t = w
        .wait_token("reports", "Degraded", |t| {
            condition_is(t, "Degraded", "True")
        })
        .await;
    let (reason, message) = condition_reason(&t, "Degraded").unwrap();
    assert_eq!(reason, "OwnIdentityTokenRefused");
    assert!(message.contains("not a workspace admin"), "{message}");
    assert!(!message.contains("onBehalfOf"), "{message}");
    assert_eq!(w.emulator.issued_for_scope(SCOPE), 0, "no token issued");
    assert!(w.secrets().get_opt("reports").await.unwrap().is_none());
}
