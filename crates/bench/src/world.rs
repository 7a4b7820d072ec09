//! One measured world: a namespace, an in-process emulator with an admin user, and a
//! DatabricksWorkspace whose client-side rate limit is set high, so that what is measured is
//! the operator and not its own throttle.

use std::{collections::HashSet, time::Duration};

use anyhow::Context;
use databricks_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use databricks_token_operator::crd::{ConditionStatus, DatabricksToken, DatabricksWorkspace};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::{
    ByteString,
    api::core::v1::{Namespace, Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, conditions, wait::await_condition, watcher},
};
use serde_json::json;

/// Requests per second the workspace allows itself (the CRD's maximum).
pub const RATE_LIMIT_RPS: u32 = 1000;
/// Requests in flight per workspace (the CRD's maximum is 256).
pub const MAX_CONCURRENT: u32 = 64;

pub struct World {
    pub client: kube::Client,
    pub namespace: String,
    pub emulator: EmulatorHandle,
}

pub async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in databricks_token_operator::crd::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(60), established).await??;
    }
    Ok(())
}

impl World {
    pub async fn new(client: kube::Client, namespace: &str) -> anyhow::Result<World> {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .context("create namespace")?;
        // One owner holds every token here: lift the 600-per-user quota.
        let emulator = Emulator::start(EmulatorConfig {
            quota_per_owner: 1_000_000,
            ..EmulatorConfig::default()
        })
        .await?;
        let admin = emulator.add_user("admin@example.com", true);
        let world = World {
            client,
            namespace: namespace.into(),
            emulator,
        };
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("databricks-admin".into()),
                ..Default::default()
            },
            data: Some(
                [("token".to_string(), ByteString(admin.pat.into_bytes()))]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        };
        world
            .secrets()
            .create(&PostParams::default(), &secret)
            .await?;
        let ws: DatabricksWorkspace = serde_json::from_value(json!({
            "apiVersion": "dbtoken.dev/v1alpha1",
            "kind": "DatabricksWorkspace",
            "metadata": {"name": "ws"},
            "spec": {
                "host": world.emulator.base_url(),
                "auth": {"pat": {"secretRef": {"name": "databricks-admin"}}},
                // The fleet holds the admin's own tokens (as cert-manager's baseline holds its own).
                "ownIdentityTokens": "Allow",
                "rateLimit": {"requestsPerSecond": RATE_LIMIT_RPS, "maxConcurrentRequests": MAX_CONCURRENT},
            },
        }))?;
        Api::<DatabricksWorkspace>::namespaced(world.client.clone(), namespace)
            .create(&PostParams::default(), &ws)
            .await?;
        Ok(world)
    }

    pub fn tokens(&self) -> Api<DatabricksToken> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn create_token(&self, name: &str) -> anyhow::Result<()> {
        let token: DatabricksToken = serde_json::from_value(json!({
            "apiVersion": "dbtoken.dev/v1alpha1",
            "kind": "DatabricksToken",
            "metadata": {"name": name},
            "spec": {
                "workspaceRef": {"name": "ws"},
                "lifetime": "24h",
                "rotation": {"gracePeriod": "1s"},
            },
        }))?;
        self.tokens()
            .create(&PostParams::default(), &token)
            .await
            .with_context(|| format!("create {name}"))?;
        Ok(())
    }

    /// Create `names` with `in_flight` requests at once.
    pub async fn create_tokens(&self, names: &[String], in_flight: usize) -> anyhow::Result<()> {
        stream::iter(names)
            .map(|n| self.create_token(n))
            .buffer_unordered(in_flight)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Watch until every name in `names` satisfies `done`.
    pub async fn wait_all(
        &self,
        names: &[String],
        timeout: Duration,
        done: impl Fn(&DatabricksToken) -> bool,
    ) -> anyhow::Result<()> {
        let mut pending: HashSet<&str> = names.iter().map(String::as_str).collect();
        let events = watcher(self.tokens(), watcher::Config::default()).applied_objects();
        let wait = async {
            let mut events = std::pin::pin!(events);
            while !pending.is_empty() {
                let Some(t) = events.try_next().await? else {
                    break;
                };
                if done(&t) {
                    pending.remove(t.metadata.name.as_deref().unwrap_or_default());
                }
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(timeout, wait)
            .await
            .with_context(|| format!("still waiting after {timeout:?}"))??;
        Ok(())
    }
}

pub fn is_ready(t: &DatabricksToken) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && matches!(c.status, ConditionStatus::True))
    })
}
