//! `kubectl dbtoken status NAME`: one token on one screen.

use std::fmt::Write as _;

use databricks_token_operator::{
    crd::{
        ClusterDatabricksWorkspace, Condition, ConditionStatus, DatabricksToken,
        DatabricksWorkspace, Timestamp, WorkspaceKind, find_condition,
    },
    schedule::EpochMillis,
    secret,
};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::{Api, ResourceExt, api::ListParams};
use serde::Serialize;

use crate::{
    Outcome,
    cli::Format,
    client::Target,
    output::{self, Report},
    when,
};

/// How many of the token's most recent events the report shows.
const RECENT_EVENTS: usize = 5;

#[derive(Serialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub namespace: String,
    pub name: String,
    pub ready: bool,
    pub reason: String,
    pub message: String,
    pub conditions: Vec<ConditionLine>,
    pub token_id: Option<String>,
    pub created: Option<Timestamp>,
    pub expires: Option<Timestamp>,
    pub renews: Option<Timestamp>,
    pub last_rotation: Option<Timestamp>,
    pub previous_tokens: Vec<PreviousLine>,
    /// Places this resource may have left a token it does not record, still to be swept.
    pub pending_sweeps: Vec<String>,
    pub secret: SecretView,
    pub workspace: WorkspaceView,
    pub events: Vec<EventLine>,
    /// What the operator does next, in words.
    pub next: String,
    /// When the report was made (milliseconds since the epoch), for the relative times.
    #[serde(skip)]
    pub now: EpochMillis,
}

#[derive(Serialize, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConditionLine {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PreviousLine {
    pub token_id: String,
    pub revoke_after: Timestamp,
}

#[derive(Serialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretView {
    pub name: String,
    /// Key names only: the plugin never reads, prints or keeps a value.
    pub keys: Vec<String>,
    /// Why the keys are not shown (missing, or not readable with the user's RBAC).
    pub problem: Option<String>,
}

#[derive(Serialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceView {
    pub kind: String,
    pub name: String,
    pub ready: Option<bool>,
    pub reason: String,
    pub message: String,
}

#[derive(Serialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    pub time: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
}

pub async fn run(target: &Target, name: &str, format: Format) -> anyhow::Result<Outcome> {
    let report = gather(target, name).await?;
    output::print(&report, format)?;
    Ok(if report.ready {
        Outcome::Fine
    } else {
        Outcome::NotFine
    })
}

async fn gather(target: &Target, name: &str) -> anyhow::Result<StatusReport> {
    let ns = &target.namespace;
    let tokens: Api<DatabricksToken> = Api::namespaced(target.client.clone(), ns);
    let token = tokens
        .get_opt(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("DatabricksToken {ns}/{name} not found"))?;
    let now = databricks_token_operator::now_millis();
    let mut report = from_token(&token, now);

    let secrets: Api<Secret> = Api::namespaced(target.client.clone(), ns);
    match secrets.get_opt(&report.secret.name).await {
        Ok(Some(s)) => {
            report.secret.keys = s.data.unwrap_or_default().into_keys().collect();
            report.created = secret::read_record(&s.metadata)
                .map(|r| Timestamp::from_millis(r.current.creation));
        }
        Ok(None) => report.secret.problem = Some("the Secret does not exist".into()),
        Err(e) => report.secret.problem = Some(format!("cannot read the Secret: {e}")),
    }
    report.workspace = workspace_of(target, &token).await;
    report.events = events_of(target, &token).await;
    Ok(report)
}

/// Everything the DatabricksToken itself says.
pub fn from_token(token: &DatabricksToken, now: EpochMillis) -> StatusReport {
    let status = token.status.clone().unwrap_or_default();
    let ready = find_condition(&status.conditions, "Ready");
    StatusReport {
        namespace: token.namespace().unwrap_or_default(),
        name: token.name_any(),
        ready: ready.is_some_and(|c| c.status == ConditionStatus::True),
        reason: ready
            .map(|c| c.reason.clone())
            .unwrap_or_else(|| "NotReconciled".into()),
        message: ready
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "the operator has not reported on this token yet".into()),
        conditions: status.conditions.iter().map(condition_line).collect(),
        token_id: status.token_id.clone(),
        created: None,
        expires: status.expiry_time,
        renews: status.renewal_time,
        last_rotation: status.last_rotation_time,
        previous_tokens: status
            .previous_tokens
            .iter()
            .map(|p| PreviousLine {
                token_id: p.token_id.clone(),
                revoke_after: p.revoke_after,
            })
            .collect(),
        pending_sweeps: status
            .pending_sweeps
            .iter()
            .map(|p| {
                let owner = match (&p.application_id, &p.identity) {
                    (Some(app), _) => format!("service principal {app}"),
                    (None, Some(id)) => format!("identity {id}"),
                    (None, None) => "any owner".to_string(),
                };
                format!("{} at {}, {owner}", p.workspace, p.host)
            })
            .collect(),
        secret: SecretView {
            name: status
                .secret_name
                .clone()
                .unwrap_or_else(|| secret::secret_name(token)),
            ..Default::default()
        },
        workspace: WorkspaceView::default(),
        events: vec![],
        next: next_step(token, now),
        now,
    }
}

fn condition_line(c: &Condition) -> ConditionLine {
    ConditionLine {
        type_: c.type_.clone(),
        status: format!("{:?}", c.status),
        reason: c.reason.clone(),
        message: c.message.clone(),
    }
}

/// What the operator does next with this token, from what it has recorded.
pub fn next_step(token: &DatabricksToken, now: EpochMillis) -> String {
    if token.metadata.deletion_timestamp.is_some() {
        return format!(
            "finalizing: {:?} its tokens and the Secret, then removing the finalizer",
            token.spec.deletion_policy
        );
    }
    let Some(status) = token.status.as_ref() else {
        return "waiting for the operator to reconcile it".into();
    };
    let ready = find_condition(&status.conditions, "Ready");
    if let Some(c) = ready.filter(|c| c.status != ConditionStatus::True) {
        return format!("retrying with backoff after {}: {}", c.reason, c.message);
    }
    if let Some(c) =
        find_condition(&status.conditions, "Degraded").filter(|c| c.status == ConditionStatus::True)
    {
        return format!(
            "retrying with backoff after {} (the current token still works)",
            c.reason
        );
    }
    if status.token_id.is_none() {
        return "minting the first token".into();
    }
    let revoke = status
        .previous_tokens
        .iter()
        .map(|p| (p.revoke_after.as_millis(), p))
        .min_by_key(|(at, _)| *at);
    let renewal = status.renewal_time.map(Timestamp::as_millis);
    match (revoke, renewal) {
        (Some((at, p)), renewal) if renewal.is_none_or(|r| at <= r) => format!(
            "revoke previous token {} {}",
            when::short_id(&p.token_id),
            when::relative(at, now)
        ),
        (_, Some(r)) => format!("rotate {}", when::relative(r, now)),
        _ => "nothing scheduled".into(),
    }
}

async fn workspace_of(target: &Target, token: &DatabricksToken) -> WorkspaceView {
    let r = &token.spec.workspace_ref;
    let mut view = WorkspaceView {
        kind: format!("{:?}", r.kind),
        name: r.name.clone(),
        ..Default::default()
    };
    let conditions = match r.kind {
        WorkspaceKind::DatabricksWorkspace => {
            let api: Api<DatabricksWorkspace> =
                Api::namespaced(target.client.clone(), &target.namespace);
            api.get_opt(&r.name)
                .await
                .map(|ws| ws.map(|ws| ws.status.unwrap_or_default().conditions))
        }
        WorkspaceKind::ClusterDatabricksWorkspace => {
            let api: Api<ClusterDatabricksWorkspace> = Api::all(target.client.clone());
            api.get_opt(&r.name)
                .await
                .map(|ws| ws.map(|ws| ws.status.unwrap_or_default().conditions))
        }
    };
    match conditions {
        Ok(Some(conditions)) => match find_condition(&conditions, "Ready") {
            Some(c) => {
                view.ready = Some(c.status == ConditionStatus::True);
                view.reason = c.reason.clone();
                view.message = c.message.clone();
            }
            None => view.reason = "NotChecked".into(),
        },
        Ok(None) => view.reason = "NotFound".into(),
        Err(e) => {
            view.reason = "NotReadable".into();
            view.message = e.to_string();
        }
    }
    view
}

async fn events_of(target: &Target, token: &DatabricksToken) -> Vec<EventLine> {
    let api: Api<Event> = Api::namespaced(target.client.clone(), &target.namespace);
    let selector = format!("involvedObject.uid={}", token.uid().unwrap_or_default());
    let Ok(list) = api.list(&ListParams::default().fields(&selector)).await else {
        return vec![];
    };
    let mut events: Vec<EventLine> = list
        .items
        .into_iter()
        .map(|e| EventLine {
            time: event_time(&e),
            type_: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            message: e.message.unwrap_or_default(),
            count: e.count.unwrap_or(1),
        })
        .collect();
    events.sort_by(|a, b| a.time.cmp(&b.time));
    let skip = events.len().saturating_sub(RECENT_EVENTS);
    events.split_off(skip)
}

/// The latest time an event was seen, as RFC 3339.
fn event_time(e: &Event) -> String {
    let series = e
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0.as_millisecond());
    let micro = e.event_time.as_ref().map(|t| t.0.as_millisecond());
    let last = e.last_timestamp.as_ref().map(|t| t.0.as_millisecond());
    series
        .or(last)
        .or(micro)
        .map(secret::format_time)
        .unwrap_or_default()
}

impl Report for StatusReport {
    fn text(&self) -> String {
        let now = self.now;
        let mut out = String::new();
        let state = if self.ready { "Ready" } else { "NOT Ready" };
        let _ = writeln!(
            out,
            "DatabricksToken {}/{}: {state} ({})",
            self.namespace, self.name, self.reason
        );
        if !self.message.is_empty() {
            let _ = writeln!(out, "  {}", self.message);
        }
        let time = |t: &Option<Timestamp>| t.map_or("-".to_string(), |t| when::annotated(t, now));
        let _ = writeln!(
            out,
            "Token:      {}",
            self.token_id.as_deref().unwrap_or("-")
        );
        let _ = writeln!(out, "  created   {}", time(&self.created));
        let _ = writeln!(out, "  expires   {}", time(&self.expires));
        let _ = writeln!(out, "  renews    {}", time(&self.renews));
        let _ = writeln!(out, "  rotated   {}", time(&self.last_rotation));
        let keys = match &self.secret.problem {
            Some(problem) => problem.clone(),
            None => format!("keys: {}", self.secret.keys.join(", ")),
        };
        let _ = writeln!(out, "Secret:     {} ({keys})", self.secret.name);
        if self.previous_tokens.is_empty() {
            let _ = writeln!(out, "Previous:   none");
        }
        for p in &self.previous_tokens {
            let _ = writeln!(
                out,
                "Previous:   {} revoked after {}",
                p.token_id,
                when::annotated(p.revoke_after, now)
            );
        }
        for place in &self.pending_sweeps {
            let _ = writeln!(
                out,
                "To sweep:   {place} (an interrupted create may have left a token there)"
            );
        }
        let ws_state = match self.workspace.ready {
            Some(true) => "Ready".to_string(),
            Some(false) => format!(
                "NOT Ready ({}: {})",
                self.workspace.reason, self.workspace.message
            ),
            None => self.workspace.reason.clone(),
        };
        let _ = writeln!(
            out,
            "Workspace:  {} {}: {ws_state}",
            self.workspace.kind, self.workspace.name
        );
        let _ = writeln!(out, "Conditions:");
        for c in &self.conditions {
            let message = match c.message.as_str() {
                "" => String::new(),
                m => format!(": {m}"),
            };
            let _ = writeln!(out, "  {}={} {}{message}", c.type_, c.status, c.reason);
        }
        let _ = writeln!(out, "Events (latest {RECENT_EVENTS}):");
        if self.events.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for e in &self.events {
            let seen = secret::parse_time(&e.time).map_or("-".into(), |t| when::relative(t, now));
            let _ = writeln!(
                out,
                "  {seen:>8}  {:<7} {} (x{}): {}",
                e.type_, e.reason, e.count, e.message
            );
        }
        let _ = writeln!(out, "Next:       {}", self.next);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use databricks_token_operator::crd::{DatabricksTokenStatus, PreviousToken};

    const NOW: EpochMillis = 1_800_000_000_000;

    fn stamp(offset_secs: i64) -> Timestamp {
        Timestamp::from_millis(NOW + offset_secs * 1000)
    }

    fn at(offset_secs: i64) -> String {
        stamp(offset_secs).to_string()
    }

    fn condition(type_: &str, status: ConditionStatus, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: format!("{reason} message"),
            last_transition_time: at(-60),
            observed_generation: None,
        }
    }

    fn token(status: Option<DatabricksTokenStatus>) -> DatabricksToken {
        let mut t: DatabricksToken = serde_json::from_value(serde_json::json!({
            "apiVersion": "dbtoken.dev/v1alpha1", "kind": "DatabricksToken",
            "metadata": {"name": "reports", "namespace": "team-a"},
            "spec": {"workspaceRef": {"name": "prod"}, "lifetime": "1h"}
        }))
        .unwrap();
        t.status = status;
        t
    }

    fn ready_with(previous: Vec<(&str, i64)>, renews_in: i64) -> DatabricksTokenStatus {
        DatabricksTokenStatus {
            conditions: vec![condition("Ready", ConditionStatus::True, "TokenReady")],
            token_id: Some("c".repeat(64)),
            renewal_time: Some(stamp(renews_in)),
            previous_tokens: previous
                .into_iter()
                .map(|(id, secs)| PreviousToken {
                    token_id: id.repeat(64),
                    revoke_after: stamp(secs),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn next_step_names_what_the_operator_does_next() {
        let failing = DatabricksTokenStatus {
            conditions: vec![condition("Ready", ConditionStatus::False, "QuotaExceeded")],
            ..Default::default()
        };
        let degraded = DatabricksTokenStatus {
            conditions: vec![
                condition("Ready", ConditionStatus::True, "TokenReady"),
                condition("Degraded", ConditionStatus::True, "Unavailable"),
            ],
            token_id: Some("c".repeat(64)),
            ..Default::default()
        };
        let unminted = DatabricksTokenStatus {
            conditions: vec![condition("Ready", ConditionStatus::True, "TokenReady")],
            ..Default::default()
        };
        let cases = [
            (None, "waiting for the operator to reconcile it"),
            (
                Some(failing),
                "retrying with backoff after QuotaExceeded: QuotaExceeded message",
            ),
            (
                Some(degraded),
                "retrying with backoff after Unavailable (the current token still works)",
            ),
            (Some(unminted), "minting the first token"),
            (Some(ready_with(vec![], 2400)), "rotate in 40m"),
            (
                Some(ready_with(vec![("a", 600), ("b", 300)], 2400)),
                "revoke previous token bbbbbbbbbbbb in 5m",
            ),
            (Some(ready_with(vec![("a", 3000)], 2400)), "rotate in 40m"),
            (Some(ready_with(vec![], -5)), "rotate 5s ago"),
        ];
        for (status, expected) in cases {
            assert_eq!(
                next_step(&token(status.clone()), NOW),
                expected,
                "{status:?}"
            );
        }
    }

    #[test]
    fn a_deleted_token_is_finalizing() {
        let mut t = token(Some(ready_with(vec![], 2400)));
        t.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Default::default(),
        ));
        assert_eq!(
            next_step(&t, NOW),
            "finalizing: Revoke its tokens and the Secret, then removing the finalizer"
        );
    }

    #[test]
    fn the_report_reads_ready_and_why_from_the_ready_condition() {
        let report = from_token(&token(Some(ready_with(vec![("a", 300)], 2400))), NOW);
        assert!(report.ready);
        assert_eq!(report.reason, "TokenReady");
        assert_eq!(report.secret.name, "reports");
        let text = report.text();
        assert!(
            text.starts_with("DatabricksToken team-a/reports: Ready (TokenReady)\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("Previous:   {} revoked after", "a".repeat(64))),
            "{text}"
        );
        assert!(
            text.contains("Next:       revoke previous token aaaaaaaaaaaa in 5m"),
            "{text}"
        );

        assert!(!text.contains("To sweep:"), "{text}");

        let unreconciled = from_token(&token(None), NOW);
        assert!(!unreconciled.ready);
        assert_eq!(unreconciled.reason, "NotReconciled");
    }

    #[test]
    fn a_place_still_to_sweep_is_named() {
        let mut status = ready_with(vec![], 2400);
        status.pending_sweeps =
            vec![serde_json::from_value(serde_json::json!({
            "workspace": {"kind": "DatabricksWorkspace", "namespace": "team-a", "name": "old"},
            "host": "https://old.example",
        }))
        .unwrap()];
        let text = from_token(&token(Some(status)), NOW).text();
        assert!(
            text.contains(
                "To sweep:   DatabricksWorkspace team-a/old at https://old.example, any owner"
            ),
            "{text}"
        );
    }
}
