//! Where a long fleet run spends its time, every few seconds: how many tokens are done, the
//! Databricks calls the workspaces served, the CPU of the control plane and of the operator,
//! and the operator's own reconcile rate and mean reconcile duration (from /metrics). Printed as
//! it goes (a run that times out still shows where it stood) and kept for the report.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::cluster::ControlPlaneCpu;
use crate::procfs;

/// Cumulative readings at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reading {
    pub seconds: f64,
    pub done: usize,
    pub calls: u64,
    pub creates: u64,
    pub control_plane: ControlPlaneCpu,
    pub operator_cpu: f64,
    pub reconciles: f64,
    pub reconcile_seconds: f64,
    /// Tokens the operator replaced only after they had expired (rotations, reason Expired).
    pub expired: f64,
}

/// One interval between two readings, as rates.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Interval {
    /// End of the interval, seconds since the probe started.
    pub at: f64,
    pub done: usize,
    pub calls_per_second: f64,
    pub creates_per_second: f64,
    /// Cores busy (CPU seconds per second).
    pub apiserver_cores: f64,
    pub etcd_cores: f64,
    pub operator_cores: f64,
    pub reconciles_per_second: f64,
    /// Mean duration of the reconciles that finished in the interval.
    pub mean_reconcile_seconds: f64,
    /// Replaced after expiry so far (cumulative, since the operator started).
    pub expired: f64,
}

/// The rates between consecutive readings.
pub fn intervals(readings: &[Reading]) -> Vec<Interval> {
    readings
        .windows(2)
        .map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let dt = (b.seconds - a.seconds).max(1e-9);
            let reconciles = (b.reconciles - a.reconciles).max(0.0);
            Interval {
                at: b.seconds,
                done: b.done,
                calls_per_second: b.calls.saturating_sub(a.calls) as f64 / dt,
                creates_per_second: b.creates.saturating_sub(a.creates) as f64 / dt,
                apiserver_cores: (b.control_plane.apiserver - a.control_plane.apiserver) / dt,
                etcd_cores: (b.control_plane.etcd - a.control_plane.etcd) / dt,
                operator_cores: (b.operator_cpu - a.operator_cpu) / dt,
                reconciles_per_second: reconciles / dt,
                mean_reconcile_seconds: if reconciles > 0.0 {
                    (b.reconcile_seconds - a.reconcile_seconds) / reconciles
                } else {
                    0.0
                },
                expired: b.expired,
            }
        })
        .collect()
}

/// A sample's value from the /metrics text (`name` includes any labels), 0 when absent.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .filter(|rest| rest.starts_with(' '))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The operator's reconcile count and total reconcile seconds from its /metrics text.
pub fn reconcile_totals(metrics: &str) -> (f64, f64) {
    (
        sample(metrics, "dbtoken_reconcile_duration_seconds_count"),
        sample(metrics, "dbtoken_reconcile_duration_seconds_sum"),
    )
}

/// Tokens replaced after they had expired, from the /metrics text.
pub fn expired_rotations(metrics: &str) -> f64 {
    sample(metrics, "dbtoken_rotations_total{reason=\"Expired\"}")
}

/// What the probe reads besides the counters it is handed.
pub struct Targets {
    pub control_plane_dir: PathBuf,
    pub operator_pid: u32,
    pub metrics_url: String,
    /// Databricks (calls, creates) so far, over all workspaces.
    pub databricks: Box<dyn Fn() -> (u64, u64) + Send + Sync>,
}

pub struct Probe {
    readings: Arc<Mutex<Vec<Reading>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    /// Read every `every`, labelling the printed lines with `label`; `done` is the caller's
    /// progress counter.
    pub fn start(
        label: String,
        targets: Targets,
        done: Arc<AtomicUsize>,
        every: Duration,
    ) -> Probe {
        let readings = Arc::new(Mutex::new(vec![]));
        let task = {
            let readings = readings.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let started = Instant::now();
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let r = read(&targets, &http, &done, started).await;
                    let mut all = readings.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(last) = all.last()
                        && let Some(i) = intervals(&[*last, r]).first()
                    {
                        eprintln!("bench: {label} {}", line(i));
                    }
                    all.push(r);
                }
            })
        };
        Probe { readings, task }
    }

    pub fn finish(self) -> Vec<Interval> {
        self.task.abort();
        intervals(&self.readings.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

async fn read(
    targets: &Targets,
    http: &reqwest::Client,
    done: &AtomicUsize,
    started: Instant,
) -> Reading {
    let metrics = match http.get(&targets.metrics_url).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let (reconciles, reconcile_seconds) = reconcile_totals(&metrics);
    let (calls, creates) = (targets.databricks)();
    Reading {
        seconds: started.elapsed().as_secs_f64(),
        done: done.load(Ordering::Relaxed),
        calls,
        creates,
        control_plane: ControlPlaneCpu::of(&targets.control_plane_dir),
        operator_cpu: procfs::cpu_seconds(targets.operator_pid),
        reconciles,
        reconcile_seconds,
        expired: expired_rotations(&metrics),
    }
}

/// One interval as a Markdown table row.
pub fn line(i: &Interval) -> String {
    format!(
        "| {:.0} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.1} | {:.3} | {:.0} |",
        i.at,
        i.done,
        i.calls_per_second,
        i.creates_per_second,
        i.apiserver_cores,
        i.etcd_cores,
        i.operator_cores,
        i.reconciles_per_second,
        i.mean_reconcile_seconds,
        i.expired
    )
}

pub const HEADER: &str = "| s | done | Databricks calls/s (all workspaces) | token creates/s | API server cores | etcd cores | operator cores | reconciles/s | mean reconcile (s) | renewed only after expiry |\n|---|---|---|---|---|---|---|---|---|---|";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_totals_read_the_histogram_count_and_sum() {
        let text = "# HELP x\n\
            dbtoken_reconcile_duration_seconds_sum 12.5\n\
            dbtoken_reconcile_duration_seconds_count 50\n\
            dbtoken_reconcile_duration_seconds_bucket{le=\"0.005\"} 3\n";
        assert_eq!(reconcile_totals(text), (50.0, 12.5));
        assert_eq!(reconcile_totals(""), (0.0, 0.0));
        let rotations = "dbtoken_rotations_total{reason=\"Renewal\"} 9\n\
            dbtoken_rotations_total{reason=\"Expired\"} 6\n";
        assert_eq!(expired_rotations(rotations), 6.0);
        assert_eq!(expired_rotations(""), 0.0);
    }

    #[test]
    fn intervals_are_rates_between_readings() {
        let a = Reading {
            seconds: 10.0,
            done: 5,
            calls: 100,
            creates: 40,
            control_plane: ControlPlaneCpu {
                apiserver: 1.0,
                etcd: 0.5,
            },
            operator_cpu: 0.5,
            reconciles: 10.0,
            reconcile_seconds: 1.0,
            expired: 0.0,
        };
        let b = Reading {
            seconds: 20.0,
            done: 9,
            calls: 300,
            creates: 90,
            control_plane: ControlPlaneCpu {
                apiserver: 11.0,
                etcd: 1.5,
            },
            operator_cpu: 1.5,
            reconciles: 30.0,
            reconcile_seconds: 11.0,
            expired: 2.0,
        };
        let i = intervals(&[a, b]);
        assert_eq!(i.len(), 1);
        let i = i[0];
        assert_eq!(i.at, 20.0);
        assert_eq!(i.done, 9);
        assert_eq!(i.calls_per_second, 20.0);
        assert_eq!(i.creates_per_second, 5.0);
        assert_eq!(i.apiserver_cores, 1.0);
        assert_eq!(i.etcd_cores, 0.1);
        assert_eq!(i.operator_cores, 0.1);
        assert_eq!(i.reconciles_per_second, 2.0);
        assert_eq!(i.mean_reconcile_seconds, 0.5);
        assert_eq!(i.expired, 2.0);
    }
}
