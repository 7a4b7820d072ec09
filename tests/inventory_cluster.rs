//! End to end: the token inventory on a `ClusterDatabricksWorkspace`, in its own test binary
//! (its own API server): every operator of a test process watches every cluster workspace, and
//! those of other tests, not watching this test's namespace, must not see its tokens. An operator
//! that does not watch every namespace a cluster workspace admits only counts its orphans.

mod support;

use databricks_emulator::SeedToken;
use databricks_token_operator::crd::{ClusterDatabricksWorkspace, InventoryStatus};
use kube::{Api, api::PostParams};
use serde_json::json;
use support::operator::eventually;
use support::world::{WAIT, World};

#[tokio::test]
async fn a_cluster_workspace_counts_its_tokens_and_revokes_orphans_of_namespaces_it_watches() {
    let mut w = World::new("inv-cluster").await;
    let ns = w.ns.name.clone();
    let name = format!("shared-{ns}");
    let sp = w.emulator.add_service_principal("etl", false);
    let admin_id = w
        .emulator
        .live_tokens()
        .into_iter()
        .find(|t| t.comment.as_deref() == Some("bootstrap"))
        .expect("admin PAT")
        .owner_id;
    let api: Api<ClusterDatabricksWorkspace> = Api::all(w.ns.client.clone());
    let ws: ClusterDatabricksWorkspace = serde_json::from_value(json!({
        "apiVersion": "dbtoken.dev/v1alpha1",
        "kind": "ClusterDatabricksWorkspace",
        "metadata": {"name": name},
        "spec": {
            "host": w.emulator.base_url(),
            "auth": {"pat": {"secretRef": {"name": "databricks-admin", "namespace": ns}}},
            "allowedNamespaces": [ns],
            "allowedServicePrincipals": [{"applicationId": sp.application_id, "namespaces": [ns]}],
        },
    }))
    .expect("cluster workspace");
    api.create(&PostParams::default(), &ws)
        .await
        .expect("create cluster workspace");
    let orphan = w.emulator.seed_token(&SeedToken {
        owner_id: sp.id,
        created_by_id: Some(admin_id),
        comment: "[dbtoken.dev/uid=7a1e0c9d-3333-4a61-9c1a-3f2e5d6b7a80] lost".into(),
        lifetime_seconds: Some(86_400),
    });
    w.start_operator();
    w.create_token(
        "obo",
        json!({"workspaceRef": {"kind": "ClusterDatabricksWorkspace", "name": name},
               "lifetime": "24h", "onBehalfOf": {"applicationId": sp.application_id}}),
    )
    .await;
    let managed = w
        .wait_ready("obo")
        .await
        .status
        .and_then(|s| s.token_id)
        .expect("token id");

    w.patch_spec(&api, &name, json!({"inventory": {"interval": "10s"}}))
        .await;
    let status: InventoryStatus = eventually("the cluster workspace's inventory", WAIT, || async {
        let ws = api.get(&name).await.expect("read cluster workspace");
        ws.status
            .and_then(|s| s.inventory)
            .filter(|i| i.observed_generation == ws.metadata.generation && i.error.is_none())
    })
    .await;
    assert_eq!(
        (
            status.total,
            status.managed,
            status.orphaned,
            status.orphans_revoked,
            status.never_expiring
        ),
        (3, 1, 1, 1, 1),
        "{status:#?}"
    );
    let live = w.live_token_ids();
    assert!(!live.contains(&orphan), "the orphan is revoked");
    assert!(
        live.contains(&managed),
        "the DatabricksToken's token is not"
    );

    // Events of a cluster-scoped object land in `default`.
    use k8s_openapi::api::events::v1::Event;
    let events: Vec<String> = Api::<Event>::namespaced(w.ns.client.clone(), "default")
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str()))
        .filter(|e| e.reason.as_deref() == Some("OrphanRevoked"))
        .filter_map(|e| e.note)
        .collect();
    assert!(
        events.len() == 1 && events[0].contains(&orphan),
        "{events:?}"
    );

    let (ok, out) = support::cluster::kubectl(&["get", "cdbws", &name, "-o", "wide"]);
    assert!(ok, "{out}");
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let row: Vec<&str> = out
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let at = |column: &str| header.iter().position(|h| *h == column).map(|i| row[i]);
    assert_eq!(
        (at("TOKENS"), at("ORPHANED")),
        (Some("3"), Some("1")),
        "{out}"
    );

    // Admitting every namespace: tokens of DatabricksTokens in namespaces this operator does not
    // watch (another install's) would look like orphans, so orphans are only counted now.
    let second = w.emulator.seed_token(&SeedToken {
        owner_id: sp.id,
        created_by_id: Some(admin_id),
        comment: "[dbtoken.dev/uid=7a1e0c9d-4444-4a61-9c1a-3f2e5d6b7a80] elsewhere".into(),
        lifetime_seconds: Some(86_400),
    });
    w.patch_spec(&api, &name, json!({"allowedNamespaces": ["*"]}))
        .await;
    let status: InventoryStatus = eventually("the next inventory", WAIT, || async {
        let ws = api.get(&name).await.expect("read cluster workspace");
        ws.status
            .and_then(|s| s.inventory)
            .filter(|i| i.observed_generation == ws.metadata.generation && i.error.is_none())
    })
    .await;
    assert_eq!(
        (status.orphaned, status.orphans_revoked),
        (1, 0),
        "{status:#?}"
    );
    assert!(w.live_token_ids().contains(&second));
}
