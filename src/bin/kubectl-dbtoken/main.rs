//! `kubectl dbtoken`: the on-call's tool for DatabricksTokens. kubectl finds it on PATH by its
//! name (`kubectl-dbtoken`); it reads the same kubeconfig as kubectl and acts with the user's own
//! RBAC, never the operator's.
//!
//! Exit codes: 0 when everything asked about is fine, 1 when it is not (a token not Ready, a
//! failed check, a rotation that did not complete), 2 for usage or access errors.

mod check;
mod cli;
mod client;
mod inventory;
mod output;
mod rotate;
mod status;
mod when;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};

/// How a subcommand ended, when it did not fail outright.
pub enum Outcome {
    Fine,
    NotFine,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Completion { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(
                *shell,
                &mut command,
                "kubectl-dbtoken",
                &mut std::io::stdout(),
            );
            Ok(Outcome::Fine)
        }
        command => run(&cli, command).await,
    };
    match result {
        Ok(Outcome::Fine) => ExitCode::SUCCESS,
        Ok(Outcome::NotFine) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: &Cli, command: &Command) -> anyhow::Result<Outcome> {
    let target = client::connect(&cli.kube).await?;
    let format = cli.output;
    match command {
        Command::Status { name } => status::run(&target, name, format).await,
        Command::Rotate(args) => rotate::run(&target, args, format).await,
        Command::Inventory(args) => inventory::run(&target, args, format).await,
        Command::Check(args) => check::run(&target, args, format).await,
        Command::Completion { .. } => unreachable!("handled before connecting"),
    }
}
