//! Command line flags, each also settable by an environment variable.

use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Mint Databricks personal access tokens into Kubernetes Secrets and rotate them.
#[derive(Clone, Debug, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter in RUST_LOG syntax, e.g. `info,databricks_token_operator=debug`.
    #[arg(long, env = "LOG_FILTER", default_value = "info")]
    pub log_filter: String,

    /// Only the holder of a coordination.k8s.io Lease reconciles (run two replicas for failover).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the leader election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "databricks-token-operator")]
    pub lease_name: String,

    /// Namespace of the leader election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// How long a Lease is held without renewal before another replica may take it.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// This replica's identity in the Lease; defaults to the host name and process id.
    #[arg(long, env = "POD_NAME", default_value_t = default_identity())]
    pub identity: String,

    /// What the controllers run with.
    #[command(flatten)]
    pub controller: crate::controller::Settings,
}

/// Host name and process id: unique per process even when two share a host (outside a pod).
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "operator".into());
    format!("{host}-{}", std::process::id())
}

/// Whether an event may be logged whatever `--log-filter` asks. At debug and trace the HTTP/2
/// codec logs frames and header decoding, and a request's Authorization header carries a token;
/// the tests that scan trace logs for token values run over HTTP/1.1 (the emulator speaks plain
/// HTTP), so h2 below info is never logged in the first place. A ceiling on the filter itself
/// would not do: a more specific directive (`h2::codec=trace`) outranks it.
fn under_ceiling(meta: &tracing::Metadata<'_>) -> bool {
    let h2 = meta.target() == "h2" || meta.target().starts_with("h2::");
    !(h2 && *meta.level() > tracing::Level::INFO)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Text or JSON logs to `writer` with the given filter, under [`under_ceiling`].
fn subscriber<W>(
    format: LogFormat,
    filter: &str,
    ansi: bool,
    writer: W,
) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, BoxError>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::{filter::FilterExt, layer::SubscriberExt, prelude::*};
    let filter = tracing_subscriber::EnvFilter::try_new(filter)?
        .and(tracing_subscriber::filter::filter_fn(under_ceiling));
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer);
    let registry = tracing_subscriber::registry();
    Ok(match format {
        LogFormat::Text => Box::new(registry.with(layer.with_filter(filter))),
        LogFormat::Json => Box::new(
            registry.with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_filter(filter),
            ),
        ),
    })
}

/// Text or JSON logs to stderr with the given filter.
pub fn init_tracing(format: LogFormat, filter: &str) -> Result<(), BoxError> {
    use tracing_subscriber::util::SubscriberInitExt;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    subscriber(format, filter, ansi, std::io::stderr)?.try_init()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of these (target, level) events a subscriber with `filter` lets through.
    fn logged(filter: &str) -> String {
        use std::sync::{Arc, Mutex};
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = super::subscriber(LogFormat::Text, filter, false, move || {
            WriteTo(sink.clone())
        })
        .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "h2::codec::framed_read", "h2-trace");
            tracing::debug!(target: "h2::hpack::decoder", "h2-debug");
            tracing::info!(target: "h2::proto", "h2-info");
            tracing::trace!(target: "reqwest::connect", "reqwest-trace");
        });
        let bytes = out.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct WriteTo(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for WriteTo {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn h2_never_logs_below_info_whatever_the_filter() {
        for filter in [
            "trace",
            "h2=trace",
            "trace,h2=trace",
            "debug,h2::codec=trace",
        ] {
            let out = logged(filter);
            assert!(
                !out.contains("h2-trace") && !out.contains("h2-debug"),
                "{filter}: {out}"
            );
        }
        let out = logged("trace");
        assert!(
            out.contains("h2-info") && out.contains("reqwest-trace"),
            "{out}"
        );
    }

    #[test]
    fn defaults_watch_everything_with_leader_election() {
        let c = Config::parse_from(["op"]);
        assert!(c.controller.watched_namespaces().is_empty());
        assert_eq!(c.metrics_addr, "0.0.0.0:8080");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.log_filter, "info");
        assert!(c.leader_election);
        assert_eq!(c.lease_name, "databricks-token-operator");
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert!(!c.controller.insecure_allow_http);
        assert_eq!(c.controller.verify_interval, Duration::from_secs(600));
        assert_eq!(c.controller.default_grace_period, Duration::from_secs(3600));
        assert_eq!(c.controller.concurrency, 32);
        assert_eq!(
            c.controller.entra_authority_host,
            "https://login.microsoftonline.com"
        );
        assert_eq!(c.controller.backoff_base, Duration::from_secs(1));
        assert_eq!(c.controller.backoff_max, Duration::from_secs(300));
        assert_eq!(
            c.controller.workspace_recheck_interval,
            Duration::from_secs(300)
        );
        assert_eq!(c.controller.credential_ttl, Duration::from_secs(300));
        assert_eq!(c.controller.max_requeue(), Duration::from_secs(600));
    }

    #[test]
    fn default_identity_names_the_host_and_process() {
        let c = Config::parse_from(["op"]);
        let pid = format!("-{}", std::process::id());
        assert!(c.identity.ends_with(&pid), "{}", c.identity);
        assert!(c.identity.len() > pid.len(), "{}", c.identity);
    }

    #[test]
    fn flags_parse_lists_durations_and_booleans() {
        let c = Config::parse_from([
            "op",
            "--namespaces",
            "a,b",
            "--leader-election",
            "false",
            "--verify-interval",
            "2s",
            "--lease-duration=1m",
            "--default-grace-period",
            "1h30m",
            "--log-format",
            "json",
            "--insecure-allow-http",
            "--identity",
            "pod-0",
            "--concurrency",
            "4",
        ]);
        assert_eq!(c.controller.watched_namespaces(), vec!["a", "b"]);
        assert!(!c.leader_election);
        assert_eq!(c.controller.verify_interval, Duration::from_secs(2));
        assert_eq!(c.lease_duration, Duration::from_secs(60));
        assert_eq!(c.controller.default_grace_period, Duration::from_secs(5400));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(c.controller.insecure_allow_http);
        assert_eq!(c.identity, "pod-0");
        assert_eq!(c.controller.concurrency, 4);
    }

    #[test]
    fn blank_namespace_entries_are_ignored() {
        let c = Config::parse_from(["op", "--namespaces", " a ,,b,"]);
        assert_eq!(c.controller.watched_namespaces(), vec!["a", "b"]);
    }

    #[test]
    fn a_bad_duration_is_refused() {
        assert!(Config::try_parse_from(["op", "--verify-interval", "soon"]).is_err());
    }

    #[test]
    fn zero_concurrency_is_refused() {
        assert!(Config::try_parse_from(["op", "--concurrency", "0"]).is_err());
    }

    #[test]
    fn an_unknown_log_format_is_refused() {
        assert!(Config::try_parse_from(["op", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn an_invalid_log_filter_is_refused() {
        assert!(init_tracing(LogFormat::Text, "info,[").is_err());
    }

    /// Set in the child process that `environment_variables_set_every_flag` runs.
    const CHILD: &str = "DBTOKEN_CONFIG_ENV_CHILD";

    /// Environment variables are process-wide: the check runs in a child process (this same
    /// test binary, this one test) so that no other test sees them.
    #[test]
    fn environment_variables_set_every_flag() {
        if std::env::var_os(CHILD).is_some() {
            let c = Config::parse_from(["op"]);
            assert_eq!(c.controller.watched_namespaces(), vec!["team-a", "team-b"]);
            assert_eq!(c.metrics_addr, "127.0.0.1:9090");
            assert_eq!(c.log_format, LogFormat::Json);
            assert_eq!(c.log_filter, "debug");
            assert!(!c.leader_election);
            assert_eq!(c.lease_name, "my-lease");
            assert_eq!(c.lease_namespace, "ops");
            assert_eq!(c.lease_duration, Duration::from_secs(30));
            assert_eq!(c.identity, "operator-abc");
            assert!(c.controller.insecure_allow_http);
            assert_eq!(c.controller.verify_interval, Duration::from_secs(300));
            assert_eq!(c.controller.default_grace_period, Duration::from_secs(7200));
            assert_eq!(c.controller.concurrency, 8);
            assert_eq!(
                c.controller.entra_authority_host,
                "https://login.microsoftonline.us"
            );
            assert_eq!(c.controller.backoff_base, Duration::from_millis(500));
            assert_eq!(c.controller.backoff_max, Duration::from_secs(60));
            assert_eq!(
                c.controller.workspace_recheck_interval,
                Duration::from_secs(120)
            );
            assert_eq!(c.controller.credential_ttl, Duration::from_secs(30));
            // A flag still wins over its variable.
            let c = Config::parse_from(["op", "--namespaces", "x"]);
            assert_eq!(c.controller.watched_namespaces(), vec!["x"]);
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "config::tests::environment_variables_set_every_flag",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .env("WATCH_NAMESPACES", "team-a,team-b")
            .env("METRICS_ADDR", "127.0.0.1:9090")
            .env("LOG_FORMAT", "json")
            .env("LOG_FILTER", "debug")
            .env("LEADER_ELECTION", "false")
            .env("LEASE_NAME", "my-lease")
            .env("POD_NAMESPACE", "ops")
            .env("LEASE_DURATION", "30s")
            .env("POD_NAME", "operator-abc")
            .env("INSECURE_ALLOW_HTTP", "true")
            .env("VERIFY_INTERVAL", "5m")
            .env("DEFAULT_GRACE_PERIOD", "2h")
            .env("CONCURRENCY", "8")
            .env("ENTRA_AUTHORITY_HOST", "https://login.microsoftonline.us")
            .env("BACKOFF_BASE", "500ms")
            .env("BACKOFF_MAX", "1m")
            .env("WORKSPACE_RECHECK_INTERVAL", "2m")
            .env("CREDENTIAL_TTL", "30s")
            .env("BACKOFF_BASE", "500ms")
            .env("BACKOFF_MAX", "1m")
            .env("WORKSPACE_RECHECK_INTERVAL", "2m")
            .env("CREDENTIAL_TTL", "30s")
            .output()
            .expect("run child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
