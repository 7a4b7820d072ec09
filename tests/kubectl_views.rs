//! What on-call sees with plain `kubectl`: a token that is Degraded but still Ready stands out,
//! `-o wide` shows a short token id and the failure, `kubectl get databricks` lists every kind,
//! and `kubectl explain` describes the kinds.

mod support;

use std::process::Command;

use databricks_emulator::FaultRule;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::world::{World, condition_is, condition_reason};

fn kubectl(world: &World, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", world.kubeconfig())
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The cells of the row whose first cell is `name`, by column header (kubectl's table layout:
/// each column starts where its header starts).
fn row(table: &str, name: &str) -> Vec<(String, String)> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|&(i, c)| c != ' ' && (i == 0 || header.as_bytes()[i - 1] == b' '))
        .map(|(i, _)| i)
        .collect();
    let line = lines
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"));
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| {
            let end = starts.get(n + 1).copied().unwrap_or(usize::MAX);
            let cell = |s: &str| {
                s.get(start..end.min(s.len()))
                    .unwrap_or("")
                    .trim()
                    .to_string()
            };
            (cell(header), cell(line))
        })
        .collect()
}

fn cell<'a>(row: &'a [(String, String)], column: &str) -> &'a str {
    row.iter()
        .find(|(h, _)| h == column)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no column {column} in {row:?}"))
}

#[tokio::test]
async fn kubectl_shows_a_degraded_but_ready_token_with_a_short_id_and_lists_every_kind() {
    let mut world = World::new("kubectl-views").await;
    world.start_operator();
    world
        .create_token(
            "app",
            json!({"workspaceRef": {"name": "ws"}, "lifetime": "1h"}),
        )
        .await;
    let ready = world.wait_ready("app").await;
    let token_id = ready.status.unwrap().token_id.unwrap();
    assert!(token_id.len() > 12, "{token_id}");

    // Creates fail from now on: the requested rotation fails, the current token still lives.
    world.emulator.add_fault(FaultRule {
        error_rate: 1.0,
        ..FaultRule::on("token/create")
    });
    let rotate = json!({"metadata": {"annotations": {"dbtoken.dev/rotate-requested-at": "2026-11-23T10:00:00Z"}}});
    world
        .tokens()
        .patch("app", &PatchParams::default(), &Patch::Merge(&rotate))
        .await
        .unwrap();
    let degraded = world
        .wait_token("app", "Degraded=True", |t| {
            condition_is(t, "Degraded", "True")
        })
        .await;
    assert!(condition_is(&degraded, "Ready", "True"));
    let (reason, message) = condition_reason(&degraded, "Degraded").unwrap();

    let ns = world.ns.name.clone();
    let plain = kubectl(&world, &["get", "databrickstokens", "-n", &ns]);
    let app = row(&plain, "app");
    assert_eq!(cell(&app, "READY"), "True", "{plain}");
    assert_eq!(cell(&app, "DEGRADED"), "True", "{plain}");

    let wide = kubectl(
        &world,
        &["get", "databrickstokens", "-n", &ns, "-o", "wide"],
    );
    let app = row(&wide, "app");
    assert_eq!(cell(&app, "TOKEN"), &token_id[..12], "{wide}");
    assert!(
        !wide.contains(&token_id),
        "the full id is not shown:\n{wide}"
    );
    assert_eq!(cell(&app, "REASON"), reason, "{wide}");
    assert!(
        message.starts_with(cell(&app, "MESSAGE")),
        "{message:?} in\n{wide}"
    );

    let kinds = kubectl(
        &world,
        &["api-resources", "--categories", "databricks", "-o", "name"],
    );
    let mut kinds: Vec<&str> = kinds.lines().collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "clusterdatabricksworkspaces.dbtoken.dev",
            "databrickstokens.dbtoken.dev",
            "databricksworkspaces.dbtoken.dev"
        ]
    );
    let all = kubectl(&world, &["get", "databricks", "-n", &ns, "-o", "name"]);
    assert!(all.contains("databrickstoken.dbtoken.dev/app"), "{all}");
    assert!(all.contains("databricksworkspace.dbtoken.dev/ws"), "{all}");

    for (kind, says) in [
        ("databrickstoken", "mints into a Secret"),
        (
            "databricksworkspace",
            "credential the operator authenticates with",
        ),
        (
            "clusterdatabricksworkspace",
            "namespaces its allow-list admits",
        ),
    ] {
        let explained = kubectl(&world, &["explain", kind]);
        let explained = explained.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(explained.contains(says), "{explained}");
        assert!(!explained.contains("Auto-generated"), "{explained}");
    }
}
