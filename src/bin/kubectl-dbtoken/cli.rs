//! The command line, with kubectl's connection flags.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-dbtoken",
    bin_name = "kubectl dbtoken",
    version,
    about = "Inspect and operate DatabricksTokens: status, rotate, inventory, check",
    after_help = "Exit codes: 0 fine, 1 not fine (not Ready, a failed check, a rotation that did not complete), 2 error."
)]
pub struct Cli {
    #[command(flatten)]
    pub kube: KubeFlags,

    /// Output format: text for people, json or yaml for scripts.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text, global = true)]
    pub output: Format,

    #[command(subcommand)]
    pub command: Command,
}

/// The connection flags kubectl has.
#[derive(Args, Debug, Clone, Default)]
pub struct KubeFlags {
    /// Path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,

    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Everything about one token: Ready and why, Secret keys, token ids and times, previous
    /// tokens, the workspace, recent events and what the operator does next. Exit 1 when not Ready.
    Status {
        /// The DatabricksToken's name.
        name: String,
    },
    /// Request a rotation through the `dbtoken.dev/rotate-requested-at` annotation.
    Rotate(RotateArgs),
    /// The tokens in Databricks for a workspace's identity (the whole workspace when its
    /// credential is an admin), classified against the DatabricksTokens of the cluster.
    Inventory(InventoryArgs),
    /// CRDs installed at this plugin's version, the operator running and leading, workspaces
    /// Ready, and the current user's RBAC for the common actions. Exit 1 when a check fails.
    Check(CheckArgs),
    /// Print a shell completion script.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// The DatabricksTokens to rotate.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub names: Vec<String>,
    /// Rotate every DatabricksToken in the namespace (or in all with -A).
    #[arg(long)]
    pub all: bool,
    /// With --all: only those matching this label selector.
    #[arg(short = 'l', long, requires = "all", conflicts_with = "names")]
    pub selector: Option<String>,
    /// With --all: every namespace.
    #[arg(
        short = 'A',
        long = "all-namespaces",
        requires = "all",
        conflicts_with = "names"
    )]
    pub all_namespaces: bool,
    /// Wait until each Secret holds a new token, and print its id.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, e.g. 2m or 90s.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Args, Debug)]
pub struct InventoryArgs {
    /// The workspace: NAME for a DatabricksWorkspace in the namespace, or
    /// `cluster/NAME` for a ClusterDatabricksWorkspace.
    pub workspace: String,
    /// Allow a plain http workspace host (local emulators only), as the operator's flag does.
    #[arg(long)]
    pub insecure_allow_http: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The namespace the operator runs in (its leader-election Lease is there).
    #[arg(long, default_value = "databricks-token-operator")]
    pub operator_namespace: String,
    /// The operator's Lease name.
    #[arg(long, default_value = "databricks-token-operator")]
    pub lease_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn rotate_takes_names_or_all_not_both() {
        assert!(Cli::try_parse_from(["k", "rotate", "a", "b"]).is_ok());
        assert!(Cli::try_parse_from(["k", "rotate", "--all", "-A", "-l", "team=x"]).is_ok());
        assert!(Cli::try_parse_from(["k", "rotate"]).is_err());
        assert!(Cli::try_parse_from(["k", "rotate", "a", "--all"]).is_err());
        assert!(Cli::try_parse_from(["k", "rotate", "a", "-A"]).is_err());
    }

    #[test]
    fn connection_and_output_flags_go_anywhere() {
        let cli = Cli::try_parse_from(["k", "status", "x", "-n", "ns", "-o", "json"]).unwrap();
        assert_eq!(cli.kube.namespace.as_deref(), Some("ns"));
        assert_eq!(cli.output, Format::Json);
    }
}
