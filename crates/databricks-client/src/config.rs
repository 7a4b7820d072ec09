//! How a workspace client is set up, and the hook it reports every HTTP exchange to.

use std::{fmt, sync::Arc, time::Duration};

use crate::{Credentials, Error, RetryPolicy};

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
    /// Databricks OAuth: discovery and the token endpoint.
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

/// Told of every HTTP exchange, retries included (for metrics). `outcome` is the status code
/// ("200", "429") or "transport" when no response came back.
pub trait RequestObserver: Send + Sync {
    fn observe(&self, endpoint: Endpoint, outcome: &str, elapsed: Duration);
}

/// The client's default request rate per workspace.
const DEFAULT_REQUESTS_PER_SECOND: f64 = 30.0;

#[derive(Clone)]
pub struct ClientConfig {
    /// Workspace URL, e.g. `https://adb-1.2.azuredatabricks.net` (a trailing slash is dropped).
    pub host: String,
    pub credentials: Credentials,
    /// Accept `http://` hosts (the operator's insecure flag: local emulator only).
    pub allow_http: bool,
    /// Limit of one HTTP exchange, from sending to the end of the body.
    pub request_timeout: Duration,
    /// Requests in flight to this workspace at most.
    pub max_concurrency: usize,
    /// Requests to this workspace per second, paced evenly (no burst).
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
            // Token-management is reported (unverified) to allow about 40/s per workspace: an
            // even 30/s leaves a quarter of it to other clients of the workspace. The Go SDK's
            // 15/s made a fleet's rotations take twice as long (BENCHMARKS.md, the storm).
            requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
            retry: RetryPolicy::default(),
            observer: None,
        }
    }

    /// The host without a trailing slash, if it is a URL this client may talk to.
    pub(crate) fn checked_host(&self) -> Result<String, Error> {
        checked_url("host", &self.host, self.allow_http)
    }

    /// Refuse credentials that would be sent where `host` could not be: the Entra authority
    /// receives the client secret, so it gets the same https-only rule.
    pub(crate) fn check_credentials(&self) -> Result<(), Error> {
        if let Credentials::AzureServicePrincipal { authority_host, .. }
        | Credentials::AzureFederated { authority_host, .. } = &self.credentials
        {
            checked_url("authority host", authority_host, self.allow_http)?;
        }
        Ok(())
    }
}

/// `raw` without a trailing slash, if it is an https URL (or http with `allow_http`) without
/// credentials, query or fragment: credentials or tokens are sent there.
pub(crate) fn checked_url(what: &str, raw: &str, allow_http: bool) -> Result<String, Error> {
    let trimmed = raw.trim().trim_end_matches('/').to_string();
    let refuse = |why: &str| {
        Err(Error::Config {
            message: format!("{what} {trimmed:?} {why}"),
        })
    };
    let url = match reqwest::Url::parse(&trimmed) {
        Ok(url) => url,
        Err(e) => return refuse(&format!("is not a URL: {e}")),
    };
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return refuse(
                "uses plain http; only https is allowed unless the insecure flag is set",
            );
        }
        _ => return refuse("must be an https:// URL"),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return refuse("has no host name");
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return refuse("must not carry credentials, a query or a fragment");
    }
    Ok(trimmed)
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("host", &self.host)
            .field("credentials", &self.credentials)
            .field("allow_http", &self.allow_http)
            .field("request_timeout", &self.request_timeout)
            .field("max_concurrency", &self.max_concurrency)
            .field("requests_per_second", &self.requests_per_second)
            .field("retry", &self.retry)
            .field("observer", &self.observer.as_ref().map(|_| "<set>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(host: &str, allow_http: bool) -> ClientConfig {
        ClientConfig {
            allow_http,
            ..ClientConfig::new(host, Credentials::Pat { token: "x".into() })
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = config("https://h", false);
        assert_eq!(c.max_concurrency, 8);
        assert_eq!(c.requests_per_second, 30.0);
        assert!(!c.allow_http);
        assert_eq!(c.retry.max_attempts, 5);
    }

    #[test]
    fn plain_http_needs_the_flag() {
        let err = config("http://127.0.0.1:1", false)
            .checked_host()
            .unwrap_err();
        assert!(matches!(err, Error::Config { .. }));
        assert!(err.to_string().contains("insecure"), "{err}");
        assert_eq!(
            config("http://127.0.0.1:1/", true).checked_host().unwrap(),
            "http://127.0.0.1:1"
        );
    }

    #[test]
    fn https_hosts_lose_their_trailing_slash() {
        assert_eq!(
            config(" https://adb-1.2.azuredatabricks.net/ ", false)
                .checked_host()
                .unwrap(),
            "https://adb-1.2.azuredatabricks.net"
        );
    }

    #[test]
    fn malformed_hosts_are_refused() {
        for host in [
            "",
            "adb-1.azuredatabricks.net",
            "ftp://h",
            "https://",
            "https://u:p@h",
            "https://h?x=1",
        ] {
            assert!(config(host, true).checked_host().is_err(), "{host}");
        }
    }

    #[test]
    fn config_debug_hides_credentials() {
        let all = [
            Credentials::Pat {
                token: "pat-secret".into(),
            },
            Credentials::OAuthM2M {
                client_id: "id".into(),
                client_secret: "pat-secret".into(),
            },
        ];
        for credentials in all {
            let text = format!("{:?}", ClientConfig::new("https://h", credentials));
            assert!(
                !text.contains("pat-secret") && text.contains("<redacted>"),
                "{text}"
            );
        }
    }
}
