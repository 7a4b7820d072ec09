//! What each kind of write a mint makes costs the API server, with no operator running: N
//! DatabricksTokens created, then N of each later write in the order a mint makes them, with
//! the shapes the operator writes. The CPU of kube-apiserver and etcd per write shows how fast
//! the machine can take mints at all.

use std::{future::Future, path::Path, time::Instant};

use databricks_token_operator::{
    crd::DatabricksToken,
    secret::{self, CurrentToken, SecretLayout, TokenRecord},
};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::cluster::ControlPlaneCpu;
use crate::world::World;

/// One kind of write, N times.
pub struct WriteCost {
    pub kind: &'static str,
    pub n: usize,
    pub seconds: f64,
    pub cpu: ControlPlaneCpu,
}

pub async fn run(
    world: &World,
    control_plane_dir: &Path,
    n: usize,
    in_flight: usize,
) -> anyhow::Result<Vec<WriteCost>> {
    let names: Vec<String> = (0..n).map(|i| format!("w{i:05}")).collect();
    let tokens = world.tokens();
    let mut costs = vec![];
    let at = (control_plane_dir, n, in_flight);
    costs.push(
        measure(at, "DatabricksToken create (the user's)", &|i| {
            let (world, name) = (world, names[i].clone());
            Box::pin(async move { world.create_token(&name).await })
        })
        .await?,
    );
    let created: Vec<DatabricksToken> = stream::iter(&names)
        .map(|name| tokens.get(name))
        .buffered(in_flight)
        .try_collect()
        .await?;

    costs.push(
        measure(at, "finalizer (merge patch)", &|i| {
            let (api, name) = (tokens.clone(), names[i].clone());
            Box::pin(async move {
                let patch = json!({"metadata": {"finalizers": ["dbtoken.dev/revoke-tokens"]}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                Ok(())
            })
        })
        .await?,
    );
    costs.push(
        measure(at, "Secret (server-side apply, new)", &|i| {
            let desired = operator_secret(&created[i], i);
            let api = world.secrets();
            Box::pin(async move {
                let name = desired.name_any();
                api.patch(&name, &apply(), &Patch::Apply(&desired)).await?;
                Ok(())
            })
        })
        .await?,
    );
    costs.push(
        measure(at, "status (server-side apply)", &|i| {
            let (api, name) = (tokens.clone(), names[i].clone());
            Box::pin(async move {
                api.patch_status(&name, &apply(), &Patch::Apply(operator_status(&name, i)))
                    .await?;
                Ok(())
            })
        })
        .await?,
    );
    costs.push(
        measure(at, "event (events.k8s.io/v1 create)", &|i| {
            let api: Api<Event> = Api::namespaced(world.client.clone(), &world.namespace);
            let event = minted_event(&created[i], i);
            Box::pin(async move {
                api.create(&PostParams::default(), &event?).await?;
                Ok(())
            })
        })
        .await?,
    );
    Ok(costs)
}

async fn measure<'a>(
    (control_plane_dir, n, in_flight): (&Path, usize, usize),
    kind: &'static str,
    write: &dyn Fn(usize) -> BoxedWrite<'a>,
) -> anyhow::Result<WriteCost> {
    let cpu = ControlPlaneCpu::of(control_plane_dir);
    let started = Instant::now();
    stream::iter(0..n)
        .map(write)
        .buffer_unordered(in_flight)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(WriteCost {
        kind,
        n,
        seconds: started.elapsed().as_secs_f64(),
        cpu: ControlPlaneCpu::of(control_plane_dir).since(cpu),
    })
}

type BoxedWrite<'a> = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

fn apply() -> PatchParams {
    PatchParams::apply(databricks_token_operator::controller::FIELD_MANAGER).force()
}

/// A 64-hex-digit id, as Databricks token ids are.
fn token_id(i: usize) -> String {
    format!("{i:064x}")
}

/// The Secret the operator renders for a fresh token (the value is made up).
fn operator_secret(token: &DatabricksToken, i: usize) -> k8s_openapi::api::core::v1::Secret {
    let value = format!("dapi{i:032x}");
    let record = TokenRecord {
        current: CurrentToken {
            token_id: token_id(i),
            creation: 1_795_000_000_000,
            expiry: Some(1_795_086_400_000),
            value_digest: secret::value_digest(&value),
            // As the operator records it: where the token was minted, and by whom.
            origin: Some(secret::TokenOrigin {
                workspace: databricks_token_operator::workspace::WorkspaceKey {
                    kind: databricks_token_operator::crd::WorkspaceKind::DatabricksWorkspace,
                    namespace: token.metadata.namespace.clone(),
                    name: "prod".into(),
                },
                host: "https://adb-1234567890123456.7.azuredatabricks.net".into(),
                application_id: None,
                identity: Some("4801234567890123".into()),
            }),
        },
        previous: vec![],
        spec_hash: "0123456789abcdef".into(),
        rotate_request_handled: None,
    };
    let layout = SecretLayout {
        name: &token.name_any(),
        host: "https://adb-1234567890123456.7.azuredatabricks.net",
    };
    secret::render(token, &layout, &record, &value)
}

/// A Ready status as the operator writes it after a mint.
fn operator_status(name: &str, i: usize) -> serde_json::Value {
    let at = "2026-11-23T08:00:12.927Z";
    let condition = |type_: &str, status: &str, reason: &str, message: String| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastTransitionTime": at, "observedGeneration": 1})
    };
    json!({
        "apiVersion": "dbtoken.dev/v1alpha1",
        "kind": "DatabricksToken",
        "status": {
            "conditions": [
                condition("Ready", "True", "TokenReady",
                    format!("Secret {name} holds token {} (expires 2026-11-24T08:00:12.927Z)", token_id(i))),
                condition("Rotating", "False", "Idle", String::new()),
                condition("Degraded", "False", "Healthy", String::new()),
            ],
            "tokenId": token_id(i),
            "secretName": name,
            "expiryTime": "2026-11-24T08:00:12.927Z",
            "renewalTime": "2026-11-24T00:00:12.927Z",
            "observedGeneration": 1,
            "secretResourceVersion": "12345",
        },
    })
}

fn minted_event(token: &DatabricksToken, i: usize) -> anyhow::Result<Event> {
    Ok(serde_json::from_value(json!({
        "metadata": {"generateName": format!("{}-", token.name_any())},
        "eventTime": "2026-11-23T08:00:12.927000Z",
        "reportingController": databricks_token_operator::controller::FIELD_MANAGER,
        "reportingInstance": "bench",
        "action": "Mint",
        "reason": "Minted",
        "type": "Normal",
        "note": format!("minted token {}", token_id(i)),
        "regarding": {"apiVersion": "dbtoken.dev/v1alpha1", "kind": "DatabricksToken",
                      "name": token.name_any(), "namespace": token.namespace(), "uid": token.uid()},
    }))?)
}
