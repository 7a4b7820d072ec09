//! The checked-in CRDs are exactly what `crdgen` generates, and the API server refuses bad
//! specs at apply time with messages a person understands.

mod support;

use kube::api::{DynamicObject, PostParams};
use serde_json::json;

#[test]
fn checked_in_crds_match_the_generator() {
    let root = support::cluster::repo_root();
    for (file, yaml) in databricks_token_operator::crd::rendered_crds().unwrap() {
        let path = root.join("crds").join(&file);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == yaml,
            "{} is stale: run `make crds`",
            path.display()
        );
        let in_chart = root
            .join("charts/databricks-token-operator/crds")
            .join(&file);
        let chart_copy = std::fs::read_to_string(&in_chart).unwrap_or_default();
        assert!(
            chart_copy == yaml,
            "{} is stale: run `make crds`",
            in_chart.display()
        );
    }
}

/// Each case: a spec and a fragment of the error the API server must answer with.
const INVALID_TOKENS: &[(&str, &str)] = &[
    (r#"{"lifetime":"1h"}"#, "spec.workspaceRef: Required value"),
    (
        r#"{"workspaceRef":{"name":"ws"}}"#,
        "spec.lifetime: Required value",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"soon"}"#,
        "should match",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"5s"}"#,
        "lifetime must be at least 10s",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"20000h"}"#,
        "lifetime must be at most 17520h",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","renewBefore":"2h"}"#,
        "renewBefore must be shorter than lifetime",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","renewBefore":"10m","renewBeforePercentage":20}"#,
        "set at most one of renewBefore and renewBeforePercentage",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","renewBeforePercentage":100}"#,
        "should be less than or equal to 99",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","onBehalfOf":{"applicationId":"nope"}}"#,
        "onBehalfOf.applicationId must be a UUID",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","secret":{"name":"Bad_Name"}}"#,
        "secret.name must be a valid Secret name",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","secret":{"tokenKey":"a/b"}}"#,
        "secret.tokenKey must be a valid Secret key",
    ),
    (
        r#"{"workspaceRef":{"name":"ws","kind":"Other"},"lifetime":"1h"}"#,
        "Unsupported value: \"Other\"",
    ),
    (
        r#"{"workspaceRef":{"name":""},"lifetime":"1h"}"#,
        "workspaceRef.name must not be empty",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","deletionPolicy":"Keep"}"#,
        "Unsupported value: \"Keep\"",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","scopes":[""]}"#,
        "scopes must not contain empty strings",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","renewBefore":"30m","rotation":{"gracePeriod":"45m"}}"#,
        "rotation.gracePeriod must not exceed renewBefore",
    ),
];

const INVALID_WORKSPACES: &[(&str, &str, &str)] = &[
    (
        "DatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","auth":{}}"#,
        "auth must set exactly one of pat, oauthM2M, azureServicePrincipal",
    ),
    (
        "DatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","auth":{"pat":{"secretRef":{"name":"a"}},"oauthM2M":{"secretRef":{"name":"b"}}}}"#,
        "auth must set exactly one",
    ),
    (
        "DatabricksWorkspace",
        r#"{"host":"x.cloud.databricks.com","auth":{"pat":{"secretRef":{"name":"a"}}}}"#,
        "host must be a workspace URL",
    ),
    (
        "DatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com/path","auth":{"pat":{"secretRef":{"name":"a"}}}}"#,
        "without a path",
    ),
    (
        "DatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","auth":{"pat":{"secretRef":{"name":"a","namespace":"other"}}}}"#,
        "reads credentials from its own namespace",
    ),
    (
        "DatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","auth":{"azureServicePrincipal":{"secretRef":{"name":"a"}}}}"#,
        "tenantId: Required value",
    ),
    (
        "ClusterDatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","allowedNamespaces":["a"],"auth":{"pat":{"secretRef":{"name":"a"}}}}"#,
        "must set auth.pat.secretRef.namespace",
    ),
    (
        "ClusterDatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","auth":{"pat":{"secretRef":{"name":"a","namespace":"p"}}}}"#,
        "allowedNamespaces: Required value",
    ),
];

async fn create(
    ns: &support::cluster::TestNamespace,
    kind: &str,
    plural: &str,
    namespaced: bool,
    spec: &str,
) -> Result<(), String> {
    let resource = kube::api::ApiResource {
        group: "dbtoken.dev".into(),
        version: "v1alpha1".into(),
        api_version: "dbtoken.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: kube::Api<DynamicObject> = if namespaced {
        kube::Api::namespaced_with(ns.client.clone(), &ns.name, &resource)
    } else {
        kube::Api::all_with(ns.client.clone(), &resource)
    };
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "dbtoken.dev/v1alpha1", "kind": kind,
        "metadata": {"generateName": "case-"},
        "spec": serde_json::from_str::<serde_json::Value>(spec).unwrap(),
    }))
    .unwrap();
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&params, &obj)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn invalid_tokens_are_refused_at_apply_with_a_clear_message() {
    let ns = support::cluster::namespace("validate").await;
    support::world::install_crds(&ns.client).await;
    create(
        &ns,
        "DatabricksToken",
        "databrickstokens",
        true,
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"720h"}"#,
    )
    .await
    .expect("a valid spec is accepted");
    let mut failures = Vec::new();
    for (spec, expected) in INVALID_TOKENS {
        match create(&ns, "DatabricksToken", "databrickstokens", true, spec).await {
            Ok(()) => failures.push(format!("accepted: {spec}")),
            Err(e) if !e.contains(expected) => {
                failures.push(format!("{spec}\n  wanted: {expected}\n  got: {e}"))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn invalid_workspaces_are_refused_at_apply_with_a_clear_message() {
    let ns = support::cluster::namespace("validatews").await;
    support::world::install_crds(&ns.client).await;
    let mut failures = Vec::new();
    for (kind, spec, expected) in INVALID_WORKSPACES {
        let (plural, namespaced) = match *kind {
            "DatabricksWorkspace" => ("databricksworkspaces", true),
            _ => ("clusterdatabricksworkspaces", false),
        };
        match create(&ns, kind, plural, namespaced, spec).await {
            Ok(()) => failures.push(format!("accepted: {kind} {spec}")),
            Err(e) if !e.contains(expected) => {
                failures.push(format!("{kind} {spec}\n  wanted: {expected}\n  got: {e}"))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An unparsable duration gets the pattern message alone: the CEL rules that compare durations
/// skip values that are not durations instead of adding conversion errors.
#[tokio::test]
async fn an_unparsable_duration_gets_one_clear_message() {
    let ns = support::cluster::namespace("duration").await;
    support::world::install_crds(&ns.client).await;
    for spec in [
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"soon"}"#,
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","renewBefore":"later"}"#,
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","renewBefore":"10m","rotation":{"gracePeriod":"a bit"}}"#,
    ] {
        let e = create(&ns, "DatabricksToken", "databrickstokens", true, spec)
            .await
            .expect_err(spec);
        assert!(e.contains("should match"), "{spec}: {e}");
        assert!(
            !e.contains("type conversion error"),
            "{spec}: the pattern message alone, got: {e}"
        );
    }
}
