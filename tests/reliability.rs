//! Reliability and safety properties: leader failover without double-minting, tenancy between
//! namespaces, and no token value in any log, event, status or metric.

mod support;

use databricks_token_operator::crd::ClusterDatabricksWorkspace;
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use support::operator::eventually;
use support::world::{WAIT, World, condition_is, condition_reason};

fn spec(lifetime: &str) -> serde_json::Value {
    json!({"workspaceRef": {"name": "ws"}, "lifetime": lifetime})
}

/// Which of the processes holds the Lease, judged from their logs.
fn leader_index(world: &World, others: &[support::operator::Operator]) -> Option<usize> {
    let mut all: Vec<&support::operator::Operator> = world.operator.iter().collect();
    all.extend(others.iter());
    all.iter()
        .position(|o| o.logs().contains("acquired leadership"))
}

#[tokio::test]
async fn a_killed_leader_is_replaced_and_nothing_is_minted_twice() {
    let mut w = World::new("leader").await;
    let options = |id: &str| {
        let mut o = w.options();
        o.leader_election = true;
        o.lease_namespace = Some(w.ns.name.clone());
        o.identity = Some(id.to_string());
        o.extra_args = vec!["--lease-duration".into(), "6s".into()];
        o
    };
    let (a, b) = (options("replica-a"), options("replica-b"));
    w.start_operator_with(a);
    let mut standby = vec![support::operator::Operator::start(&w.kubeconfig(), &b)];
    for i in 0..3 {
        w.create_token(&format!("t{i}"), spec("1h")).await;
    }
    for i in 0..3 {
        w.wait_ready(&format!("t{i}")).await;
    }
    let leader = eventually("one replica leads", WAIT, || async {
        leader_index(&w, &standby)
    })
    .await;
    let creates_before = w.emulator.stats().count("token/create");
    assert_eq!(creates_before, 3, "exactly one mint per resource");

    // SIGKILL the leader: it cannot release the Lease; the standby takes over once it expires.
    if leader == 0 {
        w.operator.as_mut().unwrap().kill();
    } else {
        standby[0].kill();
    }
    let survivor_logs = |w: &World, standby: &[support::operator::Operator]| {
        if leader == 0 {
            standby[0].logs()
        } else {
            w.operator.as_ref().unwrap().logs()
        }
    };
    eventually("the standby acquires leadership", WAIT, || {
        let logs = survivor_logs(&w, &standby);
        async move { logs.contains("acquired leadership").then_some(()) }
    })
    .await;

    // The new leader works (a new resource gets its token) and re-mints nothing that exists.
    w.create_token("after", spec("1h")).await;
    w.wait_ready("after").await;
    assert_eq!(w.emulator.stats().count("token/create"), creates_before + 1);
    for i in 0..3 {
        let value = w.secret_value(&format!("t{i}"), "token").await.unwrap();
        assert!(w.emulator.accepts(&value));
    }
    standby.clear();
}

#[tokio::test]
async fn a_cluster_workspace_serves_only_the_namespaces_it_admits() {
    let mut w = World::new("tenancy").await;
    let cluster_ws: Api<ClusterDatabricksWorkspace> = Api::all(w.ns.client.clone());
    let make = |name: &str, allowed: &str| -> ClusterDatabricksWorkspace {
        serde_json::from_value(json!({
            "apiVersion": "dbtoken.dev/v1alpha1", "kind": "ClusterDatabricksWorkspace",
            "metadata": {"name": name},
            "spec": {
                "host": w.emulator.base_url(),
                "allowedNamespaces": [allowed],
                "ownIdentityTokens": "Allow",
                "auth": {"pat": {"secretRef": {"name": "databricks-admin", "namespace": w.ns.name}}},
            },
        }))
        .unwrap()
    };
    let open = format!("{}-open", w.ns.name);
    let closed = format!("{}-closed", w.ns.name);
    cluster_ws
        .create(&PostParams::default(), &make(&open, &w.ns.name))
        .await
        .unwrap();
    cluster_ws
        .create(&PostParams::default(), &make(&closed, "someone-else"))
        .await
        .unwrap();
    w.start_operator();

    w.create_token("allowed", json!({"workspaceRef": {"kind": "ClusterDatabricksWorkspace", "name": open}, "lifetime": "1h"})).await;
    w.create_token("refused", json!({"workspaceRef": {"kind": "ClusterDatabricksWorkspace", "name": closed}, "lifetime": "1h"})).await;
    w.create_token(
        "missing",
        json!({"workspaceRef": {"name": "no-such-workspace"}, "lifetime": "1h"}),
    )
    .await;

    let ok = w.wait_ready("allowed").await;
    assert!(
        w.emulator
            .accepts(&w.secret_value("allowed", "token").await.unwrap()),
        "{ok:?}"
    );
    let refused = w
        .wait_token("refused", "Degraded", |t| {
            condition_is(t, "Degraded", "True")
        })
        .await;
    let (reason, message) = condition_reason(&refused, "Degraded").unwrap();
    assert_eq!(reason, "NamespaceNotAllowed");
    assert!(
        message.contains(&closed) && message.contains(&w.ns.name),
        "{message}"
    );
    let missing = w
        .wait_token("missing", "Degraded", |t| {
            condition_is(t, "Degraded", "True")
        })
        .await;
    assert_eq!(
        condition_reason(&missing, "Degraded").unwrap().0,
        "WorkspaceNotFound"
    );
    assert!(w.secrets().get_opt("refused").await.unwrap().is_none());
    assert_eq!(
        w.emulator.stats().count("token/create"),
        1,
        "only the admitted token was minted"
    );
}

/// The Degraded condition of a token the policy refuses, once it is there.
async fn refusal(w: &World, name: &str) -> (String, String) {
    let t = w
        .wait_token(name, "Degraded", |t| condition_is(t, "Degraded", "True"))
        .await;
    assert!(!condition_is(&t, "Ready", "True"), "{name} is not Ready");
    condition_reason(&t, "Degraded").unwrap()
}

#[tokio::test]
async fn a_cluster_workspace_mints_only_for_the_service_principals_it_allows_each_namespace() {
    let mut w = World::new("spallow").await;
    let sp_mine = w.emulator.add_service_principal("team-bot", false);
    let sp_other_team = w.emulator.add_service_principal("other-team-bot", false);
    let sp_unlisted = w.emulator.add_service_principal("billing-bot", false);
    let shared = format!("{}-shared", w.ns.name);
    let cluster_ws: Api<ClusterDatabricksWorkspace> = Api::all(w.ns.client.clone());
    let ws: ClusterDatabricksWorkspace = serde_json::from_value(json!({
        "apiVersion": "dbtoken.dev/v1alpha1", "kind": "ClusterDatabricksWorkspace",
        "metadata": {"name": shared},
        "spec": {
            "host": w.emulator.base_url(),
            "allowedNamespaces": [w.ns.name, "other-team"],
            "allowedServicePrincipals": [
                {"applicationId": sp_mine.application_id, "namespaces": [w.ns.name]},
                {"applicationId": sp_other_team.application_id, "namespaces": ["other-team"]},
            ],
            "auth": {"pat": {"secretRef": {"name": "databricks-admin", "namespace": w.ns.name}}},
        },
    }))
    .unwrap();
    cluster_ws
        .create(&PostParams::default(), &ws)
        .await
        .unwrap();
    w.start_operator();

    let for_sp = |app: &str| json!({"workspaceRef": {"kind": "ClusterDatabricksWorkspace", "name": shared}, "lifetime": "1h", "onBehalfOf": {"applicationId": app}});
    w.create_token("mine", for_sp(&sp_mine.application_id))
        .await;
    w.create_token("other-team", for_sp(&sp_other_team.application_id))
        .await;
    w.create_token("unlisted", for_sp(&sp_unlisted.application_id))
        .await;

    let id = w.wait_ready("mine").await.status.unwrap().token_id.unwrap();
    let live = w.emulator.live_tokens();
    let minted = live.iter().find(|t| t.token_id == id).expect("live");
    assert_eq!(
        minted.owner_id, sp_mine.id,
        "owned by the allowed service principal"
    );
    for (name, app) in [
        ("other-team", &sp_other_team.application_id),
        ("unlisted", &sp_unlisted.application_id),
    ] {
        let (reason, message) = refusal(&w, name).await;
        assert_eq!(reason, "ServicePrincipalNotAllowed", "{name}");
        assert!(
            message.contains(app.as_str())
                && message.contains(&w.ns.name)
                && message.contains("allowedServicePrincipals"),
            "{name}: {message}"
        );
        assert!(w.secrets().get_opt(name).await.unwrap().is_none());
    }
    assert_eq!(
        w.emulator.stats().count("obo/create"),
        1,
        "only the allowed service principal got a token"
    );

    // The platform team grants the other principal to this namespace too: minted without delay.
    let grant = json!({"spec": {"allowedServicePrincipals": [
        {"applicationId": sp_mine.application_id, "namespaces": [w.ns.name]},
        {"applicationId": sp_other_team.application_id, "namespaces": ["other-team", w.ns.name]},
    ]}});
    cluster_ws
        .patch(&shared, &PatchParams::default(), &Patch::Merge(&grant))
        .await
        .unwrap();
    let id = w
        .wait_ready("other-team")
        .await
        .status
        .unwrap()
        .token_id
        .unwrap();
    let live = w.emulator.live_tokens();
    let minted = live.iter().find(|t| t.token_id == id).expect("live");
    assert_eq!(minted.owner_id, sp_other_team.id);
    assert!(w.secrets().get_opt("unlisted").await.unwrap().is_none());
    cluster_ws
        .delete(&shared, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_admin_credential_refuses_tokens_of_its_own_identity_unless_allowed() {
    let mut w = World::new("ownid").await;
    let sp = w.emulator.add_service_principal("etl-bot", false);
    let user = w.emulator.add_user("dev@example.com", false);
    w.create_secret("databricks-user", &[("token", &user.pat)])
        .await;
    // The default policy (DenyIfAdmin) on the admin PAT, and on a non-admin user's PAT; Deny.
    w.apply_workspace_spec(
        "admin-default",
        json!({"auth": {"pat": {"secretRef": {"name": "databricks-admin"}}}}),
    )
    .await;
    w.apply_workspace_spec(
        "user-default",
        json!({"auth": {"pat": {"secretRef": {"name": "databricks-user"}}}}),
    )
    .await;
    w.apply_workspace_spec(
        "user-deny",
        json!({"auth": {"pat": {"secretRef": {"name": "databricks-user"}}}, "ownIdentityTokens": "Deny"}),
    )
    .await;
    w.start_operator();

    let own = |ws: &str| json!({"workspaceRef": {"name": ws}, "lifetime": "1h"});
    w.create_token("admin-own", own("admin-default")).await;
    w.create_token("admin-sp", json!({"workspaceRef": {"name": "admin-default"}, "lifetime": "1h", "onBehalfOf": {"applicationId": sp.application_id}})).await;
    w.create_token("user-own", own("user-default")).await;
    w.create_token("user-denied", own("user-deny")).await;
    w.create_token("admin-allowed", own("ws")).await;

    let (reason, message) = refusal(&w, "admin-own").await;
    assert_eq!(reason, "OwnIdentityTokenRefused");
    assert!(
        message.contains("admin") && message.contains("spec.onBehalfOf"),
        "{message}"
    );
    let (reason, message) = refusal(&w, "user-denied").await;
    assert_eq!(reason, "OwnIdentityTokenRefused");
    assert!(message.contains("ownIdentityTokens: Deny"), "{message}");

    // On behalf of a service principal, a non-admin's own token, and an explicit Allow: minted.
    for name in ["admin-sp", "user-own", "admin-allowed"] {
        w.wait_ready(name).await;
        let value = w.secret_value(name, "token").await.unwrap();
        assert!(w.emulator.accepts(&value), "{name}");
    }
    for name in ["admin-own", "user-denied"] {
        assert!(w.secrets().get_opt(name).await.unwrap().is_none(), "{name}");
    }
    // Besides the bootstrap PATs, the operator minted one admin-owned token: the allowed one.
    let minted_owners: Vec<String> = w
        .emulator
        .live_tokens()
        .into_iter()
        .filter(|t| {
            t.comment
                .as_deref()
                .is_some_and(|c| c.contains("dbtoken.dev/uid"))
        })
        .map(|t| t.owner_name)
        .collect();
    assert_eq!(
        minted_owners
            .iter()
            .filter(|o| *o == "admin@example.com")
            .count(),
        1,
        "{minted_owners:?}"
    );
}

/// hyper itself cannot log in the shipped binary: it emits events only when built with its
/// `tracing` feature *and* `RUSTFLAGS=--cfg hyper_unstable_tracing`, and nothing in the
/// dependency graph turns the feature on. (h2, used only for HTTP/2 to https workspaces, logs
/// frames without header fields or payloads by design.)
#[test]
fn hyper_is_built_without_its_tracing_feature() {
    let out = std::process::Command::new(env!("CARGO"))
        .current_dir(support::cluster::repo_root())
        .args([
            "tree",
            "-q",
            "--offline",
            "-e",
            "features",
            "-i",
            "hyper",
            "--prefix",
            "none",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("hyper feature \"client\""), "{tree}");
    assert!(!tree.contains("hyper feature \"tracing\""), "{tree}");
}

#[tokio::test]
async fn no_token_value_appears_in_logs_events_status_or_metrics() {
    let mut w = World::new("leaks").await;
    let mut options = w.options();
    // Everything at trace, the HTTP stack included (hyper, h2, reqwest, rustls via the `log`
    // bridge, tower, kube): `--log-filter` lets anyone with access to the Deployment turn it on.
    options.log_filter = "trace";
    w.start_operator_with(options);

    // Mint, rotate on schedule, rotate by request, fail, delete: every path that handles values.
    w.create_token("a", json!({"workspaceRef": {"name": "ws"}, "lifetime": "15s", "renewBefore": "10s", "rotation": {"gracePeriod": "2s"}})).await;
    w.create_token("b", json!({"workspaceRef": {"name": "ws"}, "lifetime": "1h", "secret": {"databricksCfgProfile": "DEFAULT"}})).await;
    w.create_secret("wrong", &[("token", &format!("dapi{}", "0".repeat(32)))])
        .await;
    w.apply_workspace("ws-wrong", json!({"pat": {"secretRef": {"name": "wrong"}}}))
        .await;
    w.create_token(
        "c",
        json!({"workspaceRef": {"name": "ws-wrong"}, "lifetime": "1h"}),
    )
    .await;
    let first_a = w.wait_ready("a").await.status.unwrap().token_id.unwrap();
    w.wait_ready("b").await;
    let patch = json!({"metadata": {"annotations": {"dbtoken.dev/rotate-requested-at": "2026-11-23T00:00:00Z"}}});
    w.tokens()
        .patch("b", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    w.wait_token("a", "rotated", move |t| {
        t.status
            .as_ref()
            .and_then(|s| s.token_id.as_ref())
            .is_some_and(|id| *id != first_a)
    })
    .await;
    w.wait_token("c", "Degraded", |t| condition_is(t, "Degraded", "True"))
        .await;
    w.delete_token_and_wait("b").await;

    let mut haystack = String::new();
    let op = w.operator.as_ref().unwrap();
    let logs = op.logs();
    // The HTTP stack on these paths did log at trace (so the scan below covers it): reqwest and
    // hyper-util towards Databricks, kube's client and rustls towards the API server.
    for target in ["hyper_util::", "reqwest::", "rustls::", "kube_client::"] {
        assert!(
            logs.lines()
                .any(|l| l.contains(" TRACE ") && l.contains(target)
                    || l.contains(" DEBUG ") && l.contains(target)),
            "no trace/debug line from {target}"
        );
    }
    haystack.push_str(&logs);
    haystack.push_str(&op.metrics().await);
    let events: Api<Event> = Api::namespaced(w.ns.client.clone(), &w.ns.name);
    for e in events.list(&ListParams::default()).await.unwrap() {
        haystack.push_str(&serde_json::to_string(&e).unwrap());
    }
    for t in w.tokens().list(&ListParams::default()).await.unwrap() {
        haystack.push_str(&serde_json::to_string(&t).unwrap());
    }
    let minted = w.emulator.minted_values();
    assert!(
        minted.len() >= 5,
        "the scenario minted {} tokens",
        minted.len()
    );
    assert!(
        haystack.contains("Rotated") && haystack.len() > 10_000,
        "the collected output is substantial"
    );
    let mut secrets = minted.clone();
    secrets.push(w.admin_pat.clone());
    secrets.push(format!("dapi{}", "0".repeat(32)));
    for value in &secrets {
        assert!(
            !haystack.contains(value.as_str()),
            "a token value leaked into logs/events/status/metrics"
        );
        // Half a value is a leak too (e.g. a truncated log line).
        assert!(!haystack.contains(&value[..20]), "a token prefix leaked");
    }
}
