//! `databricks-emulator`: serve a local Databricks workspace for the demo and SDK tests.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use clap::Parser;
use databricks_emulator::{Emulator, EmulatorConfig};

#[derive(Parser)]
#[command(
    about = "A local Databricks workspace emulator (token APIs, OAuth, Entra) with fault injection",
    long_about = "A local Databricks workspace emulator (token APIs, OAuth, Entra) with fault \
        injection. Seed identities and inspect or break it through the /_emulator/ API."
)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Write the bound address (host:port) to this file once listening (and seeded).
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Create an admin user with this name at start; its PAT goes to --seed-output only.
    #[arg(long, requires = "seed_output")]
    seed_admin_user: Option<String>,
    /// Where to write the seeded user as JSON {id, user_name, pat} (mode 0600, never printed).
    #[arg(long, requires = "seed_admin_user")]
    seed_output: Option<PathBuf>,
    /// The workspace's maxTokenLifetimeDays.
    #[arg(long, default_value_t = 730, value_parser = clap::value_parser!(u32).range(1..=730))]
    max_token_lifetime_days: u32,
    /// Lifetime of tokens created without lifetime_seconds (default: two years, capped by the maximum).
    #[arg(long)]
    default_lifetime_seconds: Option<u64>,
    /// Live tokens allowed per owner.
    #[arg(long, default_value_t = 600)]
    quota_per_owner: usize,
    /// Whether admins may create on-behalf-of tokens for service principals.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    obo_enabled: bool,
    /// The workspace setting "Personal Access Tokens": false refuses every PAT create and
    /// every PAT bearer (OAuth keeps working).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    tokens_enabled: bool,
    /// Lifetime of OAuth and Entra access tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    access_token_seconds: u64,
    /// The workspace's request limit (requests per second, all callers); unset: unlimited.
    #[arg(long)]
    requests_per_second: Option<u32>,
    /// The workspace id reported by token-management and host metadata.
    #[arg(long, default_value_t = databricks_emulator::WORKSPACE_ID)]
    workspace_id: i64,
    /// Run this workspace's clock this many seconds ahead of the host's (negative: behind).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    clock_offset_seconds: i64,
}

/// Write via a temporary file and a rename, so a reader polling `path` never sees half of it.
fn write_atomically(path: &Path, contents: &[u8], private: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(tmp, path)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = EmulatorConfig {
        max_token_lifetime_days: args.max_token_lifetime_days,
        default_lifetime_seconds: args.default_lifetime_seconds,
        quota_per_owner: args.quota_per_owner,
        obo_enabled: args.obo_enabled,
        tokens_enabled: args.tokens_enabled,
        access_token_seconds: args.access_token_seconds,
        requests_per_second: args.requests_per_second,
        workspace_id: args.workspace_id,
        clock_offset_ms: args.clock_offset_seconds.saturating_mul(1000),
    };
    let handle = Emulator::serve(args.listen, config).await?;
    if let (Some(name), Some(path)) = (&args.seed_admin_user, &args.seed_output) {
        let user = handle.add_user(name, true);
        write_atomically(path, serde_json::to_string_pretty(&user)?.as_bytes(), true)?;
    }
    if let Some(path) = &args.port_file {
        write_atomically(path, handle.addr().to_string().as_bytes(), false)?;
    }
    eprintln!("databricks-emulator listening on {}", handle.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
