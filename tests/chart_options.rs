//! Chart options for locked-down clusters: the optional NetworkPolicy (accepted by a real API
//! server) and pulling the image by digest.

mod support;

use std::{io::Write as _, process::Command};

use support::cluster::{cluster, repo_root};
use support::tools::{self, documents};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn helm_template(args: &[&str]) -> (bool, String) {
    let chart = repo_root().join("charts/databricks-token-operator");
    let chart = chart.to_str().expect("chart path");
    let mut all = vec![
        "template",
        "dbtoken",
        chart,
        "--namespace",
        "dbtoken-system",
    ];
    all.extend_from_slice(args);
    tools::helm(None, &all)
}

#[tokio::test]
async fn the_network_policy_admits_only_the_metrics_port_and_the_api_server_accepts_it() {
    let (ok, text) = helm_template(&[
        "--set",
        "networkPolicy.enabled=true",
        "--set-json",
        r#"networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]"#,
        "--show-only",
        "templates/networkpolicy.yaml",
    ]);
    assert!(ok, "{text}");
    let policy = documents(&text).remove(0);
    let spec = &policy["spec"];
    let ingress = spec["ingress"].as_sequence().unwrap();
    assert_eq!(ingress.len(), 1, "{text}");
    assert_eq!(ingress[0]["ports"][0]["port"], "metrics");
    assert_eq!(
        ingress[0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    let egress_ports: Vec<i64> = spec["egress"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_sequence().unwrap().clone())
        .filter_map(|p| p["port"].as_i64())
        .collect();
    assert_eq!(egress_ports, [53, 53, 443, 6443, 443], "{text}");

    // The real API server validates the object (server-side dry run).
    let cluster = cluster().await;
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .args(["apply", "--dry-run=server", "-n", "default", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let manifest = text.replace("namespace: dbtoken-system", "namespace: default");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn no_network_policy_unless_enabled() {
    let (ok, text) = helm_template(&[]);
    assert!(ok, "{text}");
    assert!(
        !documents(&text)
            .iter()
            .any(|d| d["kind"] == "NetworkPolicy")
    );
}

#[test]
fn a_digest_pins_the_image_and_a_malformed_one_is_refused() {
    let (ok, text) = helm_template(&["--set", &format!("image.digest={DIGEST}")]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "image: \"ghcr.io/dbtoken-dev/databricks-token-operator@{DIGEST}\""
        )),
        "{text}"
    );
    let (ok, text) = helm_template(&["--set", "image.digest=latest"]);
    assert!(
        !ok,
        "a digest that is not sha256:<64 hex> is refused:\n{text}"
    );
    assert!(text.contains("digest"), "{text}");
}
