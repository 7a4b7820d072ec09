//! The controllers' settings: flags of the operator's command line (each also settable by an
//! environment variable, see `crate::config`), policy bounds among them with their defaults.

use std::time::Duration;

/// What the controllers run with.
#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// Namespaces to watch, comma separated; empty means all namespaces.
    #[arg(
        long,
        env = "WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub namespaces: Vec<String>,

    /// Accept plain-http workspace hosts. For the local emulator only: never in production.
    #[arg(long, env = "INSECURE_ALLOW_HTTP", default_value_t = false)]
    pub insecure_allow_http: bool,

    /// How often each token is checked against Databricks (revoked outside, orphans).
    #[arg(long, env = "VERIFY_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub verify_interval: Duration,

    /// Grace period of a replaced token when the resource does not set rotation.gracePeriod.
    #[arg(long, env = "DEFAULT_GRACE_PERIOD", default_value = "1h", value_parser = humantime::parse_duration)]
    pub default_grace_period: Duration,

    /// Reconciles running at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Microsoft Entra ID authority for azureServicePrincipal workspaces that do not set one.
    #[arg(long, env = "ENTRA_AUTHORITY_HOST", default_value = databricks_client::DEFAULT_ENTRA_AUTHORITY)]
    pub entra_authority_host: String,

    /// First retry delay of a failing token or workspace; it doubles with each failure.
    #[arg(long, env = "BACKOFF_BASE", default_value = "1s", value_parser = humantime::parse_duration)]
    pub backoff_base: Duration,

    /// Longest retry delay of a failing token or workspace.
    #[arg(long, env = "BACKOFF_MAX", default_value = "5m", value_parser = humantime::parse_duration)]
    pub backoff_max: Duration,

    /// How often a Ready workspace's credential is checked again.
    #[arg(long, env = "WORKSPACE_RECHECK_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub workspace_recheck_interval: Duration,

    /// How long a workspace client, and the credentials it read, is reused before the
    /// credential Secret is read again.
    #[arg(long, env = "CREDENTIAL_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub credential_ttl: Duration,
}

impl Settings {
    /// Watched namespaces without empty entries (an empty list means all).
    pub fn watched_namespaces(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// The longest a healthy resource sleeps before it is looked at again.
    pub fn max_requeue(&self) -> Duration {
        self.verify_interval.max(Duration::from_secs(1))
    }
}
