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

#[tokio::test]
async fn no_token_value_appears_in_logs_events_status_or_metrics() {
    let mut w = World::new("leaks").await;
    let mut options = w.options();
    options.log_filter = "trace,hyper=info,h2=info,tower=info,rustls=info";
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
    w.tokens()
        .delete("b", &DeleteParams::default())
        .await
        .unwrap();
    eventually("b deleted", WAIT, || async {
        w.tokens()
            .get_opt("b")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    let mut haystack = String::new();
    let op = w.operator.as_ref().unwrap();
    haystack.push_str(&op.logs());
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
