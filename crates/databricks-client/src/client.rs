//! The workspace client: one per workspace, cheap to clone. Every call goes through the same
//! path: admission (concurrency cap, rate limit), a bearer from the credentials, one HTTP
//! exchange, error mapping, and the retry rules of its safety class (see `retry.rs`).

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::Method;
use serde::de::DeserializeOwned;
use tracing::{Instrument, debug, debug_span, field};

use crate::{
    ClientConfig, CreateTokenRequest, CreatedToken, CurrentUser, Endpoint, Error,
    ManagedTokenFilter, RequestObserver, SecretString, TokenInfo,
    auth::{AccessGrant, Authenticator},
    error::parse_retry_after,
    limit::Limits,
    retry::{RetryPolicy, Safety, marks_failing},
    secret::scrub,
    stream::TokenArrayScanner,
    types::{CreateTokenResponse, GetTokenResponse, ListTokensResponse},
};

#[derive(Clone)]
pub struct WorkspaceClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    host: String,
    auth: Authenticator,
    limits: Limits,
    retry: RetryPolicy,
    observer: Option<Arc<dyn RequestObserver>>,
    /// The last call gave up on a transient failure and nothing has succeeded since.
    failing: AtomicBool,
}

impl fmt::Debug for WorkspaceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkspaceClient")
            .field("host", &self.inner.host)
            .finish_non_exhaustive()
    }
}

/// One API call as the retry loop sees it.
struct Call<'a> {
    endpoint: Endpoint,
    method: Method,
    path: &'a str,
    query: &'a [(&'a str, String)],
    body: Option<serde_json::Value>,
    safety: Safety,
}

/// A failed attempt, with the bearer it used (to drop it from the cache if it was refused).
struct Failed {
    error: Error,
    bearer: Option<SecretString>,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Failed {
            error,
            bearer: None,
        }
    }
}

const TOKEN_MANAGEMENT: &str = "/api/2.0/token-management/tokens";

impl WorkspaceClient {
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let host = config.checked_host()?;
        config.check_credentials()?;
        let limits = Limits::new(config.max_concurrency, config.requests_per_second)?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!(
                "databricks-token-operator/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| Error::Config {
                message: format!("HTTP client: {e}"),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                host,
                auth: Authenticator::new(config.credentials, config.allow_http),
                limits,
                retry: config.retry,
                observer: config.observer,
                failing: AtomicBool::new(false),
            }),
        })
    }

    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// Whether the credentials are Databricks OAuth ones, which can issue access tokens for
    /// others to hold ([`WorkspaceClient::issue_access_token`]).
    pub fn issues_oauth_tokens(&self) -> bool {
        self.inner.auth.issues_databricks_oauth()
    }

    /// A fresh OAuth access token for the credentials' service principal with `scope`
    /// (space-separated), from the workspace's token endpoint; never this client's own bearer.
    /// One token endpoint call, after the workspace's admission (rate limit, concurrency).
    pub async fn issue_access_token(&self, scope: &str) -> Result<AccessGrant, Error> {
        let _permit = self.inner.limits.admit().await?;
        let inner = &self.inner;
        inner
            .auth
            .issue(&inner.http, &inner.host, inner.observer.as_deref(), scope)
            .await
    }

    /// `GET /api/2.0/preview/scim/v2/Me`: who the credentials authenticate as.
    pub async fn current_user(&self) -> Result<CurrentUser, Error> {
        self.call(Call::read(
            Endpoint::CurrentUser,
            "/api/2.0/preview/scim/v2/Me",
            &[],
        ))
        .await
    }

    /// `POST /api/2.0/token/create`: a token for the authenticated identity.
    pub async fn create_token(&self, request: &CreateTokenRequest) -> Result<CreatedToken, Error> {
        let body = serde_json::to_value(request).map_err(config_error)?;
        let call = Call::create(Endpoint::TokenCreate, "/api/2.0/token/create", body);
        let r: CreateTokenResponse = self.call(call).await?;
        Ok(r.into())
    }

    /// `POST /api/2.0/token-management/on-behalf-of/tokens`: a token for a service principal
    /// (admin only).
    pub async fn create_obo_token(
        &self,
        application_id: &str,
        request: &CreateTokenRequest,
    ) -> Result<CreatedToken, Error> {
        let mut body = serde_json::to_value(request).map_err(config_error)?;
        body["application_id"] = serde_json::Value::String(application_id.to_string());
        let call = Call::create(
            Endpoint::OboCreate,
            "/api/2.0/token-management/on-behalf-of/tokens",
            body,
        );
        let r: CreateTokenResponse = self.call(call).await?;
        Ok(r.into())
    }

    /// `GET /api/2.0/token/list`: the caller's valid tokens.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        let r: ListTokensResponse = self
            .call(Call::read(Endpoint::TokenList, "/api/2.0/token/list", &[]))
            .await?;
        Ok(r.token_infos)
    }

    /// `POST /api/2.0/token/delete`. An unknown or expired id is [`Error::NotFound`].
    pub async fn delete_token(&self, token_id: &str) -> Result<(), Error> {
        let call = Call {
            method: Method::POST,
            body: Some(serde_json::json!({ "token_id": token_id })),
            ..Call::read(Endpoint::TokenDelete, "/api/2.0/token/delete", &[])
        };
        let _: serde_json::Value = self.call(call).await?;
        Ok(())
    }

    /// `GET /api/2.0/token-management/tokens`: every token of the workspace (admin only).
    pub async fn list_managed_tokens(
        &self,
        filter: &ManagedTokenFilter,
    ) -> Result<Vec<TokenInfo>, Error> {
        let query = filter.query();
        let r: ListTokensResponse = self
            .call(Call::read(Endpoint::ManagedList, TOKEN_MANAGEMENT, &query))
            .await?;
        Ok(r.token_infos)
    }

    /// `GET /api/2.0/token-management/tokens`, read as it arrives: `visit` sees each token once,
    /// and no token is kept, so a workspace's 50,000 tokens cost the memory of one. Each attempt
    /// starts from `start()` (a retried list starts over) and the state of the attempt that
    /// read the whole list is returned. A list with an unreadable element is refused whole:
    /// counting on without it would under-report.
    pub async fn visit_managed_tokens<S>(
        &self,
        filter: &ManagedTokenFilter,
        mut start: impl FnMut() -> S,
        mut visit: impl FnMut(&mut S, TokenInfo),
    ) -> Result<S, Error> {
        let query = filter.query();
        let call = Call::read(Endpoint::ManagedList, TOKEN_MANAGEMENT, &query);
        let (state, complete, unreadable) = self
            .run(&call, async |mut response: reqwest::Response| {
                let mut state = start();
                let mut scanner = TokenArrayScanner::default();
                let mut unreadable = 0usize;
                while let Some(chunk) = response.chunk().await? {
                    scanner.feed(&chunk, |parsed| match parsed {
                        Ok(info) => visit(&mut state, info),
                        Err(_) => unreadable += 1,
                    });
                }
                Ok((state, scanner.complete(), unreadable))
            })
            .await?;
        if !complete || unreadable > 0 {
            return Err(Error::Other {
                status: 200,
                code: "UNREADABLE_RESPONSE".into(),
                message: format!(
                    "unreadable {} response ({unreadable} unreadable token(s), complete: {complete})",
                    Endpoint::ManagedList.as_str()
                ),
            });
        }
        Ok(state)
    }

    /// `GET /api/2.0/token-management/tokens/{id}` (admin only).
    pub async fn get_managed_token(&self, token_id: &str) -> Result<TokenInfo, Error> {
        let path = format!("{TOKEN_MANAGEMENT}/{}", encode_segment(token_id));
        let r: GetTokenResponse = self
            .call(Call::read(Endpoint::ManagedGet, &path, &[]))
            .await?;
        Ok(r.token_info)
    }

    /// `DELETE /api/2.0/token-management/tokens/{id}` (admin only).
    pub async fn delete_managed_token(&self, token_id: &str) -> Result<(), Error> {
        let path = format!("{TOKEN_MANAGEMENT}/{}", encode_segment(token_id));
        let call = Call {
            method: Method::DELETE,
            ..Call::read(Endpoint::ManagedDelete, &path, &[])
        };
        let _: serde_json::Value = self.call(call).await?;
        Ok(())
    }

    /// One API call with auth, limits and the retry rules of its safety class.
    async fn call<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, Error> {
        let text = self
            .run(&call, async |r: reqwest::Response| r.text().await)
            .await?;
        decode(&call, &text)
    }

    /// The retry loop of every call: each attempt's 2xx response is handed to `read`, whose
    /// I/O failure (the body lost on the way) counts as a transport error of that attempt.
    async fn run<B>(
        &self,
        call: &Call<'_>,
        mut read: impl AsyncFnMut(reqwest::Response) -> Result<B, reqwest::Error>,
    ) -> Result<B, Error> {
        let inner = &self.inner;
        let started = Instant::now();
        let mut refreshed_auth = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let span = debug_span!(
                "databricks_request",
                endpoint = call.endpoint.as_str(),
                attempt,
                status = field::Empty
            );
            let Failed { error, bearer } =
                match self.attempt(call, &mut read).instrument(span).await {
                    Ok(body) => {
                        inner.failing.store(false, Ordering::Relaxed);
                        return Ok(body);
                    }
                    Err(failed) => failed,
                };
            if !marks_failing(&error) {
                // The host answered as an API does: it is up.
                inner.failing.store(false, Ordering::Relaxed);
            }
            // An exchanged token can be revoked before it expires: drop it and try once more.
            // Safe for creates too: the server refused the request before acting on it.
            if matches!(error, Error::Unauthenticated { .. })
                && inner.auth.exchanges()
                && !refreshed_auth
            {
                if let Some(rejected) = &bearer {
                    inner.auth.invalidate(rejected).await;
                }
                refreshed_auth = true;
                debug!(
                    endpoint = call.endpoint.as_str(),
                    attempt, "access token refused; exchanging again"
                );
                continue;
            }
            let failing = inner.failing.load(Ordering::Relaxed);
            let Some(delay) =
                inner
                    .retry
                    .next_delay(call.safety, &error, attempt, started.elapsed(), failing)
            else {
                if marks_failing(&error) {
                    inner.failing.store(true, Ordering::Relaxed);
                }
                debug!(
                    endpoint = call.endpoint.as_str(),
                    attempt,
                    code = error.error_code(),
                    uncertain = error.create_outcome_uncertain(),
                    "giving up"
                );
                return Err(error);
            };
            debug!(
                endpoint = call.endpoint.as_str(),
                attempt,
                code = error.error_code(),
                delay_ms = delay.as_millis() as u64,
                "retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP exchange. Returns what `read` made of a 2xx response.
    async fn attempt<B>(
        &self,
        call: &Call<'_>,
        read: &mut impl AsyncFnMut(reqwest::Response) -> Result<B, reqwest::Error>,
    ) -> Result<B, Failed> {
        let inner = &self.inner;
        let _permit = inner.limits.admit().await?;
        let bearer = inner
            .auth
            .bearer(&inner.http, &inner.host, inner.observer.as_deref())
            .await?;
        let failed = |error: Error| Failed {
            error,
            bearer: Some(bearer.clone()),
        };
        let mut request = inner
            .http
            .request(call.method.clone(), format!("{}{}", inner.host, call.path))
            .bearer_auth(bearer.expose());
        if !call.query.is_empty() {
            request = request.query(call.query);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let creating = call.safety == Safety::Create;
        let sent_at = Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                self.observe(call.endpoint, "transport", sent_at);
                // Only a connection that never opened certainly did not reach the server.
                let uncertain = creating && !(e.is_connect() || e.is_builder());
                debug!(uncertain, timeout = e.is_timeout(), "transport error");
                return Err(failed(Error::Transport {
                    message: describe(&e),
                    uncertain,
                }));
            }
        };
        let status = response.status();
        tracing::Span::current().record("status", status.as_u16());
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        if status.is_success() {
            return match read(response).await {
                Ok(body) => {
                    self.observe(call.endpoint, status.as_str(), sent_at);
                    debug!(
                        elapsed_ms = sent_at.elapsed().as_millis() as u64,
                        "response"
                    );
                    Ok(body)
                }
                Err(e) => {
                    self.observe(call.endpoint, "transport", sent_at);
                    debug!(uncertain = creating, "response body lost");
                    Err(failed(Error::Transport {
                        message: describe(&e),
                        uncertain: creating,
                    }))
                }
            };
        }
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => {
                self.observe(call.endpoint, "transport", sent_at);
                // The status line came back, so the server had the request: it may have acted.
                debug!(uncertain = creating, "response body lost");
                return Err(failed(Error::Transport {
                    message: describe(&e),
                    uncertain: creating,
                }));
            }
        };
        self.observe(call.endpoint, status.as_str(), sent_at);
        debug!(
            elapsed_ms = sent_at.elapsed().as_millis() as u64,
            "response"
        );
        let mut error = Error::from_response(status.as_u16(), &text, retry_after);
        // A 5xx on a create may come after the token was minted.
        if let Error::Unavailable { uncertain, .. } = &mut error {
            *uncertain = creating;
        }
        Err(failed(error))
    }

    fn observe(&self, endpoint: Endpoint, outcome: &str, since: Instant) {
        if let Some(o) = &self.inner.observer {
            o.observe(endpoint, outcome, since.elapsed());
        }
    }
}

impl<'a> Call<'a> {
    fn read(endpoint: Endpoint, path: &'a str, query: &'a [(&'a str, String)]) -> Self {
        Call {
            endpoint,
            method: Method::GET,
            path,
            query,
            body: None,
            safety: Safety::Idempotent,
        }
    }

    fn create(endpoint: Endpoint, path: &'a str, body: serde_json::Value) -> Self {
        Call {
            endpoint,
            method: Method::POST,
            path,
            query: &[],
            body: Some(body),
            safety: Safety::Create,
        }
    }
}

/// Parse a 2xx body (an empty one counts as `{}`). A create answered with a body this client
/// cannot read may still have minted a token, so that is an uncertain outcome. The parser's
/// message is left out: it can quote the body, and a create's body holds a token value.
fn decode<T: DeserializeOwned>(call: &Call<'_>, text: &str) -> Result<T, Error> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_json::from_str(text).map_err(|e| {
        let message = format!(
            "unreadable {} response ({:?} error at line {} column {})",
            call.endpoint.as_str(),
            e.classify(),
            e.line(),
            e.column()
        );
        match call.safety {
            Safety::Create => Error::Transport {
                message,
                uncertain: true,
            },
            Safety::Idempotent => Error::Other {
                status: 200,
                code: "UNREADABLE_RESPONSE".into(),
                message,
            },
        }
    })
}

fn config_error(e: serde_json::Error) -> Error {
    Error::Config {
        message: e.to_string(),
    }
}

/// A reqwest error with its causes, the URL shortened to its path, scrubbed.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), url.path());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    scrub(&text)
}

fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Credentials;

    #[test]
    fn plain_http_hosts_are_refused_without_the_flag() {
        let creds = Credentials::Pat { token: "x".into() };
        let err = WorkspaceClient::new(ClientConfig::new("http://127.0.0.1:1", creds.clone()))
            .unwrap_err();
        assert!(matches!(err, Error::Config { .. }));
        let config = ClientConfig {
            allow_http: true,
            ..ClientConfig::new("http://127.0.0.1:1/", creds)
        };
        assert_eq!(
            WorkspaceClient::new(config).unwrap().host(),
            "http://127.0.0.1:1"
        );
    }

    #[test]
    fn a_plain_http_entra_authority_is_refused_without_the_flag() {
        let azure = |authority: &str| Credentials::AzureServicePrincipal {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: "s".into(),
            authority_host: authority.into(),
        };
        let Err(err) = WorkspaceClient::new(ClientConfig::new(
            "https://adb-1.2.azuredatabricks.net",
            azure("http://login.example.com"),
        )) else {
            panic!("the client secret would travel over plain http");
        };
        assert!(
            matches!(&err, Error::Config { message } if message.contains("authority host") && message.contains("plain http")),
            "{err}"
        );
        let allowed = ClientConfig {
            allow_http: true,
            ..ClientConfig::new("http://127.0.0.1:1", azure("http://127.0.0.1:2"))
        };
        assert!(WorkspaceClient::new(allowed).is_ok());
        assert!(
            WorkspaceClient::new(ClientConfig::new(
                "https://h",
                azure("https://login.microsoftonline.com/")
            ))
            .is_ok()
        );
    }

    #[test]
    fn zero_concurrency_is_a_config_error() {
        let config = ClientConfig {
            max_concurrency: 0,
            ..ClientConfig::new("https://h", Credentials::Pat { token: "x".into() })
        };
        assert!(matches!(
            WorkspaceClient::new(config),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("ab-1_2"), "ab-1_2");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn an_unreadable_create_response_is_uncertain_and_quotes_nothing() {
        let token = format!("dapi{}", "1".repeat(32));
        let body = format!(r#"{{"token_value": 5, "oops": "{token}"}}"#);
        let call = Call::create(
            Endpoint::TokenCreate,
            "/api/2.0/token/create",
            serde_json::json!({}),
        );
        let e = decode::<CreateTokenResponse>(&call, &body).err().unwrap();
        assert!(e.create_outcome_uncertain(), "{e:?}");
        assert!(!e.to_string().contains(&token));
        let e = decode::<CreateTokenResponse>(&call, r#"{"token_value": "abc"}"#)
            .err()
            .unwrap();
        assert!(e.create_outcome_uncertain());
    }

    #[test]
    fn an_unreadable_read_response_is_not_retried_blindly() {
        let call = Call::read(Endpoint::TokenList, "/api/2.0/token/list", &[]);
        let e = decode::<ListTokensResponse>(&call, "<html>").err().unwrap();
        assert_eq!(e.error_code(), "UNREADABLE_RESPONSE");
        assert!(!e.is_retryable());
    }

    #[test]
    fn an_empty_success_body_is_an_empty_object() {
        let call = Call::read(Endpoint::TokenDelete, "/api/2.0/token/delete", &[]);
        assert_eq!(
            decode::<serde_json::Value>(&call, "").unwrap(),
            serde_json::json!({})
        );
    }
}
