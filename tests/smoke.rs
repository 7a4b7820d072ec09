//! The test control plane is a real API server: CRDs, custom resources, kubectl and RBAC work.

mod support;

use k8s_openapi::{
    api::rbac::v1::{Role, RoleBinding},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, CustomResource, CustomResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{conditions, wait::await_condition},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "smoke.dbtoken.dev",
    version = "v1",
    kind = "Probe",
    namespaced
)]
struct ProbeSpec {
    message: String,
    replicas: i32,
}

#[tokio::test]
async fn a_crd_is_served_and_a_custom_resource_reads_back() {
    let ns = support::cluster::namespace("smoke").await;
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client.clone());
    crds.patch(
        "probes.smoke.dbtoken.dev",
        &PatchParams::apply("smoke").force(),
        &Patch::Apply(Probe::crd()),
    )
    .await
    .unwrap();
    let established = await_condition(
        crds,
        "probes.smoke.dbtoken.dev",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .unwrap()
        .unwrap();

    let probes: Api<Probe> = Api::namespaced(ns.client.clone(), &ns.name);
    let created = probes
        .create(
            &PostParams::default(),
            &Probe::new(
                "p",
                ProbeSpec {
                    message: "hello".into(),
                    replicas: 3,
                },
            ),
        )
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    let read = probes.get("p").await.unwrap();
    assert_eq!(
        read.spec,
        ProbeSpec {
            message: "hello".into(),
            replicas: 3
        }
    );
}

#[tokio::test]
async fn kubectl_works_against_the_control_plane() {
    let ns = support::cluster::namespace("kubectl").await;
    let kubeconfig = support::cluster::cluster()
        .await
        .kubeconfig_path()
        .to_path_buf();
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args([
            "get",
            "namespace",
            &ns.name,
            "-o",
            "jsonpath={.status.phase}",
        ])
        .output()
        .expect("kubectl on PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Active");
}

/// `kubectl --as IDENTITY get secrets -n NS`, returning (succeeded, stderr).
fn kubectl_get_secrets_as(
    kubeconfig: &std::path::Path,
    ns: &str,
    identity: &str,
) -> (bool, String) {
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(["get", "secrets", "-n", ns, "--as", identity])
        .output()
        .expect("kubectl on PATH");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn rbac_forbids_an_identity_until_a_role_binding_allows_it() {
    let ns = support::cluster::namespace("rbac").await;
    let kubeconfig = support::cluster::cluster().await.kubeconfig_path();
    let identity = format!("system:serviceaccount:{}:nobody", ns.name);

    let (ok, stderr) = kubectl_get_secrets_as(kubeconfig, &ns.name, &identity);
    assert!(!ok, "an identity without bindings listed secrets");
    assert!(stderr.contains("forbidden"), "{stderr}");

    let roles: Api<Role> = Api::namespaced(ns.client.clone(), &ns.name);
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "read-secrets"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(ns.client.clone(), &ns.name);
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "nobody-reads-secrets"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-secrets"},
                "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": ns.name}],
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let (ok, stderr) = kubectl_get_secrets_as(kubeconfig, &ns.name, &identity);
    assert!(ok, "the bound identity was refused: {stderr}");
    let (ok, stderr) = kubectl_get_secrets_as(kubeconfig, "default", &identity);
    assert!(
        !ok && stderr.contains("forbidden"),
        "binding leaked: {stderr}"
    );
}

#[tokio::test]
async fn the_api_server_reports_the_kubernetes_version_it_was_built_from() {
    let client = support::cluster::cluster().await.client().await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (
            version.git_version.as_str(),
            version.major.as_str(),
            version.minor.as_str()
        ),
        ("v1.35.4", "1", "35")
    );
}
