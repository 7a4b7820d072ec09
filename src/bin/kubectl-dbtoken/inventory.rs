//! `kubectl dbtoken inventory WORKSPACE`: the tokens Databricks holds for a workspace's identity
//! (the whole workspace when its credential is an admin), each classified against the
//! DatabricksTokens of the cluster. The credential is read as the operator reads it, with the
//! user's own RBAC: whoever cannot read that Secret cannot list its tokens.

use std::{collections::HashMap, fmt::Write as _, sync::Arc, time::Duration};

use anyhow::Context as _;
use databricks_client::{ManagedTokenFilter, TokenInfo};
use databricks_token_operator::{
    crd::{ClusterDatabricksWorkspace, DatabricksToken, DatabricksWorkspace},
    databricks::tag_owner,
    schedule::EpochMillis,
    secret::format_time,
    workspace::{ClientSettings, ResolvedWorkspace, Workspaces},
};
use kube::{Api, ResourceExt, api::ListParams, runtime::reflector};
use serde::Serialize;

use crate::{
    Outcome,
    cli::{Format, InventoryArgs},
    client::Target,
    output::{self, Report},
    when,
};

/// What a token in Databricks is to this operator.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// In a DatabricksToken's Secret now.
    Current,
    /// Replaced, still valid until its grace period ends.
    InGrace,
    /// Tagged for a DatabricksToken that exists but neither holds nor waits on it: the
    /// operator's sweep revokes it.
    Stray,
    /// Tagged for a DatabricksToken that no longer exists.
    Orphaned,
    /// Not minted by the operator.
    Unmanaged,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub token_id: String,
    pub class: Class,
    /// namespace/name of the DatabricksToken it belongs to.
    pub resource: Option<String>,
    pub owner: Option<String>,
    pub created: String,
    /// RFC 3339, or `never`.
    pub expires: String,
    pub comment: String,
}

/// What the cluster knows of one DatabricksToken.
#[derive(Debug, Clone)]
pub struct Resource {
    pub uid: String,
    pub key: String,
    pub current: Option<String>,
    pub in_grace: Vec<String>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct InventoryReport {
    pub workspace: String,
    pub host: String,
    /// `workspace` (an admin credential lists every token) or `identity` (its own tokens).
    pub scope: String,
    /// The DatabricksTokens compared against: all namespaces, or the one the user may list.
    pub resources_from: String,
    pub counts: HashMap<String, usize>,
    pub tokens: Vec<Row>,
}

pub fn classify(tokens: &[TokenInfo], resources: &[Resource]) -> Vec<Row> {
    let by_uid: HashMap<&str, &Resource> = resources.iter().map(|r| (r.uid.as_str(), r)).collect();
    let mut rows: Vec<Row> = tokens
        .iter()
        .map(|t| {
            let comment = t.comment.clone().unwrap_or_default();
            let (class, resource) = match tag_owner(&comment) {
                None => (Class::Unmanaged, None),
                Some(uid) => match by_uid.get(uid) {
                    None => (Class::Orphaned, None),
                    Some(r) if r.current.as_deref() == Some(t.token_id.as_str()) => {
                        (Class::Current, Some(r.key.clone()))
                    }
                    Some(r) if r.in_grace.contains(&t.token_id) => {
                        (Class::InGrace, Some(r.key.clone()))
                    }
                    Some(r) => (Class::Stray, Some(r.key.clone())),
                },
            };
            Row {
                token_id: t.token_id.clone(),
                class,
                resource,
                owner: t
                    .created_by_username
                    .clone()
                    .or_else(|| t.owner_id.map(|id| id.to_string())),
                created: format_time(t.creation_time),
                expires: if t.expiry_time < 0 {
                    "never".into()
                } else {
                    format_time(t.expiry_time)
                },
                comment,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.class, &a.resource, &a.token_id).cmp(&(b.class, &b.resource, &b.token_id))
    });
    rows
}

pub async fn run(target: &Target, args: &InventoryArgs, format: Format) -> anyhow::Result<Outcome> {
    let workspace = resolve(target, args).await?;
    let (scope, tokens) = match workspace
        .client
        .list_managed_tokens(&ManagedTokenFilter::default())
        .await
    {
        Ok(all) => ("workspace", all),
        Err(databricks_client::Error::PermissionDenied { .. }) => (
            "identity",
            workspace
                .client
                .list_tokens()
                .await
                .context("listing the identity's tokens")?,
        ),
        Err(e) => return Err(e).context("listing the workspace's tokens"),
    };
    let (resources_from, resources) = resources(target).await?;
    let rows = classify(&tokens, &resources);
    let mut counts = HashMap::new();
    for row in &rows {
        *counts.entry(format!("{:?}", row.class)).or_insert(0) += 1;
    }
    let report = InventoryReport {
        workspace: args.workspace.clone(),
        host: workspace.host.clone(),
        scope: scope.into(),
        resources_from,
        counts,
        tokens: rows,
    };
    output::print(&report, format)?;
    Ok(Outcome::Fine)
}

/// The workspace and a client for it, built the way the operator builds one.
async fn resolve(target: &Target, args: &InventoryArgs) -> anyhow::Result<Arc<ResolvedWorkspace>> {
    let (namespaced, _) = reflector::store::<DatabricksWorkspace>();
    let (cluster, _) = reflector::store::<ClusterDatabricksWorkspace>();
    let settings = ClientSettings {
        insecure_allow_http: args.insecure_allow_http,
        entra_authority_host: "https://login.microsoftonline.com".into(),
        observer: None,
        credential_ttl: Duration::from_secs(60),
    };
    let workspaces = Workspaces::new(target.client.clone(), namespaced, cluster, settings);
    let resolved = match args.workspace.strip_prefix("cluster/") {
        Some(name) => {
            let api: Api<ClusterDatabricksWorkspace> = Api::all(target.client.clone());
            let ws = api
                .get(name)
                .await
                .with_context(|| format!("ClusterDatabricksWorkspace {name}"))?;
            workspaces.for_cluster(&ws).await
        }
        None => {
            let api: Api<DatabricksWorkspace> =
                Api::namespaced(target.client.clone(), &target.namespace);
            let ws = api.get(&args.workspace).await.with_context(|| {
                format!(
                    "DatabricksWorkspace {}/{}",
                    target.namespace, args.workspace
                )
            })?;
            workspaces.for_namespaced(&ws).await
        }
    };
    resolved.context("reading the workspace's credential (your RBAC must allow reading its Secret)")
}

/// Every DatabricksToken the user may list: all namespaces, else the selected one.
async fn resources(target: &Target) -> anyhow::Result<(String, Vec<Resource>)> {
    let all: Api<DatabricksToken> = Api::all(target.client.clone());
    let (from, items) = match all.list(&ListParams::default()).await {
        Ok(list) => ("all namespaces".to_string(), list.items),
        Err(_) => {
            let api: Api<DatabricksToken> =
                Api::namespaced(target.client.clone(), &target.namespace);
            (
                format!("namespace {}", target.namespace),
                api.list(&ListParams::default()).await?.items,
            )
        }
    };
    let resources = items
        .iter()
        .map(|t| {
            let status = t.status.clone().unwrap_or_default();
            Resource {
                uid: t.uid().unwrap_or_default(),
                key: format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any()),
                current: status.token_id,
                in_grace: status
                    .previous_tokens
                    .into_iter()
                    .map(|p| p.token_id)
                    .collect(),
            }
        })
        .collect();
    Ok((from, resources))
}

impl Report for InventoryReport {
    fn text(&self) -> String {
        let now: EpochMillis = databricks_token_operator::now_millis();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Workspace {} ({}): {} tokens, listed for the {}; DatabricksTokens from {}",
            self.workspace,
            self.host,
            self.tokens.len(),
            if self.scope == "workspace" {
                "whole workspace"
            } else {
                "credential's identity"
            },
            self.resources_from
        );
        let rows: Vec<Vec<String>> = self
            .tokens
            .iter()
            .map(|r| {
                let expires = databricks_token_operator::secret::parse_time(&r.expires)
                    .map_or(r.expires.clone(), |at| when::relative(at, now));
                vec![
                    when::short_id(&r.token_id).to_string(),
                    format!("{:?}", r.class),
                    r.resource.clone().unwrap_or_else(|| "-".into()),
                    r.owner.clone().unwrap_or_else(|| "-".into()),
                    expires,
                    r.comment.clone(),
                ]
            })
            .collect();
        out.push_str(&output::table(
            &["TOKEN", "CLASS", "RESOURCE", "OWNER", "EXPIRES", "COMMENT"],
            &rows,
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, comment: Option<&str>, expiry: i64) -> TokenInfo {
        serde_json::from_value(serde_json::json!({
            "token_id": id, "creation_time": 1_000, "expiry_time": expiry,
            "comment": comment, "created_by_username": "admin@example.com"
        }))
        .unwrap()
    }

    #[test]
    fn every_token_gets_one_class() {
        let resources = vec![Resource {
            uid: "u1".into(),
            key: "team-a/reports".into(),
            current: Some("cur".into()),
            in_grace: vec!["old".into()],
        }];
        let tokens = vec![
            info("cur", Some("reports [dbtoken.dev/uid=u1]"), 5_000),
            info("old", Some("[dbtoken.dev/uid=u1]"), 5_000),
            info("lost", Some("[dbtoken.dev/uid=u1]"), 5_000),
            info("orphan", Some("[dbtoken.dev/uid=gone]"), 5_000),
            info("pat", Some("laptop"), -1),
            info("bare", None, 5_000),
        ];
        let rows = classify(&tokens, &resources);
        let got: Vec<(&str, Class, Option<&str>)> = rows
            .iter()
            .map(|r| (r.token_id.as_str(), r.class, r.resource.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("cur", Class::Current, Some("team-a/reports")),
                ("old", Class::InGrace, Some("team-a/reports")),
                ("lost", Class::Stray, Some("team-a/reports")),
                ("orphan", Class::Orphaned, None),
                ("bare", Class::Unmanaged, None),
                ("pat", Class::Unmanaged, None),
            ]
        );
        assert_eq!(
            rows.iter().find(|r| r.token_id == "pat").unwrap().expires,
            "never"
        );
    }
}
