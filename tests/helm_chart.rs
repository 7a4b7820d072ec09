//! The Helm chart installed for real (real `helm`, real API server), and the operator run with
//! the chart's ServiceAccount identity: its RBAC is enough for every path of the operator and
//! refuses what the operator does not need.

mod support;

use std::path::Path;

use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::cluster::repo_root;
use support::operator::{Operator, eventually};
use support::tools::{self, kubectl, service_account_kubeconfig};
use support::world::{WAIT, World};

const FULLNAME: &str = "dbtoken-operator";

fn helm(kubeconfig: &Path, args: &[&str]) -> String {
    let (ok, text) = helm_result(kubeconfig, args);
    assert!(ok, "helm {args:?} failed:\n{text}");
    text
}

fn helm_result(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    tools::helm(Some(kubeconfig), args)
}

#[test]
fn the_chart_lints_and_renders_in_both_rbac_modes() {
    let kubeconfig = support::cluster::cluster_sync()
        .kubeconfig_path()
        .to_path_buf();
    let chart = repo_root().join("charts/databricks-token-operator");
    let chart = chart.to_str().unwrap();
    helm(&kubeconfig, &["lint", "--strict", chart]);
    let cluster_wide = helm(&kubeconfig, &["template", "x", chart]);
    assert!(cluster_wide.contains("kind: ClusterRole") && cluster_wide.contains("replicas: 2"));
    assert!(
        cluster_wide.contains("readOnlyRootFilesystem: true")
            && cluster_wide.contains("runAsNonRoot: true")
    );
    let namespaced = helm(
        &kubeconfig,
        &[
            "template",
            "x",
            chart,
            "--set",
            "watchNamespaces={team-a,team-b}",
        ],
    );
    assert!(
        namespaced.matches("kind: RoleBinding").count() >= 2,
        "a RoleBinding per watched namespace"
    );
    assert!(
        namespaced.contains("team-a,team-b"),
        "the operator is told which namespaces to watch"
    );
}

/// Without leader election every replica would reconcile: two operators minting and revoking
/// the same tokens. The chart refuses to render that.
#[test]
fn the_chart_refuses_several_replicas_without_leader_election() {
    let kubeconfig = support::cluster::cluster_sync()
        .kubeconfig_path()
        .to_path_buf();
    let chart = repo_root().join("charts/databricks-token-operator");
    let chart = chart.to_str().unwrap();
    let (ok, text) = helm_result(
        &kubeconfig,
        &[
            "template",
            "x",
            chart,
            "--set",
            "leaderElection.enabled=false",
        ],
    );
    assert!(!ok, "two replicas without leader election must not render");
    assert!(
        text.contains("leaderElection.enabled=false") && text.contains("replicaCount"),
        "the failure says what to change: {text}"
    );
    let single = helm(
        &kubeconfig,
        &[
            "template",
            "x",
            chart,
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "replicaCount=1",
        ],
    );
    assert!(single.contains("replicas: 1") && single.contains("--leader-election=false"));
}

#[tokio::test]
async fn the_operator_works_with_exactly_the_rbac_the_chart_grants() {
    let w = World::new("chart").await;
    let admin = w.kubeconfig();
    let release_ns = format!("{}-system", w.ns.name);
    let chart = repo_root().join("charts/databricks-token-operator");
    helm(
        &admin,
        &[
            "install",
            "dbtoken",
            chart.to_str().unwrap(),
            "-n",
            &release_ns,
            "--create-namespace",
            "--set",
            &format!("fullnameOverride={FULLNAME}"),
            "--wait=false",
        ],
    );

    // Least privilege: what the operator never needs is refused. It writes with patches
    // (server-side apply, merge patches), never with update, except the Lease (replace, for
    // its optimistic concurrency) and finalizers (what blockOwnerDeletion on the Secret's
    // ownerReference requires); it restarts workloads with a patch and never reads them.
    let who = format!("system:serviceaccount:{release_ns}:{FULLNAME}");
    let ns = w.ns.name.as_str();
    let can_i = |verb: &str, resource: &str, subresource: &str, ns: &str| {
        let mut args = vec!["auth", "can-i", verb, resource, "--as", &who];
        if !ns.is_empty() {
            args.extend(["-n", ns]);
        }
        if !subresource.is_empty() {
            args.extend(["--subresource", subresource]);
        }
        let (_, answer) = kubectl(&admin, &args);
        answer.lines().next().map(str::trim) == Some("yes")
    };
    for (verb, resource, subresource, ns) in [
        ("list", "pods", "", ns),
        ("get", "configmaps", "", ns),
        ("delete", "databrickstokens.dbtoken.dev", "", ns),
        ("create", "clusterroles", "", ""),
        ("update", "databricksworkspaces.dbtoken.dev", "", ns),
        ("create", "leases.coordination.k8s.io", "", ns),
        ("update", "databrickstokens.dbtoken.dev", "", ns),
        ("update", "databrickstokens.dbtoken.dev", "status", ns),
        ("update", "databricksworkspaces.dbtoken.dev", "status", ns),
        (
            "update",
            "clusterdatabricksworkspaces.dbtoken.dev",
            "status",
            "",
        ),
        ("update", "secrets", "", ns),
        ("get", "deployments.apps", "", ns),
        ("get", "statefulsets.apps", "", ns),
        ("get", "daemonsets.apps", "", ns),
        ("patch", "leases.coordination.k8s.io", "", &release_ns),
    ] {
        assert!(
            !can_i(verb, resource, subresource, ns),
            "{who} must not {verb} {resource} {subresource} in {ns:?}"
        );
    }
    // ...and what it does use is granted (the paths below exercise most of it for real).
    for (verb, resource, subresource, ns) in [
        ("patch", "databrickstokens.dbtoken.dev", "", ns),
        ("patch", "databrickstokens.dbtoken.dev", "status", ns),
        ("update", "databrickstokens.dbtoken.dev", "finalizers", ns),
        ("patch", "databricksworkspaces.dbtoken.dev", "status", ns),
        (
            "patch",
            "clusterdatabricksworkspaces.dbtoken.dev",
            "status",
            "",
        ),
        ("patch", "secrets", "", ns),
        ("delete", "secrets", "", ns),
        ("patch", "deployments.apps", "", ns),
        ("patch", "statefulsets.apps", "", ns),
        ("patch", "daemonsets.apps", "", ns),
        ("create", "events.events.k8s.io", "", ns),
        ("update", "leases.coordination.k8s.io", "", &release_ns),
    ] {
        assert!(
            can_i(verb, resource, subresource, ns),
            "{who} must be able to {verb} {resource} {subresource} in {ns:?}"
        );
    }

    // Run the operator as that ServiceAccount, with leader election in the release namespace.
    let dir = tempfile::tempdir().unwrap();
    let sa_kubeconfig = service_account_kubeconfig(&admin, &release_ns, FULLNAME, dir.path());
    let mut options = w.options();
    options.namespaces = vec![];
    options.leader_election = true;
    options.lease_namespace = Some(release_ns.clone());
    let operator = Operator::start(&sa_kubeconfig, &options);

    w.create_token(
        "t",
        json!({"workspaceRef": {"name": "ws"}, "lifetime": "1h"}),
    )
    .await;
    let first = w.wait_ready("t").await.status.unwrap().token_id.unwrap();
    assert!(
        w.emulator
            .accepts(&w.secret_value("t", "token").await.unwrap())
    );
    // Rotation (status, Secret update, events) and deletion (revoke, Secret delete, finalizer).
    let patch = json!({"metadata": {"annotations": {"dbtoken.dev/rotate-requested-at": "now"}}});
    w.tokens()
        .patch("t", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    w.wait_token("t", "rotated", move |t| {
        t.status
            .as_ref()
            .and_then(|s| s.token_id.as_ref())
            .is_some_and(|id| *id != first)
    })
    .await;
    w.tokens()
        .delete("t", &DeleteParams::default())
        .await
        .unwrap();
    eventually("deleted with its Secret", WAIT, || async {
        let gone = w.tokens().get_opt("t").await.unwrap().is_none()
            && w.secrets().get_opt("t").await.unwrap().is_none();
        gone.then_some(())
    })
    .await;
    let logs = operator.logs();
    assert!(
        logs.contains("acquired leadership"),
        "leader election works with the chart's Role"
    );
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "no RBAC refusal in the operator's log:\n{logs}"
    );
}
