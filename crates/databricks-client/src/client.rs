//! The workspace client: one per workspace, cheap to clone, rate-limited and concurrency-capped
//! so a fleet of tokens never floods one workspace.

use std::{
    fmt,
    num::NonZeroU32,
    sync::Arc,
    time::{Duration, Instant},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tracing::debug;

use crate::{
    CreateTokenRequest, CreatedToken, Credentials, CurrentUser, Error, ManagedTokenFilter,
    SecretString, TokenInfo,
    auth::Authenticator,
    error::parse_retry_after,
    retry::{RetryPolicy, Safety},
    secret::scrub,
    types::{CreateTokenResponse, GetTokenResponse, ListTokensResponse},
};

/// The API calls, as labelled in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    TokenCreate,
    TokenList,
    TokenDelete,
    ManagedList,
    ManagedGet,
    ManagedDelete,
    OboCreate,
    CurrentUser,
    OAuthToken,
    EntraToken,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::TokenCreate => "token/create",
            Endpoint::TokenList => "token/list",
            Endpoint::TokenDelete => "token/delete",
            Endpoint::ManagedList => "token-management/list",
            Endpoint::ManagedGet => "token-management/get",
            Endpoint::ManagedDelete => "token-management/delete",
            Endpoint::OboCreate => "token-management/on-behalf-of",
            Endpoint::CurrentUser => "scim/me",
            Endpoint::OAuthToken => "oidc/token",
            Endpoint::EntraToken => "entra/token",
        }
    }
}

/// Told of every HTTP exchange (for metrics). `outcome` is the status code, or "transport".
pub trait RequestObserver: Send + Sync {
    fn observe(&self, endpoint: Endpoint, outcome: &str, elapsed: Duration);
}

#[derive(Clone)]
pub struct ClientConfig {
    /// Workspace URL without a trailing slash, e.g. `https://adb-1.2.azuredatabricks.net`.
    pub host: String,
    pub credentials: Credentials,
    /// Accept `http://` hosts (local emulator only).
    pub allow_http: bool,
    pub request_timeout: Duration,
    pub max_concurrency: usize,
    pub requests_per_second: f64,
    pub retry: RetryPolicy,
    pub observer: Option<Arc<dyn RequestObserver>>,
}

impl ClientConfig {
    pub fn new(host: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            host: host.into(),
            credentials,
            allow_http: false,
            request_timeout: Duration::from_secs(30),
            max_concurrency: 8,
            // The Go SDK's default; token-management is reported to allow about 40/s.
            requests_per_second: 15.0,
            retry: RetryPolicy::default(),
            observer: None,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("host", &self.host)
            .field("credentials", &self.credentials)
            .field("allow_http", &self.allow_http)
            .field("max_concurrency", &self.max_concurrency)
            .field("requests_per_second", &self.requests_per_second)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct WorkspaceClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    host: String,
    auth: Authenticator,
    limiter: DefaultDirectRateLimiter,
    in_flight: Semaphore,
    retry: RetryPolicy,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl fmt::Debug for WorkspaceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkspaceClient")
            .field("host", &self.inner.host)
            .finish_non_exhaustive()
    }
}

impl WorkspaceClient {
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let host = config.host.trim_end_matches('/').to_string();
        let scheme_ok =
            host.starts_with("https://") || (config.allow_http && host.starts_with("http://"));
        if !scheme_ok {
            return Err(Error::Config {
                message: format!(
                    "host {host:?} must be an https:// URL (plain http only with the insecure flag)"
                ),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!(
                "databricks-token-operator/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| Error::Config {
                message: format!("HTTP client: {e}"),
            })?;
        let rps = config.requests_per_second.clamp(0.01, 100_000.0);
        let burst = NonZeroU32::new(rps.ceil() as u32).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / rps))
            .ok_or_else(|| Error::Config {
                message: "requests_per_second must be positive".into(),
            })?
            .allow_burst(burst);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                host,
                auth: Authenticator::new(config.credentials),
                limiter: RateLimiter::direct(quota),
                in_flight: Semaphore::new(config.max_concurrency.max(1)),
                retry: config.retry,
                observer: config.observer,
            }),
        })
    }

    pub fn host(&self) -> &str {
        &self.inner.host
    }

    pub async fn current_user(&self) -> Result<CurrentUser, Error> {
        self.call(
            Endpoint::CurrentUser,
            Method::GET,
            "/api/2.0/preview/scim/v2/Me",
            &[],
            None,
            Safety::Idempotent,
        )
        .await
    }

    pub async fn create_token(&self, request: &CreateTokenRequest) -> Result<CreatedToken, Error> {
        let body = serde_json::to_value(request).map_err(config_error)?;
        let r: CreateTokenResponse = self
            .call(
                Endpoint::TokenCreate,
                Method::POST,
                "/api/2.0/token/create",
                &[],
                Some(body),
                Safety::Create,
            )
            .await?;
        Ok(CreatedToken {
            value: SecretString::from(r.token_value),
            info: r.token_info,
        })
    }

    pub async fn create_obo_token(
        &self,
        application_id: &str,
        request: &CreateTokenRequest,
    ) -> Result<CreatedToken, Error> {
        let mut body = serde_json::to_value(request).map_err(config_error)?;
        body["application_id"] = serde_json::Value::String(application_id.to_string());
        let path = "/api/2.0/token-management/on-behalf-of/tokens";
        let r: CreateTokenResponse = self
            .call(
                Endpoint::OboCreate,
                Method::POST,
                path,
                &[],
                Some(body),
                Safety::Create,
            )
            .await?;
        Ok(CreatedToken {
            value: SecretString::from(r.token_value),
            info: r.token_info,
        })
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        let r: ListTokensResponse = self
            .call(
                Endpoint::TokenList,
                Method::GET,
                "/api/2.0/token/list",
                &[],
                None,
                Safety::Idempotent,
            )
            .await?;
        Ok(r.token_infos)
    }

    pub async fn delete_token(&self, token_id: &str) -> Result<(), Error> {
        let body = serde_json::json!({ "token_id": token_id });
        let _: serde_json::Value = self
            .call(
                Endpoint::TokenDelete,
                Method::POST,
                "/api/2.0/token/delete",
                &[],
                Some(body),
                Safety::Idempotent,
            )
            .await?;
        Ok(())
    }

    pub async fn list_managed_tokens(
        &self,
        filter: &ManagedTokenFilter,
    ) -> Result<Vec<TokenInfo>, Error> {
        let mut query = Vec::new();
        if let Some(id) = filter.created_by_id {
            query.push(("created_by_id", id.to_string()));
        }
        if let Some(name) = &filter.created_by_username {
            query.push(("created_by_username", name.clone()));
        }
        let path = "/api/2.0/token-management/tokens";
        let r: ListTokensResponse = self
            .call(
                Endpoint::ManagedList,
                Method::GET,
                path,
                &query,
                None,
                Safety::Idempotent,
            )
            .await?;
        Ok(r.token_infos)
    }

    pub async fn get_managed_token(&self, token_id: &str) -> Result<TokenInfo, Error> {
        let path = format!(
            "/api/2.0/token-management/tokens/{}",
            encode_segment(token_id)
        );
        let r: GetTokenResponse = self
            .call(
                Endpoint::ManagedGet,
                Method::GET,
                &path,
                &[],
                None,
                Safety::Idempotent,
            )
            .await?;
        Ok(r.token_info)
    }

    pub async fn delete_managed_token(&self, token_id: &str) -> Result<(), Error> {
        let path = format!(
            "/api/2.0/token-management/tokens/{}",
            encode_segment(token_id)
        );
        let _: serde_json::Value = self
            .call(
                Endpoint::ManagedDelete,
                Method::DELETE,
                &path,
                &[],
                None,
                Safety::Idempotent,
            )
            .await?;
        Ok(())
    }

    /// One API call with auth, limits and the retry rules of its safety class.
    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
        safety: Safety,
    ) -> Result<T, Error> {
        let inner = &self.inner;
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut refreshed_auth = false;
        loop {
            attempt += 1;
            let error = match self
                .attempt(endpoint, &method, path, query, body.as_ref(), safety)
                .await
            {
                Ok(text) => {
                    let text = if text.trim().is_empty() {
                        "{}".to_string()
                    } else {
                        text
                    };
                    return serde_json::from_str(&text).map_err(|e| Error::Other {
                        status: 200,
                        code: "UNREADABLE_RESPONSE".into(),
                        message: format!("{}: {e}", endpoint.as_str()),
                    });
                }
                Err(e) => e,
            };
            // A cached OAuth token may have been revoked early: exchange again, once.
            if matches!(error, Error::Unauthenticated { .. })
                && inner.auth.exchanges()
                && !refreshed_auth
            {
                inner.auth.invalidate().await;
                refreshed_auth = true;
                continue;
            }
            let may_retry = error.is_retryable()
                && match safety {
                    Safety::Idempotent => true,
                    // Rate limiting and refused connections happen before the server acts.
                    Safety::Create => !error.create_outcome_uncertain(),
                };
            if !may_retry || attempt >= inner.retry.max_attempts {
                return Err(error);
            }
            let delay = inner.retry.delay(attempt, error.retry_after());
            if started.elapsed() + delay > inner.retry.overall_deadline {
                return Err(error);
            }
            debug!(
                endpoint = endpoint.as_str(),
                attempt,
                delay_ms = delay.as_millis() as u64,
                code = error.error_code(),
                "retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP exchange. Returns the body of a 2xx response.
    async fn attempt(
        &self,
        endpoint: Endpoint,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        safety: Safety,
    ) -> Result<String, Error> {
        let inner = &self.inner;
        let _permit = inner.in_flight.acquire().await.map_err(|_| Error::Config {
            message: "client closed".into(),
        })?;
        inner.limiter.until_ready().await;
        let bearer = inner
            .auth
            .bearer(&inner.http, &inner.host, inner.observer.as_deref())
            .await?;
        let mut request = inner
            .http
            .request(method.clone(), format!("{}{path}", inner.host))
            .bearer_auth(bearer.expose());
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(b) = body {
            request = request.json(b);
        }
        let sent_at = Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                self.observe(endpoint, "transport", sent_at);
                // Only a connection that never opened certainly did not reach the server.
                let uncertain = safety == Safety::Create && !e.is_connect();
                debug!(endpoint = endpoint.as_str(), uncertain, "transport error");
                return Err(Error::Transport {
                    message: scrub(&without_url(&e)),
                    uncertain,
                });
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => {
                self.observe(endpoint, "transport", sent_at);
                let uncertain = safety == Safety::Create;
                return Err(Error::Transport {
                    message: scrub(&without_url(&e)),
                    uncertain,
                });
            }
        };
        self.observe(endpoint, status.as_str(), sent_at);
        debug!(
            endpoint = endpoint.as_str(),
            status = status.as_u16(),
            "response"
        );
        if status.is_success() {
            return Ok(text);
        }
        let mut error = Error::from_response(status.as_u16(), &text, retry_after);
        // A 5xx on a create may come after the token was minted.
        if safety == Safety::Create
            && status.is_server_error()
            && status != StatusCode::NOT_IMPLEMENTED
            && let Error::Unavailable { uncertain, .. } = &mut error
        {
            *uncertain = true;
        }
        Err(error)
    }

    fn observe(&self, endpoint: Endpoint, outcome: &str, since: Instant) {
        if let Some(o) = &self.inner.observer {
            o.observe(endpoint, outcome, since.elapsed());
        }
    }
}

fn config_error(e: serde_json::Error) -> Error {
    Error::Config {
        message: e.to_string(),
    }
}

/// reqwest errors name the URL; keep the message short and free of query strings.
fn without_url(e: &reqwest::Error) -> String {
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
    text
}

fn encode_segment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.~".contains(c) {
                c.to_string()
            } else {
                format!("%{:02X}", c as u32)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_needs_the_flag() {
        let creds = Credentials::Pat { token: "x".into() };
        let err = WorkspaceClient::new(ClientConfig::new("http://127.0.0.1:1", creds.clone()))
            .unwrap_err();
        assert!(matches!(err, Error::Config { .. }));
        let mut config = ClientConfig::new("http://127.0.0.1:1/", creds);
        config.allow_http = true;
        assert_eq!(
            WorkspaceClient::new(config).unwrap().host(),
            "http://127.0.0.1:1"
        );
    }

    #[test]
    fn config_debug_hides_credentials() {
        let config = ClientConfig::new(
            "https://h",
            Credentials::Pat {
                token: "pat-secret".into(),
            },
        );
        assert!(!format!("{config:?}").contains("pat-secret"));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("ab-1_2"), "ab-1_2");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
