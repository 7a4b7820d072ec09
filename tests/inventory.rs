//! End to end: the token inventory (`spec.inventory`) on a real API server against an emulator
//! seeded with a realistic workspace: users' never-expiring PATs, expiring ones, another tool's
//! tokens (one carrying another install's tag), this operator's tokens and its orphans. Counts,
//! metrics and `kubectl get -o wide` match what was seeded; orphans are revoked with an event;
//! unmanaged tokens are untouched; a cleanup dry run names exactly what the real run revokes;
//! and the seed's own expiry monitor (Python, official SDK) finds the same expiring set.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Stdio,
    time::Duration,
};

use databricks_emulator::{EmulatorConfig, SeedToken};
use databricks_token_operator::crd::{DatabricksWorkspace, InventoryStatus};
use serde_json::json;
use support::operator::eventually;
use support::world::{WAIT, World};

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
/// The emulator's clock runs this far behind the cluster's, so a token it still lists (alive on
/// its own clock) is past its expiry on the operator's: the `expired` class.
const CLOCK_BEHIND_MS: i64 = 2 * HOUR * 1000;

/// What was seeded, by class label, as token ids.
#[derive(Default)]
struct Mix {
    by_class: BTreeMap<&'static str, BTreeSet<String>>,
    /// Token ids by owner id.
    owner_of: BTreeMap<String, i64>,
    bob_name: String,
    bob_temp: BTreeSet<String>,
    orphans: BTreeSet<String>,
    foreign_tagged: String,
}

impl Mix {
    fn add(&mut self, class: &'static str, id: String, owner: i64) {
        self.owner_of.insert(id.clone(), owner);
        self.by_class.entry(class).or_default().insert(id);
    }

    fn count(&self, class: &str) -> u64 {
        self.by_class.get(class).map_or(0, |s| s.len() as u64)
    }

    fn unmanaged(&self) -> BTreeSet<String> {
        ["expired", "never_expiring", "expiring_soon", "other"]
            .iter()
            .flat_map(|c| self.by_class.get(c).cloned().unwrap_or_default())
            .collect()
    }
}

fn seed(w: &World, owner: i64, creator: Option<i64>, comment: &str, life: Option<i64>) -> String {
    w.emulator.seed_token(&SeedToken {
        owner_id: owner,
        created_by_id: creator,
        comment: comment.into(),
        lifetime_seconds: life,
    })
}

/// A workspace as platform teams find it, plus two DatabricksTokens of this operator.
async fn realistic_world(prefix: &str) -> (World, Mix) {
    let mut w = World::with_emulator(
        prefix,
        EmulatorConfig {
            clock_offset_ms: -CLOCK_BEHIND_MS,
            ..EmulatorConfig::default()
        },
    )
    .await;
    let mut mix = Mix::default();
    let admin_id = w
        .emulator
        .live_tokens()
        .iter()
        .find(|t| t.comment.as_deref() == Some("bootstrap"))
        .expect("admin bootstrap PAT")
        .owner_id;
    // The workspace credential: an old PAT that never expires.
    mix.add("never_expiring", w.admin_pat_id(), admin_id);

    let alice = w.emulator.add_user("alice@example.com", false);
    let bob = w.emulator.add_user("bob@example.com", false);
    let terraform = w.emulator.add_user("terraform@example.com", false);
    let etl = w.emulator.add_service_principal("etl", false);
    mix.bob_name = bob.user_name.clone();
    // Every seeded user came with a never-expiring bootstrap PAT.
    for t in w.emulator.live_tokens() {
        if t.owner_id != admin_id {
            mix.add("never_expiring", t.token_id, t.owner_id);
        }
    }
    let past_the_clock = Some(CLOCK_BEHIND_MS / 1000 - HOUR);
    for (owner, comment, life, class) in [
        (alice.id, "notebook", Some(2 * DAY), "expiring_soon"),
        (alice.id, "dashboard", Some(10 * DAY), "expiring_soon"),
        (alice.id, "temp-alice", Some(90 * DAY), "other"),
        (alice.id, "old script", past_the_clock, "expired"),
        (bob.id, "laptop", None, "never_expiring"),
        (
            terraform.id,
            "managed by terraform",
            Some(400 * DAY),
            "other",
        ),
        (
            terraform.id,
            "managed by terraform",
            Some(5 * DAY),
            "expiring_soon",
        ),
    ] {
        let id = seed(&w, owner, None, comment, life);
        mix.add(class, id, owner);
    }
    for (comment, life, class) in [
        ("temp-notebook", Some(5 * DAY), "expiring_soon"),
        ("ci temp-build", None, "never_expiring"),
    ] {
        let id = seed(&w, bob.id, None, comment, life);
        mix.bob_temp.insert(id.clone());
        mix.add(class, id, bob.id);
    }
    // Another install's tag, minted by another identity: not this operator's orphan.
    let foreign = seed(
        &w,
        terraform.id,
        None,
        "[dbtoken.dev/uid=5c0a4b7e-0000-4000-8000-000000000001] other cluster",
        Some(60 * DAY),
    );
    mix.foreign_tagged = foreign.clone();
    mix.add("other", foreign, terraform.id);
    // Orphans: tagged by this operator, with this credential, for resources that are gone.
    for (owner, uid) in [
        (admin_id, "0d3f7a52-1111-4a61-9c1a-3f2e5d6b7a80"),
        (etl.id, "0d3f7a52-2222-4a61-9c1a-3f2e5d6b7a80"),
    ] {
        let id = seed(
            &w,
            owner,
            Some(admin_id),
            &format!("[dbtoken.dev/uid={uid}] lost"),
            Some(DAY),
        );
        mix.orphans.insert(id.clone());
        mix.add("orphaned", id, owner);
    }

    w.start_operator();
    for (name, spec) in [
        (
            "own",
            json!({"workspaceRef": {"name": "ws"}, "lifetime": "24h"}),
        ),
        (
            "obo",
            json!({"workspaceRef": {"name": "ws"}, "lifetime": "24h",
                   "onBehalfOf": {"applicationId": etl.application_id}}),
        ),
    ] {
        w.create_token(name, spec).await;
        let t = w.wait_ready(name).await;
        let id = t.status.and_then(|s| s.token_id).expect("token id");
        let owner = w
            .emulator
            .live_tokens()
            .into_iter()
            .find(|l| l.token_id == id)
            .expect("minted")
            .owner_id;
        mix.add("managed", id, owner);
    }
    (w, mix)
}

async fn enable_inventory(w: &World, inventory: serde_json::Value) {
    w.patch_spec(&w.workspaces(), "ws", json!({ "inventory": inventory }))
        .await;
}

/// Wait for an inventory status that satisfies `check`.
async fn wait_inventory(
    w: &World,
    what: &str,
    check: impl Fn(&InventoryStatus) -> bool,
) -> InventoryStatus {
    eventually(what, WAIT, || async {
        let ws: DatabricksWorkspace = w.workspaces().get("ws").await.expect("read workspace");
        let generation = ws.metadata.generation;
        ws.status
            .and_then(|s| s.inventory)
            .filter(|i| i.observed_generation == generation && i.error.is_none() && check(i))
    })
    .await
}

fn live_ids(w: &World) -> BTreeSet<String> {
    w.live_token_ids().into_iter().collect()
}

#[tokio::test]
async fn a_realistic_workspace_is_counted_by_class_and_only_orphans_are_revoked() {
    let (w, mix) = realistic_world("inv-mix").await;
    let before = live_ids(&w);
    enable_inventory(&w, json!({"interval": "10s"})).await;
    let status = wait_inventory(&w, "the first inventory", |i| {
        i.last_inventory_time.is_some()
    })
    .await;

    let expected = (
        mix.count("managed"),
        mix.count("orphaned"),
        mix.count("expired"),
        mix.count("never_expiring"),
        mix.count("expiring_soon"),
        mix.count("other"),
    );
    assert_eq!(
        (
            status.managed,
            status.orphaned,
            status.expired,
            status.never_expiring,
            status.expiring_soon,
            status.other
        ),
        expected,
        "{status:#?}"
    );
    assert_eq!(expected, (2, 2, 1, 6, 4, 3), "the seeded mix itself");
    assert_eq!(status.total, before.len() as u64);
    assert_eq!(status.orphans_revoked, 2);

    // Orphans are gone, each with an event; everything else is untouched.
    let after = live_ids(&w);
    let expected_live: BTreeSet<String> = before.difference(&mix.orphans).cloned().collect();
    assert_eq!(after, expected_live);
    assert!(
        after.contains(&mix.foreign_tagged),
        "another install's token"
    );
    let events = w.events_of("ws").await;
    let revoked: BTreeSet<String> = events
        .iter()
        .filter(|(reason, _)| reason == "OrphanRevoked")
        .filter_map(|(_, note)| {
            note.split_whitespace()
                .nth(2)
                .map(|id| id.trim_end_matches(':').to_string())
        })
        .collect();
    assert_eq!(revoked, mix.orphans, "{events:?}");

    // Metrics: counts per class and owner, and the earliest expiry per owner.
    let op = w.operator.as_ref().expect("operator");
    let text = eventually("inventory metrics", WAIT, || async {
        let t = op.metrics().await;
        t.contains("dbtoken_inventory_tokens{").then_some(t)
    })
    .await;
    let labels = format!(
        r#"kind="DatabricksWorkspace",namespace="{}",workspace="ws""#,
        w.ns.name
    );
    let mut by_class_owner: BTreeMap<(&str, String), u64> = BTreeMap::new();
    for (class, ids) in &mix.by_class {
        for id in ids {
            *by_class_owner
                .entry((class, mix.owner_of[id].to_string()))
                .or_default() += 1;
        }
    }
    for ((class, owner), n) in &by_class_owner {
        let series =
            format!(r#"dbtoken_inventory_tokens{{{labels},class="{class}",owner="{owner}"}} {n}"#);
        assert!(
            text.lines().any(|l| l == series),
            "missing {series} in\n{text}"
        );
    }
    let sum: f64 = text
        .lines()
        .filter(|l| l.starts_with(&format!("dbtoken_inventory_tokens{{{labels}")))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(sum as u64, status.total);
    assert!(
        text.contains(&format!(
            "dbtoken_inventory_last_success_timestamp_seconds{{{labels}}}"
        )),
        "{text}"
    );
    assert!(
        !text.contains("dbtoken_inventory_token_expiry_timestamp_seconds{"),
        "off by default"
    );

    // kubectl get -o wide shows the headline counts.
    let (ok, out) =
        support::cluster::kubectl(&["get", "dbws", "ws", "-n", &w.ns.name, "-o", "wide"]);
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
    let column = |name: &str| {
        let i = header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("{name} in {out}"));
        row[i].to_string()
    };
    assert_eq!(column("TOKENS"), status.total.to_string(), "{out}");
    assert_eq!(column("ORPHANED"), "2", "{out}");
    assert_eq!(column("EXPIRING"), "4", "{out}");
    assert_eq!(column("NEVEREXPIRING"), "6", "{out}");

    // The next inventory finds no orphans left, and still touches nothing else.
    let first = status.last_inventory_time;
    let next = wait_inventory(&w, "the second inventory", |i| {
        i.last_inventory_time != first
    })
    .await;
    assert_eq!((next.orphaned, next.orphans_revoked), (0, 0), "{next:#?}");
    assert_eq!(next.total, status.total - 2);
    assert_eq!(live_ids(&w), expected_live);
}

#[tokio::test]
async fn a_cleanup_dry_run_names_exactly_what_the_real_run_revokes() {
    let (w, mix) = realistic_world("inv-clean").await;
    let rule = json!({"owners": [mix.bob_name], "commentContains": "temp-"});
    enable_inventory(
        &w,
        json!({"interval": "10s", "cleanup": {"mode": "DryRun", "rules": [rule]}}),
    )
    .await;
    let dry = wait_inventory(&w, "a dry run", |i| {
        i.cleanup.as_ref().is_some_and(|c| c.mode == "DryRun")
    })
    .await;
    let dry = dry.cleanup.expect("cleanup status");
    let named: BTreeSet<String> = dry.token_ids.iter().cloned().collect();
    // Alice's "temp-alice" is not bob's: the rule names owner and comment both.
    assert_eq!(named, mix.bob_temp);
    assert_eq!((dry.matched, dry.revoked), (2, 0));
    assert!(
        mix.bob_temp.is_subset(&live_ids(&w)),
        "a dry run revokes nothing"
    );
    let events = w.events_of("ws").await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "CleanupDryRun" && named.iter().all(|id| n.contains(id.as_str()))),
        "{events:?}"
    );

    let before = live_ids(&w);
    enable_inventory(
        &w,
        json!({"interval": "10s", "cleanup": {"mode": "Revoke", "rules": [rule]}}),
    )
    .await;
    let real = wait_inventory(&w, "the real run", |i| {
        i.cleanup.as_ref().is_some_and(|c| c.mode == "Revoke")
    })
    .await
    .cleanup
    .expect("cleanup status");
    assert_eq!(real.revoked, 2);
    let revoked_by_events: BTreeSet<String> = w
        .events_of("ws")
        .await
        .into_iter()
        .filter(|(r, _)| r == "UnmanagedTokenRevoked")
        .filter_map(|(_, n)| n.split_whitespace().nth(2).map(String::from))
        .collect();
    assert_eq!(revoked_by_events, named);
    let gone: BTreeSet<String> = before.difference(&live_ids(&w)).cloned().collect();
    assert_eq!(gone, named, "exactly the dry run's tokens, nothing else");
    assert!(mix.unmanaged().is_superset(&named));
}

/// The seed's monitor, run as a platform team runs it today: `mode` is `sdk` (every token of
/// the workspace through the SDK's token management) or `seed` (its own `token/list` call).
async fn seed_monitor(w: &World, mode: &str) -> BTreeSet<String> {
    let run = tokio::process::Command::new(support::tools::python_with_sdk())
        .arg(support::cluster::repo_root().join("tests/sdk/expiry_monitor.py"))
        .arg(mode)
        .env("DATABRICKS_HOST", w.emulator.base_url())
        .env("DATABRICKS_TOKEN", &w.admin_pat)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the monitor finishes")
        .expect("run tests/sdk/expiry_monitor.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "monitor failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("monitor JSON");
    report["expiring"]
        .as_array()
        .expect("expiring list")
        .iter()
        .map(|t| t["token_id"].as_str().expect("token_id").to_string())
        .collect()
}

#[tokio::test]
async fn the_seeds_expiry_monitor_and_the_operator_report_the_same_expiring_tokens() {
    let (w, mix) = realistic_world("inv-seed").await;
    enable_inventory(
        &w,
        json!({"interval": "10s", "orphans": "Report", "perTokenMetrics": true}),
    )
    .await;
    let status = wait_inventory(&w, "an inventory", |i| i.last_inventory_time.is_some()).await;
    let op = w.operator.as_ref().expect("operator");
    let labels = format!(
        r#"kind="DatabricksWorkspace",namespace="{}",workspace="ws""#,
        w.ns.name
    );
    // The operator's expiring set: every token whose expiry is within 30 days from now, as
    // the per-token series show it (the seed's monitor does not tell the operator's own apart).
    let now = databricks_token_operator::now_millis() as f64 / 1000.0;
    let window = 30.0 * DAY as f64;
    let text = op.metrics().await;
    let mut operator_set = BTreeSet::new();
    let mut operator_owned_by: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines().filter(|l| {
        l.starts_with(&format!(
            "dbtoken_inventory_token_expiry_timestamp_seconds{{{labels}"
        ))
    }) {
        let id = line
            .split("token_id=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("token_id");
        let owner = line
            .split("owner=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("owner");
        let expiry: f64 = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse().ok())
            .expect("value");
        if now <= expiry && expiry <= now + window {
            operator_set.insert(id.to_string());
            operator_owned_by.insert(id.to_string(), owner.to_string());
        }
    }
    let monitor_set = seed_monitor(&w, "sdk").await;
    assert_eq!(monitor_set, operator_set, "seed monitor vs operator");
    // Unmanaged ones expiring soon, this operator's (24h) and its orphans (a day): all seen.
    let seeded: BTreeSet<String> = ["expiring_soon", "managed", "orphaned"]
        .iter()
        .flat_map(|c| mix.by_class[c].iter().cloned())
        .collect();
    assert_eq!(monitor_set, seeded);
    // The unmanaged part of it is the status count.
    let unmanaged: BTreeSet<&String> = monitor_set
        .iter()
        .filter(|id| mix.by_class["expiring_soon"].contains(*id))
        .collect();
    assert_eq!(unmanaged.len() as u64, status.expiring_soon);
    assert_eq!(status.orphans_revoked, 0, "orphans: Report only counts");
    assert!(mix.orphans.iter().all(|id| w.live_token_ids().contains(id)));

    // The seed's monitor verbatim lists only its caller's own tokens (token/list).
    let admin_owner = mix.owner_of[&w.admin_pat_id()].to_string();
    let own_set = seed_monitor(&w, "seed").await;
    let operator_own: BTreeSet<String> = operator_owned_by
        .into_iter()
        .filter(|(_, owner)| *owner == admin_owner)
        .map(|(id, _)| id)
        .collect();
    assert!(
        !own_set.is_empty(),
        "the admin has expiring tokens (its own DatabricksToken, an orphan)"
    );
    assert_eq!(own_set, operator_own);
}

#[tokio::test]
async fn inventory_settings_that_make_no_sense_are_refused_at_apply_time() {
    let w = World::new("inv-cel").await;
    for (inventory, message) in [
        (
            json!({"interval": "5s"}),
            "inventory.interval must be at least 10s",
        ),
        (
            json!({"interval": "often"}),
            "inventory.interval must be a duration",
        ),
        (
            json!({"expiryWarningWindow": "0s"}),
            "inventory.expiryWarningWindow must be longer than 0s",
        ),
        (
            json!({"cleanup": {"mode": "Revoke", "rules": [{"owners": ["*"], "commentContains": "x"}]}}),
            "cleanup rules must name owners",
        ),
        (
            json!({"cleanup": {"mode": "Revoke", "rules": [{"owners": [], "commentContains": "x"}]}}),
            "should have at least 1 items",
        ),
        (
            json!({"cleanup": {"mode": "Revoke", "rules": [{"owners": ["bob"], "commentContains": ""}]}}),
            "should be at least 1 chars long",
        ),
        (
            json!({"cleanup": {"mode": "Revoke", "rules": []}}),
            "should have at least 1 items",
        ),
        (
            json!({"cleanup": {"mode": "Sometimes", "rules": [{"owners": ["bob"], "commentContains": "x"}]}}),
            "supported values",
        ),
    ] {
        let err = w
            .workspaces()
            .patch(
                "ws",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"inventory": inventory}})),
            )
            .await
            .expect_err(&format!("{inventory} must be refused"));
        assert!(err.to_string().contains(message), "{inventory}: {err}");
    }
}

async fn workspace_status(
    w: &World,
    name: &str,
) -> Option<databricks_token_operator::crd::WorkspaceStatus> {
    w.workspaces()
        .get(name)
        .await
        .expect("read workspace")
        .status
}

#[tokio::test]
async fn the_ready_check_never_takes_over_the_inventory_status_so_turning_it_off_clears_it() {
    let mut w = World::new("inv-owner").await;
    w.start_operator();
    enable_inventory(&w, json!({"interval": "1h"})).await;
    wait_inventory(&w, "an inventory", |i| i.total == 1).await;
    // The Ready check writes status now: a spec change makes it check again and record the
    // new generation.
    w.patch_spec(
        &w.workspaces(),
        "ws",
        json!({"rateLimit": {"requestsPerSecond": 10}}),
    )
    .await;
    let generation = w
        .workspaces()
        .get("ws")
        .await
        .expect("read")
        .metadata
        .generation;
    eventually(
        "the Ready check of the new generation written",
        WAIT,
        || async {
            workspace_status(&w, "ws")
                .await
                .filter(|s| s.observed_generation == generation)
        },
    )
    .await;
    let ws = w.workspaces().get("ws").await.expect("read workspace");
    let owners: Vec<(String, bool)> = ws
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .map(|m| {
            let fields = serde_json::to_string(&m.fields_v1).unwrap_or_default();
            (
                m.manager.unwrap_or_default(),
                fields.contains("f:inventory"),
            )
        })
        .collect();
    assert!(
        owners.contains(&("databricks-token-operator".into(), false))
            && owners.contains(&("databricks-token-operator-inventory".into(), true)),
        "{owners:?}"
    );
    assert!(
        workspace_status(&w, "ws")
            .await
            .and_then(|s| s.inventory)
            .is_some()
    );

    w.patch_spec(&w.workspaces(), "ws", json!({"inventory": null}))
        .await;
    eventually("status.inventory removed", WAIT, || async {
        workspace_status(&w, "ws")
            .await
            .filter(|s| s.inventory.is_none())
    })
    .await;
    let op = w.operator.as_ref().expect("operator");
    eventually("inventory series gone", WAIT, || async {
        (!op.metrics().await.contains("dbtoken_inventory_tokens{")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_credential_that_may_not_list_every_token_shows_why_and_backs_off() {
    let mut w = World::new("inv-denied").await;
    let user = w.emulator.add_user("analyst@example.com", false);
    w.create_secret("analyst", &[("token", &user.pat)]).await;
    w.apply_workspace_spec(
        "plain",
        json!({"auth": {"pat": {"secretRef": {"name": "analyst"}}},
               "inventory": {"interval": "10s"}}),
    )
    .await;
    w.start_operator();
    let status = eventually("the inventory error", WAIT, || async {
        workspace_status(&w, "plain")
            .await
            .and_then(|s| s.inventory)
            .filter(|i| i.error.is_some())
    })
    .await;
    let error = status.error.unwrap_or_default();
    assert!(error.starts_with("PERMISSION_DENIED"), "{error}");
    assert!(status.last_inventory_time.is_none(), "never listed");
    let events = w.events_of("plain").await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "InventoryFailed" && n.contains("PERMISSION_DENIED")),
        "{events:?}"
    );
    // The retry waits (10 s after a first failure, doubling up to the interval), not the
    // loop's 2 s tick.
    let lists = || w.emulator.stats().count("token-management/list");
    let first = lists();
    let since = std::time::Instant::now();
    eventually("a retry", WAIT, || async {
        (lists() > first).then_some(())
    })
    .await;
    assert!(
        since.elapsed() >= Duration::from_secs(7),
        "retried after {:?}",
        since.elapsed()
    );
}
