//! The checked-in CRDs are exactly what `crdgen` generates, and the API server refuses bad
//! specs at apply time with messages a person understands.

mod support;

use kube::api::{DynamicObject, PostParams};
use serde::Deserialize;
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
        "lifetime is required for type pat",
    ),
    // Type oauth: Databricks decides lifetime; nothing is revoked; the scope is a form field.
    (
        r#"{"workspaceRef":{"name":"ws"},"type":"oauth","lifetime":"1h"}"#,
        "lifetime must not be set for type oauth",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"type":"oauth","renewBefore":"10m"}"#,
        "renewBefore is not available for type oauth",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"type":"oauth","onBehalfOf":{"applicationId":"6f0e8a52-1b7c-4d0a-9a57-0c3e6a1f2b44"}}"#,
        "onBehalfOf is not available for type oauth",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"type":"oauth","comment":"etl"}"#,
        "comment is not available for type oauth",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"type":"oauth","rotation":{"gracePeriod":"5m"}}"#,
        "rotation is not available for type oauth",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"type":"oauth","scopes":["all-apis sql"]}"#,
        "scopes of type oauth must be OAuth scope names",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"type":"OAuth"}"#,
        "Unsupported value: \"OAuth\"",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"soon"}"#,
        "lifetime must be a duration like 720h or 30m",
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
    // Durations: a person reads what a duration looks like, never a raw pattern or a CEL
    // conversion error (an overflowing value matches a loose pattern but breaks duration()).
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"999999999999h"}"#,
        "lifetime must be a duration like 720h or 30m",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"30"}"#,
        "lifetime must be a duration like 720h or 30m",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":""}"#,
        "lifetime must be a duration like 720h or 30m",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","renewBefore":"later"}"#,
        "renewBefore must be a duration like 240h or 30m",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","renewBefore":"999999999999h"}"#,
        "renewBefore must be a duration like 240h or 30m",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","rotation":{"gracePeriod":"a bit"}}"#,
        "rotation.gracePeriod must be a duration like 1h or 10m",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","rotation":{"gracePeriod":"999999999999h"}}"#,
        "rotation.gracePeriod must be a duration like 1h or 10m",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","renewBefore":"0s"}"#,
        "renewBefore must be longer than 0s",
    ),
    // Without renewBefore the renewal window is renewBeforePercentage of the lifetime (one
    // third by default): 40m of grace cannot fit in the last 20m of a 1h token.
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","rotation":{"gracePeriod":"40m"}}"#,
        "rotation.gracePeriod must fit in the renewal window",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","renewBeforePercentage":10,"rotation":{"gracePeriod":"7m"}}"#,
        "rotation.gracePeriod must fit in the renewal window",
    ),
    // Secret keys that would overwrite one another.
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","secret":{"tokenKey":"value","hostKey":"value"}}"#,
        "secret.tokenKey and secret.hostKey must differ",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","secret":{"hostKey":"token"}}"#,
        "secret.tokenKey and secret.hostKey must differ",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","secret":{"tokenKey":"DATABRICKS_HOST"}}"#,
        "secret.envKeys writes DATABRICKS_HOST and DATABRICKS_TOKEN itself",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","secret":{"hostKey":"DATABRICKS_TOKEN"}}"#,
        "secret.envKeys writes DATABRICKS_HOST and DATABRICKS_TOKEN itself",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","secret":{"tokenKey":".databrickscfg","databricksCfgProfile":"DEFAULT"}}"#,
        "secret.databricksCfgProfile writes the .databrickscfg key itself",
    ),
    // The operator's own tag, in any case or spacing.
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","comment":"copied [dbtoken.dev/uid=0b6f1f2e-8d1c-4f57-9a51-3f0f0e3c2d11]"}"#,
        "comment must not contain the operator's tag",
    ),
    (
        r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","comment":"[ DBToken.Dev / UID = x ]"}"#,
        "comment must not contain the operator's tag",
    ),
];

/// Specs at the edge of each rule that must stay accepted.
const VALID_TOKENS: &[&str] = &[
    r#"{"workspaceRef":{"name":"ws"},"lifetime":"720h"}"#,
    r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h30m","renewBefore":"30m","rotation":{"gracePeriod":"30m"}}"#,
    r#"{"workspaceRef":{"name":"ws"},"lifetime":"17520h","renewBefore":"0.5h"}"#,
    r#"{"workspaceRef":{"name":"ws"},"lifetime":"90m","rotation":{"gracePeriod":"29m"}}"#,
    r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","renewBeforePercentage":50,"rotation":{"gracePeriod":"30m"}}"#,
    r#"{"workspaceRef":{"name":"ws"},"lifetime":"10s","rotation":{"gracePeriod":"3s"}}"#,
    r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","secret":{"tokenKey":"DATABRICKS_TOKEN","hostKey":"DATABRICKS_HOST","envKeys":false}}"#,
    r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","secret":{"databricksCfgProfile":"DEFAULT"}}"#,
    r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","comment":"reports job, see dbtoken.dev docs"}"#,
    r#"{"workspaceRef":{"name":"ws"},"type":"pat","lifetime":"1h","scopes":["any words"]}"#,
    r#"{"workspaceRef":{"name":"ws"},"type":"oauth"}"#,
    r#"{"workspaceRef":{"name":"ws"},"type":"oauth","renewBeforePercentage":50,"scopes":["all-apis","sql","iam.current-user:read"],"secret":{"databricksCfgProfile":"DEFAULT"},"deletionPolicy":"Retain"}"#,
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
    (
        "ClusterDatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","allowedNamespaces":["team-a","Team_B"],"auth":{"pat":{"secretRef":{"name":"a","namespace":"p"}}}}"#,
        "allowedNamespaces entries must be namespace names",
    ),
    (
        "ClusterDatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","allowedNamespaces":["team-*"],"auth":{"pat":{"secretRef":{"name":"a","namespace":"p"}}}}"#,
        "allowedNamespaces entries must be namespace names",
    ),
    (
        "ClusterDatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","allowedNamespaces":["a"],"allowedServicePrincipals":[{"applicationId":"sp-a","namespaces":["a"]}],"auth":{"pat":{"secretRef":{"name":"a","namespace":"p"}}}}"#,
        "allowedServicePrincipals[].applicationId must be a UUID",
    ),
    (
        "ClusterDatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","allowedNamespaces":["a"],"allowedServicePrincipals":[{"applicationId":"11111111-1111-1111-1111-111111111111","namespaces":["A"]}],"auth":{"pat":{"secretRef":{"name":"a","namespace":"p"}}}}"#,
        "allowedServicePrincipals[].namespaces entries must be namespace names",
    ),
    (
        "DatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","ownIdentityTokens":"Sometimes","auth":{"pat":{"secretRef":{"name":"a"}}}}"#,
        "Unsupported value: \"Sometimes\"",
    ),
    (
        "DatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","auth":{"azureServicePrincipal":{"tenantId":"t","authorityHost":"login.microsoftonline.com","secretRef":{"name":"a"}}}}"#,
        "authorityHost must be a URL like https://login.microsoftonline.com",
    ),
    (
        "DatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","auth":{"azureServicePrincipal":{"tenantId":"t","authorityHost":"https://login.example.com/path?x=1","secretRef":{"name":"a"}}}}"#,
        "authorityHost must be a URL like https://login.microsoftonline.com",
    ),
    (
        "DatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","auth":{"workloadIdentity":{"clientId":"app","serviceAccountRef":{"name":"databricks","namespace":"other"}}}}"#,
        "a DatabricksWorkspace uses a ServiceAccount of its own namespace",
    ),
    (
        "DatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","auth":{"azureServicePrincipal":{"tenantId":"t","workloadIdentity":{"clientId":"app","serviceAccountRef":{"name":"databricks","namespace":"other"}}}}}"#,
        "a DatabricksWorkspace uses a ServiceAccount of its own namespace",
    ),
    (
        "DatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","auth":{"workloadIdentity":{"clientId":"app","serviceAccountRef":{"name":"databricks"}},"pat":{"secretRef":{"name":"a"}}}}"#,
        "auth must set exactly one of pat, oauthM2M, azureServicePrincipal, workloadIdentity",
    ),
    (
        "DatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","auth":{"azureServicePrincipal":{"tenantId":"t"}}}"#,
        "azureServicePrincipal must set exactly one of secretRef (client secret) and workloadIdentity",
    ),
    (
        "DatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","auth":{"azureServicePrincipal":{"tenantId":"t","secretRef":{"name":"a"},"workloadIdentity":{"clientId":"app","serviceAccountRef":{"name":"databricks"}}}}}"#,
        "azureServicePrincipal must set exactly one of secretRef (client secret) and workloadIdentity",
    ),
    (
        "ClusterDatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","allowedNamespaces":["a"],"auth":{"workloadIdentity":{"clientId":"app","serviceAccountRef":{"name":"databricks"}}}}"#,
        "a ClusterDatabricksWorkspace must set auth.workloadIdentity.serviceAccountRef.namespace",
    ),
    (
        "ClusterDatabricksWorkspace",
        r#"{"host":"https://x.cloud.databricks.com","allowedNamespaces":["a"],"auth":{"azureServicePrincipal":{"tenantId":"t","workloadIdentity":{"clientId":"app","serviceAccountRef":{"name":"databricks"}}}}}"#,
        "a ClusterDatabricksWorkspace must set auth.azureServicePrincipal.workloadIdentity.serviceAccountRef.namespace",
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
    // The API server's own message, exactly what `kubectl apply` prints.
    api.create(&params, &obj)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            kube::Error::Api(status) => status.message.clone(),
            other => other.to_string(),
        })
}

#[tokio::test]
async fn invalid_tokens_are_refused_at_apply_with_a_clear_message() {
    let ns = support::cluster::namespace("validate").await;
    support::world::install_crds(&ns.client).await;
    let mut failures = Vec::new();
    for spec in VALID_TOKENS {
        if let Err(e) = create(&ns, "DatabricksToken", "databrickstokens", true, spec).await {
            failures.push(format!("refused: {spec}\n  {e}"));
        }
    }
    for (spec, expected) in INVALID_TOKENS {
        match create(&ns, "DatabricksToken", "databrickstokens", true, spec).await {
            Ok(()) => failures.push(format!("accepted: {spec}")),
            Err(e) if !e.contains(expected) => {
                failures.push(format!("{spec}\n  wanted: {expected}\n  got: {e}"))
            }
            Err(e) if unreadable(&e) => {
                failures.push(format!("{spec}\n  a raw pattern or CEL error: {e}"))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What a person cannot act on: a raw regular expression or a CEL evaluation error.
fn unreadable(message: &str) -> bool {
    message.contains("should match") || message.contains("type conversion error")
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

/// An unparsable or overflowing duration gets its field's message once: the CEL rules that
/// compare durations skip values that are not durations instead of adding conversion errors.
#[tokio::test]
async fn an_unparsable_duration_gets_one_clear_message() {
    let ns = support::cluster::namespace("duration").await;
    support::world::install_crds(&ns.client).await;
    for (spec, field) in [
        (
            r#"{"workspaceRef":{"name":"ws"},"lifetime":"soon"}"#,
            "lifetime",
        ),
        (
            r#"{"workspaceRef":{"name":"ws"},"lifetime":"2562048h","renewBefore":"1h"}"#,
            "lifetime",
        ),
        (
            r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","renewBefore":"later"}"#,
            "renewBefore",
        ),
        (
            r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","renewBefore":"9999999999m","rotation":{"gracePeriod":"1m"}}"#,
            "renewBefore",
        ),
        (
            r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","renewBefore":"10m","rotation":{"gracePeriod":"a bit"}}"#,
            "rotation.gracePeriod",
        ),
        (
            r#"{"workspaceRef":{"name":"ws"},"lifetime":"1h","rotation":{"gracePeriod":"99999999999s"}}"#,
            "rotation.gracePeriod",
        ),
    ] {
        let e = create(&ns, "DatabricksToken", "databrickstokens", true, spec)
            .await
            .expect_err(spec);
        assert_eq!(
            e.matches(&format!("{field} must be a duration like"))
                .count(),
            1,
            "{spec}: the field's duration message once, got: {e}"
        );
        assert!(!unreadable(&e), "{spec}: got: {e}");
    }
}

/// Every DatabricksToken and workspace in `examples/` passes the schema and CEL rules (applied
/// as a dry run into the test namespace, cluster workspaces cluster-wide).
#[tokio::test]
async fn the_examples_pass_apply_time_validation() {
    let ns = support::cluster::namespace("examples").await;
    support::world::install_crds(&ns.client).await;
    let dir = support::cluster::repo_root().join("examples");
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(doc).unwrap();
            let (Some(kind), Some(spec)) = (value["kind"].as_str(), value.get("spec")) else {
                continue;
            };
            let (plural, namespaced) = match kind {
                "DatabricksToken" => ("databrickstokens", true),
                "DatabricksWorkspace" => ("databricksworkspaces", true),
                "ClusterDatabricksWorkspace" => ("clusterdatabricksworkspaces", false),
                _ => continue,
            };
            checked += 1;
            if let Err(e) = create(&ns, kind, plural, namespaced, &spec.to_string()).await {
                failures.push(format!("{} {kind}: {e}", path.display()));
            }
        }
    }
    assert!(checked >= 8, "found {checked} objects in examples/");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The type of a token cannot change: a PAT's revocations and an access token's lack of them
/// do not mix in one resource's history.
#[tokio::test]
async fn the_token_type_cannot_be_changed() {
    use databricks_token_operator::crd::DatabricksToken;
    use kube::api::{Patch, PatchParams};
    let ns = support::cluster::namespace("typechange").await;
    support::world::install_crds(&ns.client).await;
    let api: kube::Api<DatabricksToken> = kube::Api::namespaced(ns.client.clone(), &ns.name);
    let token: DatabricksToken = serde_json::from_value(json!({
        "apiVersion": "dbtoken.dev/v1alpha1", "kind": "DatabricksToken",
        "metadata": {"name": "t"},
        "spec": {"workspaceRef": {"name": "ws"}, "lifetime": "1h"},
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &token).await.unwrap();
    assert_eq!(
        created.spec.token_type,
        databricks_token_operator::crd::TokenType::Pat,
        "pat by default"
    );
    let patch = json!({"spec": {"type": "oauth", "lifetime": null}});
    let e = api
        .patch("t", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("type changed");
    assert!(e.to_string().contains("type cannot be changed"), "{e}");
}
