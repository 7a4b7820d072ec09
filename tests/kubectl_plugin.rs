//! `kubectl dbtoken` as the on-call runs it: the real kubectl finds the plugin on PATH and runs
//! it against the control plane, the emulator and the running operator. Both the text a person
//! reads and the JSON a script reads are checked, and no output holds a token value.

mod support;

use std::path::{Path, PathBuf};

use tokio::process::Command;

use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::tools::{kubectl, service_account_kubeconfig};
use support::world::{World, condition_is};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `kubectl dbtoken ARGS` with the plugin first on PATH. Async: the emulator the plugin and the
/// operator call runs on this test's runtime.
async fn dbtoken(kubeconfig: &Path, args: &[&str]) -> Run {
    let plugin = PathBuf::from(env!("CARGO_BIN_EXE_kubectl-dbtoken"));
    let path = format!(
        "{}:{}",
        plugin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .env("PATH", path)
        .arg("dbtoken")
        .args(args)
        .output()
        .await
        .expect("run kubectl dbtoken");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("JSON ({e}): {}\nstderr: {}", run.stdout, run.stderr))
}

/// No output of the plugin may hold a token value the emulator ever minted.
fn assert_no_token_value(w: &World, run: &Run) {
    for value in w.emulator.minted_values() {
        assert!(
            !run.stdout.contains(&value) && !run.stderr.contains(&value),
            "a token value in the plugin's output"
        );
    }
}

async fn world_with_leader(prefix: &str) -> World {
    let mut w = World::new(prefix).await;
    let mut options = w.options();
    options.leader_election = true;
    options.lease_namespace = Some(w.ns.name.clone());
    w.start_operator_with(options);
    w
}

#[tokio::test]
async fn status_rotate_and_check_tell_the_truth_for_people_and_scripts() {
    let w = world_with_leader("plugin").await;
    let kc = w.kubeconfig();
    let ns = w.ns.name.clone();
    w.create_token(
        "reports",
        json!({"workspaceRef": {"name": "ws"}, "lifetime": "2h", "rotation": {"gracePeriod": "10m"}}),
    )
    .await;
    let first = w
        .wait_ready("reports")
        .await
        .status
        .unwrap()
        .token_id
        .unwrap();

    let status = dbtoken(&kc, &["status", "reports", "-n", &ns]).await;
    assert_eq!(status.code, 0, "{}{}", status.stdout, status.stderr);
    assert!(
        status.stdout.starts_with(&format!(
            "DatabricksToken {ns}/reports: Ready (TokenReady)\n"
        )),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains(&format!("Token:      {first}\n")),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("Secret:     reports (keys: DATABRICKS_HOST, DATABRICKS_TOKEN, host, token)"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("Workspace:  DatabricksWorkspace ws: Ready"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("Next:       rotate in "),
        "{}",
        status.stdout
    );
    assert_no_token_value(&w, &status);

    // A script asks for a rotation and waits for the new token.
    let rotated = dbtoken(
        &kc,
        &["rotate", "reports", "--wait", "-n", &ns, "-o", "json"],
    )
    .await;
    assert_eq!(rotated.code, 0, "{}{}", rotated.stdout, rotated.stderr);
    let rotation = &json_of(&rotated)["rotations"][0];
    assert_eq!(rotation["previousTokenId"], json!(first));
    assert_eq!(rotation["completed"], json!(true));
    let second = rotation["tokenId"]
        .as_str()
        .expect("new token id")
        .to_string();
    assert_ne!(second, first);
    let now = w.tokens().get("reports").await.unwrap().status.unwrap();
    assert_eq!(
        now.token_id.as_deref(),
        Some(second.as_str()),
        "what rotate printed is in status"
    );
    let value = w.secret_value("reports", "token").await.unwrap();
    assert!(
        w.emulator.accepts(&value),
        "the new token in the Secret works"
    );

    let json = json_of(&dbtoken(&kc, &["status", "reports", "-n", &ns, "-o", "json"]).await);
    assert_eq!(json["ready"], json!(true));
    assert_eq!(json["tokenId"], json!(second));
    assert_eq!(json["previousTokens"][0]["tokenId"], json!(first));
    assert!(
        json["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "Rotated"),
        "recent events include the rotation: {json:#}"
    );

    // A token that cannot be served: not Ready, exit 1, and why.
    w.create_token(
        "broken",
        json!({"workspaceRef": {"name": "missing"}, "lifetime": "1h"}),
    )
    .await;
    w.wait_token("broken", "Ready=False", |t| {
        condition_is(t, "Ready", "False")
    })
    .await;
    let broken = dbtoken(&kc, &["status", "broken", "-n", &ns]).await;
    assert_eq!(broken.code, 1, "{}", broken.stdout);
    assert!(
        broken.stdout.starts_with(&format!(
            "DatabricksToken {ns}/broken: NOT Ready (WorkspaceNotFound)"
        )),
        "{}",
        broken.stdout
    );
    assert!(
        broken
            .stdout
            .contains("Workspace:  DatabricksWorkspace missing: NotFound"),
        "{}",
        broken.stdout
    );

    // check: CRDs, the leader, the workspace, and what the admin may do.
    let check = dbtoken(
        &kc,
        &[
            "check",
            "-n",
            &ns,
            "--operator-namespace",
            &ns,
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let checks = json_of(&check)["checks"].as_array().unwrap().clone();
    let failed: Vec<&Value> = checks.iter().filter(|c| c["ok"] != json!(true)).collect();
    assert!(
        failed.is_empty(),
        "every check passes for the admin: {failed:#?}"
    );
    for area in ["crd", "operator", "workspace", "rbac"] {
        assert!(
            checks.iter().any(|c| c["area"] == area),
            "{area} is checked"
        );
    }
    let text = dbtoken(
        &kc,
        &["check", "-n", &ns, "--operator-namespace", "nowhere"],
    )
    .await;
    assert_eq!(text.code, 1, "no operator there: {}", text.stdout);
    assert!(text.stdout.contains("FAIL  operator"), "{}", text.stdout);
    assert!(
        text.stdout.ends_with("Some checks FAILED.\n"),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn inventory_classifies_every_token_and_needs_the_users_own_access_to_the_credential() {
    let w = world_with_leader("plugin-inv").await;
    let kc = w.kubeconfig();
    let ns = w.ns.name.clone();
    w.create_token(
        "reports",
        json!({"workspaceRef": {"name": "ws"}, "lifetime": "2h", "rotation": {"gracePeriod": "10m"}}),
    )
    .await;
    let first = w
        .wait_ready("reports")
        .await
        .status
        .unwrap()
        .token_id
        .unwrap();
    let patch =
        json!({"metadata": {"annotations": {"dbtoken.dev/rotate-requested-at": "inventory"}}});
    w.tokens()
        .patch("reports", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let current = w
        .wait_replaced("reports", &first, "rotated")
        .await
        .status
        .unwrap()
        .token_id
        .unwrap();
    // A token tagged for a resource that no longer exists, minted straight through the API.
    let orphan: Value = reqwest::Client::new()
        .post(format!("{}/api/2.0/token/create", w.emulator.base_url()))
        .bearer_auth(&w.admin_pat)
        .json(&json!({"comment": "[dbtoken.dev/uid=00000000-0000-0000-0000-000000000000]", "lifetime_seconds": 3600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let orphan_id = orphan["token_info"]["token_id"]
        .as_str()
        .unwrap()
        .to_string();

    let run = dbtoken(
        &kc,
        &[
            "inventory",
            "ws",
            "-n",
            &ns,
            "--insecure-allow-http",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_no_token_value(&w, &run);
    let report = json_of(&run);
    assert_eq!(
        report["scope"],
        json!("workspace"),
        "an admin credential lists the workspace"
    );
    let class_of = |id: &str| {
        report["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tokenId"] == id)
            .map(|t| {
                (
                    t["class"].as_str().unwrap().to_string(),
                    t["resource"].clone(),
                )
            })
    };
    let resource = json!(format!("{ns}/reports"));
    assert_eq!(
        class_of(&current),
        Some(("Current".into(), resource.clone()))
    );
    assert_eq!(class_of(&first), Some(("InGrace".into(), resource)));
    assert_eq!(class_of(&orphan_id), Some(("Orphaned".into(), Value::Null)));
    let live = w.emulator.live_tokens();
    let untagged: Vec<_> = live
        .iter()
        .filter(|t| {
            !t.comment
                .as_deref()
                .unwrap_or_default()
                .contains("dbtoken.dev/uid")
        })
        .collect();
    assert_eq!(
        untagged.len(),
        1,
        "the admin's own PAT is the one untagged token"
    );
    assert_eq!(
        class_of(&untagged[0].token_id).map(|c| c.0),
        Some("Unmanaged".into())
    );
    assert_eq!(
        report["tokens"].as_array().unwrap().len(),
        live.len(),
        "every live token is listed once"
    );

    // Someone who may read the workspace but not its credential Secret lists nothing.
    let admin = w.kubeconfig();
    for args in [
        vec!["create", "serviceaccount", "viewer", "-n", &ns],
        vec![
            "create",
            "role",
            "ws-viewer",
            "-n",
            &ns,
            "--verb=get,list",
            "--resource=databricksworkspaces.dbtoken.dev,databrickstokens.dbtoken.dev",
        ],
        vec![
            "create",
            "rolebinding",
            "ws-viewer",
            "-n",
            &ns,
            "--role=ws-viewer",
            &format!("--serviceaccount={ns}:viewer"),
        ],
    ] {
        let (ok, out) = kubectl(&admin, &args);
        assert!(ok, "{out}");
    }
    let dir = tempfile::tempdir().unwrap();
    let viewer = service_account_kubeconfig(&admin, &ns, "viewer", dir.path());
    let refused = dbtoken(&viewer, &["inventory", "ws", "--insecure-allow-http"]).await;
    assert_eq!(refused.code, 2, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stderr
            .contains("reading the workspace's credential")
            && refused.stderr.contains("forbidden"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stdout.is_empty(),
        "nothing listed: {}",
        refused.stdout
    );
}
