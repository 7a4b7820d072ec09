//! `kubectl dbtoken rotate`: request rotations through the documented annotation, and
//! optionally wait for the new tokens.

use std::fmt::Write as _;

use databricks_token_operator::{
    crd::{ConditionStatus, DatabricksToken, find_condition},
    secret::{ANN_ROTATE_REQUESTED, format_time},
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::wait::await_condition,
};
use serde::Serialize;

use crate::{
    Outcome,
    cli::{Format, RotateArgs},
    client::Target,
    output::{self, Report},
};

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    pub namespace: String,
    pub name: String,
    pub requested_at: String,
    pub previous_token_id: Option<String>,
    /// With --wait: the token now in the Secret, once it differs from the previous one.
    pub token_id: Option<String>,
    /// With --wait: whether the new token arrived in time.
    pub completed: Option<bool>,
}

#[derive(Serialize, Debug)]
pub struct RotateReport {
    pub rotations: Vec<Rotation>,
}

pub async fn run(target: &Target, args: &RotateArgs, format: Format) -> anyhow::Result<Outcome> {
    let chosen = choose(target, args).await?;
    if chosen.is_empty() {
        anyhow::bail!("no DatabricksToken matches");
    }
    // Each request carries its own time, so a repeated request is a new value and triggers.
    let requested_at = format_time(databricks_token_operator::now_millis());
    let mut rotations = vec![];
    for token in &chosen {
        let ns = token.namespace().unwrap_or_default();
        let api: Api<DatabricksToken> = Api::namespaced(target.client.clone(), &ns);
        let patch =
            serde_json::json!({"metadata": {"annotations": {ANN_ROTATE_REQUESTED: requested_at}}});
        api.patch(
            &token.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        rotations.push(Rotation {
            namespace: ns,
            name: token.name_any(),
            requested_at: requested_at.clone(),
            previous_token_id: token.status.as_ref().and_then(|s| s.token_id.clone()),
            token_id: None,
            completed: None,
        });
    }
    if args.wait {
        let deadline = tokio::time::Instant::now() + args.timeout;
        for r in &mut rotations {
            let api: Api<DatabricksToken> = Api::namespaced(target.client.clone(), &r.namespace);
            let previous = r.previous_token_id.clone();
            let replaced = move |t: Option<&DatabricksToken>| {
                t.and_then(|t| replacement(t, previous.as_deref()))
                    .is_some()
            };
            let waited =
                tokio::time::timeout_at(deadline, await_condition(api, &r.name, replaced)).await;
            let now = match waited {
                Ok(Ok(Some(t))) => replacement(&t, r.previous_token_id.as_deref()),
                _ => None,
            };
            r.completed = Some(now.is_some());
            r.token_id = now;
        }
    }
    let report = RotateReport { rotations };
    output::print(&report, format)?;
    let incomplete = report.rotations.iter().any(|r| r.completed == Some(false));
    Ok(if incomplete {
        Outcome::NotFine
    } else {
        Outcome::Fine
    })
}

/// The token a rotation produced: Ready, and another id than before.
pub fn replacement(token: &DatabricksToken, previous: Option<&str>) -> Option<String> {
    let status = token.status.as_ref()?;
    let ready = find_condition(&status.conditions, "Ready")
        .is_some_and(|c| c.status == ConditionStatus::True);
    let id = status.token_id.as_deref()?;
    (ready && Some(id) != previous).then(|| id.to_string())
}

async fn choose(target: &Target, args: &RotateArgs) -> anyhow::Result<Vec<DatabricksToken>> {
    let api: Api<DatabricksToken> = if args.all_namespaces {
        Api::all(target.client.clone())
    } else {
        Api::namespaced(target.client.clone(), &target.namespace)
    };
    if args.all {
        let mut params = ListParams::default();
        if let Some(selector) = &args.selector {
            params = params.labels(selector);
        }
        return Ok(api.list(&params).await?.items);
    }
    let mut chosen = vec![];
    for name in &args.names {
        let token = api.get_opt(name).await?.ok_or_else(|| {
            anyhow::anyhow!("DatabricksToken {}/{name} not found", target.namespace)
        })?;
        chosen.push(token);
    }
    Ok(chosen)
}

impl Report for RotateReport {
    fn text(&self) -> String {
        let mut out = String::new();
        for r in &self.rotations {
            let what = match (r.completed, &r.token_id) {
                (None, _) => "rotation requested".to_string(),
                (Some(true), Some(id)) => format!("rotated, new token {id}"),
                _ => "rotation requested, but no new token arrived in time".to_string(),
            };
            let _ = writeln!(out, "{}/{}: {what}", r.namespace, r.name);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use databricks_token_operator::crd::{Condition, DatabricksTokenStatus};

    fn token(ready: bool, id: Option<&str>) -> DatabricksToken {
        let mut t: DatabricksToken = serde_json::from_value(serde_json::json!({
            "apiVersion": "dbtoken.dev/v1alpha1", "kind": "DatabricksToken",
            "metadata": {"name": "t", "namespace": "ns"},
            "spec": {"workspaceRef": {"name": "ws"}, "lifetime": "1h"}
        }))
        .unwrap();
        let status = if ready {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        t.status = Some(DatabricksTokenStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status,
                reason: "R".into(),
                message: String::new(),
                last_transition_time: String::new(),
                observed_generation: None,
            }],
            token_id: id.map(String::from),
            ..Default::default()
        });
        t
    }

    #[test]
    fn only_a_ready_token_with_another_id_is_the_replacement() {
        assert_eq!(
            replacement(&token(true, Some("new")), Some("old")).as_deref(),
            Some("new")
        );
        assert_eq!(replacement(&token(true, Some("old")), Some("old")), None);
        assert_eq!(replacement(&token(false, Some("new")), Some("old")), None);
        assert_eq!(replacement(&token(true, None), Some("old")), None);
        assert_eq!(
            replacement(&token(true, Some("first")), None).as_deref(),
            Some("first")
        );
    }
}
