//! The test control plane is a real API server: CRDs, custom resources, kubectl and RBAC work.

mod support;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, CustomResource, CustomResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{conditions, wait::await_condition},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
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

#[tokio::test]
async fn rbac_forbids_an_identity_without_bindings() {
    let ns = support::cluster::namespace("rbac").await;
    let kubeconfig = support::cluster::cluster()
        .await
        .kubeconfig_path()
        .to_path_buf();
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args([
            "auth",
            "can-i",
            "list",
            "secrets",
            "-n",
            &ns.name,
            "--as",
            "system:serviceaccount:x:nobody",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args([
            "get",
            "secrets",
            "-n",
            &ns.name,
            "--as",
            "system:serviceaccount:x:nobody",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden"));
}
