//! The figures as Markdown tables.

use std::{fmt::Write, time::Duration};

use crate::baseline::Baseline;
use crate::cluster::ControlPlaneCpu;
use crate::fleet::{K8sWrites, SizeResult};
use crate::latency::percentile;
use crate::peer::PeerResult;
use crate::probe::{self, Interval};
use crate::realistic::FleetResult;
use crate::world::{MAX_CONCURRENT, RATE_LIMIT_RPS};
use crate::write_costs::WriteCost;

pub struct Report {
    args: String,
    in_flight: usize,
    sizes: Vec<SizeResult>,
    latency: Option<Vec<Duration>>,
    baseline: Option<Baseline>,
    /// (N, seconds, control-plane CPU) to create N DatabricksTokens with no operator running.
    ceilings: Vec<(usize, f64, ControlPlaneCpu)>,
    write_costs: Vec<WriteCost>,
    peers: Vec<PeerResult>,
    fleets: Vec<FleetResult>,
    /// Parts that failed, with their error: the rest of the run is still reported.
    failures: Vec<String>,
}

fn per(x: u64, n: usize) -> f64 {
    x as f64 / n.max(1) as f64
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn writes(w: &K8sWrites, n: usize) -> String {
    format!(
        "{:.2} ({:.2} Secret, {:.2} token, {:.2} status, {:.2} event)",
        per(w.total(), n),
        per(w.secrets, n),
        per(w.tokens, n),
        per(w.token_status, n),
        per(w.events, n)
    )
}

impl Report {
    pub fn new(args: &str, in_flight: usize) -> Self {
        Self {
            args: args.to_string(),
            in_flight,
            sizes: vec![],
            latency: None,
            baseline: None,
            ceilings: vec![],
            write_costs: vec![],
            peers: vec![],
            fleets: vec![],
            failures: vec![],
        }
    }

    /// A part of the run failed; the report says so instead of losing the other parts.
    pub fn failed(&mut self, part: &str, error: &anyhow::Error) {
        self.failures.push(format!("{part}: {error:?}"));
    }

    pub fn fleet(&mut self, r: FleetResult) {
        self.fleets.push(r);
    }

    pub fn peer(&mut self, r: PeerResult) {
        self.peers.push(r);
    }

    /// API server + etcd CPU of one token's writes (ms), from the write-cost measurement.
    fn cost_per_token_ms(&self) -> Option<f64> {
        if self.write_costs.is_empty() {
            return None;
        }
        let ms = |cpu: f64, n: usize| cpu * 1e3 / n.max(1) as f64;
        Some(
            self.write_costs
                .iter()
                .map(|c| ms(c.cpu.apiserver, c.n) + ms(c.cpu.etcd, c.n))
                .sum(),
        )
    }

    pub fn ceiling(&mut self, n: usize, seconds: f64, cpu: ControlPlaneCpu) {
        self.ceilings.push((n, seconds, cpu));
    }

    pub fn write_costs(&mut self, costs: Vec<WriteCost>) {
        self.write_costs = costs;
    }

    pub fn size(&mut self, r: SizeResult) {
        self.sizes.push(r);
    }

    pub fn latency(&mut self, sorted: &[Duration]) {
        self.latency = Some(sorted.to_vec());
    }

    pub fn baseline(&mut self, b: Baseline) {
        self.baseline = Some(b);
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = self.write(&mut s);
        s
    }

    fn write(&self, s: &mut String) -> std::fmt::Result {
        writeln!(s, "## bench {}", self.args)?;
        for failure in &self.failures {
            writeln!(s, "FAILED {failure}\n")?;
        }
        writeln!(
            s,
            "machine: {} CPUs, {} MiB memory; workspace rateLimit {RATE_LIMIT_RPS} req/s, \
             {MAX_CONCURRENT} in flight (so the client-side limit is not what is measured); \
             CRs created {} at a time\n",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            mem_total_mib(),
            self.in_flight
        )?;
        if !self.sizes.is_empty() {
            writeln!(s, "### Apply N, wait for all Ready")?;
            writeln!(
                s,
                "| N | all created (s) | all Ready (s) | mints/s | token/create per mint | token/list per mint | Databricks calls per mint | reconciles per token | K8s writes per token | operator CPU (s) | API server CPU (s) | etcd CPU (s) | peak RSS (MiB) |"
            )?;
            writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
            for r in &self.sizes {
                writeln!(
                    s,
                    "| {} | {:.1} | {:.1} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    r.n,
                    r.apply_seconds,
                    r.ready_seconds,
                    r.n as f64 / r.ready_seconds.max(1e-9),
                    per(r.mint_calls.creates, r.n),
                    per(r.mint_calls.lists, r.n),
                    per(r.mint_calls.total, r.n),
                    per(r.reconciles, r.n),
                    writes(&r.mint_writes, r.n),
                    r.cpu_seconds,
                    r.control_plane_cpu.apiserver,
                    r.control_plane_cpu.etcd,
                    mib(r.peak_rss_kib)
                )?;
            }
            writeln!(
                s,
                "\n### Idle, then manual rotation of a sample (gracePeriod 1s)"
            )?;
            writeln!(
                s,
                "| N | idle CPU (s) | idle Databricks calls | idle K8s writes | rotated | rotation wall (s) | creates per rotation | deletes per rotation | Databricks calls per rotation | K8s writes per rotation |"
            )?;
            writeln!(s, "|---|---|---|---|---|---|---|---|---|---|")?;
            for r in &self.sizes {
                writeln!(
                    s,
                    "| {} | {:.2} | {} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {} |",
                    r.n,
                    r.idle_cpu_seconds,
                    r.idle_calls.total,
                    r.idle_writes.total(),
                    r.rotations,
                    r.rotation_seconds,
                    per(r.rotation_calls.creates, r.rotations),
                    per(r.rotation_calls.deletes, r.rotations),
                    per(r.rotation_calls.total, r.rotations),
                    writes(&r.rotation_writes, r.rotations)
                )?;
            }
            writeln!(
                s,
                "\n### Restart with N Ready (SIGTERM, start a new process)"
            )?;
            writeln!(
                s,
                "| N | until N `dbtoken_token_ready 1` (s) | tokens minted | Databricks calls | K8s writes | peak RSS (MiB) |"
            )?;
            writeln!(s, "|---|---|---|---|---|---|")?;
            for r in &self.sizes {
                writeln!(
                    s,
                    "| {} | {:.2} | {} | {} | {} | {:.1} |",
                    r.n,
                    r.restart_seconds,
                    r.restart_calls.creates,
                    r.restart_calls.total,
                    r.restart_writes.total(),
                    mib(r.restart_peak_rss_kib)
                )?;
            }
        }
        if !self.ceilings.is_empty() {
            writeln!(
                s,
                "\n### API server ceiling: N DatabricksTokens created with no operator running"
            )?;
            writeln!(
                s,
                "| N | all created (s) | creates/s | API server CPU (s) | etcd CPU (s) |"
            )?;
            writeln!(s, "|---|---|---|---|---|")?;
            for (n, seconds, cpu) in &self.ceilings {
                writeln!(
                    s,
                    "| {n} | {seconds:.1} | {:.0} | {:.1} | {:.1} |",
                    *n as f64 / seconds.max(1e-9),
                    cpu.apiserver,
                    cpu.etcd
                )?;
            }
        }
        if !self.write_costs.is_empty() {
            writeln!(
                s,
                "\n### API server cost of each write a mint makes (no operator running)"
            )?;
            writeln!(
                s,
                "| write | N | wall (s) | per second | API server CPU per write (ms) | etcd CPU per write (ms) |"
            )?;
            writeln!(s, "|---|---|---|---|---|---|")?;
            let ms = |cpu: f64, n: usize| cpu * 1e3 / n.max(1) as f64;
            for c in &self.write_costs {
                writeln!(
                    s,
                    "| {} | {} | {:.1} | {:.0} | {:.2} | {:.2} |",
                    c.kind,
                    c.n,
                    c.seconds,
                    c.n as f64 / c.seconds.max(1e-9),
                    ms(c.cpu.apiserver, c.n),
                    ms(c.cpu.etcd, c.n)
                )?;
            }
            let api: f64 = self
                .write_costs
                .iter()
                .map(|c| ms(c.cpu.apiserver, c.n))
                .sum();
            let etcd: f64 = self.write_costs.iter().map(|c| ms(c.cpu.etcd, c.n)).sum();
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            writeln!(
                s,
                "\nOne token's writes: {api:.1} ms of API server CPU and {etcd:.1} ms of etcd CPU, before any \
                 watch is served; 10,000 tokens need at least {:.0} s on {cores} cores for those alone.",
                (api + etcd) * 10.0 / cores as f64
            )?;
        }
        if let Some(cost) = self.cost_per_token_ms().filter(|_| !self.sizes.is_empty()) {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            writeln!(
                s,
                "\n### Distance to the floor: the API server and etcd CPU of the operator's writes alone"
            )?;
            writeln!(
                s,
                "| N | floor on {cores} cores (s) | all Ready (s) | multiple of the floor |"
            )?;
            writeln!(s, "|---|---|---|---|")?;
            for r in &self.sizes {
                let floor = floor_seconds(r.n, cost, cores);
                writeln!(
                    s,
                    "| {} | {floor:.1} | {:.1} | {:.2} |",
                    r.n,
                    r.ready_seconds,
                    r.ready_seconds / floor.max(1e-9)
                )?;
            }
        }
        if !self.peers.is_empty() {
            self.write_peers(s)?;
        }
        if !self.fleets.is_empty() {
            self.write_fleets(s)?;
        }
        if let Some(l) = &self.latency {
            writeln!(
                s,
                "\n### Apply-to-Secret latency ({} single tokens, one at a time)",
                l.len()
            )?;
            writeln!(
                s,
                "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                percentile(l, 50.0).as_secs_f64() * 1e3,
                percentile(l, 99.0).as_secs_f64() * 1e3,
                l.last().copied().unwrap_or_default().as_secs_f64() * 1e3
            )?;
        }
        if let Some(b) = &self.baseline {
            let m = b.rotations as usize;
            writeln!(
                s,
                "\n### Baseline: the seed's rotation script (official Python SDK, list + create + delete per token)"
            )?;
            writeln!(
                s,
                "{m} rotations in {:.2} s: {:.1} ms per rotation; per rotation {:.2} creates, {:.2} deletes, {:.2} lists, {:.2} Databricks calls in all",
                b.seconds,
                b.seconds * 1e3 / m.max(1) as f64,
                per(b.calls.creates, m),
                per(b.calls.deletes, m),
                per(b.calls.lists, m),
                per(b.calls.total, m)
            )?;
            for r in &self.sizes {
                let op_calls = per(r.rotation_calls.total, r.rotations);
                let script_calls = per(b.calls.total, m);
                writeln!(
                    s,
                    "- N = {}: operator / script Databricks calls per rotation = {:.2} / {:.2} = {:.2}; wall per rotation {:.1} ms (operator, {} at once, incl. the 1 s grace) vs {:.1} ms (script, sequential)",
                    r.n,
                    op_calls,
                    script_calls,
                    op_calls / script_calls.max(1e-9),
                    r.rotation_seconds * 1e3 / r.rotations.max(1) as f64,
                    r.rotations,
                    b.seconds * 1e3 / m.max(1) as f64
                )?;
            }
        }
        Ok(())
    }
}

fn timeline_step(timeline: &[Interval]) -> String {
    format!("{:.0}", timeline.first().map_or(0.0, |i| i.at))
}

fn write_timeline(s: &mut String, timeline: &[Interval]) -> std::fmt::Result {
    writeln!(s, "{}", probe::HEADER)?;
    for i in timeline {
        writeln!(s, "{}", probe::line(i))?;
    }
    Ok(())
}

/// The least time N tokens' writes take when the API server and etcd share `cores` fully.
pub fn floor_seconds(n: usize, cost_per_token_ms: f64, cores: usize) -> f64 {
    n as f64 * cost_per_token_ms / 1e3 / cores.max(1) as f64
}

impl Report {
    fn write_fleets(&self, s: &mut String) -> std::fmt::Result {
        writeln!(
            s,
            "\n### A fleet Databricks allows: default quota (600 per identity), on-behalf-of service principals (<= 500 tokens each)"
        )?;
        writeln!(
            s,
            "| N | workspaces | service principals | workspace limit (req/s) | client limit (req/s) | all Ready (s) | mean calls/s per workspace | busiest workspace-second | refused (429) |"
        )?;
        writeln!(s, "|---|---|---|---|---|---|---|---|---|")?;
        for f in &self.fleets {
            writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} |",
                f.n,
                f.workspaces,
                f.principals,
                f.workspace_rps,
                f.client_rps
                    .map_or("operator default".to_string(), |r| r.to_string()),
                f.ready_seconds,
                f.mean_rps_per_workspace,
                f.peak_rps_per_workspace,
                f.throttled
            )?;
        }
        for f in &self.fleets {
            if !f.timeline.is_empty() {
                writeln!(
                    s,
                    "\nFleet N = {} while minting, every {} s (done = tokens Ready):",
                    f.n,
                    timeline_step(&f.timeline)
                )?;
                write_timeline(s, &f.timeline)?;
            }
            let Some(storm) = &f.storm else { continue };
            writeln!(
                s,
                "\n### Rotation storm, N = {}: all created at once, lifetime {}s, renewed a lifetime later",
                f.n,
                storm.lifetime.as_secs()
            )?;
            match (&storm.failure, storm.ready_to_all_renewed_seconds) {
                (None, Some(all)) => writeln!(
                    s,
                    "All {} renewed: first to last renewal {:.1} s; all Ready to all renewed {all:.1} s.",
                    f.n, storm.rotation_spread_seconds
                )?,
                (failure, _) => writeln!(
                    s,
                    "**Not finished: {} of {} renewed** ({}); first to last renewal seen {:.1} s.",
                    storm.renewed,
                    f.n,
                    failure.as_deref().unwrap_or("no reason given"),
                    storm.rotation_spread_seconds
                )?,
            }
            writeln!(
                s,
                "Ready spread over {:.1} s; busiest workspace-second {} calls; refused (429): {}; renewed only after expiry: {}.",
                storm.created_spread_seconds,
                storm.peak_rps_per_workspace,
                storm.throttled,
                storm
                    .timeline
                    .last()
                    .map_or("-".to_string(), |i| format!("{:.0}", i.expired))
            )?;
            let busy: Vec<String> = storm
                .creates_per_second
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| format!("{i}s:{c}"))
                .collect();
            writeln!(
                s,
                "Token creates per second over the storm (second:count, quiet seconds left out): {}",
                busy.join(" ")
            )?;
            if !storm.timeline.is_empty() {
                writeln!(
                    s,
                    "\nThe storm every {} s from all Ready (done = tokens renewed):",
                    timeline_step(&storm.timeline)
                )?;
                write_timeline(s, &storm.timeline)?;
            }
        }
        Ok(())
    }

    fn write_peers(&self, s: &mut String) -> std::fmt::Result {
        writeln!(
            s,
            "\n### Side by side with cert-manager (same control plane, same N; ratio = cert-manager / operator)"
        )?;
        writeln!(
            s,
            "cert-manager issues ECDSA P-256 certificates from a CA Issuer: its job includes key generation and \
             signing, the operator's a Databricks call. API server and etcd CPU per object do not depend on that.\n"
        )?;
        writeln!(s, "| N | measure | operator | cert-manager | ratio |")?;
        writeln!(s, "|---|---|---|---|---|")?;
        for p in &self.peers {
            let Some(o) = self.sizes.iter().find(|r| r.n == p.n) else {
                continue;
            };
            let n = p.n;
            let rows = [
                ("all Ready (s)", o.ready_seconds, p.ready_seconds),
                (
                    "K8s writes per object",
                    per(o.mint_writes.total() + o.n as u64, n),
                    per(p.writes + n as u64, n),
                ),
                (
                    "API server CPU per object (ms)",
                    o.control_plane_cpu.apiserver * 1e3 / n as f64,
                    p.control_plane_cpu.apiserver * 1e3 / n as f64,
                ),
                (
                    "etcd CPU per object (ms)",
                    o.control_plane_cpu.etcd * 1e3 / n as f64,
                    p.control_plane_cpu.etcd * 1e3 / n as f64,
                ),
                (
                    "controller CPU per object (ms)",
                    o.cpu_seconds * 1e3 / n as f64,
                    p.cpu_seconds * 1e3 / n as f64,
                ),
                (
                    "controller peak RSS (MiB)",
                    mib(o.peak_rss_kib),
                    mib(p.peak_rss_kib),
                ),
                (
                    "idle controller CPU (s)",
                    o.idle_cpu_seconds,
                    p.idle_cpu_seconds,
                ),
                (
                    "idle K8s writes",
                    o.idle_writes.total() as f64,
                    p.idle_writes as f64,
                ),
                (
                    "restart: K8s writes",
                    o.restart_writes.total() as f64,
                    p.restart_writes as f64,
                ),
                (
                    "restart: ready / settled (s)",
                    o.restart_seconds,
                    p.restart_settle_seconds,
                ),
                (
                    "restart: peak RSS (MiB)",
                    mib(o.restart_peak_rss_kib),
                    mib(p.restart_peak_rss_kib),
                ),
            ];
            for (what, ours, theirs) in rows {
                let ratio = if ours > 0.0 {
                    format!("{:.2}", theirs / ours)
                } else {
                    "-".into()
                };
                writeln!(s, "| {n} | {what} | {ours:.2} | {theirs:.2} | {ratio} |")?;
            }
            let by: Vec<String> = p
                .writes_by_resource
                .iter()
                .map(|(k, v)| format!("{k} {:.2}", per(*v, n)))
                .collect();
            writeln!(
                s,
                "\ncert-manager writes per certificate at N = {n} (incl. the bench's create): {}\n",
                by.join(", ")
            )?;
        }
        Ok(())
    }
}

fn mem_total_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_divides_the_writes_cpu_over_the_cores() {
        assert_eq!(floor_seconds(10_000, 14.7, 2), 73.5);
        assert_eq!(floor_seconds(100, 10.0, 1), 1.0);
        assert_eq!(
            floor_seconds(100, 10.0, 0),
            1.0,
            "no cores reported counts as one"
        );
    }
}
