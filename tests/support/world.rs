//! One test's world: its namespace on the real API server, an in-process Databricks emulator
//! with an admin user, a DatabricksWorkspace pointing at it, and the operator process.

#![allow(dead_code)]

use std::time::Duration;

use databricks_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use databricks_token_operator::crd::{DatabricksToken, DatabricksWorkspace};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
    runtime::wait::await_condition,
};
use serde_json::json;

use super::cluster::{self, TestNamespace};
use super::operator::{Operator, OperatorOptions, eventually};

/// Generous: CI machines have two cores shared by the API server, etcd and several operators.
pub const WAIT: Duration = Duration::from_secs(120);

pub struct World {
    pub ns: TestNamespace,
    pub emulator: EmulatorHandle,
    pub admin_pat: String,
    pub operator: Option<Operator>,
}

impl World {
    /// Namespace + emulator + an admin-PAT workspace called `ws`, and the CRDs installed.
    pub async fn new(prefix: &str) -> World {
        Self::with_emulator(prefix, EmulatorConfig::default()).await
    }

    pub async fn with_emulator(prefix: &str, config: EmulatorConfig) -> World {
        let ns = cluster::namespace(prefix).await;
        install_crds(&ns.client).await;
        let emulator = Emulator::start(config).await.expect("emulator");
        let admin = emulator.add_user("admin@example.com", true);
        let world = World {
            ns,
            emulator,
            admin_pat: admin.pat.clone(),
            operator: None,
        };
        world
            .create_secret("databricks-admin", &[("token", &admin.pat)])
            .await;
        world
            .apply_workspace(
                "ws",
                json!({"pat": {"secretRef": {"name": "databricks-admin"}}}),
            )
            .await;
        world
    }

    pub fn kubeconfig(&self) -> std::path::PathBuf {
        cluster::cluster_sync().kubeconfig_path().to_path_buf()
    }

    pub fn options(&self) -> OperatorOptions {
        OperatorOptions::for_namespace(&self.ns.name)
    }

    pub fn start_operator(&mut self) {
        self.start_operator_with(self.options());
    }

    pub fn start_operator_with(&mut self, options: OperatorOptions) {
        self.operator = Some(Operator::start(&self.kubeconfig(), &options));
    }

    pub fn tokens(&self) -> Api<DatabricksToken> {
        Api::namespaced(self.ns.client.clone(), &self.ns.name)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.ns.client.clone(), &self.ns.name)
    }

    pub async fn create_secret(&self, name: &str, data: &[(&str, &str)]) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        self.secrets()
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
    }

    /// A workspace on the emulator that also mints tokens owned by its own (admin) identity:
    /// most tests exercise rotation, not the tenancy policy, so they opt in explicitly.
    pub async fn apply_workspace(&self, name: &str, auth: serde_json::Value) {
        self.apply_workspace_spec(name, json!({"auth": auth, "ownIdentityTokens": "Allow"}))
            .await
    }

    /// A workspace with exactly these spec fields; `host` defaults to this world's emulator.
    pub async fn apply_workspace_spec(&self, name: &str, mut spec: serde_json::Value) {
        if spec.get("host").is_none() {
            spec["host"] = json!(self.emulator.base_url());
        }
        let ws: DatabricksWorkspace = serde_json::from_value(json!({
            "apiVersion": "dbtoken.dev/v1alpha1",
            "kind": "DatabricksWorkspace",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .expect("workspace");
        self.workspaces()
            .create(&PostParams::default(), &ws)
            .await
            .expect("create workspace");
    }

    /// A workspace called `name` at `host` (another emulator plays another workspace), minting
    /// its own identity's tokens as `apply_workspace` does.
    pub async fn apply_workspace_at(&self, name: &str, host: &str, auth: serde_json::Value) {
        self.apply_workspace_spec(
            name,
            json!({"host": host, "auth": auth, "ownIdentityTokens": "Allow"}),
        )
        .await
    }

    pub fn workspaces(&self) -> Api<DatabricksWorkspace> {
        Api::namespaced(self.ns.client.clone(), &self.ns.name)
    }

    /// Merge-patch an object's spec (a DatabricksToken or DatabricksWorkspace).
    pub async fn patch_spec<K>(&self, api: &Api<K>, name: &str, spec: serde_json::Value)
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        api.patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .expect("patch spec");
    }

    /// A second workspace: another emulator with its own admin user.
    pub async fn another_workspace(config: EmulatorConfig) -> (EmulatorHandle, String) {
        let emulator = Emulator::start(config).await.expect("emulator");
        let admin = emulator.add_user("admin@example.com", true);
        (emulator, admin.pat)
    }

    /// Events of the namespace about `name`, as (reason, note).
    pub async fn events_of(&self, name: &str) -> Vec<(String, String)> {
        use k8s_openapi::api::events::v1::Event;
        let api: Api<Event> = Api::namespaced(self.ns.client.clone(), &self.ns.name);
        api.list(&kube::api::ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// A counter or gauge of the operator's /metrics (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let Some(op) = self.operator.as_ref() else {
            return 0.0;
        };
        op.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Create a DatabricksToken from a spec (JSON), e.g. `{"workspaceRef": {"name": "ws"}, "lifetime": "1h"}`.
    pub async fn create_token(&self, name: &str, spec: serde_json::Value) -> DatabricksToken {
        let token: DatabricksToken = serde_json::from_value(json!({
            "apiVersion": "dbtoken.dev/v1alpha1",
            "kind": "DatabricksToken",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .expect("token spec");
        self.tokens()
            .create(&PostParams::default(), &token)
            .await
            .expect("create token")
    }

    /// Delete a DatabricksToken and wait until it is gone (its finalizer has run).
    pub async fn delete_token_and_wait(&self, name: &str) {
        self.tokens()
            .delete(name, &kube::api::DeleteParams::default())
            .await
            .expect("delete token");
        self.wait_token_gone(name).await;
    }

    /// Wait until the DatabricksToken `name` is gone (its finalizer has run).
    pub async fn wait_token_gone(&self, name: &str) {
        eventually(&format!("DatabricksToken {name} gone"), WAIT, || async {
            self.tokens()
                .get_opt(name)
                .await
                .expect("read token")
                .is_none()
                .then_some(())
        })
        .await;
    }

    /// Wait until the token's Ready condition is True and return it.
    pub async fn wait_ready(&self, name: &str) -> DatabricksToken {
        self.wait_token(name, "Ready=True", |t| condition_is(t, "Ready", "True"))
            .await
    }

    pub async fn wait_token(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&DatabricksToken) -> bool + Send + 'static,
    ) -> DatabricksToken {
        let cond = move |t: Option<&DatabricksToken>| t.is_some_and(&check);
        match tokio::time::timeout(WAIT, await_condition(self.tokens(), name, cond)).await {
            Ok(Ok(Some(t))) => t,
            other => {
                let current = self.tokens().get_opt(name).await.ok().flatten();
                panic!(
                    "{name}: waiting for {what} failed ({:?}); current status: {:#?}",
                    other.err(),
                    current.and_then(|t| t.status)
                )
            }
        }
    }

    /// Wait until status shows a token other than `first` (a rotation or a re-mint).
    pub async fn wait_replaced(&self, name: &str, first: &str, what: &str) -> DatabricksToken {
        let first = first.to_string();
        self.wait_token(name, what, move |t| {
            t.status
                .as_ref()
                .and_then(|s| s.token_id.as_ref())
                .is_some_and(|id| *id != first)
        })
        .await
    }

    /// The token value stored in the Secret under `key`.
    pub async fn secret_value(&self, secret: &str, key: &str) -> Option<String> {
        let s = self.secrets().get_opt(secret).await.expect("read secret")?;
        let bytes = s.data?.get(key)?.0.clone();
        String::from_utf8(bytes).ok()
    }

    /// Wait until the emulator no longer has a live token with this id.
    pub async fn wait_revoked(&self, token_id: &str) {
        wait_revoked_in(&self.emulator, token_id).await
    }

    /// The id of the admin's bootstrap PAT (the workspace credential).
    pub fn admin_pat_id(&self) -> String {
        self.emulator
            .live_tokens()
            .into_iter()
            .find(|t| t.comment.as_deref() == Some("bootstrap"))
            .expect("bootstrap PAT")
            .token_id
    }

    /// resourceVersions of every DatabricksToken and Secret of the namespace: equal lists mean
    /// nothing was written in between.
    pub async fn resource_versions(&self) -> Vec<Option<String>> {
        let params = kube::api::ListParams::default();
        let tokens = self
            .tokens()
            .list(&params)
            .await
            .expect("list tokens")
            .items;
        let secrets = self
            .secrets()
            .list(&params)
            .await
            .expect("list secrets")
            .items;
        tokens
            .into_iter()
            .map(|t| t.metadata.resource_version)
            .chain(secrets.into_iter().map(|s| s.metadata.resource_version))
            .collect()
    }

    pub fn live_token_ids(&self) -> Vec<String> {
        self.emulator
            .live_tokens()
            .into_iter()
            .map(|t| t.token_id)
            .collect()
    }
}

/// Wait until `emulator` (the workspace that minted it) no longer has a live token with this id.
pub async fn wait_revoked_in(emulator: &EmulatorHandle, token_id: &str) {
    let id = token_id.to_string();
    eventually(&format!("token {token_id} revoked"), WAIT, || {
        let live = emulator.live_tokens().iter().any(|t| t.token_id == id);
        async move { (!live).then_some(()) }
    })
    .await
}

pub fn condition_is(token: &DatabricksToken, type_: &str, status: &str) -> bool {
    token
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .is_some_and(|c| format!("{:?}", c.status) == status)
}

pub fn condition_reason(token: &DatabricksToken, type_: &str) -> Option<(String, String)> {
    let c = token
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.reason.clone(), c.message.clone()))
}

/// Apply the generated CRDs once per test process and wait until they are served.
pub async fn install_crds(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in databricks_token_operator::crd::all_crds() {
        let name = crd.metadata.name.clone().expect("crd name");
        api.patch(
            &name,
            &PatchParams::apply("e2e-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply crd");
        let established = await_condition(
            api.clone(),
            &name,
            kube::runtime::conditions::is_crd_established(),
        );
        tokio::time::timeout(WAIT, established)
            .await
            .expect("crd established in time")
            .expect("watch crd");
    }
}
