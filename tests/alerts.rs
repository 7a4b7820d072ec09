//! The chart's PrometheusRule, tested with `promtool test rules` on series shaped exactly as
//! prometheus-operator stores them for the chart's ServiceMonitor: the scrape adds the target
//! labels `namespace`, `service`, `pod`, `endpoint`, `job`, `instance` and `container`, and the
//! ServiceMonitor's `honorLabels` decides whether the metric's own `namespace` survives.

mod support;

use std::{fmt::Write as _, process::Command};

use serde_yaml::Value;
use support::cluster::repo_root;

const RELEASE_NAMESPACE: &str = "monitoring-ops";

fn tool(name: &str) -> std::path::PathBuf {
    support::tools::tool(name, &[])
}

/// The chart rendered with the ServiceMonitor and the PrometheusRule on.
struct Rendered {
    /// The PrometheusRule's `spec` (a Prometheus rule file: `groups:`).
    rules: Value,
    honor_labels: bool,
}

fn render(extra: &[&str]) -> Rendered {
    let mut args = vec![
        "template".to_string(),
        "dbtoken".into(),
        repo_root()
            .join("charts/databricks-token-operator")
            .display()
            .to_string(),
        "--namespace".into(),
        RELEASE_NAMESPACE.into(),
        "--set".into(),
        "serviceMonitor.enabled=true,prometheusRule.enabled=true".into(),
    ];
    for e in extra {
        args.extend(["--set".to_string(), e.to_string()]);
    }
    let out = Command::new(tool("helm")).args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|d: &Value| !d.is_null())
        .collect();
    let of_kind = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} rendered"))
            .clone()
    };
    let monitor = of_kind("ServiceMonitor");
    let endpoint = &monitor["spec"]["endpoints"][0];
    Rendered {
        rules: of_kind("PrometheusRule")["spec"].clone(),
        honor_labels: endpoint["honorLabels"].as_bool().unwrap_or(false),
    }
}

/// A series selector as Prometheus stores a scraped operator metric with these labels.
fn stored(rendered: &Rendered, metric: &str, labels: &[(&str, &str)]) -> String {
    let mut all: Vec<(String, String)> = Vec::new();
    // prometheus-operator's relabelling for a ServiceMonitor endpoint on the chart's Service.
    let service = "dbtoken-databricks-token-operator-metrics";
    let target = [
        ("namespace", RELEASE_NAMESPACE),
        ("service", service),
        ("pod", "dbtoken-databricks-token-operator-7d9f8b6c5-x2x4z"),
        ("endpoint", "metrics"),
        ("job", service),
        ("instance", "10.244.0.17:8080"),
        ("container", "operator"),
    ];
    for (k, v) in labels {
        let clashes = target.iter().any(|(t, _)| t == k);
        let key = if clashes && !rendered.honor_labels {
            // What Prometheus does on a clash without honor_labels: the target label wins.
            format!("exported_{k}")
        } else {
            k.to_string()
        };
        all.push((key, v.to_string()));
    }
    for (k, v) in target {
        if !all.iter().any(|(key, _)| key == k) {
            all.push((k.into(), v.into()));
        }
    }
    let body: Vec<String> = all.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{metric}{{{}}}", body.join(","))
}

/// One input series: a value per minute from t=0.
struct Series {
    selector: String,
    values: Vec<f64>,
}

/// A token's three gauges over `minutes`, from the (renewal, expiry) it shows at each minute.
fn token_series(
    rendered: &Rendered,
    namespace: &str,
    name: &str,
    minutes: u32,
    ready: bool,
    times: impl Fn(u32) -> (f64, f64),
) -> Vec<Series> {
    let labels = [("namespace", namespace), ("name", name)];
    let at: Vec<(f64, f64)> = (0..=minutes).map(times).collect();
    vec![
        Series {
            selector: stored(rendered, "dbtoken_token_renewal_timestamp_seconds", &labels),
            values: at.iter().map(|t| t.0).collect(),
        },
        Series {
            selector: stored(rendered, "dbtoken_token_expiry_timestamp_seconds", &labels),
            values: at.iter().map(|t| t.1).collect(),
        },
        Series {
            selector: stored(rendered, "dbtoken_token_ready", &labels),
            values: vec![f64::from(u8::from(ready)); minutes as usize + 1],
        },
    ]
}

/// An alert expected at an evaluation time, with the labels that identify it.
struct Expected {
    labels: Vec<(&'static str, String)>,
    /// `$value` of the alert: seconds for the annotations' `humanizeDuration`, or a count.
    value_seconds: Option<i64>,
}

struct Check {
    at_minutes: u32,
    alert: &'static str,
    firing: Vec<Expected>,
}

const ALERTS: [&str; 9] = [
    "DatabricksTokenRenewalOverdue",
    "DatabricksTokenExpiringSoon",
    "DatabricksTokenNotReady",
    "DatabricksTokenReconcileErrors",
    "DatabricksApiErrors",
    "DatabricksNeverExpiringTokens",
    "DatabricksTokensExpiringSoon",
    "DatabricksOrphanedTokens",
    "DatabricksTokenInventoryStale",
];

/// Prometheus' `humanizeDuration` for whole seconds.
fn humanize_duration(s: i64) -> String {
    if s < 0 {
        return format!("-{}", humanize_duration(-s));
    }
    let (d, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m {sec}s")
    } else if h > 0 {
        format!("{h}h {m}m {sec}s")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

fn rule_of<'a>(rendered: &'a Rendered, alert: &str) -> &'a Value {
    rendered.rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .find(|r| r["alert"] == alert)
        .unwrap_or_else(|| panic!("no rule {alert}"))
}

/// The annotations promtool will render, from the rule's own templates: only the placeholders
/// the chart uses are known here, so a new one fails the test rather than going unchecked.
fn annotations(rendered: &Rendered, alert: &str, e: &Expected) -> Vec<(String, String)> {
    let rule = rule_of(rendered, alert);
    let mut out = Vec::new();
    for (k, v) in rule["annotations"].as_mapping().unwrap() {
        let mut text = v.as_str().unwrap().to_string();
        for (label, value) in &e.labels {
            text = text.replace(&format!("{{{{ $labels.{label} }}}}"), value);
        }
        if let Some(seconds) = e.value_seconds {
            text = text.replace(
                "{{ $value | humanizeDuration }}",
                &humanize_duration(seconds),
            );
            text = text.replace("{{ $value }}", &seconds.to_string());
        }
        assert!(!text.contains("{{"), "unexpanded template in {text}");
        out.push((k.as_str().unwrap().to_string(), text));
    }
    out
}

/// Run `promtool test rules` on the rendered rules with these series and checks.
fn promtool_test(rendered: &Rendered, series: &[Series], checks: &[Check]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let rules_path = dir.path().join("rules.yaml");
    std::fs::write(&rules_path, serde_yaml::to_string(&rendered.rules).unwrap()).unwrap();
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let mut test = format!(
        "rule_files: [{}]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
        q(&rules_path.display().to_string())
    );
    for s in series {
        let values: Vec<String> = s.values.iter().map(|v| format!("{v}")).collect();
        let _ = writeln!(
            test,
            "      - series: {}\n        values: {}",
            q(&s.selector),
            q(&values.join(" "))
        );
    }
    test.push_str("    alert_rule_test:\n");
    for c in checks {
        let _ = writeln!(
            test,
            "      - eval_time: {}m\n        alertname: {}\n        exp_alerts:{}",
            c.at_minutes,
            c.alert,
            if c.firing.is_empty() { " []" } else { "" }
        );
        for e in &c.firing {
            test.push_str("          - exp_labels:\n");
            for (k, v) in &e.labels {
                let _ = writeln!(test, "              {k}: {}", q(v));
            }
            test.push_str("            exp_annotations:\n");
            for (k, v) in annotations(rendered, c.alert, e) {
                let _ = writeln!(test, "              {k}: {}", q(&v));
            }
        }
    }
    let test_path = dir.path().join("test.yaml");
    std::fs::write(&test_path, &test).unwrap();
    let out = Command::new(tool("promtool"))
        .args(["test", "rules"])
        .arg(&test_path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{text}\n---- test file ----\n{test}"
    );
    text
}

fn token_labels(namespace: &str, name: &str, severity: &str) -> Vec<(&'static str, String)> {
    vec![
        ("namespace", namespace.into()),
        ("name", name.into()),
        ("severity", severity.into()),
    ]
}

fn silent(at_minutes: u32, alert: &'static str) -> Check {
    Check {
        at_minutes,
        alert,
        firing: vec![],
    }
}

/// Every alert silent at each of these times.
fn all_silent(times: impl IntoIterator<Item = u32>) -> Vec<Check> {
    times
        .into_iter()
        .flat_map(|t| ALERTS.map(|a| silent(t, a)))
        .collect()
}

fn flat_counters(rendered: &Rendered, minutes: u32) -> Vec<Series> {
    let flat = vec![3.0; minutes as usize + 1];
    vec![
        Series {
            selector: stored(
                rendered,
                "dbtoken_reconcile_errors_total",
                &[("reason", "PERMISSION_DENIED")],
            ),
            values: flat.clone(),
        },
        Series {
            selector: stored(
                rendered,
                "dbtoken_databricks_requests_total",
                &[("endpoint", "token/create"), ("status", "503")],
            ),
            values: flat,
        },
    ]
}

#[test]
fn same_named_tokens_in_two_namespaces_alert_apart_each_with_its_own_namespace() {
    let rendered = render(&[]);
    let minutes = 40;
    // team-a/reports is stuck: renewal was due at 10m, it expires at 40m. demo/reports is a
    // healthy 30-day token that expires later: the later expiry must not hide the earlier one.
    let mut series = token_series(&rendered, "team-a", "reports", minutes, true, |_| {
        (600.0, 2400.0)
    });
    series.extend(token_series(
        &rendered,
        "demo",
        "reports",
        minutes,
        true,
        |_| (20.0 * 86_400.0, 30.0 * 86_400.0),
    ));
    let checks = vec![
        Check {
            at_minutes: 30,
            alert: "DatabricksTokenExpiringSoon",
            firing: vec![Expected {
                labels: token_labels("team-a", "reports", "critical"),
                value_seconds: Some(600),
            }],
        },
        Check {
            at_minutes: 30,
            alert: "DatabricksTokenRenewalOverdue",
            firing: vec![Expected {
                labels: token_labels("team-a", "reports", "warning"),
                value_seconds: Some(1200),
            }],
        },
    ];
    promtool_test(&rendered, &series, &checks);
}

#[test]
fn healthy_tokens_short_or_long_lived_never_alert() {
    let rendered = render(&[]);
    let minutes = 180;
    // A 10-minute token renewed at 2/3 of its lifetime (every 400 s), and a 30-day one.
    let mut series = token_series(&rendered, "team-a", "short", minutes, true, |m| {
        let created = (f64::from(m) * 60.0 / 400.0).floor() * 400.0;
        (created + 400.0, created + 600.0)
    });
    series.extend(token_series(
        &rendered,
        "team-a",
        "monthly",
        minutes,
        true,
        |_| (20.0 * 86_400.0, 30.0 * 86_400.0),
    ));
    series.extend(flat_counters(&rendered, minutes));
    promtool_test(&rendered, &series, &all_silent((0..=180).step_by(15)));
}

#[test]
fn a_stuck_rotation_warns_after_the_slack_and_pages_in_the_last_half_of_its_window() {
    let rendered = render(&[]);
    let minutes = 200;
    // A 3-hour token: renewal due at 2h, expiry at 3h; it never rotates.
    let series = token_series(&rendered, "team-a", "etl", minutes, true, |_| {
        (7_200.0, 10_800.0)
    });
    let overdue = |at: u32| Check {
        at_minutes: at,
        alert: "DatabricksTokenRenewalOverdue",
        firing: vec![Expected {
            labels: token_labels("team-a", "etl", "warning"),
            value_seconds: Some(i64::from(at) * 60 - 7_200),
        }],
    };
    let expiring = |at: u32| Check {
        at_minutes: at,
        alert: "DatabricksTokenExpiringSoon",
        firing: vec![Expected {
            labels: token_labels("team-a", "etl", "critical"),
            value_seconds: Some(10_800 - i64::from(at) * 60),
        }],
    };
    let checks = vec![
        // 5 min past renewal: within the 10 min slack.
        silent(125, "DatabricksTokenRenewalOverdue"),
        silent(125, "DatabricksTokenExpiringSoon"),
        overdue(135),
        // 45 min of a 60 min window left: more than half.
        silent(135, "DatabricksTokenExpiringSoon"),
        overdue(160),
        expiring(160),
        // Expired: still critical (negative time left).
        expiring(190),
    ];
    promtool_test(&rendered, &series, &checks);
}

#[test]
fn not_ready_alerts_after_the_configured_time_and_only_for_that_token() {
    let rendered = render(&[]);
    let minutes = 20;
    let mut series = token_series(&rendered, "team-a", "broken", minutes, false, |_| {
        (86_400.0, 2.0 * 86_400.0)
    });
    series.extend(token_series(
        &rendered,
        "demo",
        "broken",
        minutes,
        true,
        |_| (86_400.0, 2.0 * 86_400.0),
    ));
    let checks = vec![
        silent(3, "DatabricksTokenNotReady"),
        Check {
            at_minutes: 10,
            alert: "DatabricksTokenNotReady",
            firing: vec![Expected {
                labels: token_labels("team-a", "broken", "critical"),
                value_seconds: None,
            }],
        },
    ];
    promtool_test(&rendered, &series, &checks);
}

#[test]
fn errors_alert_while_they_keep_coming_and_not_once_they_stop() {
    let rendered = render(&[]);
    let minutes = 60;
    // Errors every minute for the first 25 minutes, then none.
    let growing: Vec<f64> = (0..=minutes).map(|m| f64::from(m.min(25))).collect();
    let series = vec![
        Series {
            selector: stored(
                &rendered,
                "dbtoken_reconcile_errors_total",
                &[("reason", "PERMISSION_DENIED")],
            ),
            values: growing.clone(),
        },
        Series {
            selector: stored(
                &rendered,
                "dbtoken_databricks_requests_total",
                &[("endpoint", "token/create"), ("status", "403")],
            ),
            values: growing,
        },
        Series {
            selector: stored(
                &rendered,
                "dbtoken_databricks_requests_total",
                &[("endpoint", "token/create"), ("status", "200")],
            ),
            values: (0..=minutes).map(f64::from).collect(),
        },
    ];
    let checks = vec![
        silent(10, "DatabricksTokenReconcileErrors"),
        Check {
            at_minutes: 20,
            alert: "DatabricksTokenReconcileErrors",
            firing: vec![Expected {
                labels: vec![
                    ("reason", "PERMISSION_DENIED".into()),
                    ("severity", "warning".into()),
                ],
                value_seconds: None,
            }],
        },
        Check {
            at_minutes: 20,
            alert: "DatabricksApiErrors",
            firing: vec![Expected {
                labels: vec![
                    ("endpoint", "token/create".into()),
                    ("status", "403".into()),
                    ("severity", "warning".into()),
                ],
                value_seconds: None,
            }],
        },
        silent(40, "DatabricksTokenReconcileErrors"),
        silent(40, "DatabricksApiErrors"),
    ];
    promtool_test(&rendered, &series, &checks);
}

#[test]
fn a_failure_retried_at_full_backoff_keeps_the_error_alerts_firing() {
    let rendered = render(&[]);
    let minutes = 90;
    // One error every 6 minutes: the operator's longest backoff (5 min + 20% jitter).
    let every_six: Vec<f64> = (0..=minutes).map(|m| f64::from(m / 6)).collect();
    let series = vec![
        Series {
            selector: stored(
                &rendered,
                "dbtoken_reconcile_errors_total",
                &[("reason", "HTTP_403")],
            ),
            values: every_six.clone(),
        },
        Series {
            selector: stored(
                &rendered,
                "dbtoken_databricks_requests_total",
                &[("endpoint", "token/list"), ("status", "403")],
            ),
            values: every_six,
        },
    ];
    let checks: Vec<Check> = [40, 60, 85]
        .into_iter()
        .flat_map(|at| {
            [
                Check {
                    at_minutes: at,
                    alert: "DatabricksTokenReconcileErrors",
                    firing: vec![Expected {
                        labels: vec![
                            ("reason", "HTTP_403".into()),
                            ("severity", "warning".into()),
                        ],
                        value_seconds: None,
                    }],
                },
                Check {
                    at_minutes: at,
                    alert: "DatabricksApiErrors",
                    firing: vec![Expected {
                        labels: vec![
                            ("endpoint", "token/list".into()),
                            ("status", "403".into()),
                            ("severity", "warning".into()),
                        ],
                        value_seconds: None,
                    }],
                },
            ]
        })
        .collect();
    promtool_test(&rendered, &series, &checks);
}

/// One inventory gauge series of workspace `team-a/<workspace>`.
fn inventory_series(
    rendered: &Rendered,
    metric: &str,
    workspace: &str,
    extra: &[(&str, &str)],
    values: Vec<f64>,
) -> Series {
    let mut labels = vec![
        ("kind", "DatabricksWorkspace"),
        ("namespace", "team-a"),
        ("workspace", workspace),
    ];
    labels.extend_from_slice(extra);
    Series {
        selector: stored(rendered, metric, &labels),
        values,
    }
}

fn workspace_labels(workspace: &str, owner: Option<&str>) -> Vec<(&'static str, String)> {
    let mut labels = vec![
        ("kind", "DatabricksWorkspace".to_string()),
        ("namespace", "team-a".into()),
        ("workspace", workspace.into()),
    ];
    if let Some(owner) = owner {
        labels.push(("owner", owner.into()));
    }
    labels.push(("severity", "warning".into()));
    labels
}

#[test]
fn inventory_alerts_name_the_workspace_and_owner_and_orphans_alert_only_when_they_persist() {
    let rendered = render(&[]);
    let minutes = 200;
    let flat = |v: f64| vec![v; minutes as usize + 1];
    let tokens = "dbtoken_inventory_tokens";
    let last = "dbtoken_inventory_last_success_timestamp_seconds";
    let series = vec![
        inventory_series(
            &rendered,
            tokens,
            "prod",
            &[("class", "never_expiring"), ("owner", "42")],
            flat(2.0),
        ),
        inventory_series(
            &rendered,
            tokens,
            "prod",
            &[("class", "never_expiring"), ("owner", "7")],
            flat(0.0),
        ),
        inventory_series(
            &rendered,
            tokens,
            "prod",
            &[("class", "expiring_soon"), ("owner", "7")],
            flat(1.0),
        ),
        inventory_series(
            &rendered,
            tokens,
            "prod",
            &[("class", "expiring_soon"), ("owner", "42")],
            flat(0.0),
        ),
        // prod: two orphans found at the first inventory and revoked; the next finds none.
        inventory_series(
            &rendered,
            tokens,
            "prod",
            &[("class", "orphaned"), ("owner", "1")],
            (0..=minutes)
                .map(|m| if m < 60 { 2.0 } else { 0.0 })
                .collect(),
        ),
        // stuck: an orphan every inventory finds again (revocation fails, or orphans: Report).
        inventory_series(
            &rendered,
            tokens,
            "stuck",
            &[("class", "orphaned"), ("owner", "1")],
            flat(1.0),
        ),
        // prod lists every hour; stuck has not succeeded since t=0.
        inventory_series(
            &rendered,
            last,
            "prod",
            &[],
            (0..=minutes).map(|m| f64::from(m / 60 * 3600)).collect(),
        ),
        inventory_series(&rendered, last, "stuck", &[], flat(0.0)),
    ];
    let firing = |at: u32, alert: &'static str, labels, value| Check {
        at_minutes: at,
        alert,
        firing: vec![Expected {
            labels,
            value_seconds: Some(value),
        }],
    };
    let checks = vec![
        firing(
            10,
            "DatabricksNeverExpiringTokens",
            workspace_labels("prod", Some("42")),
            2,
        ),
        firing(
            10,
            "DatabricksTokensExpiringSoon",
            workspace_labels("prod", Some("7")),
            1,
        ),
        // Orphans are revoked at each inventory: a count that drops is no alert.
        silent(110, "DatabricksOrphanedTokens"),
        firing(
            130,
            "DatabricksOrphanedTokens",
            workspace_labels("stuck", None),
            1,
        ),
        silent(130, "DatabricksTokenInventoryStale"),
        firing(
            190,
            "DatabricksTokenInventoryStale",
            workspace_labels("stuck", None),
            190 * 60,
        ),
    ];
    promtool_test(&rendered, &series, &checks);
}

#[test]
fn inventory_thresholds_are_chart_values() {
    let rendered = render(&[
        "prometheusRule.inventory.neverExpiringAbove=2",
        "prometheusRule.inventory.orphanedFor=30m",
    ]);
    let minutes = 60;
    let flat = |v: f64| vec![v; minutes as usize + 1];
    let tokens = "dbtoken_inventory_tokens";
    let series = vec![
        inventory_series(
            &rendered,
            tokens,
            "prod",
            &[("class", "never_expiring"), ("owner", "42")],
            flat(2.0),
        ),
        inventory_series(
            &rendered,
            tokens,
            "prod",
            &[("class", "orphaned"), ("owner", "1")],
            flat(1.0),
        ),
    ];
    let checks = vec![
        silent(40, "DatabricksNeverExpiringTokens"),
        Check {
            at_minutes: 40,
            alert: "DatabricksOrphanedTokens",
            firing: vec![Expected {
                labels: workspace_labels("prod", None),
                value_seconds: Some(1),
            }],
        },
    ];
    promtool_test(&rendered, &series, &checks);
}

#[test]
fn the_rules_pass_promtool_check_rules() {
    let rendered = render(&[]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, serde_yaml::to_string(&rendered.rules).unwrap()).unwrap();
    let out = Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real scrape of the operator: with no preference (or text asked for) the Prometheus text
/// format 0.0.4, which `promtool check metrics` accepts; OpenMetrics when asked for, which
/// promtool's OpenMetrics parser (its TSDB import, given a timestamp per sample) accepts.
#[tokio::test]
async fn a_real_scrape_passes_promtool_in_both_formats() {
    let mut world = support::world::World::new("scrape-formats").await;
    world.start_operator();
    world
        .create_token(
            "app",
            serde_json::json!({"workspaceRef": {"name": "ws"}, "lifetime": "1h"}),
        )
        .await;
    world.wait_ready("app").await;
    let url = world.operator.as_ref().unwrap().metrics_url().unwrap();
    let scrape = |accept: Option<&'static str>| {
        let url = url.clone();
        async move {
            let mut request = reqwest::Client::new().get(&url);
            if let Some(accept) = accept {
                request = request.header("Accept", accept);
            }
            let response = request.send().await.unwrap();
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_string();
            (content_type, response.text().await.unwrap())
        }
    };
    // Ready is written before the reconcile ends and publishes the token's gauges.
    support::operator::eventually(
        "the token's gauges published",
        std::time::Duration::from_secs(30),
        || async {
            let (_, body) = scrape(None).await;
            body.contains(r#"dbtoken_token_ready{namespace="#)
                .then_some(())
        },
    )
    .await;

    for accept in [None, Some("text/plain;version=0.0.4;q=0.3,*/*;q=0.2")] {
        let (content_type, body) = scrape(accept).await;
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{accept:?}: {content_type}"
        );
        assert!(body.contains(r#"dbtoken_token_ready{namespace="#), "{body}");
        promtool_checks_metrics(&body);
    }

    let (content_type, body) = scrape(Some(
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3",
    ))
    .await;
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    let stamped: String = body
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                format!("{l}\n")
            } else {
                format!("{l} 1700000000\n")
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("scrape.om");
    std::fs::write(&input, &stamped).unwrap();
    let out = Command::new(tool("promtool"))
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(dir.path().join("blocks"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool's OpenMetrics parser: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scraped sample: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// `name{k="v",...} value` of a scrape (label values here hold no quotes or commas).
fn parse_sample(line: &str) -> Option<Sample> {
    let (name, rest) = line.split_once('{')?;
    let (labels, value) = rest.rsplit_once("} ")?;
    let labels = labels
        .split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_string(), v.trim_matches('"').to_string()))
        })
        .collect();
    Some((name.to_string(), labels, value.parse().ok()?))
}

/// The inventory of a real workspace, scraped from the operator and stored as Prometheus would
/// store it, fires exactly the alerts its tokens call for.
#[tokio::test]
async fn a_real_inventory_fires_the_alerts_its_tokens_call_for() {
    use databricks_emulator::SeedToken;
    let mut world = support::world::World::new("inv-alerts").await;
    let admin_id = world
        .emulator
        .live_tokens()
        .into_iter()
        .find(|t| t.comment.as_deref() == Some("bootstrap"))
        .unwrap()
        .owner_id;
    let alice = world.emulator.add_user("alice@example.com", false);
    world.emulator.seed_token(&SeedToken {
        owner_id: alice.id,
        created_by_id: None,
        comment: "notebook".into(),
        lifetime_seconds: Some(3 * 86_400),
    });
    world.emulator.seed_token(&SeedToken {
        owner_id: admin_id,
        created_by_id: None,
        comment: "[dbtoken.dev/uid=6f1d2c3b-0000-4000-8000-00000000000a] lost".into(),
        lifetime_seconds: Some(86_400),
    });
    world.start_operator();
    world
        .patch_spec(
            &world.workspaces(),
            "ws",
            serde_json::json!({"inventory": {"interval": "10s", "orphans": "Report", "perTokenMetrics": true}}),
        )
        .await;
    let op = world.operator.as_ref().unwrap();
    let text = support::operator::eventually("inventory series", support::world::WAIT, || async {
        let t = op.metrics().await;
        t.contains("dbtoken_inventory_tokens{").then_some(t)
    })
    .await;
    // The scrape with every inventory family, per-token series included, is valid exposition.
    promtool_checks_metrics(&text);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("dbtoken_inventory_token_expiry_timestamp_seconds{"))
            .count(),
        2,
        "alice's notebook and the orphan expire; bootstrap PATs do not: {text}"
    );

    let rendered = render(&["prometheusRule.inventory.orphanedFor=5m"]);
    let minutes = 15;
    let series: Vec<Series> = text
        .lines()
        .filter(|l| l.starts_with("dbtoken_inventory_"))
        .filter_map(parse_sample)
        .map(|(name, labels, value)| {
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            Series {
                selector: stored(&rendered, &name, &labels),
                values: vec![value; minutes + 1],
            }
        })
        .collect();
    assert!(series.len() >= 12, "two owners, six classes each: {text}");
    let labels = |owner: Option<i64>| {
        let mut l = vec![
            ("kind", "DatabricksWorkspace".to_string()),
            ("namespace", world.ns.name.clone()),
            ("workspace", "ws".to_string()),
        ];
        if let Some(o) = owner {
            l.push(("owner", o.to_string()));
        }
        l.push(("severity", "warning".into()));
        l
    };
    let one = |owner| Expected {
        labels: labels(owner),
        value_seconds: Some(1),
    };
    let checks = vec![
        // Both bootstrap PATs never expire.
        Check {
            at_minutes: 10,
            alert: "DatabricksNeverExpiringTokens",
            firing: vec![one(Some(admin_id)), one(Some(alice.id))],
        },
        Check {
            at_minutes: 10,
            alert: "DatabricksTokensExpiringSoon",
            firing: vec![one(Some(alice.id))],
        },
        Check {
            at_minutes: 10,
            alert: "DatabricksOrphanedTokens",
            firing: vec![one(None)],
        },
        silent(10, "DatabricksTokenInventoryStale"),
    ];
    promtool_test(&rendered, &series, &checks);
}

/// `promtool check metrics` accepts `body` as exposition text.
fn promtool_checks_metrics(body: &str) {
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
