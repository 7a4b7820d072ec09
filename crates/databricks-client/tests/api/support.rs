//! Fixtures: an in-process emulator, clients for its identities, an observer that records every
//! HTTP exchange, and a small scripted HTTP server for what the emulator cannot stage.

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use databricks_client::{
    ClientConfig, Credentials, Endpoint, RequestObserver, RetryPolicy, WorkspaceClient,
};
use databricks_emulator::{Emulator, EmulatorConfig, EmulatorHandle};

pub async fn emulator() -> EmulatorHandle {
    Emulator::start(EmulatorConfig::default())
        .await
        .expect("start emulator")
}

/// Retries quick enough for tests; still five attempts.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
        overall_deadline: Duration::from_secs(10),
    }
}

pub fn config(base_url: &str, credentials: Credentials) -> ClientConfig {
    ClientConfig {
        allow_http: true,
        request_timeout: Duration::from_secs(5),
        requests_per_second: 1_000.0,
        max_concurrency: 64,
        retry: fast_retry(),
        ..ClientConfig::new(base_url, credentials)
    }
}

pub fn pat(token: &str) -> Credentials {
    Credentials::Pat {
        token: token.to_string().into(),
    }
}

pub fn client(config: ClientConfig) -> WorkspaceClient {
    WorkspaceClient::new(config).expect("client")
}

/// A client authenticated with a new user's bootstrap PAT.
pub fn user_client(
    emulator: &EmulatorHandle,
    name: &str,
    is_admin: bool,
) -> (i64, WorkspaceClient) {
    let user = emulator.add_user(name, is_admin);
    (
        user.id,
        client(config(&emulator.base_url(), pat(&user.pat))),
    )
}

/// One recorded HTTP exchange.
#[derive(Clone, Debug)]
pub struct Seen {
    pub endpoint: Endpoint,
    pub outcome: String,
    pub at: Instant,
}

/// Records what the client reports.
#[derive(Default)]
pub struct Recorder {
    seen: Mutex<Vec<Seen>>,
}

impl Recorder {
    pub fn outcomes(&self, endpoint: Endpoint) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|s| s.endpoint == endpoint)
            .map(|s| s.outcome)
            .collect()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl RequestObserver for Recorder {
    fn observe(&self, endpoint: Endpoint, outcome: &str, _elapsed: Duration) {
        self.seen.lock().unwrap().push(Seen {
            endpoint,
            outcome: outcome.to_string(),
            at: Instant::now(),
        });
    }
}

/// Poll `check` until it holds, or fail after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A request as the scripted server saw it.
pub struct StubRequest {
    pub base_url: String,
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
}

/// What the scripted server observed.
#[derive(Default)]
pub struct StubLog {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    requests: Mutex<Vec<(Instant, String)>>,
}

impl StubLog {
    /// Most requests ever handled at the same time.
    pub fn peak_in_flight(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
    /// Arrival times of requests whose path starts with `prefix`.
    pub fn arrivals(&self, prefix: &str) -> Vec<Instant> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p)| p.starts_with(prefix))
            .map(|(t, _)| *t)
            .collect()
    }
    pub fn count(&self, prefix: &str) -> usize {
        self.arrivals(prefix).len()
    }
}

pub struct Stub {
    pub base_url: String,
    pub log: Arc<StubLog>,
    _server: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self._server.abort();
    }
}

/// Serve `script` on a free local port: every request gets the reply it computes.
pub async fn stub(script: impl Fn(&StubRequest) -> Reply + Send + Sync + 'static) -> Stub {
    use axum::{body::Bytes, extract::Request, http::StatusCode, response::IntoResponse};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base_url = format!("http://{}", listener.local_addr().expect("addr"));
    let log = Arc::new(StubLog::default());
    let script = Arc::new(script);
    let (state, base) = (log.clone(), base_url.clone());
    let app = axum::Router::new().fallback(move |request: Request| {
        let (log, script, base_url) = (state.clone(), script.clone(), base.clone());
        async move {
            let now = log.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            log.peak.fetch_max(now, Ordering::SeqCst);
            let (parts, body) = request.into_parts();
            let path = parts.uri.path().to_string();
            log.requests
                .lock()
                .unwrap()
                .push((Instant::now(), path.clone()));
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_else(|_| Bytes::new());
            let req = StubRequest {
                base_url,
                method: parts.method.to_string(),
                path,
                authorization: parts
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from),
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            let reply = script(&req);
            tokio::time::sleep(reply.delay).await;
            log.in_flight.fetch_sub(1, Ordering::SeqCst);
            let mut response =
                (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            for (name, value) in reply.headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
    });
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Stub {
        base_url,
        log,
        _server: server,
    }
}
