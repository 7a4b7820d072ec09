//! One fleet size N: apply N DatabricksTokens and wait for Ready, sit idle, rotate a sample by
//! annotation, then restart the operator; counting Databricks calls (emulator stats), Kubernetes
//! writes (apiserver metrics), and the operator's CPU and peak RSS at every step.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use databricks_emulator::Stats;
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::cluster::{ControlPlaneCpu, Writes, apiserver_writes, delta};
use crate::operator::Operator;
use crate::world::{World, is_ready};

pub struct Setup {
    pub client: kube::Client,
    pub kubeconfig: PathBuf,
    pub control_plane_dir: PathBuf,
    pub operator_binary: PathBuf,
    pub log_dir: PathBuf,
    pub in_flight: usize,
    pub idle: Duration,
    pub rotation_sample: usize,
}

/// Databricks calls between two snapshots of the emulator's counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Calls {
    pub creates: u64,
    pub deletes: u64,
    pub lists: u64,
    pub total: u64,
}

impl Calls {
    pub fn between(before: &Stats, after: &Stats) -> Calls {
        let d = |e: &str| after.count(e).saturating_sub(before.count(e));
        Calls {
            creates: d("token/create") + d("obo/create"),
            deletes: d("token/delete") + d("token-management/delete"),
            lists: d("token/list") + d("token-management/list"),
            total: after
                .total_requests()
                .saturating_sub(before.total_requests()),
        }
    }
}

/// Kubernetes writes between two snapshots, by resource, without the benchmark's own.
#[derive(Clone, Copy, Debug, Default)]
pub struct K8sWrites {
    pub secrets: u64,
    pub tokens: u64,
    pub token_status: u64,
    pub events: u64,
}

impl K8sWrites {
    fn between(before: &Writes, after: &Writes, own_token_writes: u64) -> K8sWrites {
        K8sWrites {
            secrets: delta(before, after, "secrets"),
            tokens: delta(before, after, "databrickstokens").saturating_sub(own_token_writes),
            token_status: delta(before, after, "databrickstokens/status"),
            events: delta(before, after, "events"),
        }
    }

    pub fn total(&self) -> u64 {
        self.secrets + self.tokens + self.token_status + self.events
    }
}

#[derive(Debug, Default)]
pub struct SizeResult {
    pub n: usize,
    pub ready_seconds: f64,
    pub apply_seconds: f64,
    pub mint_calls: Calls,
    pub mint_writes: K8sWrites,
    pub reconciles: u64,
    pub cpu_seconds: f64,
    pub control_plane_cpu: ControlPlaneCpu,
    pub peak_rss_kib: u64,
    pub idle_cpu_seconds: f64,
    pub idle_calls: Calls,
    pub idle_writes: K8sWrites,
    pub rotations: usize,
    pub rotation_seconds: f64,
    pub rotation_calls: Calls,
    pub rotation_writes: K8sWrites,
    pub restart_seconds: f64,
    pub restart_calls: Calls,
    pub restart_writes: K8sWrites,
    pub restart_peak_rss_kib: u64,
}

pub async fn run(setup: &Setup, n: usize) -> anyhow::Result<SizeResult> {
    let namespace = format!("bench-{n}");
    let world = World::new(setup.client.clone(), &namespace).await?;
    let http = reqwest::Client::new();
    let start_operator = |tag: &str| {
        Operator::start(
            &setup.operator_binary,
            &setup.kubeconfig,
            &namespace,
            setup.log_dir.join(format!("operator-{n}-{tag}.log")),
        )
    };
    let mut operator = start_operator("first")?;
    wait_metrics(&operator, &http, 0).await?;
    let mut r = SizeResult {
        n,
        ..Default::default()
    };

    // 1. Apply N and wait for all Ready.
    let names: Vec<String> = (0..n).map(|i| format!("t{i:05}")).collect();
    let (s0, w0, cpu0) = snapshot(&world, &operator).await?;
    let control_plane_cpu0 = ControlPlaneCpu::of(&setup.control_plane_dir);
    let started = Instant::now();
    world.create_tokens(&names, setup.in_flight).await?;
    r.apply_seconds = started.elapsed().as_secs_f64();
    let ready_timeout = Duration::from_secs(300).max(Duration::from_millis(100) * n as u32);
    world.wait_all(&names, ready_timeout, is_ready).await?;
    r.ready_seconds = started.elapsed().as_secs_f64();
    r.control_plane_cpu = ControlPlaneCpu::of(&setup.control_plane_dir).since(control_plane_cpu0);
    let (s1, w1, cpu1) = snapshot(&world, &operator).await?;
    r.mint_calls = Calls::between(&s0, &s1);
    r.mint_writes = K8sWrites::between(&w0, &w1, n as u64);
    r.reconciles = reconciles(&operator, &http).await;
    r.cpu_seconds = cpu1 - cpu0;
    r.peak_rss_kib = operator.peak_rss_kib();

    // 2. Idle: nothing is due for hours (24h lifetimes, 10m verification).
    tokio::time::sleep(setup.idle).await;
    let (s2, w2, cpu2) = snapshot(&world, &operator).await?;
    r.idle_cpu_seconds = cpu2 - cpu1;
    r.idle_calls = Calls::between(&s1, &s2);
    r.idle_writes = K8sWrites::between(&w1, &w2, 0);

    // 3. Manual rotation of a sample, 1 s grace: done when the new token is current and the
    //    old one revoked.
    let sample = &names[..setup.rotation_sample.min(n)];
    let old_ids = current_ids(&world, sample).await?;
    let started = Instant::now();
    request_rotation(&world, sample, setup.in_flight).await?;
    world
        .wait_all(sample, Duration::from_secs(300), |t| {
            let name = t.metadata.name.as_deref().unwrap_or_default();
            t.status.as_ref().is_some_and(|s| {
                s.token_id.is_some()
                    && s.token_id.as_ref() != old_ids.get(name)
                    && s.previous_tokens.is_empty()
            })
        })
        .await
        .context("rotation")?;
    r.rotations = sample.len();
    r.rotation_seconds = started.elapsed().as_secs_f64();
    let (s3, w3, _) = snapshot(&world, &operator).await?;
    r.rotation_calls = Calls::between(&s2, &s3);
    r.rotation_writes = K8sWrites::between(&w2, &w3, sample.len() as u64);

    // 4. Restart with N Ready: a new process must find everything in place.
    operator.terminate()?;
    let (s4, w4, _) = snapshot_without_operator(&world).await?;
    let started = Instant::now();
    operator = start_operator("restart")?;
    wait_metrics(&operator, &http, n).await?;
    r.restart_seconds = started.elapsed().as_secs_f64();
    let (s5, w5, _) = snapshot(&world, &operator).await?;
    r.restart_calls = Calls::between(&s4, &s5);
    r.restart_writes = K8sWrites::between(&w4, &w5, 0);
    r.restart_peak_rss_kib = operator.peak_rss_kib();
    operator.terminate()?;
    Ok(r)
}

async fn snapshot(world: &World, operator: &Operator) -> anyhow::Result<(Stats, Writes, f64)> {
    let cpu = operator.cpu_seconds();
    let (stats, writes, _) = snapshot_without_operator(world).await?;
    Ok((stats, writes, cpu))
}

async fn snapshot_without_operator(world: &World) -> anyhow::Result<(Stats, Writes, f64)> {
    let writes = apiserver_writes(&world.client).await?;
    Ok((world.emulator.stats(), writes, 0.0))
}

/// Wait until /metrics is served and shows at least `ready` tokens Ready.
pub async fn wait_metrics(
    operator: &Operator,
    http: &reqwest::Client,
    ready: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(if ready == 0 { 60 } else { 600 });
    loop {
        if operator
            .ready_in_metrics(http)
            .await
            .is_some_and(|n| n >= ready)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the operator's /metrics never showed {ready} Ready tokens");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn reconciles(operator: &Operator, http: &reqwest::Client) -> u64 {
    let Some(url) = operator.metrics_url() else {
        return 0;
    };
    let Ok(resp) = http.get(url).send().await else {
        return 0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("dbtoken_reconcile_duration_seconds_count"))
        .and_then(|v| v.split_whitespace().last()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn current_ids(world: &World, names: &[String]) -> anyhow::Result<HashMap<String, String>> {
    let api = world.tokens();
    let mut ids = HashMap::new();
    for name in names {
        let t = api.get(name).await?;
        if let Some(id) = t.status.and_then(|s| s.token_id) {
            ids.insert(name.clone(), id);
        }
    }
    Ok(ids)
}

async fn request_rotation(world: &World, names: &[String], in_flight: usize) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {"dbtoken.dev/rotate-requested-at": now}}});
    let api = world.tokens();
    stream::iter(names)
        .map(|n| {
            let api = api.clone();
            let patch = patch.clone();
            async move {
                api.patch(n, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(in_flight)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}
