//! A real Prometheus (built from its upstream Go module by `hack/build-tools.sh prometheus`)
//! scrapes a real operator with the chart's ServiceMonitor turned into a static scrape config
//! (the same `honor_labels` and the target labels prometheus-operator adds) and evaluates the
//! chart's PrometheusRule. Tokens named alike in two namespaces: one healthy and short-lived, one
//! whose rotation fails. Each alert must fire for the failing one, naming its namespace, and none
//! may fire or even be pending for the healthy one.
//!
//! Opt-in (building Prometheus takes ~6 min cold): `make test-prometheus`.

mod support;

use std::{
    collections::BTreeSet,
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::Duration,
};

use databricks_emulator::FaultRule;
use serde_json::{Value, json};
use support::cluster::repo_root;
use support::operator::{eventually, free_port};
use support::world::World;

const RELEASE_NAMESPACE: &str = "dbtoken-system";
const SERVICE: &str = "dbtoken-databricks-token-operator-metrics";
/// The test's own rule settings, scaled to one-minute tokens.
const RULE_VALUES: &str = "prometheusRule.renewalOverdueSeconds=10,prometheusRule.notReadyFor=10s,prometheusRule.errorsFor=10s";

fn tool(name: &str) -> std::path::PathBuf {
    support::tools::tool(name, &["prometheus"])
}

/// The chart's rule file and the ServiceMonitor's honorLabels.
fn render_chart() -> (serde_yaml::Value, bool) {
    let out = Command::new(tool("helm"))
        .arg("template")
        .arg("dbtoken")
        .arg(repo_root().join("charts/databricks-token-operator"))
        .args(["--namespace", RELEASE_NAMESPACE])
        .args([
            "--set",
            "serviceMonitor.enabled=true,prometheusRule.enabled=true",
        ])
        .args(["--set", RULE_VALUES])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let find = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap().clone();
    let honor = find("ServiceMonitor")["spec"]["endpoints"][0]["honorLabels"]
        .as_bool()
        .unwrap_or(false);
    (find("PrometheusRule")["spec"].clone(), honor)
}

struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prometheus scraping `target` as prometheus-operator would for the chart's ServiceMonitor,
/// twice: once preferring OpenMetrics (Prometheus' default), once in the text format only.
fn start_prometheus(target: &str) -> Prometheus {
    let (rules, honor_labels) = render_chart();
    let dir = tempfile::tempdir().unwrap();
    let rules_path = dir.path().join("rules.yaml");
    std::fs::write(&rules_path, serde_yaml::to_string(&rules).unwrap()).unwrap();
    // The target labels of prometheus-operator's relabelling for a ServiceMonitor endpoint.
    let target_labels = json!({
        "namespace": RELEASE_NAMESPACE,
        "service": SERVICE,
        "pod": "dbtoken-databricks-token-operator-7d9f8b6c5-x2x4z",
        "container": "operator",
        "endpoint": "metrics",
    });
    let job = |name: &str, protocols: Value| {
        json!({
            "job_name": name,
            "honor_labels": honor_labels,
            "scrape_protocols": protocols,
            "static_configs": [{"targets": [target], "labels": target_labels}],
        })
    };
    let config = json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [rules_path],
        "scrape_configs": [
            job(SERVICE, json!(["OpenMetricsText1.0.0", "PrometheusText0.0.4"])),
            job("text-format-only", json!(["PrometheusText0.0.4"])),
        ],
    });
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start prometheus");
    Prometheus {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

impl Prometheus {
    async fn get(&self, path: &str) -> Option<Value> {
        reqwest::get(format!("{}{path}", self.base))
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    async fn query(&self, promql: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", urlencode(promql));
        self.get(&path).await.map_or_else(Vec::new, |v| {
            v["data"]["result"].as_array().cloned().unwrap_or_default()
        })
    }

    /// Alerts, pending or firing, as (alertname, namespace, name, state).
    async fn alerts(&self) -> BTreeSet<(String, String, String, String)> {
        let Some(v) = self.get("/api/v1/alerts").await else {
            return BTreeSet::new();
        };
        let label = |a: &Value, k: &str| a["labels"][k].as_str().unwrap_or("").to_string();
        v["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|a| {
                (
                    label(a, "alertname"),
                    label(a, "namespace"),
                    label(a, "name"),
                    a["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn each_alert_fires_for_a_failing_token_and_none_for_a_healthy_one_of_the_same_name() {
    // Two namespaces, each with its own emulator and workspace, one operator watching both.
    let healthy = World::new("prom-healthy").await;
    let mut failing = World::new("prom-failing").await;
    let mut options = failing.options();
    options.namespaces.push(healthy.ns.name.clone());
    failing.start_operator_with(options);
    let spec = json!({"workspaceRef": {"name": "ws"}, "lifetime": "60s"});
    healthy.create_token("reports", spec.clone()).await;
    failing.create_token("reports", spec).await;
    healthy.wait_ready("reports").await;
    failing.wait_ready("reports").await;

    let operator = failing.operator.as_ref().unwrap();
    let url = operator.metrics_url().unwrap();
    let target = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let prometheus = start_prometheus(&target);
    let port: u16 = prometheus.base.rsplit(':').next().unwrap().parse().unwrap();
    eventually(
        "prometheus listening",
        Duration::from_secs(60),
        || async move { TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()) },
    )
    .await;

    // Both scrape formats work against the real operator.
    for job in [SERVICE, "text-format-only"] {
        let q = format!("up{{job=\"{job}\"}} == 1");
        eventually(&format!("{job} scraped"), Duration::from_secs(60), || {
            let (p, q) = (&prometheus, q.clone());
            async move { (!p.query(&q).await.is_empty()).then_some(()) }
        })
        .await;
    }
    // The token series keep their own namespace (honorLabels).
    let q = format!(
        "dbtoken_token_ready{{namespace=\"{}\",name=\"reports\"}}",
        healthy.ns.name
    );
    eventually("healthy token series", Duration::from_secs(60), || {
        let (p, q) = (&prometheus, q.clone());
        async move { (!p.query(&q).await.is_empty()).then_some(()) }
    })
    .await;

    // From now on the failing namespace's workspace refuses to mint: its token's rotation, due
    // 40 s after its mint, fails, and the token expires 20 s later.
    failing.emulator.add_fault(FaultRule {
        error_rate: 1.0,
        ..FaultRule::on("token/create")
    });

    let failing_ns = failing.ns.name.clone();
    let healthy_ns = healthy.ns.name.clone();
    let expected_token_alerts = [
        "DatabricksTokenRenewalOverdue",
        "DatabricksTokenExpiringSoon",
        "DatabricksTokenNotReady",
    ];
    let mut seen = BTreeSet::new();
    let mut seen_errors = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let alerts = prometheus.alerts().await;
        let about_healthy: Vec<_> = alerts.iter().filter(|a| a.1 == healthy_ns).collect();
        assert!(
            about_healthy.is_empty(),
            "an alert about the healthy token: {about_healthy:?}"
        );
        for (name, ns, token, state) in &alerts {
            if state != "firing" {
                continue;
            }
            if ns == &failing_ns && token == "reports" {
                seen.insert(name.clone());
            } else if ns.is_empty() {
                seen_errors.insert(name.clone());
            } else {
                panic!("an alert for an unexpected series: {name} {ns}/{token}");
            }
        }
        let done = expected_token_alerts.iter().all(|a| seen.contains(*a))
            && seen_errors.contains("DatabricksTokenReconcileErrors")
            && seen_errors.contains("DatabricksApiErrors");
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alerts fired so far: {seen:?} {seen_errors:?}; now: {alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("fired for {failing_ns}/reports: {seen:?}; fleet-wide: {seen_errors:?}");
}
