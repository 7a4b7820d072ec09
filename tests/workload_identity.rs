//! Workload identity end to end: workspaces with no credential Secret authenticate as a service
//! principal whose federation policy trusts a Kubernetes ServiceAccount. The operator gets that
//! ServiceAccount's tokens from the real API server (TokenRequest), signed with the control
//! plane's service-account key; the emulator verifies them against the JWKS the same API server
//! publishes at `/openid/v1/jwks` (read by the test with its admin client and pasted into the
//! policy, as Databricks allows for issuers it cannot reach).

mod support;

use databricks_emulator::{EmulatorConfig, EmulatorHandle, FederationPolicy};
use databricks_token_operator::crd::{ClusterDatabricksWorkspace, DatabricksWorkspace};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use serde_json::json;

use support::{
    cluster,
    operator::{Operator, OperatorOptions, eventually},
    tools::{kubectl, service_account_kubeconfig},
    world::{WAIT, World, condition_is, condition_reason},
};

/// `--service-account-issuer` of hack/control-plane.sh.
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const SA: &str = "databricks";

fn subject(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The API server's published signing keys (its OIDC discovery `jwks_uri`).
async fn api_server_jwks(client: &kube::Client) -> String {
    let request = http::Request::get("/openid/v1/jwks")
        .body(Vec::new())
        .expect("request");
    client
        .request_text(request)
        .await
        .expect("GET /openid/v1/jwks")
}

async fn create_service_account(client: &kube::Client, namespace: &str, name: &str) {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &sa)
        .await
        .expect("create service account");
}

/// A service principal trusting `subject` at `audience` (default: the token endpoint).
async fn federated_principal(
    w: &World,
    emulator: &EmulatorHandle,
    subject: &str,
    audience: Option<&str>,
) -> String {
    let sp = emulator.add_service_principal("federated", false);
    let default_audience = format!("{}/oidc/v1/token", emulator.base_url());
    emulator.add_federation_policy(
        &sp.application_id,
        FederationPolicy {
            issuer: ISSUER.into(),
            audiences: vec![audience.unwrap_or(&default_audience).to_string()],
            subject: subject.into(),
            jwks_json: Some(api_server_jwks(&w.ns.client).await),
        },
    );
    sp.application_id
}

fn workload_identity(client_id: &str) -> serde_json::Value {
    json!({"workloadIdentity": {"clientId": client_id, "serviceAccountRef": {"name": SA}}})
}

/// Wait until workspace `name` of `namespace` is Ready=False with `reason`; returns the message.
async fn wait_workspace_refused(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    reason: &str,
) -> String {
    let api: Api<DatabricksWorkspace> = Api::namespaced(client.clone(), namespace);
    eventually(
        &format!("workspace {name} refused with {reason}"),
        WAIT,
        || {
            let api = api.clone();
            async move {
                let ws = api.get(name).await.ok()?;
                let c = ws
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Ready")?;
                (format!("{:?}", c.status) == "False" && c.reason == reason).then_some(c.message)
            }
        },
    )
    .await
}

async fn wait_degraded(w: &World, token: &str, reason: &str) -> String {
    let expected = reason.to_string();
    let t = w
        .wait_token(token, &format!("Degraded={reason}"), move |t| {
            condition_is(t, "Degraded", "True")
                && condition_reason(t, "Degraded").is_some_and(|(r, _)| r == expected)
        })
        .await;
    condition_reason(&t, "Degraded").expect("Degraded").1
}

/// A ServiceAccount `SA`, a service principal federated to it, the workspace `wi` using it, and
/// the operator running; returns the service principal's application id.
async fn federate_and_start(w: &mut World) -> String {
    create_service_account(&w.ns.client, &w.ns.name, SA).await;
    let app_id = federated_principal(w, &w.emulator, &subject(&w.ns.name, SA), None).await;
    w.apply_workspace("wi", workload_identity(&app_id)).await;
    w.start_operator();
    app_id
}

#[tokio::test]
async fn a_workspace_without_a_credential_secret_mints_rotates_and_revokes() {
    // Short access tokens, so the exchange is repeated while the test runs.
    let mut w = World::with_emulator(
        "wi-mint",
        EmulatorConfig {
            access_token_seconds: 30,
            ..EmulatorConfig::default()
        },
    )
    .await;
    let app_id = federate_and_start(&mut w).await;
    w.create_token(
        "reports",
        json!({"workspaceRef": {"name": "wi"}, "lifetime": "40s"}),
    )
    .await;

    let first = w.wait_ready("reports").await;
    let first_id = first.status.and_then(|s| s.token_id).expect("token id");
    let live = w.emulator.live_tokens();
    let minted = live
        .iter()
        .find(|t| t.token_id == first_id)
        .expect("the token is live");
    assert_eq!(
        minted.owner_name, app_id,
        "the token belongs to the federated service principal"
    );
    let value = w
        .secret_value("reports", "token")
        .await
        .expect("token in the Secret");
    assert!(w.emulator.accepts(&value));

    // Rotation at 2/3 of the lifetime, then the replaced token is revoked after its grace.
    let second = w
        .wait_replaced("reports", &first_id, "a rotation")
        .await
        .status
        .and_then(|s| s.token_id)
        .expect("token id");
    w.wait_revoked(&first_id).await;

    // The 30 s access token was exchanged again before it expired, each time with a fresh
    // ServiceAccount token, and never refused.
    eventually("a second exchange", WAIT, || async {
        (w.emulator.stats().count_status("oidc/token", 200) >= 2).then_some(())
    })
    .await;
    assert_eq!(w.emulator.stats().count_status("oidc/token", 400), 0);

    w.delete_token_and_wait("reports").await;
    w.wait_revoked(&second).await;

    // Nothing the operator logged holds a ServiceAccount token or an exchanged one.
    let log = std::fs::read_to_string(&w.operator.as_ref().expect("operator").log_path)
        .expect("operator log");
    for secret in w.emulator.access_tokens() {
        assert!(!log.contains(&secret), "an access token reached the log");
    }
    assert!(
        !log.contains("eyJhbGciOi"),
        "a JWT (ServiceAccount token) reached the log"
    );
    let ws = w.workspaces().get("wi").await.expect("workspace");
    let events = w.events_of("reports").await;
    let visible = format!("{:?}{events:?}", ws.status);
    assert!(!events.is_empty(), "events were published");
    assert!(
        !visible.contains("eyJ"),
        "a token reached status or events: {visible}"
    );
}

#[tokio::test]
async fn a_teams_service_account_cannot_act_as_another_teams_service_principal() {
    let mut w = World::new("wi-team-a").await;
    let team_b = cluster::namespace("wi-team-b").await;
    create_service_account(&w.ns.client, &w.ns.name, SA).await;
    create_service_account(&team_b.client, &team_b.name, SA).await;
    let team_a_sp = federated_principal(&w, &w.emulator, &subject(&w.ns.name, SA), None).await;

    // Team B names team A's service principal with its own ServiceAccount.
    let ws: DatabricksWorkspace = serde_json::from_value(json!({
        "apiVersion": "dbtoken.dev/v1alpha1",
        "kind": "DatabricksWorkspace",
        "metadata": {"name": "borrowed"},
        "spec": {"host": w.emulator.base_url(), "auth": workload_identity(&team_a_sp),
                 "ownIdentityTokens": "Allow"},
    }))
    .unwrap();
    let team_b_workspaces: Api<DatabricksWorkspace> =
        Api::namespaced(team_b.client.clone(), &team_b.name);
    team_b_workspaces
        .create(&PostParams::default(), &ws)
        .await
        .expect("create workspace");

    // ... and cannot borrow team A's ServiceAccount either: refused at apply.
    let mut borrowing_sa = ws.clone();
    borrowing_sa.metadata.name = Some("borrowed-sa".into());
    borrowing_sa.spec.auth = serde_json::from_value(json!({"workloadIdentity": {
        "clientId": team_a_sp, "serviceAccountRef": {"name": SA, "namespace": w.ns.name}}}))
    .unwrap();
    let err = team_b_workspaces
        .create(&PostParams::default(), &borrowing_sa)
        .await
        .expect_err("another namespace's ServiceAccount is refused");
    assert!(
        err.to_string()
            .contains("a DatabricksWorkspace uses a ServiceAccount of its own namespace"),
        "{err}"
    );

    let mut options = OperatorOptions::for_namespace(&w.ns.name);
    options.namespaces.push(team_b.name.clone());
    w.start_operator_with(options);
    let message = wait_workspace_refused(
        &team_b.client,
        &team_b.name,
        "borrowed",
        "FederationPolicyMismatch",
    )
    .await;
    assert!(
        message.contains(&subject(&team_b.name, SA)) && message.contains(&team_a_sp),
        "the message names the refused subject and the service principal: {message}"
    );
    assert!(
        !w.emulator
            .live_tokens()
            .iter()
            .any(|t| t.owner_name == team_a_sp),
        "nothing was minted for team A's service principal"
    );

    // Team A itself authenticates with the same service principal.
    w.apply_workspace("own", workload_identity(&team_a_sp))
        .await;
    w.create_token(
        "mine",
        json!({"workspaceRef": {"name": "own"}, "lifetime": "1h"}),
    )
    .await;
    w.wait_ready("mine").await;
}

#[tokio::test]
async fn a_wrong_audience_is_refused_with_a_clear_condition() {
    let mut w = World::new("wi-aud").await;
    create_service_account(&w.ns.client, &w.ns.name, SA).await;
    let app_id = federated_principal(&w, &w.emulator, &subject(&w.ns.name, SA), None).await;
    w.apply_workspace(
        "wi",
        json!({"workloadIdentity": {"clientId": app_id, "audience": "https://kubernetes.default.svc",
               "serviceAccountRef": {"name": SA}}}),
    )
    .await;
    w.start_operator();
    w.create_token(
        "reports",
        json!({"workspaceRef": {"name": "wi"}, "lifetime": "1h"}),
    )
    .await;
    let message = wait_degraded(&w, "reports", "FederationPolicyMismatch").await;
    assert!(
        message.contains("aud: 'https://kubernetes.default.svc'"),
        "{message}"
    );
    wait_workspace_refused(&w.ns.client, &w.ns.name, "wi", "FederationPolicyMismatch").await;
}

#[tokio::test]
async fn an_expired_service_account_token_is_refused_as_such() {
    let mut w = World::new("wi-expired").await;
    create_service_account(&w.ns.client, &w.ns.name, SA).await;
    let app_id = federated_principal(&w, &w.emulator, &subject(&w.ns.name, SA), None).await;
    // The workspace's clock is past the one-hour ServiceAccount tokens' expiry.
    w.emulator.set_clock_offset_ms(2 * 3600 * 1000);
    w.apply_workspace("wi", workload_identity(&app_id)).await;
    w.start_operator();
    w.create_token(
        "reports",
        json!({"workspaceRef": {"name": "wi"}, "lifetime": "1h"}),
    )
    .await;
    let message = wait_degraded(&w, "reports", "TokenExchangeRefused").await;
    assert!(message.contains("expired"), "{message}");
}

#[tokio::test]
async fn a_missing_service_account_has_its_own_reason() {
    let mut w = World::new("wi-nosa").await;
    let app_id = federated_principal(&w, &w.emulator, &subject(&w.ns.name, SA), None).await;
    w.apply_workspace("wi", workload_identity(&app_id)).await;
    w.start_operator();
    w.create_token(
        "reports",
        json!({"workspaceRef": {"name": "wi"}, "lifetime": "1h"}),
    )
    .await;
    let message = wait_degraded(&w, "reports", "ServiceAccountNotFound").await;
    assert!(
        message.contains(&format!("ServiceAccount {}/{SA} does not exist", w.ns.name)),
        "{message}"
    );
    assert_eq!(
        w.emulator.stats().count("oidc/token"),
        0,
        "nothing is sent to Databricks without a subject token"
    );
}

#[tokio::test]
async fn an_entra_service_principal_authenticates_with_a_federated_credential() {
    let mut w = World::new("wi-entra").await;
    create_service_account(&w.ns.client, &w.ns.name, SA).await;
    let sp = w.emulator.add_service_principal("azure-sp", false);
    let app = w.emulator.add_entra_app("tenant-1", &sp.application_id);
    w.emulator.add_entra_federated_credential(
        &app.client_id,
        FederationPolicy {
            issuer: ISSUER.into(),
            audiences: vec!["api://AzureADTokenExchange".into()],
            subject: subject(&w.ns.name, SA),
            jwks_json: None,
        },
    );
    // This time the issuer's keys are known to the emulator instead of pasted.
    w.emulator
        .publish_issuer_keys(ISSUER, &api_server_jwks(&w.ns.client).await);
    w.apply_workspace(
        "azure",
        json!({"azureServicePrincipal": {"tenantId": "tenant-1",
               "authorityHost": w.emulator.entra_authority(),
               "workloadIdentity": {"clientId": app.client_id, "serviceAccountRef": {"name": SA}}}}),
    )
    .await;
    w.start_operator();
    w.create_token(
        "reports",
        json!({"workspaceRef": {"name": "azure"}, "lifetime": "1h"}),
    )
    .await;
    let t = w.wait_ready("reports").await;
    let id = t.status.and_then(|s| s.token_id).expect("token id");
    assert!(
        w.emulator
            .live_tokens()
            .iter()
            .any(|l| l.token_id == id && l.owner_name == sp.application_id)
    );
    assert!(w.emulator.stats().count_status("entra/token", 200) >= 1);
}

#[tokio::test]
async fn a_cluster_workspace_uses_the_service_account_the_admin_names() {
    let mut w = World::new("wi-cluster").await;
    let platform = cluster::namespace("wi-platform").await;
    create_service_account(&platform.client, &platform.name, SA).await;
    let app_id = federated_principal(&w, &w.emulator, &subject(&platform.name, SA), None).await;
    let name = format!("wi-{}", w.ns.name);
    let cws: ClusterDatabricksWorkspace = serde_json::from_value(json!({
        "apiVersion": "dbtoken.dev/v1alpha1",
        "kind": "ClusterDatabricksWorkspace",
        "metadata": {"name": name},
        "spec": {"host": w.emulator.base_url(), "allowedNamespaces": [w.ns.name],
                 "ownIdentityTokens": "Allow",
                 "auth": {"workloadIdentity": {"clientId": app_id,
                          "serviceAccountRef": {"name": SA, "namespace": platform.name}}}},
    }))
    .unwrap();
    let api: Api<ClusterDatabricksWorkspace> = Api::all(w.ns.client.clone());
    api.create(&PostParams::default(), &cws)
        .await
        .expect("create cluster workspace");
    w.start_operator();
    w.create_token(
        "reports",
        json!({"workspaceRef": {"kind": "ClusterDatabricksWorkspace", "name": name},
               "lifetime": "1h"}),
    )
    .await;
    w.wait_ready("reports").await;
    w.delete_token_and_wait("reports").await;
    api.delete(&name, &Default::default())
        .await
        .expect("delete");
}

/// The chart grants `create` on `serviceaccounts/token` for the listed ServiceAccounts only, and
/// the operator running with exactly that RBAC mints through one and reports the other as
/// TokenRequestForbidden.
#[tokio::test]
async fn the_chart_lets_the_operator_request_tokens_for_listed_service_accounts_only() {
    let w = World::new("wi-chart").await;
    let admin = w.kubeconfig();
    let release_ns = format!("{}-system", w.ns.name);
    let fullname = "dbtoken-wi";
    let chart = cluster::repo_root().join("charts/databricks-token-operator");
    let (ok, out) = support::tools::helm(
        Some(&admin),
        &[
            "install",
            "dbtoken",
            chart.to_str().unwrap(),
            "-n",
            &release_ns,
            "--create-namespace",
            "--set",
            &format!("fullnameOverride={fullname}"),
            "--set",
            &format!(
                "workloadIdentity.serviceAccounts[0].namespace={}",
                w.ns.name
            ),
            "--set",
            &format!("workloadIdentity.serviceAccounts[0].name={SA}"),
            "--wait=false",
        ],
    );
    assert!(ok, "helm install: {out}");
    create_service_account(&w.ns.client, &w.ns.name, SA).await;
    create_service_account(&w.ns.client, &w.ns.name, "unlisted").await;

    let who = format!("system:serviceaccount:{release_ns}:{fullname}");
    let can_request = |sa: &str, ns: &str| {
        let resource = format!("serviceaccounts/{sa}");
        let args = [
            "auth",
            "can-i",
            "create",
            &resource,
            "--subresource",
            "token",
            "-n",
            ns,
            "--as",
            &who,
        ];
        let (_, answer) = kubectl(&admin, &args);
        answer.lines().next().map(str::trim) == Some("yes")
    };
    assert!(can_request(SA, &w.ns.name));
    assert!(!can_request("unlisted", &w.ns.name));
    assert!(!can_request(SA, &release_ns));

    let app_id = federated_principal(&w, &w.emulator, &subject(&w.ns.name, SA), None).await;
    let unlisted_app =
        federated_principal(&w, &w.emulator, &subject(&w.ns.name, "unlisted"), None).await;
    w.apply_workspace("listed", workload_identity(&app_id))
        .await;
    w.apply_workspace(
        "unlisted",
        json!({"workloadIdentity": {"clientId": unlisted_app, "serviceAccountRef": {"name": "unlisted"}}}),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let sa_kubeconfig = service_account_kubeconfig(&admin, &release_ns, fullname, dir.path());
    let mut options = w.options();
    options.namespaces = vec![];
    options.leader_election = true;
    options.lease_namespace = Some(release_ns.clone());
    let _operator = Operator::start(&sa_kubeconfig, &options);
    for (name, workspace) in [("listed", "listed"), ("unlisted", "unlisted")] {
        w.create_token(
            name,
            json!({"workspaceRef": {"name": workspace}, "lifetime": "1h"}),
        )
        .await;
    }
    w.wait_ready("listed").await;
    let message = wait_degraded(&w, "unlisted", "TokenRequestForbidden").await;
    assert!(message.contains("serviceaccounts/token"), "{message}");
}

/// Kubernetes refuses to create anything in a terminating namespace, TokenRequests included, so
/// the operator cannot get a new ServiceAccount token there. The tokens minted through the
/// namespace's workload identity workspace are still revoked before the namespace goes.
#[tokio::test]
async fn deleting_the_namespace_revokes_tokens_minted_with_its_service_account() {
    use k8s_openapi::api::core::v1::Namespace;
    let mut w = World::new("wi-delns").await;
    create_service_account(&w.ns.client, &w.ns.name, SA).await;
    let app_id = federated_principal(&w, &w.emulator, &subject(&w.ns.name, SA), None).await;
    w.apply_workspace("wi", workload_identity(&app_id)).await;
    w.start_operator();
    w.create_token(
        "reports",
        json!({"workspaceRef": {"name": "wi"}, "lifetime": "1h"}),
    )
    .await;
    let id = w
        .wait_ready("reports")
        .await
        .status
        .and_then(|s| s.token_id)
        .expect("token id");

    let namespaces: Api<Namespace> = Api::all(w.ns.client.clone());
    namespaces
        .delete(&w.ns.name, &Default::default())
        .await
        .expect("delete namespace");
    w.wait_revoked(&id).await;
    let name = w.ns.name.clone();
    eventually(&format!("namespace {name} gone"), WAIT, || {
        let (namespaces, name) = (namespaces.clone(), name.clone());
        async move {
            namespaces
                .get_opt(&name)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
}

/// A workspace with PATs turned off and no credential Secret: a `type: oauth` token is an
/// access token obtained by token exchange of the ServiceAccount's token, kept in the Secret.
#[tokio::test]
async fn an_oauth_type_token_is_exchanged_under_workload_identity_in_a_pat_less_workspace() {
    let mut w = World::with_emulator(
        "wi-oauth",
        EmulatorConfig {
            tokens_enabled: false,
            access_token_seconds: 30,
            ..EmulatorConfig::default()
        },
    )
    .await;
    federate_and_start(&mut w).await;
    w.create_token(
        "reports",
        json!({"workspaceRef": {"name": "wi"}, "type": "oauth", "scopes": ["all-apis", "sql"]}),
    )
    .await;
    let first = w.wait_ready("reports").await;
    let first_id = first.status.and_then(|s| s.token_id).expect("token id");
    assert!(first_id.starts_with("oauth-"), "{first_id}");
    let value = w.secret_value("reports", "token").await.expect("token");
    assert!(w.emulator.accepts(&value));
    assert!(w.emulator.access_tokens().contains(&value));
    assert!(w.emulator.issued_for_scope("all-apis sql") >= 1);
    // Renewed before the 30 s token expires, by another exchange.
    w.wait_replaced("reports", &first_id, "a renewal").await;
    let renewed = w.secret_value("reports", "token").await.expect("token");
    assert_ne!(renewed, value);
    assert!(w.emulator.accepts(&renewed));
    assert_eq!(w.emulator.stats().count_status("oidc/token", 400), 0);
}
