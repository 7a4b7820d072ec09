//! Chaos: many short-lived tokens, the operator SIGKILLed at random moments, and Databricks
//! answering with 5xx, 429 (with Retry-After), latency and dropped create responses.
//!
//! Checked all along: every Ready Secret holds a token Databricks accepts (lost = 0).
//! Checked at the end, once faults stop: every live token tagged for a resource is its current
//! token or one inside its grace period (leaked = 0).
//!
//! Size and length come from CHAOS_TOKENS (default 8) and CHAOS_SECONDS (default 45); the long
//! run in BENCHMARKS.md uses larger values.

mod support;

use std::{collections::HashMap, time::Duration};

use databricks_emulator::{FaultRule, Faults, Latency};
use databricks_token_operator::crd::DatabricksToken;
use kube::api::ListParams;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;
use support::operator::eventually;
use support::world::{World, condition_is};

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
        ],
        seed: Some(7),
    }
}

/// Tokens tagged for a resource that are neither its current one nor in their grace period.
fn leaked(world: &World, tokens: &[DatabricksToken], now_ms: i64) -> Vec<String> {
    let by_uid: HashMap<String, &DatabricksToken> = tokens
        .iter()
        .map(|t| (t.metadata.uid.clone().unwrap_or_default(), t))
        .collect();
    let mut leaks = Vec::new();
    for live in world.emulator.live_tokens() {
        let Some(comment) = &live.comment else {
            continue;
        };
        let Some(uid) = databricks_token_operator::databricks::tag_owner(comment) else {
            continue;
        };
        let Some(owner) = by_uid.get(uid) else {
            leaks.push(format!("{} (resource gone)", live.token_id));
            continue;
        };
        let status = owner.status.clone().unwrap_or_default();
        let current = status.token_id.as_deref() == Some(live.token_id.as_str());
        let in_grace = status.previous_tokens.iter().any(|p| {
            p.token_id == live.token_id
                && databricks_token_operator::secret::parse_time(&p.revoke_after)
                    .is_some_and(|t| t > now_ms)
        });
        if !current && !in_grace {
            leaks.push(live.token_id.clone());
        }
    }
    leaks
}

#[tokio::test]
async fn tokens_are_never_lost_or_leaked_under_kills_and_faults() {
    let n = env_or("CHAOS_TOKENS", 8) as usize;
    let seconds = env_or("CHAOS_SECONDS", 45);
    let mut w = World::new("chaos").await;
    let mut options = w.options();
    options.log_filter = "info";
    w.start_operator_with(options.clone());
    for i in 0..n {
        w.create_token(
            &format!("c{i}"),
            json!({"workspaceRef": {"name": "ws"}, "lifetime": "24s", "renewBefore": "16s", "rotation": {"gracePeriod": "3s"}}),
        )
        .await;
    }
    for i in 0..n {
        w.wait_ready(&format!("c{i}")).await;
    }
    w.emulator.set_faults(faults());

    let mut rng = StdRng::seed_from_u64(42);
    let mut kills = 0u32;
    let mut lost = Vec::new();
    let mut checks = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut next_kill =
        tokio::time::Instant::now() + Duration::from_millis(rng.random_range(2_000..8_000));
    while tokio::time::Instant::now() < deadline {
        if tokio::time::Instant::now() >= next_kill {
            w.operator.as_mut().unwrap().kill();
            kills += 1;
            w.start_operator_with(options.clone());
            next_kill =
                tokio::time::Instant::now() + Duration::from_millis(rng.random_range(2_000..8_000));
        }
        // Lost: a resource that says Ready while its Secret's token is refused.
        for t in w.tokens().list(&ListParams::default()).await.unwrap() {
            let name = t.metadata.name.clone().unwrap();
            if !condition_is(&t, "Ready", "True") {
                continue;
            }
            let Some(value) = w.secret_value(&name, "token").await else {
                continue;
            };
            checks += 1;
            // Re-read: the check must not race a rotation that just replaced the Secret.
            if !w.emulator.accepts(&value)
                && w.secret_value(&name, "token").await.as_deref() == Some(value.as_str())
            {
                lost.push(name);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await; // sampling interval of the checker
    }

    w.emulator.clear_faults();
    let stats = w.emulator.stats();
    let faults_injected: u64 = stats
        .requests
        .iter()
        .filter(|r| matches!(r.status, 0 | 429 | 500 | 503))
        .map(|r| r.count)
        .sum();
    let rotations = stats.count("token/create");
    // Faults off: the operator settles, sweeps orphans, and revokes what waited out its grace.
    let leaks = eventually(
        "no leaked tokens after settling",
        Duration::from_secs(90),
        || async {
            let tokens = w.tokens().list(&ListParams::default()).await.unwrap().items;
            let all_ready = tokens.iter().all(|t| condition_is(t, "Ready", "True"));
            let leaks = leaked(&w, &tokens, databricks_token_operator::now_millis());
            (all_ready && leaks.is_empty()).then_some(leaks)
        },
    )
    .await;
    println!(
        "chaos: tokens={n} seconds={seconds} kills={kills} creates={rotations} faults_injected={faults_injected} checks={checks} lost={} leaked={}",
        lost.len(),
        leaks.len()
    );
    assert!(kills >= 3, "the run must actually kill the operator");
    assert!(faults_injected > 0, "the run must actually inject faults");
    assert!(checks > 0);
    assert!(
        lost.is_empty(),
        "Ready resources whose Secret token was refused: {lost:?}"
    );
}
