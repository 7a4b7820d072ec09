//! Every watch mode the chart renders (`watchNamespaces: [a, b, c]`, and all namespaces), with
//! workspaces and tokens in several namespaces, through a restart of the operator: what existed
//! before the start must be served as well as what is created after it.
//!
//! One test in this file on purpose: the all-namespaces operator would otherwise reconcile other
//! tests' objects on this test process's control plane.

mod support;

use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::operator::{Operator, OperatorOptions};
use support::world::{World, condition_is};

const NAMESPACES: usize = 3;

/// Short enough that an unserved token misses its renewal within the test's waits.
fn short_spec() -> serde_json::Value {
    json!({"workspaceRef": {"name": "ws"}, "lifetime": "20s", "renewBefore": "14s",
           "rotation": {"gracePeriod": "3s"}})
}

/// The current token id of each named token, after checking that its Secret authenticates.
async fn ready_ids(worlds: &[World], names: &[&str]) -> Vec<String> {
    let mut ids = vec![];
    for w in worlds {
        for name in names {
            let t = w.wait_ready(name).await;
            let value = w.secret_value(name, "token").await.expect("token key");
            assert!(
                w.emulator.accepts(&value),
                "{}/{name}: the Secret's token must authenticate",
                w.ns.name
            );
            ids.push(t.status.unwrap().token_id.unwrap());
        }
    }
    ids
}

/// Wait until every named token in every namespace holds a token other than the one in `before`
/// (same order as `ready_ids`), Ready and authenticating.
async fn wait_all_replaced(worlds: &[World], names: &[&str], before: &[String], what: &str) {
    let mut i = 0;
    for w in worlds {
        for name in names {
            let t = w.wait_replaced(name, &before[i], what).await;
            assert!(
                condition_is(&t, "Ready", "True"),
                "{}/{name} Ready",
                w.ns.name
            );
            let value = w.secret_value(name, "token").await.expect("token key");
            assert!(
                w.emulator.accepts(&value),
                "{}/{name}: after {what} the Secret's token must authenticate",
                w.ns.name
            );
            i += 1;
        }
    }
}

/// Tokens that existed at the start are reconciled (they rotate on schedule), a token created
/// after the start finds its workspace, in every namespace the operator serves.
async fn serve_through_a_restart(worlds: &[World], options: &OperatorOptions, round: &str) {
    let kubeconfig = worlds[0].kubeconfig();
    let existing = [format!("{round}-a"), format!("{round}-b")];
    let existing: Vec<&str> = existing.iter().map(String::as_str).collect();

    let mut operator = Operator::start(&kubeconfig, options);
    for w in worlds {
        for name in &existing {
            w.create_token(name, short_spec()).await;
        }
    }
    ready_ids(worlds, &existing).await;
    operator.terminate();

    // Same flags again: everything exists before the operator starts.
    let operator = Operator::start(&kubeconfig, options);
    let before = ready_ids(worlds, &existing).await;
    wait_all_replaced(
        worlds,
        &existing,
        &before,
        "a scheduled rotation after the restart",
    )
    .await;

    let created = format!("{round}-new");
    for w in worlds {
        w.create_token(
            &created,
            json!({"workspaceRef": {"name": "ws"}, "lifetime": "1h"}),
        )
        .await;
    }
    let created_ids = ready_ids(worlds, &[&created]).await;

    // A rotation request on a token listed at the start is served too.
    let patch = json!({"metadata": {"annotations": {"dbtoken.dev/rotate-requested-at": round}}});
    for w in worlds {
        w.tokens()
            .patch(&created, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("request rotation");
    }
    wait_all_replaced(worlds, &[&created], &created_ids, "a requested rotation").await;
    drop(operator);
}

#[tokio::test]
async fn every_watch_mode_serves_what_existed_before_a_restart_in_every_namespace() {
    let mut worlds = vec![];
    for i in 0..NAMESPACES {
        worlds.push(World::new(&format!("watch-mode-{i}")).await);
    }

    // What the chart renders for `watchNamespaces: [a, b, c]`.
    let mut listed = worlds[0].options();
    listed.namespaces = worlds.iter().map(|w| w.ns.name.clone()).collect();
    serve_through_a_restart(&worlds, &listed, "listed").await;

    // What it renders by default: every namespace.
    let mut all = worlds[0].options();
    all.namespaces = vec![];
    serve_through_a_restart(&worlds, &all, "all").await;
}
