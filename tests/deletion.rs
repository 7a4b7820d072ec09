//! Deletion as users do it, with kube-controller-manager running: `kubectl delete namespace`,
//! `kubectl delete -f` of one file holding the credential Secret, the workspace and the tokens,
//! and a namespace dropped from a ClusterDatabricksWorkspace's allow-list. Every token must be
//! revoked in Databricks, and then everything must finish deleting.

mod support;

use databricks_token_operator::crd::{ClusterDatabricksWorkspace, DatabricksWorkspace};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use support::cluster::kubectl;
use support::operator::eventually;
use support::world::{WAIT, World, condition_reason};

/// The tag every minted token's comment carries.
const TAG: &str = "[dbtoken.dev/uid=";

fn spec(lifetime: &str) -> serde_json::Value {
    json!({"workspaceRef": {"name": "ws"}, "lifetime": lifetime})
}

/// Live tokens in the emulator that the operator minted (the admin's bootstrap PAT excluded).
fn live_minted(w: &World) -> Vec<String> {
    w.emulator
        .live_tokens()
        .into_iter()
        .filter(|t| t.comment.as_deref().is_some_and(|c| c.contains(TAG)))
        .map(|t| t.token_id)
        .collect()
}

/// `kubectl` off the runtime: the emulator serves from this test's runtime, and kubectl waits
/// for deletions that need the emulator to answer.
async fn kubectl_async(args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl(&args)
    })
    .await
    .expect("kubectl task")
}

/// Two Ready tokens, one of them rotated with its previous token still inside a long grace
/// period: three live tokens. Returns their ids.
async fn three_live_tokens(w: &World) -> Vec<String> {
    w.create_token("a", spec("1h")).await;
    w.create_token(
        "b",
        json!({"workspaceRef": {"name": "ws"}, "lifetime": "4h", "rotation": {"gracePeriod": "1h"}}),
    )
    .await;
    let a = w.wait_ready("a").await.status.unwrap().token_id.unwrap();
    let b = w.wait_ready("b").await.status.unwrap().token_id.unwrap();
    let patch = json!({"metadata": {"annotations": {"dbtoken.dev/rotate-requested-at": "2026-01-01T00:00:00Z"}}});
    w.tokens()
        .patch("b", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let b2 = w
        .wait_replaced("b", &b, "b rotated on request")
        .await
        .status
        .unwrap()
        .token_id
        .unwrap();
    let ids = vec![a, b, b2];
    let live = live_minted(w);
    for id in &ids {
        assert!(live.contains(id), "{id} must be live before the deletion");
    }
    ids
}

async fn wait_namespace_gone(w: &World) {
    let namespaces: Api<Namespace> = Api::all(w.ns.client.clone());
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

#[tokio::test]
async fn deleting_the_namespace_revokes_every_token_then_the_namespace_goes() {
    let mut w = World::new("delns").await;
    w.start_operator();
    let ids = three_live_tokens(&w).await;

    let (ok, out) = kubectl_async(vec![
        "delete".into(),
        "namespace".into(),
        w.ns.name.clone(),
        "--wait=false".into(),
    ])
    .await;
    assert!(ok, "kubectl delete namespace: {out}");
    wait_namespace_gone(&w).await;

    let live = live_minted(&w);
    for id in &ids {
        assert!(
            !live.contains(id),
            "token {id} leaked: still live after the namespace went"
        );
    }
    assert!(live.is_empty(), "tokens left live: {live:?}");
}

#[tokio::test]
async fn kubectl_delete_of_one_file_with_credentials_workspace_and_tokens_revokes_every_token() {
    // The README's layout, in the order a person writes it: credentials first, tokens last, so
    // `kubectl delete -f` deletes the credentials and the workspace before the tokens.
    let mut w = World::new("delfile").await;
    let sp = w.emulator.add_service_principal("reports-bot", false);
    let ns = w.ns.name.clone();
    let host = w.emulator.base_url();
    let manifest = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: databricks-sp, namespace: {ns}}}
stringData: {{client_id: "{id}", client_secret: "{secret}"}}
---
apiVersion: dbtoken.dev/v1alpha1
kind: DatabricksWorkspace
metadata: {{name: prod, namespace: {ns}}}
spec:
  host: {host}
  auth:
    oauthM2M:
      secretRef: {{name: databricks-sp}}
---
apiVersion: dbtoken.dev/v1alpha1
kind: DatabricksToken
metadata: {{name: reports, namespace: {ns}}}
spec:
  workspaceRef: {{name: prod}}
  lifetime: 1h
---
apiVersion: dbtoken.dev/v1alpha1
kind: DatabricksToken
metadata: {{name: etl, namespace: {ns}}}
spec:
  workspaceRef: {{name: prod}}
  lifetime: 2h
"#,
        id = sp.application_id,
        secret = sp.client_secret,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("team-a.yaml");
    std::fs::write(&file, manifest).unwrap();
    let file = file.to_string_lossy().to_string();

    w.start_operator();
    let (ok, out) = kubectl_async(vec!["apply".into(), "-f".into(), file.clone()]).await;
    assert!(ok, "kubectl apply: {out}");
    let reports = w
        .wait_ready("reports")
        .await
        .status
        .unwrap()
        .token_id
        .unwrap();
    let etl = w.wait_ready("etl").await.status.unwrap().token_id.unwrap();

    let (ok, out) = kubectl_async(vec![
        "delete".into(),
        "-f".into(),
        file,
        "--timeout=120s".into(),
    ])
    .await;
    assert!(ok, "kubectl delete -f must finish: {out}");

    let live = live_minted(&w);
    assert!(!live.contains(&reports), "reports' token leaked");
    assert!(!live.contains(&etl), "etl's token leaked");
    assert!(live.is_empty(), "tokens left live: {live:?}");
    // Nothing is left holding a finalizer.
    let secrets: Api<Secret> = w.secrets();
    assert!(secrets.get_opt("databricks-sp").await.unwrap().is_none());
    let workspaces: Api<DatabricksWorkspace> = Api::namespaced(w.ns.client.clone(), &ns);
    assert!(workspaces.get_opt("prod").await.unwrap().is_none());
}

#[tokio::test]
async fn a_namespace_dropped_from_a_cluster_workspace_still_gets_its_tokens_revoked() {
    let mut w = World::new("delcws").await;
    w.create_secret("shared-admin", &[("token", &w.admin_pat)])
        .await;
    let ns = w.ns.name.clone();
    let name = format!("{ns}-shared");
    let cws: ClusterDatabricksWorkspace = serde_json::from_value(json!({
        "apiVersion": "dbtoken.dev/v1alpha1",
        "kind": "ClusterDatabricksWorkspace",
        "metadata": {"name": name},
        "spec": {
            "host": w.emulator.base_url(),
            "auth": {"pat": {"secretRef": {"name": "shared-admin", "namespace": ns}}},
            "allowedNamespaces": [ns],
            // The admin credential's own tokens: this test is about deletion, not tenancy.
            "ownIdentityTokens": "Allow",
        },
    }))
    .unwrap();
    let cluster_workspaces: Api<ClusterDatabricksWorkspace> = Api::all(w.ns.client.clone());
    cluster_workspaces
        .create(&PostParams::default(), &cws)
        .await
        .unwrap();
    w.start_operator();
    w.create_token(
        "t",
        json!({"workspaceRef": {"kind": "ClusterDatabricksWorkspace", "name": name}, "lifetime": "1h"}),
    )
    .await;
    let id = w.wait_ready("t").await.status.unwrap().token_id.unwrap();

    // The platform team takes the namespace off the allow-list: no new token for it, and the
    // one it holds keeps working until it expires or its resource is deleted.
    let patch = json!({"spec": {"allowedNamespaces": ["someone-else"]}});
    cluster_workspaces
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let t = w
        .wait_token("t", "Degraded (NamespaceNotAllowed)", |t| {
            condition_reason(t, "Degraded")
                .is_some_and(|(reason, _)| reason == "NamespaceNotAllowed")
        })
        .await;
    assert_eq!(t.status.unwrap().token_id.as_deref(), Some(id.as_str()));
    assert!(
        w.emulator
            .accepts(&w.secret_value("t", "token").await.unwrap()),
        "the token already handed out is not revoked by the allow-list change"
    );

    // Deleting the resource revokes it through the workspace that minted it.
    w.delete_token_and_wait("t").await;
    assert!(
        !live_minted(&w).contains(&id),
        "the token of a namespace no longer admitted was stranded"
    );
    // With no token left to revoke through it, the cluster workspace goes and lets go of its
    // credential Secret.
    cluster_workspaces
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    eventually("cluster workspace gone", WAIT, || async {
        cluster_workspaces
            .get_opt(&name)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    eventually("credential Secret released", WAIT, || async {
        let s = w.secrets().get("shared-admin").await.unwrap();
        (!finalizers_of(&s.metadata).contains(&CREDENTIAL_FINALIZER.to_string())).then_some(())
    })
    .await;
}

fn finalizers_of(meta: &kube::api::ObjectMeta) -> Vec<String> {
    meta.finalizers.clone().unwrap_or_default()
}

/// Wait until the workspace `ws` and its credential Secret carry the operator's finalizers.
async fn wait_protected(w: &World, workspace: &str, credential: &str) {
    let workspaces: Api<DatabricksWorkspace> = Api::namespaced(w.ns.client.clone(), &w.ns.name);
    let secrets = w.secrets();
    eventually(
        &format!("{workspace} and {credential} protected"),
        WAIT,
        || {
            let (workspaces, secrets) = (workspaces.clone(), secrets.clone());
            async move {
                let ws = workspaces.get(workspace).await.unwrap();
                let secret = secrets.get(credential).await.unwrap();
                (finalizers_of(&ws.metadata).contains(&WORKSPACE_FINALIZER.to_string())
                    && finalizers_of(&secret.metadata).contains(&CREDENTIAL_FINALIZER.to_string()))
                .then_some(())
            }
        },
    )
    .await;
}

const WORKSPACE_FINALIZER: &str = "dbtoken.dev/workspace-in-use";
const CREDENTIAL_FINALIZER: &str = "dbtoken.dev/credential-in-use";

#[tokio::test]
async fn a_workspace_deleted_before_its_tokens_waits_for_them_and_takes_no_new_one() {
    let mut w = World::new("delws").await;
    w.start_operator();
    w.create_token("t", spec("1h")).await;
    let id = w.wait_ready("t").await.status.unwrap().token_id.unwrap();
    wait_protected(&w, "ws", "databricks-admin").await;

    let workspaces: Api<DatabricksWorkspace> = Api::namespaced(w.ns.client.clone(), &w.ns.name);
    workspaces
        .delete("ws", &DeleteParams::default())
        .await
        .unwrap();
    // The workspace stays while t may still need it, and says why.
    eventually("ws shows it waits for t", WAIT, || async {
        let ws = workspaces.get("ws").await.unwrap();
        let c = ws
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Deleting")?;
        (c.reason == "WaitingForTokens" && c.message.contains("waiting for 1 DatabricksToken"))
            .then_some(())
    })
    .await;
    // Only now, with the deletion seen by the operator, a new resource names it.
    w.create_token("late", spec("1h")).await;
    let late = w
        .wait_token("late", "Degraded (WorkspaceDeleting)", |t| {
            condition_reason(t, "Degraded").is_some_and(|(reason, _)| reason == "WorkspaceDeleting")
        })
        .await;
    assert!(
        late.status.unwrap().token_id.is_none(),
        "late minted nothing"
    );
    assert!(
        w.emulator
            .accepts(&w.secret_value("t", "token").await.unwrap()),
        "t keeps working while its workspace waits"
    );

    w.tokens()
        .delete("t", &DeleteParams::default())
        .await
        .unwrap();
    eventually("workspace ws gone", WAIT, || async {
        workspaces
            .get_opt("ws")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(!live_minted(&w).contains(&id), "t's token was revoked");
    let credential = w.secrets().get("databricks-admin").await.unwrap();
    assert!(
        !finalizers_of(&credential.metadata).contains(&CREDENTIAL_FINALIZER.to_string()),
        "the credential Secret is let go with its workspace"
    );
}

#[tokio::test]
async fn a_credential_secret_the_workspace_stopped_naming_can_be_deleted() {
    let mut w = World::new("delcred").await;
    w.create_secret("admin-2", &[("token", &w.admin_pat)]).await;
    w.start_operator();
    wait_protected(&w, "ws", "databricks-admin").await;

    let workspaces: Api<DatabricksWorkspace> = Api::namespaced(w.ns.client.clone(), &w.ns.name);
    let patch = json!({"spec": {"auth": {"pat": {"secretRef": {"name": "admin-2"}}}}});
    workspaces
        .patch("ws", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_protected(&w, "ws", "admin-2").await;
    w.secrets()
        .delete("databricks-admin", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the old credential Secret gone", WAIT, || async {
        w.secrets()
            .get_opt("databricks-admin")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn retain_keeps_the_secret_through_a_foreground_cascading_delete() {
    // `kubectl delete --cascade=foreground` (and Argo CD's default prune) asks the garbage
    // collector to delete every dependent first; `deletionPolicy: Retain` promises the Secret
    // and its token stay, also when the operator is not running at that moment (a restart, an
    // upgrade), so it cannot win a race against the garbage collector.
    let mut w = World::new("retainfg").await;
    w.start_operator();
    w.create_token(
        "k",
        json!({"workspaceRef": {"name": "ws"}, "lifetime": "1h", "deletionPolicy": "Retain"}),
    )
    .await;
    let id = w.wait_ready("k").await.status.unwrap().token_id.unwrap();
    // The Secret as last written: a Retain Secret is written before the operator stops.
    eventually("the Secret written", WAIT, || async {
        w.secret_value("k", "token").await.map(|_| ())
    })
    .await;
    w.operator.as_mut().unwrap().kill();

    let (ok, out) = kubectl_async(vec![
        "delete".into(),
        "databrickstoken".into(),
        "k".into(),
        "-n".into(),
        w.ns.name.clone(),
        "--cascade=foreground".into(),
        "--wait=false".into(),
    ])
    .await;
    assert!(ok, "kubectl delete --cascade=foreground: {out}");
    // The garbage collector is done with k's dependents when it drops this finalizer.
    eventually("garbage collector done with k", WAIT, || async {
        let k = w.tokens().get_opt("k").await.unwrap()?;
        (!finalizers_of(&k.metadata).contains(&"foregroundDeletion".to_string())).then_some(())
    })
    .await;
    w.start_operator();
    eventually("k gone", WAIT, || async {
        w.tokens()
            .get_opt("k")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    let value = w.secret_value("k", "token").await;
    assert!(
        value.is_some(),
        "the garbage collector deleted the Secret of a Retain resource"
    );
    assert!(w.emulator.accepts(&value.unwrap()));
    assert!(live_minted(&w).contains(&id));
}
