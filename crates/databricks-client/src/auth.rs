//! Credentials and the bearer tokens they yield: a PAT as is, or an OAuth access token from
//! Databricks (M2M client credentials) or Microsoft Entra ID, cached until shortly before it
//! expires. One exchange at a time per workspace: concurrent callers wait for it and share it.

use std::{
    fmt,
    time::{Duration, Instant},
};

use serde::Deserialize;

use crate::{Endpoint, Error, RequestObserver, SecretString, secret::scrub};

/// The Azure Databricks application id, the resource Entra tokens are requested for.
pub const AZURE_DATABRICKS_SCOPE: &str = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default";
pub const DEFAULT_ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Refresh this long before an access token expires (Azure Databricks refuses tokens with 30 s or less left).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

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
        }
    }
}

struct Cached {
    token: SecretString,
    refresh_at: Instant,
}

pub(crate) struct Authenticator {
    credentials: Credentials,
    cache: tokio::sync::Mutex<Option<Cached>>,
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
}

impl Authenticator {
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether bearer tokens come from an exchange (and can be refreshed after a 401/403).
    pub fn exchanges(&self) -> bool {
        !matches!(self.credentials, Credentials::Pat { .. })
    }

    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
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
        if let Some(c) = cache.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = match &self.credentials {
            Credentials::OAuthM2M {
                client_id,
                client_secret,
            } => {
                self.exchange_databricks(http, host, client_id, client_secret, observer)
                    .await?
            }
            Credentials::AzureServicePrincipal {
                tenant_id,
                client_id,
                client_secret,
                authority_host,
            } => {
                self.exchange_entra(
                    http,
                    authority_host,
                    tenant_id,
                    client_id,
                    client_secret,
                    observer,
                )
                .await?
            }
            Credentials::Pat { .. } => unreachable!("handled above"),
        };
        let margin = if lifetime > REFRESH_MARGIN * 2 {
            REFRESH_MARGIN
        } else {
            lifetime / 2
        };
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime - margin,
        });
        Ok(token)
    }

    async fn exchange_databricks(
        &self,
        http: &reqwest::Client,
        host: &str,
        client_id: &str,
        client_secret: &SecretString,
        observer: Option<&dyn RequestObserver>,
    ) -> Result<(SecretString, Duration), Error> {
        let discovery_url = format!("{host}/oidc/.well-known/oauth-authorization-server");
        let started = Instant::now();
        let response = http
            .get(&discovery_url)
            .send()
            .await
            .map_err(flow_error("OIDC discovery"))?;
        observe(observer, Endpoint::OAuthToken, &response, started);
        if !response.status().is_success() {
            return Err(Error::AuthFlow {
                message: format!(
                    "OIDC discovery at {discovery_url} answered {}",
                    response.status()
                ),
            });
        }
        let discovery: Discovery = response
            .json()
            .await
            .map_err(flow_error("OIDC discovery body"))?;
        let form = [("grant_type", "client_credentials"), ("scope", "all-apis")];
        let started = Instant::now();
        let response = http
            .post(&discovery.token_endpoint)
            .basic_auth(client_id, Some(client_secret.expose()))
            .form(&form)
            .send()
            .await
            .map_err(flow_error("OAuth token request"))?;
        observe(observer, Endpoint::OAuthToken, &response, started);
        read_access_token(response, "Databricks OAuth").await
    }

    async fn exchange_entra(
        &self,
        http: &reqwest::Client,
        authority: &str,
        tenant_id: &str,
        client_id: &str,
        client_secret: &SecretString,
        observer: Option<&dyn RequestObserver>,
    ) -> Result<(SecretString, Duration), Error> {
        let url = format!(
            "{}/{tenant_id}/oauth2/v2.0/token",
            authority.trim_end_matches('/')
        );
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret.expose()),
            ("scope", AZURE_DATABRICKS_SCOPE),
        ];
        let started = Instant::now();
        let response = http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(flow_error("Entra token request"))?;
        observe(observer, Endpoint::EntraToken, &response, started);
        read_access_token(response, "Entra ID").await
    }
}

fn observe(
    observer: Option<&dyn RequestObserver>,
    endpoint: Endpoint,
    response: &reqwest::Response,
    started: Instant,
) {
    if let Some(o) = observer {
        o.observe(endpoint, response.status().as_str(), started.elapsed());
    }
}

fn flow_error(what: &'static str) -> impl FnOnce(reqwest::Error) -> Error {
    move |e| Error::AuthFlow {
        message: format!("{what} failed: {}", scrub(&e.to_string())),
    }
}

async fn read_access_token(
    response: reqwest::Response,
    issuer: &str,
) -> Result<(SecretString, Duration), Error> {
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(flow_error("token response"))?;
    if !status.is_success() {
        // OAuth errors carry `error` and `error_description`; neither holds a secret.
        let detail: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let error = detail
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("unknown_error");
        let description = detail
            .get("error_description")
            .and_then(|e| e.as_str())
            .unwrap_or("");
        return Err(Error::AuthFlow {
            message: scrub(&format!(
                "{issuer} refused the client credentials (HTTP {status}): {error} {description}"
            ))
            .trim()
            .to_string(),
        });
    }
    let token: AccessToken = serde_json::from_str(&body).map_err(|e| Error::AuthFlow {
        message: format!("{issuer} token response unreadable: {e}"),
    })?;
    let seconds = match &token.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(3600),
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(3600),
        _ => 3600,
    };
    Ok((
        SecretString::from(token.access_token),
        Duration::from_secs(seconds),
    ))
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
        }
    }
}
