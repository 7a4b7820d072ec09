//! Credentials and the bearer tokens they yield: a PAT as is, or an OAuth access token from
//! Databricks (M2M client credentials, or workload identity federation: RFC 8693 token exchange
//! of a subject token) or Microsoft Entra ID (client secret, or a federated client assertion),
//! cached until shortly before it expires. Single flight: the cache lock is held across an exchange, so concurrent callers
//! wait for that one exchange and share its token.

use std::{
    fmt,
    time::{Duration, Instant},
};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::{
    Endpoint, Error, RequestObserver, SecretString,
    error::parse_retry_after,
    federation::{self, SubjectTokens},
    secret::scrub,
};

/// The Azure Databricks application id, the resource Entra tokens are requested for.
pub const AZURE_DATABRICKS_SCOPE: &str = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default";
pub const DEFAULT_ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Refresh this long before an access token expires (Azure Databricks refuses tokens with 30 s
/// or less left; the brief asks for 60 s).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// When the token endpoint omits `expires_in`, assume the common one hour.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub enum Credentials {
    Pat {
        token: SecretString,
    },
    OAuthM2M {
        client_id: String,
        client_secret: SecretString,
    },
    AzureServicePrincipal {
        tenant_id: String,
        client_id: String,
        client_secret: SecretString,
        authority_host: String,
    },
    /// Databricks workload identity federation: a subject token exchanged (RFC 8693) for the
    /// OAuth token of the service principal `client_id` under its federation policy.
    WorkloadIdentity {
        client_id: String,
        subject: SubjectTokens,
    },
    /// An Entra service principal authenticated by a federated client assertion (a subject
    /// token its federated identity credential trusts) instead of a client secret.
    AzureFederated {
        tenant_id: String,
        client_id: String,
        authority_host: String,
        subject: SubjectTokens,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Pat { .. } => f.debug_struct("Pat").field("token", &"<redacted>").finish(),
            Credentials::OAuthM2M { client_id, .. } => f
                .debug_struct("OAuthM2M")
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
            Credentials::AzureServicePrincipal {
                tenant_id,
                client_id,
                authority_host,
                ..
            } => f
                .debug_struct("AzureServicePrincipal")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .field("authority_host", authority_host)
                .finish(),
            Credentials::WorkloadIdentity { client_id, subject } => f
                .debug_struct("WorkloadIdentity")
                .field("client_id", client_id)
                .field("subject", subject)
                .finish(),
            Credentials::AzureFederated {
                tenant_id,
                client_id,
                authority_host,
                subject,
            } => f
                .debug_struct("AzureFederated")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("authority_host", authority_host)
                .field("subject", subject)
                .finish(),
        }
    }
}

fn entra_token_url(authority_host: &str, tenant_id: &str) -> String {
    format!(
        "{}/{tenant_id}/oauth2/v2.0/token",
        authority_host.trim_end_matches('/')
    )
}

#[derive(Default)]
struct Cache {
    /// The OAuth token endpoint found by discovery (it does not change).
    token_endpoint: Option<String>,
    token: Option<(SecretString, Instant)>,
}

pub(crate) struct Authenticator {
    credentials: Credentials,
    /// Plain-http token endpoints are accepted only with the operator's insecure flag.
    allow_http: bool,
    cache: Mutex<Cache>,
}

#[derive(Deserialize)]
struct Discovery {
    token_endpoint: String,
}

#[derive(Deserialize)]
struct AccessToken {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// An OAuth access token issued for someone else to hold (a `DatabricksToken` of type
/// `oauth`): never cached here, and never the client's own bearer.
pub struct AccessGrant {
    pub value: SecretString,
    /// `expires_in` as the token endpoint granted it.
    pub lifetime: Duration,
    /// The scopes granted, as the endpoint reported them (None: not reported).
    pub scope: Option<String>,
}

impl fmt::Debug for AccessGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessGrant")
            .field("value", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Where a token exchange talks to, for messages and metrics.
struct Issuer {
    name: &'static str,
    endpoint: Endpoint,
}

const DATABRICKS: Issuer = Issuer {
    name: "Databricks OAuth",
    endpoint: Endpoint::OAuthToken,
};
const ENTRA: Issuer = Issuer {
    name: "Entra ID",
    endpoint: Endpoint::EntraToken,
};

impl Authenticator {
    pub fn new(credentials: Credentials, allow_http: bool) -> Self {
        Self {
            credentials,
            allow_http,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Whether bearer tokens come from an exchange (and can be refreshed after a 401/403).
    pub fn exchanges(&self) -> bool {
        !matches!(self.credentials, Credentials::Pat { .. })
    }

    /// Forget `rejected` if it is still the cached token. Callers that failed with an older
    /// token leave a fresher one alone, so a burst of 401s costs one exchange, not one each.
    pub async fn invalidate(&self, rejected: &SecretString) {
        let mut cache = self.cache.lock().await;
        if cache.token.as_ref().is_some_and(|(t, _)| t == rejected) {
            cache.token = None;
        }
    }

    /// Whether [`Authenticator::issue`] can work: Databricks OAuth credentials (M2M client
    /// credentials or workload identity federation).
    pub fn issues_databricks_oauth(&self) -> bool {
        matches!(
            self.credentials,
            Credentials::OAuthM2M { .. } | Credentials::WorkloadIdentity { .. }
        )
    }

    /// A fresh Databricks OAuth access token for the credentials' service principal, with
    /// `scope` (space-separated), bypassing the bearer cache: one token endpoint call each.
    pub async fn issue(
        &self,
        http: &reqwest::Client,
        host: &str,
        observer: Option<&dyn RequestObserver>,
        scope: &str,
    ) -> Result<AccessGrant, Error> {
        let endpoint = {
            let mut cache = self.cache.lock().await;
            if !self.issues_databricks_oauth() {
                return Err(Error::Config {
                    message: "only Databricks OAuth credentials (M2M or workload identity) issue OAuth access tokens".into(),
                });
            }
            token_endpoint(&mut cache, http, host, self.allow_http, observer).await?
        };
        let (request, subject_of) = match &self.credentials {
            Credentials::OAuthM2M {
                client_id,
                client_secret,
            } => (
                http.post(&endpoint)
                    .basic_auth(client_id, Some(client_secret.expose()))
                    .form(&[("grant_type", "client_credentials"), ("scope", scope)]),
                None,
            ),
            Credentials::WorkloadIdentity { client_id, subject } => {
                let jwt = subject.0.subject_token().await?;
                (
                    http.post(&endpoint).form(&[
                        ("grant_type", federation::TOKEN_EXCHANGE_GRANT),
                        ("subject_token", jwt.expose()),
                        ("subject_token_type", federation::JWT_TOKEN_TYPE),
                        ("scope", scope),
                        ("client_id", client_id.as_str()),
                    ]),
                    Some((subject, client_id)),
                )
            }
            _ => {
                return Err(Error::Config {
                    message: "only Databricks OAuth credentials issue OAuth access tokens".into(),
                });
            }
        };
        let result = exchange_grant(request, &DATABRICKS, observer).await;
        match subject_of {
            Some((subject, client_id)) => {
                result.map_err(|e| federation::classify(e, subject, client_id))
            }
            None => result,
        }
    }

    pub async fn bearer(
        &self,
        http: &reqwest::Client,
        host: &str,
        observer: Option<&dyn RequestObserver>,
    ) -> Result<SecretString, Error> {
        if let Credentials::Pat { token } = &self.credentials {
            return Ok(token.clone());
        }
        let mut cache = self.cache.lock().await;
        if let Some((token, refresh_at)) = &cache.token
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = match &self.credentials {
            Credentials::OAuthM2M {
                client_id,
                client_secret,
            } => {
                let endpoint =
                    token_endpoint(&mut cache, http, host, self.allow_http, observer).await?;
                let request = http
                    .post(&endpoint)
                    .basic_auth(client_id, Some(client_secret.expose()))
                    .form(&[("grant_type", "client_credentials"), ("scope", "all-apis")]);
                exchange(request, &DATABRICKS, observer).await?
            }
            Credentials::AzureServicePrincipal {
                tenant_id,
                client_id,
                client_secret,
                authority_host,
            } => {
                let request = http
                    .post(entra_token_url(authority_host, tenant_id))
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id.as_str()),
                        ("client_secret", client_secret.expose()),
                        ("scope", AZURE_DATABRICKS_SCOPE),
                    ]);
                exchange(request, &ENTRA, observer).await?
            }
            Credentials::WorkloadIdentity { client_id, subject } => {
                let endpoint =
                    token_endpoint(&mut cache, http, host, self.allow_http, observer).await?;
                let jwt = subject.0.subject_token().await?;
                let request = http.post(&endpoint).form(&[
                    ("grant_type", federation::TOKEN_EXCHANGE_GRANT),
                    ("subject_token", jwt.expose()),
                    ("subject_token_type", federation::JWT_TOKEN_TYPE),
                    ("scope", "all-apis"),
                    ("client_id", client_id.as_str()),
                ]);
                exchange(request, &DATABRICKS, observer)
                    .await
                    .map_err(|e| federation::classify(e, subject, client_id))?
            }
            Credentials::AzureFederated {
                tenant_id,
                client_id,
                authority_host,
                subject,
            } => {
                let jwt = subject.0.subject_token().await?;
                let request = http
                    .post(entra_token_url(authority_host, tenant_id))
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id.as_str()),
                        ("client_assertion_type", federation::JWT_BEARER_ASSERTION),
                        ("client_assertion", jwt.expose()),
                        ("scope", AZURE_DATABRICKS_SCOPE),
                    ]);
                exchange(request, &ENTRA, observer)
                    .await
                    .map_err(|e| federation::classify(e, subject, client_id))?
            }
            Credentials::Pat { token } => return Ok(token.clone()),
        };
        cache.token = Some((
            token.clone(),
            Instant::now() + lifetime - refresh_margin(lifetime),
        ));
        Ok(token)
    }
}

/// The token endpoint, found by discovery once per client (it does not change).
async fn token_endpoint(
    cache: &mut Cache,
    http: &reqwest::Client,
    host: &str,
    allow_http: bool,
    observer: Option<&dyn RequestObserver>,
) -> Result<String, Error> {
    if let Some(e) = &cache.token_endpoint {
        return Ok(e.clone());
    }
    let e = discover(http, host, allow_http, observer).await?;
    cache.token_endpoint = Some(e.clone());
    Ok(e)
}

/// 60 s, or half the lifetime of a token that lives less than two minutes.
fn refresh_margin(lifetime: Duration) -> Duration {
    if lifetime > REFRESH_MARGIN * 2 {
        REFRESH_MARGIN
    } else {
        lifetime / 2
    }
}

/// `GET {host}/oidc/.well-known/oauth-authorization-server` -> the token endpoint.
async fn discover(
    http: &reqwest::Client,
    host: &str,
    allow_http: bool,
    observer: Option<&dyn RequestObserver>,
) -> Result<String, Error> {
    let issuer = Issuer {
        name: "OIDC discovery",
        endpoint: Endpoint::OAuthToken,
    };
    let url = format!("{host}/oidc/.well-known/oauth-authorization-server");
    let (status, body) = send(http.get(&url), &issuer, observer).await?;
    if !status.is_success() {
        return Err(failure(&issuer, status, &body, None));
    }
    parse_discovery(&url, &body, allow_http)
}

/// The token endpoint of a discovery document.
fn parse_discovery(url: &str, body: &str, allow_http: bool) -> Result<String, Error> {
    let discovery: Discovery = serde_json::from_str(body).map_err(|e| Error::AuthFlow {
        message: format!("OIDC discovery at {url} is unreadable: {e}"),
    })?;
    // The client secret goes to this endpoint: the same https-only rule as the host.
    crate::config::checked_url("token endpoint", &discovery.token_endpoint, allow_http).map_err(
        |e| Error::AuthFlow {
            message: format!("OIDC discovery at {url} is refused: {e}"),
        },
    )
}

async fn exchange(
    request: reqwest::RequestBuilder,
    issuer: &Issuer,
    observer: Option<&dyn RequestObserver>,
) -> Result<(SecretString, Duration), Error> {
    let grant = exchange_grant(request, issuer, observer).await?;
    Ok((grant.value, grant.lifetime))
}

async fn exchange_grant(
    request: reqwest::RequestBuilder,
    issuer: &Issuer,
    observer: Option<&dyn RequestObserver>,
) -> Result<AccessGrant, Error> {
    let (status, body) = send(request, issuer, observer).await?;
    if !status.is_success() {
        return Err(failure(issuer, status, &body, None));
    }
    let token: AccessToken = serde_json::from_str(&body).map_err(|_| Error::AuthFlow {
        message: format!("{} token response is unreadable", issuer.name),
    })?;
    let seconds = match &token.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        // Entra's v1 endpoint sends numbers as strings.
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let lifetime = seconds.map(Duration::from_secs).unwrap_or(DEFAULT_LIFETIME);
    // Only a bearer token can be sent as `Authorization: Bearer` (RFC 6750); the type is
    // case-insensitive (RFC 6749 7.1). A missing type is taken as Bearer, as the SDKs do.
    if let Some(kind) = token.token_type.as_deref()
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(Error::AuthFlow {
            message: format!(
                "{} issued a token of type {kind:?}, not a Bearer token",
                issuer.name
            ),
        });
    }
    Ok(AccessGrant {
        value: SecretString::from(token.access_token),
        lifetime,
        scope: token.scope,
    })
}

/// Send and read the whole body. A transport failure here happened before the API call it
/// serves, so it never makes a create uncertain.
async fn send(
    request: reqwest::RequestBuilder,
    issuer: &Issuer,
    observer: Option<&dyn RequestObserver>,
) -> Result<(reqwest::StatusCode, String), Error> {
    let started = Instant::now();
    let result = async {
        let response = request.send().await?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .cloned();
        let body = response.text().await?;
        Ok::<_, reqwest::Error>((status, retry_after, body))
    }
    .await;
    let outcome = match &result {
        Ok((status, ..)) => status.as_str().to_string(),
        Err(_) => "transport".to_string(),
    };
    if let Some(o) = observer {
        o.observe(issuer.endpoint, &outcome, started.elapsed());
    }
    match result {
        Ok((status, retry_after, body)) if status.as_u16() == 429 || status.is_server_error() => {
            let hint = retry_after.and_then(|v| v.to_str().ok().and_then(parse_retry_after));
            Err(failure(issuer, status, &body, hint))
        }
        Ok((status, _, body)) => Ok((status, body)),
        Err(e) => Err(Error::Transport {
            message: scrub(&format!(
                "{} request failed: {}",
                issuer.name,
                crate::client::describe(&e)
            )),
            uncertain: false,
        }),
    }
}

/// An unsuccessful answer of a token endpoint: an outage is retryable, a refusal is an
/// [`Error::AuthFlow`] carrying the OAuth `error` / `error_description` (never a secret).
fn failure(
    issuer: &Issuer,
    status: reqwest::StatusCode,
    body: &str,
    retry_after: Option<Duration>,
) -> Error {
    let detail: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let text = |key: &str| {
        detail
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let (error, description) = (text("error"), text("error_description"));
    let summary = scrub(format!("{error} {description}").trim());
    let message = format!(
        "{} answered HTTP {}: {summary}",
        issuer.name,
        status.as_u16()
    );
    match status.as_u16() {
        429 => Error::RateLimited {
            code: "REQUEST_LIMIT_EXCEEDED".into(),
            message,
            retry_after,
        },
        s if status.is_server_error() => Error::Unavailable {
            status: s,
            code: if s == 503 {
                "TEMPORARILY_UNAVAILABLE"
            } else {
                "INTERNAL_ERROR"
            }
            .into(),
            message,
            retry_after,
            uncertain: false,
        },
        _ if error.is_empty() => Error::AuthFlow {
            message: message.trim_end_matches(": ").to_string(),
        },
        _ => Error::AuthFlow {
            message: format!(
                "{} refused the request (HTTP {}): {summary}",
                issuer.name,
                status.as_u16()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_never_shows_secrets() {
        let all = [
            Credentials::Pat {
                token: "pat-value".into(),
            },
            Credentials::OAuthM2M {
                client_id: "id".into(),
                client_secret: "m2m-secret".into(),
            },
            Credentials::AzureServicePrincipal {
                tenant_id: "t".into(),
                client_id: "id".into(),
                client_secret: "az-secret".into(),
                authority_host: DEFAULT_ENTRA_AUTHORITY.into(),
            },
        ];
        for c in all {
            let text = format!("{c:?}");
            for secret in ["pat-value", "m2m-secret", "az-secret"] {
                assert!(!text.contains(secret), "{text}");
            }
            assert!(text.contains("<redacted>"), "{text}");
        }
    }

    #[test]
    fn tokens_refresh_a_minute_early_or_at_half_life() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(100)),
            Duration::from_secs(50)
        );
        assert_eq!(refresh_margin(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_refusal_is_an_auth_flow_error_with_the_upstream_text() {
        let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#;
        let e = failure(&ENTRA, reqwest::StatusCode::UNAUTHORIZED, body, None);
        assert!(matches!(e, Error::AuthFlow { .. }), "{e:?}");
        assert!(
            e.to_string().contains("invalid_client") && e.to_string().contains("AADSTS7000215"),
            "{e}"
        );
    }

    #[test]
    fn an_outage_of_the_token_endpoint_is_retryable() {
        let e = failure(
            &DATABRICKS,
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            "",
            Some(Duration::from_secs(2)),
        );
        assert!(e.is_retryable() && !e.create_outcome_uncertain(), "{e:?}");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        let e = failure(
            &DATABRICKS,
            reqwest::StatusCode::TOO_MANY_REQUESTS,
            "",
            None,
        );
        assert!(matches!(e, Error::RateLimited { .. }));
    }

    #[test]
    fn a_discovered_token_endpoint_must_be_https_unless_http_is_allowed() {
        let url = "https://h/oidc/.well-known/oauth-authorization-server";
        let doc = |endpoint: &str| format!(r#"{{"token_endpoint":"{endpoint}"}}"#);
        let http = doc("http://h/oidc/v1/token");
        let err = parse_discovery(url, &http, false)
            .expect_err("client credentials would travel over plain http");
        assert!(
            matches!(&err, Error::AuthFlow { message } if message.contains("plain http")),
            "{err}"
        );
        assert_eq!(
            parse_discovery(url, &http, true).unwrap(),
            "http://h/oidc/v1/token"
        );
        assert_eq!(
            parse_discovery(url, &doc("https://h/oidc/v1/token"), false).unwrap(),
            "https://h/oidc/v1/token"
        );
        assert!(parse_discovery(url, &doc("ftp://h/token"), true).is_err());
    }

    #[test]
    fn a_missing_discovery_document_is_an_auth_flow_error() {
        let issuer = Issuer {
            name: "OIDC discovery",
            endpoint: Endpoint::OAuthToken,
        };
        let e = failure(&issuer, reqwest::StatusCode::NOT_FOUND, "<html>", None);
        assert_eq!(e.to_string(), "AUTH_FLOW: OIDC discovery answered HTTP 404");
    }
}
