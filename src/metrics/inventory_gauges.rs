//! The token inventory's gauges: tokens by class and owner, the earliest expiry per owner and
//! the last inventory time per workspace, and the opt-in per-token expiry series. Each
//! inventory replaces its workspace's series whole, so owners and tokens that went away
//! leave no stale series.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{Arc, Mutex, MutexGuard},
};

use super::token_gauges::escape;
use crate::inventory::{Class, Tally, TokenExpiry};
use crate::schedule::EpochMillis;

/// Per-token series per chunk of the scrape text.
const CHUNK_SERIES: usize = 500;

pub const TOKENS: &str = "dbtoken_inventory_tokens";
pub const EARLIEST_EXPIRY: &str = "dbtoken_inventory_earliest_expiry_timestamp_seconds";
pub const LAST_SUCCESS: &str = "dbtoken_inventory_last_success_timestamp_seconds";
pub const TOKEN_EXPIRY: &str = "dbtoken_inventory_token_expiry_timestamp_seconds";

/// Which workspace object an inventory belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkspaceLabels {
    /// `DatabricksWorkspace` or `ClusterDatabricksWorkspace`.
    pub kind: String,
    /// Empty for a cluster workspace.
    pub namespace: String,
    pub workspace: String,
}

impl WorkspaceLabels {
    fn text(&self) -> String {
        format!(
            "kind=\"{}\",namespace=\"{}\",workspace=\"{}\"",
            escape(&self.kind),
            escape(&self.namespace),
            escape(&self.workspace)
        )
    }
}

struct Snapshot {
    /// Owner -> (counts by class, earliest expiry).
    owners: Vec<(String, [u64; 6], Option<EpochMillis>)>,
    at: EpochMillis,
    per_token: Option<Arc<Vec<TokenExpiry>>>,
}

#[derive(Default)]
pub struct InventoryGauges {
    workspaces: Mutex<BTreeMap<WorkspaceLabels, Snapshot>>,
}

fn seconds(ms: EpochMillis) -> String {
    // Debug keeps the decimal point of whole seconds, as the gauge's float type does.
    format!("{:?}", ms as f64 / 1000.0)
}

impl InventoryGauges {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<WorkspaceLabels, Snapshot>> {
        self.workspaces.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, ws: WorkspaceLabels, tally: &Tally, at: EpochMillis) {
        let owners = tally
            .by_owner
            .iter()
            .map(|(o, t)| (o.clone(), t.counts, t.earliest_expiry))
            .collect();
        let per_token = tally.per_token.clone().map(Arc::new);
        self.lock().insert(
            ws,
            Snapshot {
                owners,
                at,
                per_token,
            },
        );
    }

    pub fn remove(&self, ws: &WorkspaceLabels) {
        self.lock().remove(ws);
    }

    /// The gauges' text: the bounded families in one chunk, then the per-token series (if any
    /// workspace has them on) a chunk at a time.
    pub fn chunks(&self) -> impl Iterator<Item = String> + Send + 'static {
        let workspaces = self.lock();
        let mut head = String::new();
        let _ = writeln!(
            head,
            "# HELP {TOKENS} Tokens in the workspace by class and owner (identity id), as of the last inventory.\n# TYPE {TOKENS} gauge"
        );
        for (ws, snap) in workspaces.iter() {
            let labels = ws.text();
            for (owner, counts, _) in &snap.owners {
                for class in Class::ALL {
                    let _ = writeln!(
                        head,
                        "{TOKENS}{{{labels},class=\"{}\",owner=\"{}\"}} {}",
                        class.label(),
                        escape(owner),
                        counts[class.index()]
                    );
                }
            }
        }
        let _ = writeln!(
            head,
            "# HELP {EARLIEST_EXPIRY} The earliest expiry of an owner's tokens not minted by this operator (Unix time).\n# TYPE {EARLIEST_EXPIRY} gauge"
        );
        for (ws, snap) in workspaces.iter() {
            let labels = ws.text();
            for (owner, _, earliest) in &snap.owners {
                if let Some(e) = earliest {
                    let _ = writeln!(
                        head,
                        "{EARLIEST_EXPIRY}{{{labels},owner=\"{}\"}} {}",
                        escape(owner),
                        seconds(*e)
                    );
                }
            }
        }
        let _ = writeln!(
            head,
            "# HELP {LAST_SUCCESS} When the workspace's tokens were last listed completely (Unix time).\n# TYPE {LAST_SUCCESS} gauge"
        );
        for (ws, snap) in workspaces.iter() {
            let _ = writeln!(head, "{LAST_SUCCESS}{{{}}} {}", ws.text(), seconds(snap.at));
        }
        let per_token: Vec<(String, Arc<Vec<TokenExpiry>>)> = workspaces
            .iter()
            .filter_map(|(ws, s)| s.per_token.clone().map(|p| (ws.text(), p)))
            .collect();
        drop(workspaces);
        let mut descriptor = String::new();
        let _ = writeln!(
            descriptor,
            "# HELP {TOKEN_EXPIRY} When each token expires (Unix time); only for workspaces with inventory.perTokenMetrics.\n# TYPE {TOKEN_EXPIRY} gauge"
        );
        let series = per_token.into_iter().flat_map(|(labels, tokens)| {
            let chunks = tokens.len().div_ceil(CHUNK_SERIES);
            (0..chunks).map(move |i| {
                let mut out = String::new();
                for t in tokens.iter().skip(i * CHUNK_SERIES).take(CHUNK_SERIES) {
                    let _ = writeln!(
                        out,
                        "{TOKEN_EXPIRY}{{{labels},token_id=\"{}\",owner=\"{}\",class=\"{}\"}} {}",
                        escape(&t.token_id),
                        escape(&t.owner),
                        t.class.label(),
                        seconds(t.expiry)
                    );
                }
                out
            })
        });
        [head, descriptor].into_iter().chain(series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::tally::OwnerTally;

    fn ws(name: &str) -> WorkspaceLabels {
        WorkspaceLabels {
            kind: "DatabricksWorkspace".into(),
            namespace: "team".into(),
            workspace: name.into(),
        }
    }

    fn tally(per_token: usize) -> Tally {
        let mut t = Tally::new(per_token > 0);
        t.by_owner.insert(
            "42".into(),
            OwnerTally {
                counts: [1, 2, 0, 3, 4, 0],
                earliest_expiry: Some(1_700_000_000_500),
            },
        );
        t.by_owner.insert("7".into(), OwnerTally::default());
        if let Some(p) = &mut t.per_token {
            for i in 0..per_token {
                p.push(TokenExpiry {
                    token_id: format!("id{i:05}"),
                    owner: "42".into(),
                    class: Class::ExpiringSoon,
                    expiry: 2_000,
                });
            }
        }
        t
    }

    #[test]
    fn counts_by_class_and_owner_and_the_earliest_expiry_are_exported() {
        let g = InventoryGauges::default();
        g.set(ws("prod"), &tally(0), 1_000);
        let text: String = g.chunks().collect();
        let labels = r#"kind="DatabricksWorkspace",namespace="team",workspace="prod""#;
        for expected in [
            format!(r#"{TOKENS}{{{labels},class="orphaned",owner="42"}} 2"#),
            format!(r#"{TOKENS}{{{labels},class="never_expiring",owner="42"}} 3"#),
            format!(r#"{TOKENS}{{{labels},class="expired",owner="7"}} 0"#),
            format!(r#"{EARLIEST_EXPIRY}{{{labels},owner="42"}} 1700000000.5"#),
            format!(r#"{LAST_SUCCESS}{{{labels}}} 1.0"#),
        ] {
            assert!(
                text.contains(&format!("{expected}\n")),
                "{expected} in {text}"
            );
        }
        assert!(!text.contains(&format!(r#"{EARLIEST_EXPIRY}{{{labels},owner="7"}}"#)));
        assert!(
            !text.contains(&format!("{TOKEN_EXPIRY}{{")),
            "off by default"
        );
    }

    #[test]
    fn per_token_series_come_in_chunks_and_a_new_inventory_replaces_the_old() {
        let g = InventoryGauges::default();
        g.set(ws("prod"), &tally(CHUNK_SERIES + 3), 1_000);
        let chunks: Vec<String> = g.chunks().collect();
        assert_eq!(chunks.len(), 4, "head, descriptor, two chunks of series");
        let text = chunks.concat();
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with(&format!("{TOKEN_EXPIRY}{{")))
                .count(),
            CHUNK_SERIES + 3
        );
        g.set(ws("prod"), &tally(0), 2_000);
        let text: String = g.chunks().collect();
        assert!(!text.contains(&format!("{TOKEN_EXPIRY}{{")), "{text}");
        g.remove(&ws("prod"));
        let text: String = g.chunks().collect();
        assert!(!text.contains("workspace=\"prod\""), "{text}");
        assert!(text.contains(&format!("# TYPE {TOKENS} gauge")));
    }
}
