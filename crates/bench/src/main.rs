//! `bench`: the operator's speed, cost and scale, measured on the local control plane with the
//! in-process Databricks emulator and the operator as a real (release) process, next to the
//! seed's rotation script. Prints Markdown tables (the figures kept in BENCHMARKS.md).

mod baseline;
mod cluster;
mod fleet;
mod latency;
mod operator;
mod peer;
mod probe;
mod procfs;
mod realistic;
mod report;
mod world;
mod write_costs;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::Parser;

/// Benchmark the operator: time to Ready for N tokens, Databricks and Kubernetes calls per
/// mint, rotation and restart, CPU and memory, apply-to-Secret latency, and a script baseline.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Fleet sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    sizes: Vec<usize>,
    /// DatabricksTokens created at once.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Tokens rotated by annotation at each size.
    #[arg(long, default_value_t = 50)]
    rotation_sample: usize,
    /// Seconds of idleness measured after all are Ready.
    #[arg(long, default_value_t = 20)]
    idle_seconds: u64,
    /// Single tokens created one at a time for the apply-to-Secret latency (0: skip).
    #[arg(long, default_value_t = 30)]
    latency_samples: usize,
    /// Tokens the baseline script rotates (0: skip).
    #[arg(long, default_value_t = 100)]
    baseline_tokens: usize,
    /// Also time creating each size's N DatabricksTokens with no operator running: what the
    /// API server alone allows on this machine (runs after all sizes).
    #[arg(long)]
    ceiling: bool,
    /// Also measure what each kind of write a mint makes costs the API server, over this many
    /// objects each, with no operator running (0: skip).
    #[arg(long, default_value_t = 0)]
    write_costs: usize,
    /// The repository root (hack/, tests/sdk/, .cache/).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))]
    root: PathBuf,
    /// The operator binary; default ROOT/target/release/databricks-token-operator.
    #[arg(long)]
    operator_binary: Option<PathBuf>,
    /// Also run each size as a fleet Databricks allows, over this many workspaces (each its own
    /// emulator at the default quota, service principals holding at most 500 tokens each, the
    /// operator at its default client rate limit); 0: skip.
    #[arg(long, default_value_t = 0)]
    fleet: usize,
    /// Skip the single-workspace runs at each size (apply N, rotation, idle, restart): with
    /// --fleet, measure the fleet alone.
    #[arg(long)]
    fleet_only: bool,
    /// The emulated workspaces' request limit in the fleet run (requests/s; unverified for the
    /// real service, whose token-management is reported at about 40/s).
    #[arg(long, default_value_t = 40)]
    fleet_workspace_rps: u32,
    /// In the fleet run, set the workspaces' client limit (`rateLimit.requestsPerSecond`) instead
    /// of leaving the operator's default: for comparing limits.
    #[arg(long)]
    fleet_client_rps: Option<u32>,
    /// In the fleet run, tokens live this long (e.g. 3m) and the bench waits for the whole fleet
    /// to renew once: the rotation storm.
    #[arg(long, value_parser = humantime::parse_duration)]
    storm_lifetime: Option<Duration>,
    /// A peer controller measured side by side at the same sizes, as `cert-manager=PATH` (a
    /// cert-manager controller binary; BENCHMARKS.md says how one was built).
    #[arg(long, value_parser = parse_peer)]
    peer: Option<PathBuf>,
    /// The peer's CRDs: a file or directory of YAML (cert-manager's deploy/crds of the same
    /// release).
    #[arg(long, requires = "peer")]
    peer_crds: Option<PathBuf>,
    /// Python with the databricks-sdk; default ROOT/.cache/venv/bin/python (hack/python-venv.sh).
    #[arg(long)]
    python: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Dropping the run on a signal drops the control plane and operator guards, which stop them.
    tokio::select! {
        r = run(args) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        _ = term.recv() => bail!("terminated"),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let root = args.root.canonicalize().context("repository root")?;
    let operator_binary = args
        .operator_binary
        .clone()
        .unwrap_or_else(|| root.join("target/release/databricks-token-operator"));
    if !operator_binary.exists() {
        bail!(
            "{} is missing: run `cargo build --release --bins` first",
            operator_binary.display()
        );
    }
    let python = args
        .python
        .clone()
        .unwrap_or_else(|| root.join(".cache/venv/bin/python"));
    if args.baseline_tokens > 0 && !python.exists() {
        bail!(
            "{} is missing: run hack/python-venv.sh first",
            python.display()
        );
    }

    let work = std::env::temp_dir().join(format!("dbtoken-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    eprintln!("bench: control plane and logs in {}", work.display());
    let control_plane = cluster::ControlPlane::start(&root, &work.join("control-plane"))?;
    let client = control_plane.client().await?;
    world::install_crds(&client).await?;
    let setup = fleet::Setup {
        client: client.clone(),
        kubeconfig: control_plane.kubeconfig.clone(),
        operator_binary,
        control_plane_dir: control_plane.dir().to_path_buf(),
        log_dir: work.clone(),
        in_flight: args.in_flight,
        idle: Duration::from_secs(args.idle_seconds),
        rotation_sample: args.rotation_sample,
    };

    let mut out = report::Report::new(&args_line(), args.in_flight);

    if args.latency_samples > 0 {
        eprintln!(
            "bench: apply-to-Secret latency, {} samples",
            args.latency_samples
        );
        let w = world::World::new(client.clone(), "bench-latency").await?;
        let op = operator::Operator::start(
            &setup.operator_binary,
            &setup.kubeconfig,
            &w.namespace,
            work.join("operator-latency.log"),
        )?;
        fleet::wait_metrics(&op, &reqwest::Client::new(), 0).await?;
        let l = latency::apply_to_secret(&w, args.latency_samples).await?;
        drop(op);
        out.latency(&l);
    }
    if args.baseline_tokens > 0 {
        eprintln!("bench: baseline script, {} rotations", args.baseline_tokens);
        out.baseline(baseline::run(&root, &python, args.baseline_tokens).await?);
    }
    for &n in args.sizes.iter().filter(|_| !args.fleet_only) {
        eprintln!("bench: N = {n}");
        let r = fleet::run(&setup, n)
            .await
            .with_context(|| format!("N = {n}"))?;
        eprintln!("bench: N = {n}: all Ready in {:.1} s", r.ready_seconds);
        out.size(r);
    }
    if args.fleet > 0 {
        let shape = realistic::Shape {
            workspaces: args.fleet,
            workspace_rps: args.fleet_workspace_rps,
            storm_lifetime: args.storm_lifetime,
            client_rps: args.fleet_client_rps,
        };
        for &n in &args.sizes {
            eprintln!("bench: fleet N = {n} over {} workspaces", shape.workspaces);
            match realistic::run(&setup, &shape, n).await {
                Ok(r) => out.fleet(r),
                Err(e) => {
                    eprintln!("bench: fleet N = {n} failed: {e:?}");
                    out.failed(&format!("fleet, N = {n}"), &e);
                }
            }
        }
    }
    if let Some(binary) = &args.peer {
        let crds = args
            .peer_crds
            .clone()
            .context("--peer needs --peer-crds (the peer's CRD YAML)")?;
        peer::install_crds(&setup.kubeconfig, &crds)?;
        let peer_setup = peer::PeerSetup {
            binary: binary.clone(),
            kubeconfig: setup.kubeconfig.clone(),
            control_plane_dir: setup.control_plane_dir.clone(),
            log_dir: work.clone(),
            in_flight: args.in_flight,
            idle: setup.idle,
            workers: 32,
        };
        for &n in &args.sizes {
            eprintln!("bench: peer cert-manager, N = {n}");
            match peer::run(&client, &peer_setup, n).await {
                Ok(r) => {
                    eprintln!("bench: peer N = {n}: all Ready in {:.1} s", r.ready_seconds);
                    out.peer(r);
                }
                Err(e) => {
                    eprintln!("bench: peer N = {n} failed: {e:?}");
                    out.failed(&format!("peer, N = {n}"), &e);
                }
            }
        }
    }
    if args.ceiling {
        for &n in &args.sizes {
            eprintln!("bench: ceiling, N = {n} with no operator");
            let w = world::World::new(client.clone(), &format!("ceiling-{n}")).await?;
            let names: Vec<String> = (0..n).map(|i| format!("c{i:05}")).collect();
            let cpu = cluster::ControlPlaneCpu::of(control_plane.dir());
            let started = std::time::Instant::now();
            w.create_tokens(&names, args.in_flight).await?;
            let seconds = started.elapsed().as_secs_f64();
            let cpu = cluster::ControlPlaneCpu::of(control_plane.dir()).since(cpu);
            out.ceiling(n, seconds, cpu);
        }
    }
    if args.write_costs > 0 {
        eprintln!("bench: write costs, {} of each", args.write_costs);
        let w = world::World::new(client.clone(), "write-costs").await?;
        out.write_costs(
            write_costs::run(&w, control_plane.dir(), args.write_costs, args.in_flight).await?,
        );
    }
    print!("{}", out.render());
    drop(control_plane);
    Ok(())
}

fn parse_peer(text: &str) -> Result<PathBuf, String> {
    match text.split_once('=') {
        Some(("cert-manager", path)) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err("expected cert-manager=PATH (the only peer the bench knows)".into()),
    }
}

fn args_line() -> String {
    std::env::args().skip(1).collect::<Vec<_>>().join(" ")
}
