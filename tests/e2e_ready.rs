//! End to end: Ready tells the truth, a Secret the operator does not own stays untouched, and
//! failure backs off instead of spinning (issue 12, items 2.4-2.7, 2.12, 2.13).

mod support;

use std::time::Duration;

use databricks_emulator::{EmulatorConfig, FaultRule, Faults};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::{
    Api,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::json;
use support::operator::eventually;
use support::world::{WAIT, World, condition_is, condition_reason};

fn spec(lifetime: &str) -> serde_json::Value {
    json!({"workspaceRef": {"name": "ws"}, "lifetime": lifetime})
}

fn token_id_of(t: &databricks_token_operator::crd::DatabricksToken) -> String {
    t.status
        .as_ref()
        .and_then(|s| s.token_id.clone())
        .expect("status.tokenId")
}

/// Warning events about `name` with `reason`.
async fn warnings(w: &World, name: &str, reason: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(w.ns.client.clone(), &w.ns.name);
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(name)
                && e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some("Warning")
        })
        .collect()
}

fn requests(w: &World, endpoint: &str) -> u64 {
    w.emulator.stats().count(endpoint)
}

/// 2.4: the Secret is gone and a new token cannot be minted: Ready must say so at once, and
/// the ready metric with it (the old token still lives in Databricks, but no pod can read it).
#[tokio::test]
async fn a_deleted_secret_that_cannot_be_reminted_is_not_ready() {
    let mut w = World::new("ready-quota").await;
    w.start_operator();
    w.create_token("reports", spec("1h")).await;
    w.wait_ready("reports").await;
    // The admin PAT and the minted token use up the identity's quota.
    w.emulator.set_settings(EmulatorConfig {
        quota_per_owner: 2,
        ..EmulatorConfig::default()
    });
    w.secrets()
        .delete("reports", &DeleteParams::default())
        .await
        .expect("delete secret");

    let t = w
        .wait_token("reports", "Ready=False after a failed re-mint", |t| {
            condition_is(t, "Ready", "False")
        })
        .await;
    let (reason, message) = condition_reason(&t, "Ready").expect("Ready condition");
    assert_eq!(reason, "QUOTA_EXCEEDED", "{message}");
    let operator = w.operator.as_ref().expect("operator");
    let series = format!(
        "dbtoken_token_ready{{namespace=\"{}\",name=\"reports\"}} 0",
        w.ns.name
    );
    eventually("the ready metric drops to 0", WAIT, || async {
        operator.metrics().await.contains(&series).then_some(())
    })
    .await;
}

/// 2.5: a user's Secret created while the mint is in flight is never overwritten; the fresh
/// token is revoked and the resource reports SecretConflict.
#[tokio::test]
async fn a_secret_created_during_a_mint_is_not_overwritten() {
    let mut w = World::new("ready-race").await;
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        latency_ms: Some(databricks_emulator::Latency::Fixed(4_000)),
        ..FaultRule::on("token/create")
    }]));
    w.start_operator();
    w.create_token("shared", spec("1h")).await;
    // The finalizer comes before the Secret is read and the (slow) create is sent.
    w.wait_token("shared", "finalizer", |t| {
        t.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty())
    })
    .await;
    w.create_secret("shared", &[("token", "the user's own value")])
        .await;

    let t = w
        .wait_token("shared", "SecretConflict", |t| {
            condition_reason(t, "Ready").is_some_and(|(r, _)| r == "SecretConflict")
        })
        .await;
    assert!(condition_is(&t, "Ready", "False"));
    let secret = w.secrets().get("shared").await.expect("user secret");
    assert_eq!(
        w.secret_value("shared", "token").await.as_deref(),
        Some("the user's own value")
    );
    assert!(
        secret
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "the user's Secret must not be taken over"
    );
    assert_eq!(
        secret.data.unwrap_or_default().len(),
        1,
        "no key added to it"
    );
    let admin = w.admin_pat.clone();
    eventually("the minted token is revoked", WAIT, || {
        let live = w.emulator.live_tokens();
        let only_admin = live.len() == 1 && w.emulator.accepts(&admin);
        async move { only_admin.then_some(()) }
    })
    .await;
}

/// 2.6 (and 2.4): token/list failing does not stop a rotation that is due, and the rotation is
/// recorded in status although the list (a later step) still fails.
#[tokio::test]
async fn a_failing_token_list_does_not_block_a_due_rotation() {
    let mut w = World::new("ready-list").await;
    w.start_operator();
    w.create_token(
        "short",
        json!({"workspaceRef": {"name": "ws"}, "lifetime": "30s", "renewBefore": "22s"}),
    )
    .await;
    let first = token_id_of(&w.wait_ready("short").await);
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        error_rate: 1.0,
        error_status: Some(500),
        ..FaultRule::on("token/list")
    }]));

    let t = w
        .wait_replaced("short", &first, "a rotation while token/list fails")
        .await;
    let secret = w.secrets().get("short").await.expect("secret");
    let in_secret = secret
        .metadata
        .annotations
        .unwrap_or_default()
        .get("dbtoken.dev/token-id")
        .cloned();
    assert_eq!(in_secret, Some(token_id_of(&t)));
    let value = w.secret_value("short", "token").await.expect("token");
    assert!(w.emulator.accepts(&value));
}

/// 2.6: the on-behalf-of inventory lists only tokens the operator's identity created, so a
/// token another admin made (even one carrying this resource's tag) is not the operator's to
/// revoke.
#[tokio::test]
async fn the_on_behalf_of_inventory_sees_only_what_the_operator_created() {
    let mut w = World::new("ready-obo").await;
    let sp = w.emulator.add_service_principal("etl", false);
    let other = w.emulator.add_user("other-admin@example.com", true);
    w.start_operator();
    let t = w
        .create_token(
            "sp",
            json!({"workspaceRef": {"name": "ws"}, "lifetime": "1h", "onBehalfOf": {"applicationId": sp.application_id}}),
        )
        .await;
    w.wait_ready("sp").await;
    let uid = t.metadata.uid.expect("uid");

    let created: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/api/2.0/token-management/on-behalf-of/tokens",
            w.emulator.base_url()
        ))
        .bearer_auth(&other.pat)
        .json(&json!({"application_id": sp.application_id, "lifetime_seconds": 3600, "comment": format!("copied [dbtoken.dev/uid={uid}]")}))
        .send()
        .await
        .expect("create as the other admin")
        .json()
        .await
        .expect("json");
    let theirs = created["token_info"]["token_id"]
        .as_str()
        .expect("token id")
        .to_string();

    // Several verifications (every 2 s) later, the other admin's token is untouched.
    let before = requests(&w, "token-management/list");
    eventually("three more inventory lists", WAIT, || {
        let n = requests(&w, "token-management/list");
        async move { (n >= before + 3).then_some(()) }
    })
    .await;
    assert!(
        w.live_token_ids().contains(&theirs),
        "a token the operator did not create was revoked"
    );
}

/// 2.7: someone keeps overwriting the Secret; replacement mints are budgeted and a warning says
/// who does it.
#[tokio::test]
async fn a_fight_over_the_secret_cannot_burn_the_token_quota() {
    let mut w = World::new("ready-fight").await;
    w.start_operator();
    w.create_token("fought", spec("1h")).await;
    w.wait_ready("fought").await;
    let creates_before = requests(&w, "token/create");

    for round in 0..8 {
        let value = format!("fighter-value-{round}");
        let patch = json!({"data": {"token": k8s_openapi::ByteString(value.clone().into_bytes())}});
        w.secrets()
            .patch(
                "fought",
                &PatchParams {
                    field_manager: Some("secret-fighter".into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&patch),
            )
            .await
            .expect("overwrite the secret");
        // Give the operator the chance to answer (a re-mint replaces the value), or not.
        let secrets = w.secrets();
        let _ = tokio::time::timeout(Duration::from_secs(4), async {
            loop {
                let now = secrets.get("fought").await.ok();
                let current = now
                    .and_then(|s| s.data)
                    .and_then(|d| d.get("token").cloned())
                    .map(|b| b.0);
                if current.as_deref() != Some(value.as_bytes()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    }

    let mints = requests(&w, "token/create") - creates_before;
    assert!(
        mints <= 4,
        "{mints} replacement mints for 8 overwrites: the fight burns the quota"
    );
    let fight = eventually("a SecretFight warning", WAIT, || {
        let w = &w;
        async move { warnings(w, "fought", "SecretFight").await.pop() }
    })
    .await;
    let note = fight.message.unwrap_or_default();
    assert!(note.contains("secret-fighter"), "{note}");
}

/// 2.12: the operator wrote the renamed Secret and died before deleting the old one: the old
/// Secret (holding a live token) is deleted on the next run.
#[tokio::test]
async fn a_crash_between_a_rename_and_the_delete_leaves_no_token_behind() {
    let mut w = World::new("ready-rename").await;
    w.start_operator();
    w.create_token("moved", spec("1h")).await;
    w.wait_ready("moved").await;
    w.operator.as_mut().expect("operator").kill();

    // What the operator leaves when killed right after writing the new Secret.
    let old = w.secrets().get("moved").await.expect("old secret");
    let copy = Secret {
        metadata: ObjectMeta {
            name: Some("moved-new".into()),
            labels: old.metadata.labels.clone(),
            annotations: old.metadata.annotations.clone(),
            owner_references: old.metadata.owner_references.clone(),
            ..ObjectMeta::default()
        },
        data: old.data.clone(),
        type_: old.type_.clone(),
        ..Secret::default()
    };
    w.secrets()
        .create(&PostParams::default(), &copy)
        .await
        .expect("new secret");
    w.tokens()
        .patch(
            "moved",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"secret": {"name": "moved-new"}}})),
        )
        .await
        .expect("rename");

    w.start_operator();
    w.wait_token("moved", "status on the new Secret", |t| {
        t.status
            .as_ref()
            .is_some_and(|s| s.secret_name.as_deref() == Some("moved-new"))
    })
    .await;
    let secrets = w.secrets();
    eventually("the old Secret is deleted", Duration::from_secs(30), || {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt("moved")
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await;
    let value = w.secret_value("moved-new", "token").await.expect("token");
    assert!(w.emulator.accepts(&value));
}

/// 2.13: a proxy answering HTML 502 for everything: attempts decay with backoff per workspace
/// (shared by its tokens, the client's retries not multiplying the controller's), and the
/// condition shows the status and a short reason, not the page.
#[tokio::test]
async fn a_failing_proxy_is_retried_with_backoff_and_a_readable_message() {
    let mut w = World::new("ready-proxy").await;
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        error_rate: 1.0,
        error_status: Some(502),
        error_html: true,
        ..FaultRule::on("*")
    }]));
    w.start_operator();
    w.create_token("one", spec("1h")).await;
    w.create_token("two", spec("1h")).await;
    for name in ["one", "two"] {
        w.wait_token(name, "Degraded", |t| condition_is(t, "Degraded", "True"))
            .await;
    }
    // A measuring window, not a synchronisation: count what 30 s of failure costs.
    let before = w.emulator.stats().total_requests();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let calls = w.emulator.stats().total_requests() - before;
    eprintln!("{calls} calls in 30 s to a failing proxy");
    // 30 s hold 4 or 5 backoff steps; a probe makes at most a list and a create.
    assert!(
        calls <= 14,
        "{calls} calls in 30 s to a workspace that fails every call"
    );
    for name in ["one", "two"] {
        let t = w.tokens().get(name).await.expect("token");
        let (reason, message) = condition_reason(&t, "Degraded").expect("Degraded");
        assert_eq!(reason, "BAD_GATEWAY", "{message}");
        assert!(message.contains("502"), "{message}");
        assert!(
            !message.contains(['\r', '\n', '<']),
            "the proxy's page leaked into the message: {message:?}"
        );
    }
}

/// 2.5's create-only write must not cost the Secret's later rewrites their precision: keys the
/// spec no longer asks for are removed.
#[tokio::test]
async fn keys_dropped_from_the_spec_leave_the_created_secret() {
    let mut w = World::new("ready-keys").await;
    w.start_operator();
    w.create_token("keys", spec("1h")).await;
    w.wait_ready("keys").await;
    assert!(w.secret_value("keys", "DATABRICKS_TOKEN").await.is_some());
    w.tokens()
        .patch(
            "keys",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"secret": {"envKeys": false, "tokenKey": "pat"}}})),
        )
        .await
        .expect("change keys");
    let secrets = w.secrets();
    let keys = eventually("only the new keys", WAIT, || {
        let secrets = secrets.clone();
        async move {
            let s = secrets.get("keys").await.ok()?;
            let keys: Vec<String> = s.data?.into_keys().collect();
            (keys == ["host", "pat"]).then_some(keys)
        }
    })
    .await;
    assert_eq!(keys, ["host", "pat"]);
}

/// 2.13: a host whose connections die at once (nothing listening behind a load balancer):
/// connection attempts decay with backoff too, for all the workspace's tokens together.
#[tokio::test]
async fn an_unreachable_workspace_is_retried_with_backoff() {
    let mut w = World::new("ready-dead").await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let attempts = attempts.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(conn);
            }
        });
    }
    let ws: databricks_token_operator::crd::DatabricksWorkspace = serde_json::from_value(json!({
        "apiVersion": "dbtoken.dev/v1alpha1",
        "kind": "DatabricksWorkspace",
        "metadata": {"name": "dead"},
        "spec": {"host": format!("http://{addr}"), "auth": {"pat": {"secretRef": {"name": "databricks-admin"}}},
                 // Tenancy is not what this measures: no admin check before the mint.
                 "ownIdentityTokens": "Allow"},
    }))
    .expect("workspace");
    Api::<databricks_token_operator::crd::DatabricksWorkspace>::namespaced(
        w.ns.client.clone(),
        &w.ns.name,
    )
    .create(&PostParams::default(), &ws)
    .await
    .expect("create workspace");
    w.start_operator();
    for name in ["a", "b", "c"] {
        w.create_token(
            name,
            json!({"workspaceRef": {"name": "dead"}, "lifetime": "1h"}),
        )
        .await;
    }
    for name in ["a", "b", "c"] {
        let t = w
            .wait_token(name, "Degraded", |t| condition_is(t, "Degraded", "True"))
            .await;
        let (reason, _) = condition_reason(&t, "Degraded").expect("Degraded");
        assert_eq!(reason, "TRANSPORT");
    }

    // A measuring window, not a synchronisation.
    let before = attempts.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = attempts.load(std::sync::atomic::Ordering::SeqCst) - before;
    eprintln!("{during} connection attempts in 30 s");
    assert!(
        during <= 12,
        "{during} connection attempts in 30 s to a workspace that never answers"
    );
}

/// 2.5: two resources naming one Secret, both minting at once: one wins, the other's token is
/// revoked and it reports SecretConflict (not Ready).
#[tokio::test]
async fn two_tokens_racing_for_one_secret_leave_one_owner_and_no_extra_token() {
    let mut w = World::new("ready-twins").await;
    w.emulator.set_faults(Faults::new(vec![FaultRule {
        latency_ms: Some(databricks_emulator::Latency::Fixed(2_000)),
        ..FaultRule::on("token/create")
    }]));
    w.start_operator();
    let shared = |lifetime: &str| json!({"workspaceRef": {"name": "ws"}, "lifetime": lifetime, "secret": {"name": "shared"}});
    let (a, b) = tokio::join!(
        w.create_token("first", shared("1h")),
        w.create_token("second", shared("1h"))
    );
    let settled = |t: &databricks_token_operator::crd::DatabricksToken| {
        condition_is(t, "Ready", "True")
            || condition_reason(t, "Ready").is_some_and(|(r, _)| r == "SecretConflict")
    };
    let first = w
        .wait_token("first", "Ready or SecretConflict", settled)
        .await;
    let second = w
        .wait_token("second", "Ready or SecretConflict", settled)
        .await;
    let (winner, loser) = if condition_is(&first, "Ready", "True") {
        (a, second)
    } else {
        (b, first)
    };
    assert_eq!(
        condition_reason(&loser, "Ready").map(|(r, _)| r).as_deref(),
        Some("SecretConflict"),
        "exactly one resource may be Ready"
    );
    let secret = w.secrets().get("shared").await.expect("secret");
    let owners: Vec<String> = secret
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.uid)
        .collect();
    assert_eq!(owners, [winner.metadata.uid.clone().expect("uid")]);
    let admin = w.admin_pat.clone();
    eventually("only the winner's token is live", WAIT, || {
        let live = w.emulator.live_tokens();
        let ok = live.len() == 2 && w.emulator.accepts(&admin);
        async move { ok.then_some(()) }
    })
    .await;
    let value = w.secret_value("shared", "token").await.expect("token");
    assert!(w.emulator.accepts(&value));
}
