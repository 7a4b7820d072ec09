//! Chaos: two operator replicas with leader election, Databricks answering with 5xx, 429 (with
//! Retry-After), latency and lost create responses, and, one after another at random intervals,
//! what users and nodes do to a running operator:
//!
//! - the leader SIGKILLed in the middle of a mint (the token exists in Databricks, the answer has
//!   not reached the operator), and any replica SIGKILLed at another moment;
//! - a DatabricksToken deleted, and later created again under the same name;
//! - a whole namespace (workspace, credential Secret, tokens) deleted, and later recreated;
//! - a token switched to the other workspace, and between its credential's own identity and a
//!   service principal (on-behalf-of tokens); each first switch after a kill mid-mint takes the
//!   token whose create the kill cut short, before a new leader has looked at it.
//!
//! Checked all along, sampling every resource of both namespaces:
//! - lost: a Ready resource whose Secret is missing, or holds a token its workspace refuses;
//! - downtime: a replaced token that stops working before the revoke-after time the operator
//!   recorded for it (checked by using it), or that was replaced without any grace period.
//!
//! - leaked: a live token, of any identity in either workspace, that is neither a workspace
//!   credential nor a resource's current token nor one inside its grace period, for longer than
//!   it takes to find and revoke what a kill or a lost answer left (LEAK_REACTION).
//!
//! Checked at the end, once faults stop: no such token at all (leaked = 0); then, after every
//! resource and the second namespace are deleted, no token the operator minted is alive
//! anywhere.
//!
//! Size and length come from CHAOS_TOKENS (default 8) and CHAOS_SECONDS (default 60); the long
//! run in RELIABILITY.md uses larger values.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use databricks_emulator::{EmulatorConfig, EmulatorHandle, FaultRule, Faults, Latency};
use databricks_token_operator::crd::{DatabricksToken, DatabricksWorkspace};
use databricks_token_operator::{databricks::tag_owner, now_millis, secret};
use k8s_openapi::{
    ByteString,
    api::{
        coordination::v1::Lease,
        core::v1::{Namespace, Secret},
    },
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde_json::{Value, json};
use support::operator::{Operator, OperatorOptions, eventually};
use support::world::{World, condition_is};

/// Renewed at one minute of age; long enough that a leaked token outlives the end check (a
/// shorter lifetime would let leaks expire before anyone looks).
const LIFETIME: &str = "3m";
const RENEW_BEFORE: &str = "140s";
const GRACE_MS: i64 = 5_000;
/// Slack for the checker's own sampling delay and for the operator acting on the millisecond.
const MARGIN_MS: i64 = 1_000;
const LEASE: &str = "databricks-token-operator";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn faults() -> Faults {
    Faults {
        rules: vec![
            FaultRule {
                endpoint: "*".into(),
                error_rate: 0.08,
                error_status: Some(503),
                rate_limit_rate: 0.05,
                retry_after_seconds: Some(1),
                latency_ms: Some(Latency::Between(0, 40)),
                ..Default::default()
            },
            FaultRule {
                endpoint: "token/create".into(),
                error_rate: 0.05,
                error_status: Some(500),
                drop_response_after_create_rate: 0.15,
                ..Default::default()
            },
            // Every create answers late, so a kill right after Databricks minted lands before
            // the operator has learned of the token.
            FaultRule {
                latency_after_create_ms: Some(Latency::Between(150, 300)),
                ..FaultRule::on("token/create")
            },
            FaultRule {
                latency_after_create_ms: Some(Latency::Between(150, 300)),
                ..FaultRule::on("obo/create")
            },
        ],
        seed: Some(7),
    }
}

fn spec(workspace: &str, on_behalf_of: Option<&str>) -> Value {
    let mut s = json!({
        "workspaceRef": {"name": workspace},
        "lifetime": LIFETIME,
        "renewBefore": RENEW_BEFORE,
        "rotation": {"gracePeriod": format!("{}s", GRACE_MS / 1000)},
    });
    if let Some(app) = on_behalf_of {
        s["onBehalfOf"] = json!({"applicationId": app});
    }
    s
}

/// Both workspaces of the run, found by the host a Secret names.
struct Workspaces<'a> {
    all: [&'a EmulatorHandle; 2],
}

impl Workspaces<'_> {
    fn at(&self, host: &str) -> Option<&EmulatorHandle> {
        let host = host.trim_end_matches('/');
        self.all.iter().copied().find(|e| e.base_url() == host)
    }
    fn accepts(&self, host: &str, value: &str) -> bool {
        self.at(host).is_some_and(|e| e.accepts(value))
    }
    fn token_creates(&self) -> u64 {
        self.all
            .iter()
            .map(|e| {
                let s = e.stats();
                s.count("token/create") + s.count("obo/create")
            })
            .sum()
    }
}

/// The operator replicas: started with leader election in the first namespace, replaced by a
/// new process (a new identity) whenever one is killed.
struct Replicas {
    kubeconfig: std::path::PathBuf,
    options: OperatorOptions,
    running: Vec<(String, Operator)>,
    started: u32,
}

impl Replicas {
    fn start_one(&mut self) {
        let identity = format!("replica-{}", self.started);
        self.started += 1;
        let mut options = self.options.clone();
        options.identity = Some(identity.clone());
        self.running
            .push((identity, Operator::start(&self.kubeconfig, &options)));
    }

    /// SIGKILL the replica with this identity and start a replacement.
    fn kill(&mut self, identity: &str) -> bool {
        let Some(i) = self.running.iter().position(|(id, _)| id == identity) else {
            return false;
        };
        let (_, mut op) = self.running.remove(i);
        op.kill();
        self.start_one();
        true
    }

    async fn leader(&self, client: &Client, namespace: &str) -> Option<String> {
        let lease = Api::<Lease>::namespaced(client.clone(), namespace)
            .get_opt(LEASE)
            .await
            .ok()??;
        let holder = lease.spec?.holder_identity?;
        self.running
            .iter()
            .any(|(id, _)| *id == holder)
            .then_some(holder)
    }
}

/// The second namespace: its own workspace (on the first emulator), credential and tokens, so
/// that deleting it removes all three at once.
struct SecondNamespace {
    name: String,
    host: String,
    admin_pat: String,
    tokens: usize,
    sp: String,
}

impl SecondNamespace {
    async fn create(&self, client: &Client) {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("databricks-admin".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "token".to_string(),
                ByteString(self.admin_pat.as_bytes().to_vec()),
            )])),
            ..Default::default()
        };
        Api::<Secret>::namespaced(client.clone(), &self.name)
            .create(&PostParams::default(), &secret)
            .await
            .expect("create credential");
        let ws: DatabricksWorkspace = serde_json::from_value(json!({
            "apiVersion": "dbtoken.dev/v1alpha1",
            "kind": "DatabricksWorkspace",
            "metadata": {"name": "ws"},
            "spec": {"host": self.host, "auth": {"pat": {"secretRef": {"name": "databricks-admin"}}},
                     "ownIdentityTokens": "Allow"},
        }))
        .expect("workspace");
        Api::<DatabricksWorkspace>::namespaced(client.clone(), &self.name)
            .create(&PostParams::default(), &ws)
            .await
            .expect("create workspace");
        let tokens = Api::<DatabricksToken>::namespaced(client.clone(), &self.name);
        for i in 0..self.tokens {
            let obo = (i % 2 == 1).then_some(self.sp.as_str());
            create_token(&tokens, &format!("b{i}"), spec("ws", obo)).await;
        }
    }

    async fn state(&self, client: &Client) -> NamespaceState {
        match Api::<Namespace>::all(client.clone())
            .get_opt(&self.name)
            .await
            .expect("read namespace")
        {
            None => NamespaceState::Gone,
            Some(ns) if ns.metadata.deletion_timestamp.is_some() => NamespaceState::Terminating,
            Some(_) => NamespaceState::Active,
        }
    }
}

#[derive(PartialEq, Eq)]
enum NamespaceState {
    Active,
    Terminating,
    Gone,
}

async fn create_token(api: &Api<DatabricksToken>, name: &str, spec: Value) {
    let token: DatabricksToken = serde_json::from_value(json!({
        "apiVersion": "dbtoken.dev/v1alpha1",
        "kind": "DatabricksToken",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("token spec");
    api.create(&PostParams::default(), &token)
        .await
        .expect("create token");
}

/// What the checker last saw in a resource's Secret.
#[derive(Clone)]
struct Seen {
    token_id: String,
    value: String,
    host: String,
    expiry: Option<i64>,
}

/// A replaced token that must keep working until `until`.
struct Retired {
    namespace: String,
    name: String,
    uid: String,
    seen: Seen,
    until: i64,
}

#[derive(Default)]
struct Findings {
    checks: u64,
    lost: Vec<String>,
    downtime: Vec<String>,
    /// Tokens unaccounted for longer than LEAK_REACTION during the run.
    leaked: Vec<String>,
    graced: u64,
}

/// The resource as it is now, if it still exists as the same object and is not being deleted.
async fn still_there(client: &Client, ns: &str, name: &str, uid: &str) -> Option<DatabricksToken> {
    Api::<DatabricksToken>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .filter(|t| t.uid().as_deref() == Some(uid) && t.metadata.deletion_timestamp.is_none())
}

/// How long a Ready resource may go without its Secret before it counts as lost: the time for
/// the operator to see the Secret's deletion (a namespace being deleted removes Secrets before
/// the tokens are marked) and to report it.
const REACTION: Duration = Duration::from_secs(5);

/// How long a live token may stay unaccounted for during the run before it counts as leaked:
/// the time to find and revoke what a kill or a lost answer left (a new leader's first look,
/// a sweep retried through the faults). Shorter than a token's life, so a token nobody revokes
/// is always caught, however early in a long run it was left.
const LEAK_REACTION: Duration = Duration::from_secs(120);

struct Checker {
    seen: HashMap<String, Seen>,
    /// Live tokens no resource accounts for, by id: since when, and what they are.
    unaccounted_since: HashMap<String, tokio::time::Instant>,
    /// Ready resources seen without their Secret, since when.
    missing_since: HashMap<String, tokio::time::Instant>,
    retired: Vec<Retired>,
    findings: Findings,
}

impl Checker {
    async fn sample(&mut self, client: &Client, namespaces: &[&str], workspaces: &Workspaces<'_>) {
        let mut listed: Option<Vec<DatabricksToken>> = Some(vec![]);
        for ns in namespaces {
            let tokens = Api::<DatabricksToken>::namespaced(client.clone(), ns);
            let secrets = Api::<Secret>::namespaced(client.clone(), ns);
            let Ok(list) = tokens.list(&ListParams::default()).await else {
                listed = None;
                continue;
            };
            if let Some(all) = listed.as_mut() {
                all.extend(list.items.iter().cloned());
            }
            for t in list {
                let (name, uid) = (t.name_any(), t.uid().unwrap_or_default());
                if t.metadata.deletion_timestamp.is_some() {
                    self.seen.remove(&uid);
                    continue;
                }
                if !condition_is(&t, "Ready", "True") {
                    self.missing_since.remove(&uid);
                    continue;
                }
                let secret_name = secret::secret_name(&t);
                let read = secrets.get_opt(&secret_name).await.ok().flatten();
                let sample = read.as_ref().and_then(|s| read_sample(s, &t));
                self.findings.checks += 1;
                let Some(sample) = sample else {
                    // Ready with no Secret (or no token in it) for longer than the operator
                    // needs to notice: lost, unless the resource has gone or stopped being Ready.
                    let since = *self
                        .missing_since
                        .entry(uid.clone())
                        .or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() < REACTION {
                        continue;
                    }
                    let again = secrets.get_opt(&secret_name).await.ok().flatten();
                    let confirmed = still_there(client, ns, &name, &uid)
                        .await
                        .is_some_and(|t| condition_is(&t, "Ready", "True"))
                        && again.as_ref().and_then(|s| read_sample(s, &t)).is_none();
                    if confirmed {
                        self.findings.lost.push(format!(
                            "{ns}/{name}: Ready without a token in its Secret for {:?}",
                            since.elapsed()
                        ));
                        self.missing_since.remove(&uid);
                    }
                    continue;
                };
                self.missing_since.remove(&uid);
                if !workspaces.accepts(&sample.0.host, &sample.0.value) {
                    let again = secrets.get_opt(&secret_name).await.ok().flatten();
                    let unchanged = again
                        .as_ref()
                        .and_then(|s| read_sample(s, &t))
                        .is_some_and(|s| s.0.value == sample.0.value);
                    if unchanged && still_there(client, ns, &name, &uid).await.is_some() {
                        self.findings.lost.push(format!(
                            "{ns}/{name}: Ready with token {} refused by {}",
                            sample.0.token_id, sample.0.host
                        ));
                    }
                }
                self.observe(ns, &name, &uid, sample, workspaces);
            }
        }
        self.check_retired(client, workspaces).await;
        // Only a complete view of the resources tells what is unaccounted for.
        if let Some(all) = listed {
            self.track_leaks(workspaces, &all);
        }
    }

    /// A live token that stays unaccounted for longer than LEAK_REACTION is leaked.
    fn track_leaks(&mut self, workspaces: &Workspaces<'_>, tokens: &[DatabricksToken]) {
        let now = tokio::time::Instant::now();
        let found = unaccounted(workspaces, tokens, now_millis());
        self.unaccounted_since
            .retain(|id, _| found.iter().any(|(f, _)| f == id));
        for (id, what) in found {
            let since = *self.unaccounted_since.entry(id.clone()).or_insert(now);
            let reported = self.findings.leaked.iter().any(|w| w.contains(&id));
            if now.duration_since(since) >= LEAK_REACTION && !reported {
                self.findings.leaked.push(what);
            }
        }
    }

    /// A new token in a Secret: the one it replaced must live on until its revoke-after.
    fn observe(
        &mut self,
        ns: &str,
        name: &str,
        uid: &str,
        (now_seen, record): (Seen, secret::TokenRecord),
        workspaces: &Workspaces<'_>,
    ) {
        let previous = self.seen.insert(uid.to_string(), now_seen);
        let Some(old) = previous else { return };
        if old.token_id == record.current.token_id {
            return;
        }
        let now = now_millis();
        if old.expiry.is_some_and(|e| e <= now + MARGIN_MS) {
            return; // it died by itself: an Expired rotation owes it no grace
        }
        let grace = record.previous.iter().find(|p| p.token_id == old.token_id);
        match grace {
            Some(p) => {
                let until = old.expiry.map_or(p.revoke_after, |e| e.min(p.revoke_after));
                if until > now + MARGIN_MS {
                    self.findings.graced += 1;
                    if !workspaces.accepts(&old.host, &old.value) {
                        self.findings.downtime.push(format!(
                            "{ns}/{name}: token {} refused as soon as it was replaced, {} ms before its revoke-after",
                            old.token_id,
                            until - now
                        ));
                    }
                    self.retired.push(Retired {
                        namespace: ns.into(),
                        name: name.into(),
                        uid: uid.into(),
                        seen: old,
                        until,
                    });
                }
            }
            // Seen within the grace period of the replacement, yet no grace recorded.
            None if now + MARGIN_MS < record.current.creation + GRACE_MS => {
                self.findings.downtime.push(format!(
                    "{ns}/{name}: token {} replaced by {} without a grace period",
                    old.token_id, record.current.token_id
                ));
            }
            None => {}
        }
    }

    async fn check_retired(&mut self, client: &Client, workspaces: &Workspaces<'_>) {
        let mut keep = Vec::new();
        for r in std::mem::take(&mut self.retired) {
            if now_millis() + MARGIN_MS >= r.until {
                continue;
            }
            if workspaces.accepts(&r.seen.host, &r.seen.value) {
                keep.push(r);
                continue;
            }
            // Deleting a resource revokes its tokens at once, grace or not.
            if still_there(client, &r.namespace, &r.name, &r.uid)
                .await
                .is_some()
                && now_millis() + MARGIN_MS < r.until
            {
                self.findings.downtime.push(format!(
                    "{}/{}: previous token {} refused {} ms before its revoke-after",
                    r.namespace,
                    r.name,
                    r.seen.token_id,
                    r.until - now_millis()
                ));
            }
        }
        self.retired = keep;
    }
}

/// The token a Secret holds for `token`: value, host and what the annotations record.
fn read_sample(s: &Secret, token: &DatabricksToken) -> Option<(Seen, secret::TokenRecord)> {
    let data = s.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    let value = text(&token.spec.secret.token_key)?;
    let host = text(&token.spec.secret.host_key)?;
    let record = secret::read_record(&s.metadata)?;
    let seen = Seen {
        token_id: record.current.token_id.clone(),
        value,
        host,
        expiry: record.current.expiry,
    };
    Some((seen, record))
}

/// Live tokens, in either workspace, that are neither a workspace credential nor a resource's
/// current token nor one inside its grace period: (token id, what it is).
fn unaccounted(
    workspaces: &Workspaces<'_>,
    tokens: &[DatabricksToken],
    now_ms: i64,
) -> Vec<(String, String)> {
    let by_uid: HashMap<String, &DatabricksToken> = tokens
        .iter()
        .map(|t| (t.uid().unwrap_or_default(), t))
        .collect();
    let mut leaks = Vec::new();
    for (w, emulator) in workspaces.all.iter().enumerate() {
        for live in emulator.live_tokens() {
            let comment = live.comment.as_deref().unwrap_or_default();
            let Some(uid) = tag_owner(comment) else {
                if comment != "bootstrap" {
                    leaks.push((
                        live.token_id.clone(),
                        format!("workspace {w}: {} untagged ({comment:?})", live.token_id),
                    ));
                }
                continue;
            };
            let Some(owner) = by_uid.get(uid) else {
                leaks.push((
                    live.token_id.clone(),
                    format!("workspace {w}: {} (resource gone)", live.token_id),
                ));
                continue;
            };
            let status = owner.status.clone().unwrap_or_default();
            let current = status.token_id.as_deref() == Some(live.token_id.as_str());
            let in_grace = status
                .previous_tokens
                .iter()
                .any(|p| p.token_id == live.token_id && p.revoke_after.as_millis() > now_ms);
            if !current && !in_grace {
                leaks.push((
                    live.token_id.clone(),
                    format!(
                        "workspace {w}: {} of {}/{}",
                        live.token_id,
                        owner.namespace().unwrap_or_default(),
                        owner.name_any()
                    ),
                ));
            }
        }
    }
    leaks
}

#[derive(Clone, Copy, Debug)]
enum Action {
    KillLeaderMidMint,
    KillAnyReplica,
    DeleteToken,
    RecreateToken,
    SwitchWorkspace,
    SwitchIdentity,
    DeleteOrRecreateNamespace,
}

/// A switch right after each kill mid-mint: it lands before a new leader has looked at the
/// token whose create was cut short, so a token left there is seen only if its place was kept.
const CYCLE: [Action; 7] = [
    Action::KillLeaderMidMint,
    Action::SwitchWorkspace,
    Action::DeleteToken,
    Action::KillAnyReplica,
    Action::SwitchIdentity,
    Action::DeleteOrRecreateNamespace,
    Action::RecreateToken,
];

#[derive(Default, Debug)]
struct Done {
    mid_mint_kills: u32,
    other_kills: u32,
    deletes: u32,
    recreates: u32,
    namespace_deletes: u32,
    namespace_recreates: u32,
    workspace_switches: u32,
    identity_switches: u32,
    /// Switches of the token whose create the last kill cut short.
    switches_after_kill: u32,
}

/// The run's actors and what they have done.
struct Chaos<'a> {
    client: Client,
    ns: String,
    second: SecondNamespace,
    workspaces: Workspaces<'a>,
    replicas: Replicas,
    sp: String,
    rng: StdRng,
    deleted: Vec<String>,
    /// The token whose create the last kill mid-mint cut short, until a switch takes it.
    interrupted: Option<String>,
    done: Done,
}

impl Chaos<'_> {
    fn tokens(&self) -> Api<DatabricksToken> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn pick_token(&mut self) -> Option<DatabricksToken> {
        let list = self.tokens().list(&ListParams::default()).await.ok()?.items;
        let live: Vec<_> = list
            .into_iter()
            .filter(|t| t.metadata.deletion_timestamp.is_none())
            .collect();
        live.choose(&mut self.rng).cloned()
    }

    /// The token a kill cut short, if it is still there; otherwise any.
    async fn pick_for_switch(&mut self) -> Option<DatabricksToken> {
        if let Some(name) = self.interrupted.take()
            && let Ok(Some(t)) = self.tokens().get_opt(&name).await
            && t.metadata.deletion_timestamp.is_none()
        {
            self.done.switches_after_kill += 1;
            return Some(t);
        }
        self.pick_token().await
    }

    async fn act(&mut self, action: Action) {
        match action {
            Action::KillLeaderMidMint => self.kill_leader_mid_mint().await,
            Action::KillAnyReplica => {
                let i = self.rng.random_range(0..self.replicas.running.len());
                let id = self.replicas.running[i].0.clone();
                if self.replicas.kill(&id) {
                    self.done.other_kills += 1;
                }
            }
            Action::DeleteToken => {
                if let Some(t) = self.pick_token().await {
                    let name = t.name_any();
                    if self
                        .tokens()
                        .delete(&name, &DeleteParams::default())
                        .await
                        .is_ok()
                    {
                        self.deleted.push(name);
                        self.done.deletes += 1;
                    }
                }
            }
            Action::RecreateToken => {
                let Some(i) = self.deleted.iter().position(|_| true) else {
                    return;
                };
                let name = self.deleted[i].clone();
                if self.tokens().get_opt(&name).await.ok().flatten().is_none() {
                    self.deleted.remove(i);
                    let ws = *["ws", "ws2"].choose(&mut self.rng).unwrap();
                    let obo = self.rng.random_bool(0.5).then_some(self.sp.clone());
                    create_token(&self.tokens(), &name, spec(ws, obo.as_deref())).await;
                    self.done.recreates += 1;
                }
            }
            Action::SwitchWorkspace => {
                if let Some(t) = self.pick_for_switch().await {
                    let to = if t.spec.workspace_ref.name == "ws" {
                        "ws2"
                    } else {
                        "ws"
                    };
                    let patch = json!({"spec": {"workspaceRef": {"name": to}}});
                    if self.patch(&t.name_any(), patch).await {
                        self.done.workspace_switches += 1;
                    }
                }
            }
            Action::SwitchIdentity => {
                if let Some(t) = self.pick_for_switch().await {
                    let obo = match t.spec.on_behalf_of {
                        Some(_) => Value::Null,
                        None => json!({"applicationId": self.sp}),
                    };
                    if self
                        .patch(&t.name_any(), json!({"spec": {"onBehalfOf": obo}}))
                        .await
                    {
                        self.done.identity_switches += 1;
                    }
                }
            }
            Action::DeleteOrRecreateNamespace => match self.second.state(&self.client).await {
                NamespaceState::Active => {
                    let deleted = Api::<Namespace>::all(self.client.clone())
                        .delete(&self.second.name, &DeleteParams::default())
                        .await;
                    if deleted.is_ok() {
                        self.done.namespace_deletes += 1;
                    }
                }
                NamespaceState::Gone => {
                    self.second.create(&self.client).await;
                    self.done.namespace_recreates += 1;
                }
                NamespaceState::Terminating => {}
            },
        }
    }

    async fn patch(&self, name: &str, patch: Value) -> bool {
        self.tokens()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .is_ok()
    }

    /// Ask for a rotation, wait until Databricks has minted the new token (its answer is held
    /// back by the faults' latency after create), and SIGKILL the leader right then.
    async fn kill_leader_mid_mint(&mut self) {
        let Some(leader) = self.replicas.leader(&self.client, &self.ns).await else {
            return;
        };
        let Some(t) = self.pick_token().await else {
            return;
        };
        let uid = t.uid().unwrap_or_default();
        let tagged_for = |e: &EmulatorHandle| -> Vec<String> {
            e.live_tokens()
                .into_iter()
                .filter(|l| l.comment.as_deref().and_then(tag_owner) == Some(uid.as_str()))
                .map(|l| l.token_id)
                .collect()
        };
        let before: Vec<String> = self
            .workspaces
            .all
            .iter()
            .flat_map(|e| tagged_for(e))
            .collect();
        let at = jiff::Timestamp::now().to_string();
        let patch = json!({"metadata": {"annotations": {"dbtoken.dev/rotate-requested-at": at}}});
        if !self.patch(&t.name_any(), patch).await {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while tokio::time::Instant::now() < deadline {
            let minted = self
                .workspaces
                .all
                .iter()
                .flat_map(|e| tagged_for(e))
                .any(|id| !before.contains(&id));
            if minted {
                if self.replicas.kill(&leader) {
                    self.done.mid_mint_kills += 1;
                    self.interrupted = Some(t.name_any());
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await; // polling the emulator's state
        }
    }
}

#[tokio::test]
async fn tokens_are_never_lost_leaked_or_cut_short_under_chaos() {
    let n = env_or("CHAOS_TOKENS", 8) as usize;
    let seconds = env_or("CHAOS_SECONDS", 60);
    let w = World::new("chaos").await;
    let (other, other_admin) = World::another_workspace(EmulatorConfig::default()).await;
    let sp = w.emulator.add_service_principal("chaos-etl", false);
    other.assign_service_principal(&sp, "chaos-etl", false);
    w.create_secret("databricks-admin-2", &[("token", &other_admin)])
        .await;
    w.apply_workspace_at(
        "ws2",
        &other.base_url(),
        json!({"pat": {"secretRef": {"name": "databricks-admin-2"}}}),
    )
    .await;
    let client = w.ns.client.clone();
    let second = SecondNamespace {
        name: format!("{}-b", w.ns.name),
        host: w.emulator.base_url(),
        admin_pat: w.admin_pat.clone(),
        tokens: (n / 4).max(2),
        sp: sp.application_id.clone(),
    };
    second.create(&client).await;

    let mut options = w.options();
    options.namespaces.push(second.name.clone());
    options.log_filter = "info";
    options.leader_election = true;
    options.lease_namespace = Some(w.ns.name.clone());
    options.extra_args = vec!["--lease-duration=4s".into()];
    let mut replicas = Replicas {
        kubeconfig: w.kubeconfig(),
        options,
        running: vec![],
        started: 0,
    };
    replicas.start_one();
    replicas.start_one();

    for i in 0..n {
        let ws = if i % 3 == 0 { "ws2" } else { "ws" };
        let obo = (i % 2 == 1).then_some(sp.application_id.as_str());
        w.create_token(&format!("c{i}"), spec(ws, obo)).await;
    }
    for i in 0..n {
        w.wait_ready(&format!("c{i}")).await;
    }
    let workspaces = Workspaces {
        all: [&w.emulator, &other],
    };
    for e in workspaces.all {
        e.set_faults(faults());
    }
    let creates_before = workspaces.token_creates();

    let mut chaos = Chaos {
        client: client.clone(),
        ns: w.ns.name.clone(),
        second,
        workspaces: Workspaces {
            all: [&w.emulator, &other],
        },
        replicas,
        sp: sp.application_id.clone(),
        rng: StdRng::seed_from_u64(42),
        deleted: vec![],
        interrupted: None,
        done: Done::default(),
    };
    let mut checker = Checker {
        seen: HashMap::new(),
        unaccounted_since: HashMap::new(),
        missing_since: HashMap::new(),
        retired: vec![],
        findings: Findings::default(),
    };
    let namespaces = [w.ns.name.clone(), chaos.second.name.clone()];
    let namespaces: Vec<&str> = namespaces.iter().map(String::as_str).collect();
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut next_action = started + Duration::from_millis(chaos.rng.random_range(1_500..4_000));
    let mut actions = 0usize;
    while tokio::time::Instant::now() < deadline {
        if tokio::time::Instant::now() >= next_action {
            chaos.act(CYCLE[actions % CYCLE.len()]).await;
            actions += 1;
            next_action = tokio::time::Instant::now()
                + Duration::from_millis(chaos.rng.random_range(1_500..4_000));
        }
        checker.sample(&client, &namespaces, &workspaces).await;
        tokio::time::sleep(Duration::from_millis(200)).await; // the checker's sampling interval
    }

    for e in workspaces.all {
        e.clear_faults();
    }
    let faults_injected: u64 = workspaces
        .all
        .iter()
        .flat_map(|e| e.stats().requests)
        .filter(|r| matches!(r.status, 0 | 429 | 500 | 503))
        .map(|r| r.count)
        .sum();
    let rotations = workspaces.token_creates() - creates_before;

    // Faults off: bring back what the run left deleted, then everything settles.
    if chaos.second.state(&client).await != NamespaceState::Active {
        eventually(
            "the second namespace gone",
            Duration::from_secs(120),
            || async { (chaos.second.state(&client).await == NamespaceState::Gone).then_some(()) },
        )
        .await;
        chaos.second.create(&client).await;
    }
    for name in std::mem::take(&mut chaos.deleted) {
        eventually(
            &format!("{name} gone"),
            Duration::from_secs(120),
            || async {
                chaos
                    .tokens()
                    .get_opt(&name)
                    .await
                    .unwrap()
                    .is_none()
                    .then_some(())
            },
        )
        .await;
        create_token(&chaos.tokens(), &name, spec("ws", None)).await;
    }
    let all_tokens = || async {
        let mut all = Vec::new();
        for ns in &namespaces {
            let api = Api::<DatabricksToken>::namespaced(client.clone(), ns);
            all.extend(api.list(&ListParams::default()).await.unwrap().items);
        }
        all
    };
    // Settled: every resource Ready and no leak, or, at the deadline, what is still wrong.
    let settle_by = tokio::time::Instant::now() + Duration::from_secs(120);
    let (not_ready, leaks) = loop {
        let tokens = all_tokens().await;
        let not_ready: Vec<String> = tokens
            .iter()
            .filter(|t| !condition_is(t, "Ready", "True"))
            .map(|t| format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any()))
            .collect();
        let leaks: Vec<String> = unaccounted(&workspaces, &tokens, now_millis())
            .into_iter()
            .map(|(_, what)| what)
            .collect();
        let settled = not_ready.is_empty() && leaks.is_empty();
        if settled || tokio::time::Instant::now() >= settle_by {
            break (not_ready, leaks);
        }
        tokio::time::sleep(Duration::from_millis(250)).await; // polling interval
    };
    println!(
        "chaos: tokens={} seconds={seconds} rotations={rotations} faults_injected={faults_injected} checks={} graced_checked={} lost={} downtime={} leaked={} (during the run {}, at the end {}) {:?}",
        n + chaos.second.tokens,
        checker.findings.checks,
        checker.findings.graced,
        checker.findings.lost.len(),
        checker.findings.downtime.len(),
        checker.findings.leaked.len() + leaks.len(),
        checker.findings.leaked.len(),
        leaks.len(),
        chaos.done
    );
    assert!(
        not_ready.is_empty(),
        "not Ready after settling: {not_ready:?}"
    );
    assert!(
        checker.findings.leaked.is_empty(),
        "leaked during the run (unaccounted for over {LEAK_REACTION:?}): {:#?}",
        checker.findings.leaked
    );
    assert!(leaks.is_empty(), "leaked: {leaks:#?}");

    // Everything deleted, the second namespace as a whole: nothing the operator minted lives on.
    Api::<Namespace>::all(client.clone())
        .delete(&chaos.second.name, &DeleteParams::default())
        .await
        .expect("delete the second namespace");
    chaos
        .tokens()
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete every token");
    let minted_alive = |e: &EmulatorHandle| {
        e.live_tokens()
            .into_iter()
            .filter(|l| l.comment.as_deref().and_then(tag_owner).is_some())
            .count()
    };
    eventually(
        "no minted token alive after deleting everything",
        Duration::from_secs(120),
        || async {
            let alive: usize = workspaces.all.iter().map(|e| minted_alive(e)).sum();
            (alive == 0 && chaos.second.state(&client).await == NamespaceState::Gone).then_some(())
        },
    )
    .await;

    let f = &checker.findings;
    let d = &chaos.done;
    assert!(
        d.mid_mint_kills >= 1,
        "the leader must be killed mid-mint: {d:?}"
    );
    assert!(
        d.other_kills >= 1 && d.deletes >= 1 && d.recreates >= 1,
        "{d:?}"
    );
    assert!(
        d.namespace_deletes >= 1 && d.workspace_switches >= 1,
        "{d:?}"
    );
    assert!(d.identity_switches >= 1, "{d:?}");
    assert!(
        d.switches_after_kill >= 1,
        "a token must be switched right after a kill cut its create short: {d:?}"
    );
    assert!(faults_injected > 0, "the run must actually inject faults");
    assert!(f.checks > 0 && f.graced > 0, "the checks must have run");
    assert!(f.lost.is_empty(), "lost: {:#?}", f.lost);
    assert!(f.downtime.is_empty(), "downtime: {:#?}", f.downtime);
}
