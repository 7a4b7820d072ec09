//! A workspace credential revoked and then fixed, as on-call lives it: the workspace must say it
//! is not Ready as soon as a call is refused, and fixing the credential Secret must bring the
//! tokens back at once, not after each token's backoff.

mod support;

use std::time::{Duration, Instant};

use databricks_token_operator::crd::DatabricksWorkspace;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;
use support::operator::eventually;
use support::world::{World, condition_is};

/// Well below what a token's backoff reaches after the failures the test waits for (>= 32 s),
/// and the workspace's periodic check (5 min).
const PROMPTLY: Duration = Duration::from_secs(20);

/// Reconcile failures (write conflicts aside) the operator has counted.
fn failed_reconciles(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("dbtoken_reconcile_errors_total{") && !l.contains("Conflict"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn workspace_ready_is(api: &Api<DatabricksWorkspace>, status: &str) -> bool {
    api.get("ws").await.ok().is_some_and(|ws| {
        ws.status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && format!("{:?}", c.status) == status)
        })
    })
}

async fn wait_workspace(api: &Api<DatabricksWorkspace>, status: &str, within: Duration) {
    eventually(&format!("workspace Ready={status}"), within, || async {
        workspace_ready_is(api, status).await.then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_revoked_credential_shows_at_once_and_fixing_its_secret_recovers_tokens_without_backoff()
{
    let mut world = World::new("cred-fix").await;
    // The admin's second PAT, made beforehand: what the platform team puts in the Secret.
    let replacement: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/api/2.0/token/create",
            world.emulator.base_url()
        ))
        .bearer_auth(&world.admin_pat)
        .json(&json!({"comment": "replacement credential"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let replacement = replacement["token_value"].as_str().unwrap().to_string();

    world.start_operator();
    world
        .create_token(
            "app",
            json!({"workspaceRef": {"name": "ws"}, "lifetime": "1h"}),
        )
        .await;
    let first = world.wait_ready("app").await;
    let first_id = first.status.unwrap().token_id.unwrap();
    let workspaces: Api<DatabricksWorkspace> =
        Api::namespaced(world.ns.client.clone(), &world.ns.name);
    wait_workspace(&workspaces, "True", support::world::WAIT).await;

    // Revoke the workspace credential (the admin's bootstrap PAT), then ask for a rotation: the
    // mint is refused.
    let bootstrap = world
        .emulator
        .live_tokens()
        .into_iter()
        .find(|t| t.comment.as_deref() == Some("bootstrap"))
        .expect("the admin's bootstrap PAT");
    assert!(world.emulator.revoke(&bootstrap.token_id));
    let rotate = json!({"metadata": {"annotations": {"dbtoken.dev/rotate-requested-at": "2026-11-23T10:00:00Z"}}});
    world
        .tokens()
        .patch("app", &PatchParams::default(), &Patch::Merge(&rotate))
        .await
        .unwrap();
    let refused = Instant::now();
    wait_workspace(&workspaces, "False", PROMPTLY).await;
    eprintln!(
        "workspace not Ready {:?} after the refused call",
        refused.elapsed()
    );

    // Let the backoff grow well past PROMPTLY: 6 more failures (1+2+4+8+16 s apart) put the next
    // retry >= 32 s away. The token's retries follow its workspace's shared backoff.
    let operator = world.operator.as_ref().unwrap();
    let before = failed_reconciles(&operator.metrics().await);
    eventually(
        "6 more failed reconciles",
        Duration::from_secs(180),
        || async { (failed_reconciles(&operator.metrics().await) >= before + 6).then_some(()) },
    )
    .await;

    // Fix the credential Secret.
    let fix = json!({"stringData": {"token": replacement}});
    world
        .secrets()
        .patch(
            "databricks-admin",
            &PatchParams::default(),
            &Patch::Merge(&fix),
        )
        .await
        .unwrap();
    let fixed = Instant::now();
    wait_workspace(&workspaces, "True", PROMPTLY).await;
    let ws_recovered = fixed.elapsed();
    let token = tokio::time::timeout(
        PROMPTLY.saturating_sub(fixed.elapsed()),
        world.wait_replaced("app", &first_id, "the requested rotation done"),
    )
    .await
    .unwrap_or_else(|_| panic!("the token did not recover within {PROMPTLY:?} of the fix"));
    assert!(condition_is(&token, "Ready", "True"));
    eprintln!(
        "after the fix: workspace Ready in {ws_recovered:?}, token rotated in {:?}",
        fixed.elapsed()
    );
}
