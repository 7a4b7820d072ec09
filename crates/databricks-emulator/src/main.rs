//! `databricks-emulator`: serve a local Databricks workspace for the demo and SDK tests.

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;
use databricks_emulator::{Emulator, EmulatorConfig};

#[derive(Parser)]
#[command(
    about = "A local Databricks workspace emulator (token APIs, OAuth, Entra) with fault injection"
)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Write the bound address (host:port) to this file once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Create an admin user with this name at start.
    #[arg(long)]
    seed_admin_user: Option<String>,
    /// Where to write the seeded user's credentials as JSON (never printed).
    #[arg(long, requires = "seed_admin_user")]
    seed_output: Option<PathBuf>,
    #[arg(long, default_value_t = 730)]
    max_token_lifetime_days: u32,
    #[arg(long, default_value_t = 600)]
    quota_per_owner: usize,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    obo_enabled: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let config = EmulatorConfig {
        max_token_lifetime_days: args.max_token_lifetime_days,
        quota_per_owner: args.quota_per_owner,
        obo_enabled: args.obo_enabled,
        ..EmulatorConfig::default()
    };
    let handle = Emulator::serve(args.listen, config).await?;
    if let Some(name) = &args.seed_admin_user {
        let user = handle.add_user(name, true);
        if let Some(path) = &args.seed_output {
            std::fs::write(path, serde_json::to_string_pretty(&user)?)?;
        }
    }
    if let Some(path) = &args.port_file {
        std::fs::write(path, handle.addr().to_string())?;
    }
    eprintln!("databricks-emulator listening on {}", handle.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
