//! What the client writes to logs at the most verbose level: request spans, never a secret.
//! Its own test binary, so that the process-wide subscriber sees every event.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use databricks_client::{
    ClientConfig, CreateTokenRequest, Credentials, RetryPolicy, WorkspaceClient,
};
use databricks_emulator::{Emulator, EmulatorConfig};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn client(base_url: &str, credentials: Credentials) -> WorkspaceClient {
    let config = ClientConfig {
        allow_http: true,
        retry: RetryPolicy::default(),
        ..ClientConfig::new(base_url, credentials)
    };
    WorkspaceClient::new(config).unwrap()
}

#[tokio::test]
async fn trace_logs_carry_request_spans_and_no_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("databricks_client=trace,reqwest=trace,hyper=trace,hyper_util=trace")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let admin = emulator.add_user("admin@example.com", true);
    let sp = emulator.add_service_principal("operator", false);
    let m2m = Credentials::OAuthM2M {
        client_id: sp.application_id.clone(),
        client_secret: sp.client_secret.clone().into(),
    };
    let oauth = client(&emulator.base_url(), m2m);
    let request = CreateTokenRequest {
        lifetime_seconds: Some(600),
        comment: Some("logged".into()),
        scopes: None,
    };
    let created = oauth.create_token(&request).await.unwrap();
    oauth.delete_token(&created.info.token_id).await.unwrap();
    let with_pat = client(
        &emulator.base_url(),
        Credentials::Pat {
            token: admin.pat.clone().into(),
        },
    );
    with_pat.list_tokens().await.unwrap();
    let refused = with_pat.delete_token("no-such-token").await.unwrap_err();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("databricks_request"), "{logs}");
    assert!(
        logs.contains("endpoint=\"token/create\"") || logs.contains("endpoint=token/create"),
        "{logs}"
    );
    assert!(
        logs.contains("status=200") && logs.contains("status=404"),
        "{logs}"
    );
    assert!(logs.contains(refused.error_code()), "{logs}");
    let access_tokens = emulator.access_tokens();
    assert!(!access_tokens.is_empty());
    let secrets = [
        created.value.expose(),
        sp.client_secret.as_str(),
        admin.pat.as_str(),
    ];
    for secret in secrets
        .into_iter()
        .chain(access_tokens.iter().map(String::as_str))
    {
        assert!(!logs.contains(secret), "a secret was logged");
    }
}
