//! A fleet Databricks would allow: N tokens over W workspaces (each its own emulator at the
//! default quota of 600 tokens per identity, with a request limit), minted on behalf of service
//! principals holding at most 500 each, by the operator at its default client rate limit. Measures
//! time to all Ready and the Databricks call rate per workspace. With a storm lifetime, the fleet
//! then renews all at once a lifetime later, and the rotations per second over time show how far
//! the renewal jitter spreads them, and whether any workspace had to refuse calls.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use databricks_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use databricks_token_operator::crd::{DatabricksToken, DatabricksWorkspace};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::{
    ByteString,
    api::core::v1::{Namespace, Secret},
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

use crate::fleet::Setup;
use crate::operator::Operator;
use crate::probe::{Interval, Probe, Targets};
use crate::world::is_ready;

/// Tokens per service principal: under the 600-token quota, with room for rotations in flight.
const PER_PRINCIPAL: usize = 500;
/// How often the probe reads calls, CPU and reconciles.
const PROBE_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct Shape {
    pub workspaces: usize,
    /// The emulated workspaces' own request limit (requests/s).
    pub workspace_rps: u32,
    /// A lifetime short enough to watch the whole fleet renew (e.g. 3m); None: no storm.
    pub storm_lifetime: Option<Duration>,
    /// The workspaces' `rateLimit.requestsPerSecond`; None: the operator's default.
    pub client_rps: Option<u32>,
}

#[derive(Debug, Default)]
pub struct FleetResult {
    pub n: usize,
    pub workspaces: usize,
    pub principals: usize,
    pub workspace_rps: u32,
    /// The client limit set on the workspaces; None: the operator's default.
    pub client_rps: Option<u32>,
    pub ready_seconds: f64,
    /// Databricks calls per second per workspace while minting: mean over the run, and the
    /// busiest workspace's busiest second.
    pub mean_rps_per_workspace: f64,
    pub peak_rps_per_workspace: u64,
    /// Calls the workspaces refused (429) while minting.
    pub throttled: u64,
    /// Calls, CPU and reconciles over time while minting.
    pub timeline: Vec<Interval>,
    pub storm: Option<StormResult>,
}

#[derive(Debug, Default)]
pub struct StormResult {
    pub lifetime: Duration,
    /// From the first to the last token Ready at the start.
    pub created_spread_seconds: f64,
    /// Tokens that renewed at least once within the wait (of `n`).
    pub renewed: usize,
    /// From the first to the last renewal seen (of those that renewed).
    pub rotation_spread_seconds: f64,
    /// From all Ready to the last token's first renewal; None when not all renewed in time.
    pub ready_to_all_renewed_seconds: Option<f64>,
    /// Why the wait ended early (a timeout, a watch error); None when every token renewed.
    pub failure: Option<String>,
    /// Rotations (token creates) per second over the storm, second by second.
    pub creates_per_second: Vec<u64>,
    pub peak_rps_per_workspace: u64,
    pub throttled: u64,
    /// Calls, CPU and reconciles over time during the storm.
    pub timeline: Vec<Interval>,
}

/// One emulated workspace and the principals its tokens are minted for.
struct Workspace {
    emulator: EmulatorHandle,
    principals: Vec<String>,
}

/// Per-workspace (requests, creates, refusals) at one instant.
type Counters = Vec<(u64, u64, u64)>;

fn counters(workspaces: &[Workspace]) -> Counters {
    workspaces
        .iter()
        .map(|w| {
            let s = w.emulator.stats();
            let throttled: u64 = s
                .requests
                .iter()
                .filter(|r| r.status == 429)
                .map(|r| r.count)
                .sum();
            (
                s.total_requests(),
                s.count("obo/create") + s.count("token/create"),
                throttled,
            )
        })
        .collect()
}

/// Samples the counters once a second until dropped.
struct Sampler {
    samples: Arc<Mutex<Vec<Counters>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(workspaces: Arc<Vec<Workspace>>) -> Sampler {
        let samples = Arc::new(Mutex::new(vec![counters(&workspaces)]));
        let task = {
            let samples = samples.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let c = counters(&workspaces);
                    samples.lock().unwrap_or_else(|p| p.into_inner()).push(c);
                }
            })
        };
        Sampler { samples, task }
    }

    fn finish(self) -> Vec<Counters> {
        self.task.abort();
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The busiest workspace-second's calls, and each second's creates summed over workspaces.
pub fn per_second(samples: &[Counters]) -> (u64, Vec<u64>) {
    let mut peak = 0;
    let mut creates = vec![];
    for pair in samples.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let mut second = 0;
        for (x, y) in a.iter().zip(b) {
            peak = peak.max(y.0.saturating_sub(x.0));
            second += y.1.saturating_sub(x.1);
        }
        creates.push(second);
    }
    (peak, creates)
}

fn throttled(samples: &[Counters]) -> u64 {
    match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => a.iter().zip(b).map(|(x, y)| y.2.saturating_sub(x.2)).sum(),
        _ => 0,
    }
}

pub async fn run(setup: &Setup, shape: &Shape, n: usize) -> anyhow::Result<FleetResult> {
    let namespace = format!("fleet-{n}");
    let client = setup.client.clone();
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let per_workspace = n.div_ceil(shape.workspaces.max(1));
    let principals_each = per_workspace.div_ceil(PER_PRINCIPAL).max(1);
    let mut workspaces = vec![];
    for w in 0..shape.workspaces {
        workspaces.push(workspace(&client, &namespace, w, principals_each, shape).await?);
    }
    let workspaces = Arc::new(workspaces);

    let lifetime = shape
        .storm_lifetime
        .map_or("24h".to_string(), |l| format!("{}s", l.as_secs()));
    let names: Vec<String> = (0..n).map(|i| format!("f{i:05}")).collect();
    let tokens: Api<DatabricksToken> = Api::namespaced(client.clone(), &namespace);
    let operator = Operator::start(
        &setup.operator_binary,
        &setup.kubeconfig,
        &namespace,
        setup.log_dir.join(format!("operator-fleet-{n}.log")),
    )?;
    crate::fleet::wait_metrics(&operator, &reqwest::Client::new(), 0).await?;

    let targets = |workspaces: &Arc<Vec<Workspace>>| {
        let workspaces = workspaces.clone();
        Targets {
            control_plane_dir: setup.control_plane_dir.clone(),
            operator_pid: operator.pid(),
            metrics_url: operator.metrics_url().unwrap_or_default(),
            databricks: Box::new(move || {
                counters(&workspaces)
                    .iter()
                    .fold((0, 0), |(c, k), w| (c + w.0, k + w.1))
            }),
        }
    };
    let ready_count = Arc::new(AtomicUsize::new(0));
    let probe = Probe::start(
        format!("fleet N = {n}, minting"),
        targets(&workspaces),
        ready_count.clone(),
        PROBE_EVERY,
    );
    let sampler = Sampler::start(workspaces.clone());
    let started = Instant::now();
    stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let w = i % workspaces.len();
            let principal = &workspaces[w].principals[(i / workspaces.len()) % principals_each];
            let token: DatabricksToken = serde_json::from_value(json!({
                "apiVersion": "dbtoken.dev/v1alpha1", "kind": "DatabricksToken",
                "metadata": {"name": name},
                "spec": {"workspaceRef": {"name": format!("ws-{w}")}, "lifetime": lifetime,
                         "onBehalfOf": {"applicationId": principal},
                         "rotation": {"gracePeriod": "1s"}},
            }))
            .expect("token spec");
            let tokens = tokens.clone();
            async move {
                tokens
                    .create(&PostParams::default(), &token)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(setup.in_flight)
        .try_collect::<Vec<()>>()
        .await?;
    let timeout = Duration::from_secs(600).max(Duration::from_millis(200) * n as u32);
    let ready = wait_each(&tokens, &names, timeout, &ready_count, |t, _| is_ready(t)).await;
    let ready_seconds = started.elapsed().as_secs_f64();
    let all_ready = Instant::now();
    let timeline = probe.finish();
    if let Some(failure) = ready.failure {
        bail!("{} of {n} Ready: {failure}", ready.at.len());
    }
    let ready_at = ready.at;
    let samples = sampler.finish();
    let (peak, _) = per_second(&samples);
    let calls: u64 = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => a.iter().zip(b).map(|(x, y)| y.0 - x.0).sum(),
        _ => 0,
    };
    let mut result = FleetResult {
        n,
        workspaces: shape.workspaces,
        principals: principals_each * shape.workspaces,
        workspace_rps: shape.workspace_rps,
        client_rps: shape.client_rps,
        ready_seconds,
        mean_rps_per_workspace: calls as f64 / ready_seconds.max(1e-9) / shape.workspaces as f64,
        peak_rps_per_workspace: peak,
        throttled: throttled(&samples),
        timeline,
        storm: None,
    };
    eprintln!("bench: fleet N = {n}: all Ready in {ready_seconds:.1} s");

    if let Some(lifetime) = shape.storm_lifetime {
        // A failure from here on is the storm's: the fleet's Ready figures above still stand.
        let first = match current_ids(&tokens, &names).await {
            Ok(ids) => ids,
            Err(e) => {
                result.storm = Some(StormResult {
                    lifetime,
                    failure: Some(format!("listing the tokens: {e:#}")),
                    ..Default::default()
                });
                return Ok(result);
            }
        };
        let renewed_count = Arc::new(AtomicUsize::new(0));
        let probe = Probe::start(
            format!("fleet N = {n}, storm"),
            targets(&workspaces),
            renewed_count.clone(),
            PROBE_EVERY,
        );
        let sampler = Sampler::start(workspaces.clone());
        let renewed = wait_each(&tokens, &names, lifetime * 2, &renewed_count, |t, name| {
            t.status.as_ref().and_then(|s| s.token_id.as_ref()) != first.get(name)
        })
        .await;
        let samples = sampler.finish();
        let timeline = probe.finish();
        let (peak, creates) = per_second(&samples);
        let storm = StormResult {
            lifetime,
            created_spread_seconds: spread(&ready_at),
            renewed: renewed.at.len(),
            rotation_spread_seconds: spread(&renewed.at),
            ready_to_all_renewed_seconds: renewed
                .failure
                .is_none()
                .then(|| last_after(&renewed.at, all_ready)),
            failure: renewed.failure,
            creates_per_second: creates,
            peak_rps_per_workspace: peak,
            throttled: throttled(&samples),
            timeline,
        };
        eprintln!(
            "bench: fleet N = {n}: storm: {} of {n} renewed; first to last renewal {:.1} s; all Ready to all renewed {}",
            storm.renewed,
            storm.rotation_spread_seconds,
            storm
                .ready_to_all_renewed_seconds
                .map_or("- (not all renewed)".to_string(), |s| format!("{s:.1} s"))
        );
        result.storm = Some(storm);
    }
    drop(operator);
    Ok(result)
}

/// Seconds from `start` to the latest of `times`.
fn last_after(times: &[Instant], start: Instant) -> f64 {
    times
        .iter()
        .max()
        .map_or(0.0, |t| t.saturating_duration_since(start).as_secs_f64())
}

fn spread(times: &[Instant]) -> f64 {
    match (times.iter().min(), times.iter().max()) {
        (Some(a), Some(b)) => b.duration_since(*a).as_secs_f64(),
        _ => 0.0,
    }
}

async fn workspace(
    client: &kube::Client,
    namespace: &str,
    index: usize,
    principals: usize,
    shape: &Shape,
) -> anyhow::Result<Workspace> {
    let emulator = Emulator::start(EmulatorConfig {
        requests_per_second: Some(shape.workspace_rps),
        ..EmulatorConfig::default()
    })
    .await?;
    let admin = emulator.add_user(&format!("admin{index}@example.com"), true);
    let principals = (0..principals)
        .map(|p| {
            emulator
                .add_service_principal(&format!("bench-sp-{index}-{p}"), false)
                .application_id
        })
        .collect();
    let secret_name = format!("databricks-admin-{index}");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.clone()),
            ..Default::default()
        },
        data: Some([("token".to_string(), ByteString(admin.pat.into_bytes()))].into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    // No rateLimit unless asked: the operator's defaults are what is measured.
    let mut spec =
        json!({"host": emulator.base_url(), "auth": {"pat": {"secretRef": {"name": secret_name}}}});
    if let Some(rps) = shape.client_rps {
        spec["rateLimit"] = json!({"requestsPerSecond": rps});
    }
    let ws: DatabricksWorkspace = serde_json::from_value(json!({
        "apiVersion": "dbtoken.dev/v1alpha1", "kind": "DatabricksWorkspace",
        "metadata": {"name": format!("ws-{index}")},
        "spec": spec,
    }))?;
    Api::<DatabricksWorkspace>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &ws)
        .await?;
    Ok(Workspace {
        emulator,
        principals,
    })
}

async fn current_ids(
    tokens: &Api<DatabricksToken>,
    names: &[String],
) -> anyhow::Result<HashMap<String, String>> {
    let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
    Ok(tokens
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|t| {
            let name = t.metadata.name.clone()?;
            let id = t.status?.token_id?;
            wanted.contains(name.as_str()).then_some((name, id))
        })
        .collect())
}

/// When each name first satisfied `done`, and why the wait ended before all did.
struct Waited {
    at: Vec<Instant>,
    failure: Option<String>,
}

/// Watch until every name satisfies `done` or `timeout` passes, counting into `progress`.
async fn wait_each(
    tokens: &Api<DatabricksToken>,
    names: &[String],
    timeout: Duration,
    progress: &AtomicUsize,
    done: impl Fn(&DatabricksToken, &str) -> bool,
) -> Waited {
    let mut pending: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut at = vec![];
    let events = watcher(tokens.clone(), watcher::Config::default()).applied_objects();
    let wait = async {
        let mut events = std::pin::pin!(events);
        while !pending.is_empty() {
            let Some(t) = events.try_next().await? else {
                anyhow::bail!("the watch ended");
            };
            let name = t.metadata.name.clone().unwrap_or_default();
            if pending.contains(name.as_str()) && done(&t, &name) {
                pending.remove(name.as_str());
                at.push(Instant::now());
                progress.fetch_add(1, Ordering::Relaxed);
            }
        }
        anyhow::Ok(())
    };
    let failure = match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(_) => Some(format!("still waiting after {timeout:?}")),
    };
    Waited { at, failure }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_second_takes_the_busiest_workspace_second_and_sums_creates() {
        let samples: Vec<Counters> = vec![
            vec![(0, 0, 0), (0, 0, 0)],
            vec![(10, 4, 0), (30, 20, 1)],
            vec![(15, 6, 0), (31, 20, 3)],
        ];
        let (peak, creates) = per_second(&samples);
        assert_eq!(peak, 30);
        assert_eq!(creates, [24, 2]);
        assert_eq!(throttled(&samples), 3);
    }
}
