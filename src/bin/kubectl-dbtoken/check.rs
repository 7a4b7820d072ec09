//! `kubectl dbtoken check`: is the operator installed and working, and what may I do?

use std::fmt::Write as _;

use databricks_token_operator::{
    crd::{
        ClusterDatabricksWorkspace, Condition, ConditionStatus, DatabricksWorkspace, all_crds,
        find_condition,
    },
    now_millis,
};
use k8s_openapi::{
    api::{
        authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        },
        coordination::v1::Lease,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, PostParams},
};
use serde::Serialize;

use crate::{
    Outcome,
    cli::{CheckArgs, Format},
    client::Target,
    output::{self, Report},
};

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckLine {
    /// crd, operator, workspace or rbac.
    pub area: String,
    pub subject: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Serialize, Debug)]
pub struct CheckReport {
    pub checks: Vec<CheckLine>,
}

impl CheckReport {
    /// RBAC lines inform; every other line must pass.
    fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok || c.area == "rbac")
    }
}

/// The actions an application team's on-call takes, checked for the current user.
const ACTIONS: &[(&str, &str, &str)] = &[
    ("get", "dbtoken.dev", "databrickstokens"),
    ("list", "dbtoken.dev", "databrickstokens"),
    ("create", "dbtoken.dev", "databrickstokens"),
    ("patch", "dbtoken.dev", "databrickstokens"),
    ("delete", "dbtoken.dev", "databrickstokens"),
    ("get", "", "secrets"),
    ("list", "", "events"),
    ("get", "dbtoken.dev", "databricksworkspaces"),
];

pub async fn run(target: &Target, args: &CheckArgs, format: Format) -> anyhow::Result<Outcome> {
    let mut checks = crds(target).await;
    checks.push(leader(target, args).await);
    checks.extend(workspaces(target).await);
    checks.extend(rbac(target).await);
    let report = CheckReport { checks };
    output::print(&report, format)?;
    Ok(if report.passed() {
        Outcome::Fine
    } else {
        Outcome::NotFine
    })
}

async fn crds(target: &Target) -> Vec<CheckLine> {
    let api: Api<CustomResourceDefinition> = Api::all(target.client.clone());
    let mut lines = vec![];
    for expected in all_crds() {
        let name = expected.name_any();
        let line = |ok: bool, detail: String| CheckLine {
            area: "crd".into(),
            subject: name.clone(),
            ok,
            detail,
        };
        lines.push(match api.get_opt(&name).await {
            Ok(Some(installed)) => crd_verdict(&installed, &expected, line),
            Ok(None) => line(false, "not installed (helm install the chart)".into()),
            Err(e) => line(false, format!("cannot read: {e}")),
        });
    }
    lines
}

/// Established, and serving the versions (with the schema) this plugin was built with.
pub fn crd_verdict(
    installed: &CustomResourceDefinition,
    expected: &CustomResourceDefinition,
    line: impl Fn(bool, String) -> CheckLine,
) -> CheckLine {
    let established = installed.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Established" && c.status == "True")
    });
    let versions = |crd: &CustomResourceDefinition| {
        crd.spec
            .versions
            .iter()
            .map(|v| v.name.clone())
            .collect::<Vec<_>>()
            .join(",")
    };
    if !established {
        return line(false, "not established".into());
    }
    let same_schema = serde_json::to_value(&installed.spec.versions).ok()
        == serde_json::to_value(&expected.spec.versions).ok();
    if same_schema {
        line(
            true,
            format!("established, versions {}", versions(installed)),
        )
    } else {
        line(
            false,
            format!(
                "versions {} differ from this plugin's {} (upgrade the chart's CRDs, or use the plugin of the installed release)",
                versions(installed),
                versions(expected)
            ),
        )
    }
}

async fn leader(target: &Target, args: &CheckArgs) -> CheckLine {
    let api: Api<Lease> = Api::namespaced(target.client.clone(), &args.operator_namespace);
    let subject = format!("lease {}/{}", args.operator_namespace, args.lease_name);
    let (ok, detail) = match api.get_opt(&args.lease_name).await {
        Ok(Some(lease)) => lease_verdict(&lease, now_millis()),
        Ok(None) => (
            false,
            "no Lease: the operator is not running here (see --operator-namespace)".into(),
        ),
        Err(e) => (false, format!("cannot read: {e}")),
    };
    CheckLine {
        area: "operator".into(),
        subject,
        ok,
        detail,
    }
}

/// A Lease renewed within its duration has a live leader.
pub fn lease_verdict(lease: &Lease, now: i64) -> (bool, String) {
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    let renewed = spec.renew_time.map(|t| t.0.as_millisecond());
    let duration_ms = i64::from(spec.lease_duration_seconds.unwrap_or(15)) * 1000;
    match renewed {
        _ if holder.is_empty() => (false, "nobody holds the Lease".into()),
        Some(at) if now - at <= duration_ms => (
            true,
            format!("{holder} leads (renewed {}s ago)", (now - at).max(0) / 1000),
        ),
        Some(at) => (
            false,
            format!(
                "{holder} last renewed {}s ago: no live leader",
                (now - at) / 1000
            ),
        ),
        None => (false, format!("{holder} never renewed the Lease")),
    }
}

async fn workspaces(target: &Target) -> Vec<CheckLine> {
    let mut lines = vec![];
    let namespaced: Api<DatabricksWorkspace> =
        Api::namespaced(target.client.clone(), &target.namespace);
    match namespaced.list(&ListParams::default()).await {
        Ok(list) => lines.extend(list.items.iter().map(|ws| {
            workspace_line(
                format!("DatabricksWorkspace {}/{}", target.namespace, ws.name_any()),
                ws.status.as_ref().map(|s| &s.conditions[..]),
            )
        })),
        Err(e) => lines.push(unreadable("DatabricksWorkspaces", e)),
    }
    let cluster: Api<ClusterDatabricksWorkspace> = Api::all(target.client.clone());
    match cluster.list(&ListParams::default()).await {
        Ok(list) => lines.extend(list.items.iter().map(|ws| {
            workspace_line(
                format!("ClusterDatabricksWorkspace {}", ws.name_any()),
                ws.status.as_ref().map(|s| &s.conditions[..]),
            )
        })),
        // Application teams often may not list cluster-scoped objects: not a failure of theirs.
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        Err(e) => lines.push(unreadable("ClusterDatabricksWorkspaces", e)),
    }
    lines
}

fn unreadable(what: &str, e: kube::Error) -> CheckLine {
    CheckLine {
        area: "workspace".into(),
        subject: what.into(),
        ok: false,
        detail: format!("cannot list: {e}"),
    }
}

pub fn workspace_line(subject: String, conditions: Option<&[Condition]>) -> CheckLine {
    let ready = conditions.and_then(|c| find_condition(c, "Ready"));
    let (ok, detail) = match ready {
        Some(c) if c.status == ConditionStatus::True => (true, "Ready".to_string()),
        Some(c) => (false, format!("not Ready: {}: {}", c.reason, c.message)),
        None => (false, "not checked by the operator yet".into()),
    };
    CheckLine {
        area: "workspace".into(),
        subject,
        ok,
        detail,
    }
}

async fn rbac(target: &Target) -> Vec<CheckLine> {
    let api: Api<SelfSubjectAccessReview> = Api::all(target.client.clone());
    let mut lines = vec![];
    for (verb, group, resource) in ACTIONS {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(target.namespace.clone()),
                    verb: Some(verb.to_string()),
                    group: Some(group.to_string()),
                    resource: Some(resource.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let (ok, detail) = match api.create(&PostParams::default(), &review).await {
            Ok(answer) => {
                let allowed = answer.status.is_some_and(|s| s.allowed);
                (allowed, if allowed { "yes" } else { "no" }.to_string())
            }
            Err(e) => (false, format!("cannot ask: {e}")),
        };
        lines.push(CheckLine {
            area: "rbac".into(),
            subject: format!("{verb} {resource} in {}", target.namespace),
            ok,
            detail,
        });
    }
    lines
}

impl Report for CheckReport {
    fn text(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .checks
            .iter()
            .map(|c| {
                let mark = match (c.ok, c.area.as_str()) {
                    (true, _) => "ok",
                    (false, "rbac") => "-",
                    (false, _) => "FAIL",
                };
                vec![
                    mark.into(),
                    c.area.clone(),
                    c.subject.clone(),
                    c.detail.clone(),
                ]
            })
            .collect();
        let mut out = output::table(&["", "AREA", "SUBJECT", "DETAIL"], &rows);
        let _ = writeln!(
            out,
            "{}",
            if self.passed() {
                "All checks passed."
            } else {
                "Some checks FAILED."
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: Option<&str>, renewed_ms: Option<i64>) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(String::from),
                lease_duration_seconds: Some(15),
                renew_time: renewed_ms.map(|ms| {
                    MicroTime(k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap())
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_has_a_live_leader_only_within_its_duration() {
        let now = 1_800_000_000_000;
        assert_eq!(
            lease_verdict(&lease(Some("pod-a"), Some(now - 3_000)), now),
            (true, "pod-a leads (renewed 3s ago)".into())
        );
        assert!(!lease_verdict(&lease(Some("pod-a"), Some(now - 16_000)), now).0);
        assert!(!lease_verdict(&lease(None, Some(now)), now).0);
        assert!(!lease_verdict(&lease(Some("pod-a"), None), now).0);
    }

    #[test]
    fn rbac_denials_inform_but_do_not_fail_the_check() {
        let line = |area: &str, ok| CheckLine {
            area: area.into(),
            subject: "s".into(),
            ok,
            detail: String::new(),
        };
        assert!(
            CheckReport {
                checks: vec![line("crd", true), line("rbac", false)]
            }
            .passed()
        );
        assert!(
            !CheckReport {
                checks: vec![line("workspace", false)]
            }
            .passed()
        );
    }

    #[test]
    fn a_crd_must_be_established_and_match_this_plugins_schema() {
        let expected = all_crds().remove(0);
        let line = |ok, detail| CheckLine {
            area: "crd".into(),
            subject: "x".into(),
            ok,
            detail,
        };
        let mut installed = expected.clone();
        assert!(
            !crd_verdict(&installed, &expected, line).ok,
            "no status: not established"
        );
        installed.status = serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Established", "status": "True", "lastTransitionTime": null}]
        }))
        .ok();
        assert!(installed.status.is_some());
        assert!(crd_verdict(&installed, &expected, line).ok);
        installed.spec.versions[0].schema = None;
        assert!(
            !crd_verdict(&installed, &expected, line).ok,
            "schema differs"
        );
    }
}
