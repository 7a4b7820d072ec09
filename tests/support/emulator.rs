//! The Databricks emulator as the root crate's tests use it: one in-process workspace with an
//! admin, short names for the faults tests stage, and waits on the emulator's own view of tokens
//! (what Databricks would accept), independent of the Kubernetes side.

#![allow(dead_code)]

use std::time::Duration;

use databricks_emulator::{
    DropMode, Emulator, EmulatorConfig, EmulatorHandle, FaultRule, Faults, LiveToken, SeededUser,
};

/// An emulator with an admin user whose PAT never expires.
pub struct TestWorkspace {
    pub emulator: EmulatorHandle,
    pub admin: SeededUser,
}

impl TestWorkspace {
    pub async fn start() -> Self {
        Self::start_with(EmulatorConfig::default()).await
    }

    pub async fn start_with(config: EmulatorConfig) -> Self {
        let emulator = Emulator::start(config).await.expect("start the emulator");
        let admin = emulator.add_user("admin@example.com", true);
        Self { emulator, admin }
    }

    /// The workspace host (plain http: the operator needs its insecure flag).
    pub fn host(&self) -> String {
        self.emulator.base_url()
    }

    /// Live tokens whose comment contains `tag` (e.g. `dbtoken.dev/uid=<uid>`).
    pub fn tokens_tagged(&self, tag: &str) -> Vec<LiveToken> {
        self.emulator
            .live_tokens()
            .into_iter()
            .filter(|t| t.comment.as_deref().is_some_and(|c| c.contains(tag)))
            .collect()
    }

    /// Wait until the token with this id is no longer live (revoked or expired).
    pub async fn wait_gone(&self, token_id: &str, timeout: Duration) {
        let emulator = &self.emulator;
        wait(&format!("token {token_id} gone"), timeout, || {
            emulator
                .live_tokens()
                .iter()
                .all(|t| t.token_id != token_id)
        })
        .await
    }

    /// Wait until exactly `n` live tokens carry `tag`.
    pub async fn wait_tagged(&self, tag: &str, n: usize, timeout: Duration) {
        wait(&format!("{n} live tokens tagged {tag}"), timeout, || {
            self.tokens_tagged(tag).len() == n
        })
        .await
    }

    /// The next `n` requests to `endpoint` fail with `status` (500 or 503).
    pub fn fail_next(&self, endpoint: &str, n: u64, status: u16) {
        self.add_rule(FaultRule {
            error_rate: 1.0,
            error_status: Some(status),
            limit: Some(n),
            ..FaultRule::on(endpoint)
        });
    }

    /// The next `n` requests to `endpoint` get 429, with `Retry-After` when given.
    pub fn rate_limit_next(&self, endpoint: &str, n: u64, retry_after_seconds: Option<u64>) {
        self.add_rule(FaultRule {
            rate_limit_rate: 1.0,
            retry_after_seconds,
            limit: Some(n),
            ..FaultRule::on(endpoint)
        });
    }

    /// The next create on `endpoint` ("token/create" or "obo/create") mints a token and loses
    /// the response (`DropMode::Close` closes the connection; the others answer 502/504).
    pub fn drop_next_create(&self, endpoint: &str, mode: DropMode) {
        self.add_rule(FaultRule {
            drop_response_after_create_rate: 1.0,
            drop_mode: mode,
            limit: Some(1),
            ..FaultRule::on(endpoint)
        });
    }

    /// Add a rule to those already set (their hit counts carry on).
    fn add_rule(&self, rule: FaultRule) {
        self.emulator.add_fault(rule);
    }

    /// Remove every fault rule.
    pub fn heal(&self) {
        self.emulator.set_faults(Faults::default());
    }
}

async fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
