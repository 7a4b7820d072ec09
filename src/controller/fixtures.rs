//! Reconcile-level test fixtures: a `Context` over an in-memory Kubernetes API server and the
//! in-process Databricks emulator, logging every call of both in the order they were made.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use databricks_client::{Endpoint, RequestObserver};
use databricks_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use futures::FutureExt;
use http::{Request, Response};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    client::Body,
    core::PartialObjectMeta,
    runtime::{events::Reporter, reflector, watcher},
};
use serde_json::{Value, json};

use super::context::Context;
use super::settings::Settings;
use super::{backoff, credential_watch, own_writes, secret_index, verification};
use crate::crd::{DatabricksToken, DatabricksWorkspace};
use crate::metrics::Metrics;
use crate::workspace::{ClientSettings, Workspaces};

pub const NS: &str = "ns";

/// Every call of a reconcile, in order: `GET secrets/t`, `PATCH databrickstokens/t/status`,
/// `POST events`, `databricks token/create`.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<Vec<String>>>);

impl Calls {
    fn push(&self, call: String) {
        self.0.lock().unwrap().push(call);
    }

    /// The calls so far, forgotten. The credential Secret's read is left out: it belongs to
    /// building the workspace's client, once per client.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
            .into_iter()
            .filter(|c| c != "GET secrets/cred")
            .collect()
    }
}

impl RequestObserver for Calls {
    fn observe(&self, endpoint: Endpoint, _outcome: &str, _elapsed: Duration) {
        self.push(format!("databricks {}", endpoint.as_str()));
    }
}

/// The objects the fake API server holds, and what the operator wrote to them.
#[derive(Default)]
struct Objects {
    secrets: BTreeMap<String, Value>,
    version: u64,
    /// The token's finalizers and status as last written.
    finalizers: Option<Value>,
    status: Option<Value>,
}

pub struct World {
    pub ctx: Arc<Context>,
    pub calls: Calls,
    pub emulator: EmulatorHandle,
    objects: Arc<Mutex<Objects>>,
    /// The PAT of the workspace credential.
    pub pat: String,
}

impl World {
    /// A namespaced workspace `ws` on a fresh emulator, authenticated by a (non-admin) user's PAT.
    pub async fn new() -> World {
        let emulator = Emulator::start(EmulatorConfig::default())
            .await
            .expect("emulator");
        let user = emulator.add_user("reporter@example.com", false);
        let calls = Calls::default();
        let objects = Arc::new(Mutex::new(Objects::default()));
        objects.lock().unwrap().secrets.insert(
            "cred".into(),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "cred", "namespace": NS, "resourceVersion": "1"},
                   "data": {"token": base64(&user.pat)}}),
        );
        let kube = api_server(calls.clone(), objects.clone());

        let (ws_store, mut ws_writer) = reflector::store::<DatabricksWorkspace>();
        let ws: DatabricksWorkspace = serde_json::from_value(json!({
            "apiVersion": "dbtoken.dev/v1alpha1", "kind": "DatabricksWorkspace",
            "metadata": {"name": "ws", "namespace": NS, "generation": 1},
            "spec": {"host": emulator.base_url(), "auth": {"pat": {"secretRef": {"name": "cred"}}}},
        }))
        .expect("workspace");
        ws_writer.apply_watcher_event(&watcher::Event::Apply(ws));
        let (cws_store, _) = reflector::store();
        let (tokens, _) = reflector::store();
        let (workspace_triggers, _) =
            credential_watch::channel(ws_store.clone(), cws_store.clone());
        let client_settings = ClientSettings {
            insecure_allow_http: true,
            entra_authority_host: String::new(),
            observer: Some(Arc::new(calls.clone())),
            credential_ttl: Duration::from_secs(300),
        };
        let verify_interval = settings().verify_interval;
        let ctx = Context {
            kube: kube.clone(),
            workspaces: Workspaces::new(kube, ws_store, cws_store, client_settings),
            tokens,
            secrets: secret_index::SecretIndex::default(),
            inventory: Default::default(),
            reporter: Reporter {
                controller: super::context::FIELD_MANAGER.into(),
                instance: None,
            },
            metrics: Arc::new(Metrics::new()),
            settings: settings(),
            backoff: backoff::Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            workspace_backoff: backoff::WorkspaceBackoff::new(
                Duration::from_secs(1),
                Duration::from_secs(300),
            ),
            replacements: Default::default(),
            verifications: verification::Verifications::new(verify_interval),
            started_at: crate::now_millis(),
            own_writes: Arc::new(own_writes::OwnWrites::default()),
            workspaces_seen: Mutex::new(HashSet::new()),
            workspace_triggers,
            failure_events: Default::default(),
            caches_ready: futures::future::ready(()).boxed().shared(),
        };
        World {
            ctx: Arc::new(ctx),
            calls,
            emulator,
            objects,
            pat: user.pat,
        }
    }

    /// A `DatabricksToken` `t` using `ws`, generation 1, as just created.
    pub fn token() -> DatabricksToken {
        serde_json::from_value(json!({
            "apiVersion": "dbtoken.dev/v1alpha1", "kind": "DatabricksToken",
            "metadata": {"name": "t", "namespace": NS, "uid": "uid-1", "generation": 1,
                         "resourceVersion": "1"},
            "spec": {"workspaceRef": {"name": "ws"}, "lifetime": "3h"},
        }))
        .expect("token")
    }

    /// `token` as the watch shows it after this reconcile's writes (finalizer, status), and the
    /// Secrets written as the Secret watch shows them.
    pub fn observe_writes(&self, token: &mut DatabricksToken) {
        let objects = self.objects.lock().unwrap();
        if let Some(finalizers) = &objects.finalizers {
            token.metadata.finalizers = serde_json::from_value(finalizers.clone()).ok();
        }
        if let Some(status) = &objects.status {
            token.status = serde_json::from_value(status.clone()).ok();
        }
        for secret in objects.secrets.values() {
            let secret: Secret = serde_json::from_value(secret.clone()).expect("secret");
            if secret.metadata.name.as_deref() == Some("cred") {
                continue;
            }
            let meta = PartialObjectMeta::<Secret> {
                types: None,
                metadata: secret.metadata,
                _phantom: Default::default(),
            };
            self.ctx.secrets.apply(&watcher::Event::Apply(meta));
        }
    }

    /// The Secret `name` as the API server holds it.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        let objects = self.objects.lock().unwrap();
        objects
            .secrets
            .get(name)
            .map(|s| serde_json::from_value(s.clone()).expect("secret"))
    }
}

/// The defaults of the command line.
pub fn settings() -> Settings {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }
    <Cli as clap::Parser>::parse_from(["operator"]).settings
}

fn base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An API server holding Secrets in memory and answering the token's finalizer and status
/// patches and event creates; each request is logged as `METHOD resource[/name[/sub]]`.
fn api_server(calls: Calls, objects: Arc<Mutex<Objects>>) -> kube::Client {
    let service = tower::service_fn(move |req: Request<Body>| {
        let (calls, objects) = (calls.clone(), objects.clone());
        async move {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let body = req.into_body().collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let resource = path
                .split_once(&format!("/namespaces/{NS}/"))
                .map_or(path.clone(), |(_, r)| r.to_string());
            calls.push(format!("{method} {resource}"));
            let (status, answer) = answer(&method, &resource, body, &mut objects.lock().unwrap());
            Ok::<_, std::convert::Infallible>(json_response(status, &answer))
        }
    });
    kube::Client::new(service, NS)
}

/// An API server's JSON answer.
pub fn json_response(status: u16, answer: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(answer).unwrap()))
        .unwrap()
}

fn answer(method: &str, resource: &str, mut body: Value, objects: &mut Objects) -> (u16, Value) {
    let not_found = || {
        (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "reason": "NotFound", "code": 404, "message": "not found"}),
        )
    };
    let parts: Vec<&str> = resource.split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["secrets", name]) => objects
            .secrets
            .get(*name)
            .map_or_else(not_found, |s| (200, s.clone())),
        ("POST", ["secrets"]) | ("PATCH", ["secrets", _]) => {
            objects.version += 1;
            body["apiVersion"] = json!("v1");
            body["kind"] = json!("Secret");
            body["metadata"]["namespace"] = json!(NS);
            body["metadata"]["resourceVersion"] = json!(objects.version.to_string());
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            objects.secrets.insert(name, body.clone());
            (if method == "POST" { 201 } else { 200 }, body)
        }
        ("DELETE", ["secrets", name]) => match objects.secrets.remove(*name) {
            Some(_) => (
                200,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ),
            None => not_found(),
        },
        ("PATCH", ["databrickstokens", _, rest @ ..]) => {
            if rest == ["status"] {
                objects.status = Some(body["status"].clone());
            } else {
                objects.finalizers = Some(body["metadata"]["finalizers"].clone());
            }
            let mut token = serde_json::to_value(World::token()).unwrap();
            token["status"] = objects.status.clone().unwrap_or(Value::Null);
            (200, token)
        }
        ("POST", ["events"]) => (201, body),
        _ => not_found(),
    }
}
