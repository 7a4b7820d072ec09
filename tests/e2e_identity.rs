//! End to end: a token is revoked in the workspace, and by the identity, that minted it, whatever
//! changed since (workspaceRef, host, onBehalfOf, the credential); token ids read from a Secret
//! are revoked only when the token carries this resource's tag; a Databricks clock minutes away
//! from the cluster's changes nothing; the tag is found in today's layout and survives
//! truncation in the new one.

mod support;

use std::time::Duration;

use databricks_emulator::{EmulatorConfig, EmulatorHandle, FaultRule, Latency};
use databricks_token_operator::crd::DatabricksTokenStatus;
use databricks_token_operator::databricks::tag_owner;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::operator::eventually;
use support::world::{WAIT, World, condition_is, condition_reason, wait_revoked_in};

const GRACE: &str = "8s";

fn spec(workspace: &str) -> serde_json::Value {
    json!({"workspaceRef": {"name": workspace}, "lifetime": "1h", "rotation": {"gracePeriod": GRACE}})
}

fn is_live(emulator: &EmulatorHandle, id: &str) -> bool {
    emulator.live_tokens().iter().any(|t| t.token_id == id)
}

/// The token `name` holds now: its id and value.
async fn current(w: &World, name: &str) -> (String, String) {
    let t = w.wait_ready(name).await;
    let id = t.status.unwrap().token_id.unwrap();
    (id, w.secret_value(name, "token").await.unwrap())
}

/// After a change that replaces the token: the old one keeps working through its grace period,
/// is then revoked where it was minted (`minted_in`), and no event or metric says Revoked while
/// it still authenticates.
async fn old_token_is_revoked_where_it_was_minted(
    w: &World,
    name: &str,
    old: &(String, String),
    minted_in: &EmulatorHandle,
) {
    let replaced = w.wait_replaced(name, &old.0, "a replacement token").await;
    assert!(
        minted_in.accepts(&old.1),
        "the old token stays valid for its grace period"
    );
    let previous: Vec<String> = replaced
        .status
        .unwrap()
        .previous_tokens
        .into_iter()
        .map(|p| p.token_id)
        .collect();
    assert!(
        previous.contains(&old.0),
        "the old token waits out its grace period"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        // Read what the operator says before looking at the workspace: it revokes, then counts,
        // then publishes the event.
        let said_revoked = w
            .events_of(name)
            .await
            .into_iter()
            .any(|(reason, note)| reason == "Revoked" && note.contains(&old.0));
        let counted = w
            .metric(r#"dbtoken_revocations_total{outcome="grace_period_over"}"#)
            .await;
        if !is_live(minted_in, &old.0) {
            break;
        }
        assert!(
            !said_revoked && counted == 0.0,
            "an event ({said_revoked}) or the metric ({counted}) says Revoked while token {} still authenticates where it was minted",
            old.0
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "token {} was never revoked in the workspace that minted it; status: {:?}",
            old.0,
            w.tokens().get(name).await.unwrap().status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!minted_in.accepts(&old.1));
    w.wait_ready(name).await;
    let value = w.secret_value(name, "token").await.unwrap();
    assert_ne!(value, old.1);
    // Status is written after the revocation: wait for it rather than race it.
    let old_id = old.0.clone();
    w.wait_token(name, "the revoked token gone from the record", move |t| {
        t.status
            .as_ref()
            .is_some_and(|s| !s.previous_tokens.iter().any(|p| p.token_id == old_id))
    })
    .await;
}

#[tokio::test]
async fn a_changed_workspace_ref_revokes_the_old_token_in_the_old_workspace() {
    let mut w = World::new("id-wsref").await;
    let other = second_workspace(&w, 0).await;
    w.start_operator();
    w.create_token("t", spec("ws")).await;
    let old = current(&w, "t").await;

    w.patch_spec(&w.tokens(), "t", json!({"workspaceRef": {"name": "ws2"}}))
        .await;
    old_token_is_revoked_where_it_was_minted(&w, "t", &old, &w.emulator).await;
    let (id, value) = current(&w, "t").await;
    assert!(
        is_live(&other, &id) && other.accepts(&value),
        "minted in ws2"
    );
    assert_eq!(w.secret_value("t", "host").await, Some(other.base_url()));
}

#[tokio::test]
async fn a_changed_host_revokes_the_old_token_at_the_old_host() {
    let mut w = World::new("id-host").await;
    let (other, _) = World::another_workspace(EmulatorConfig::default()).await;
    // An account-level service principal, admin in both workspaces: the same credential works at
    // the old host and at the new one.
    let sp = w.emulator.add_service_principal("deployer", true);
    other.assign_service_principal(&sp, "deployer", true);
    w.create_secret(
        "sp",
        &[
            ("client_id", &sp.application_id),
            ("client_secret", &sp.client_secret),
        ],
    )
    .await;
    w.apply_workspace("ws-sp", json!({"oauthM2M": {"secretRef": {"name": "sp"}}}))
        .await;
    w.start_operator();
    w.create_token("t", spec("ws-sp")).await;
    let old = current(&w, "t").await;

    w.patch_spec(&w.workspaces(), "ws-sp", json!({"host": other.base_url()}))
        .await;
    old_token_is_revoked_where_it_was_minted(&w, "t", &old, &w.emulator).await;
    let (id, _) = current(&w, "t").await;
    assert!(is_live(&other, &id), "minted at the new host");
}

#[tokio::test]
async fn setting_on_behalf_of_revokes_the_credentials_own_old_token() {
    let mut w = World::new("id-obo-set").await;
    let sp = w.emulator.add_service_principal("etl", false);
    w.start_operator();
    w.create_token("t", spec("ws")).await;
    let old = current(&w, "t").await;

    w.patch_spec(
        &w.tokens(),
        "t",
        json!({"onBehalfOf": {"applicationId": sp.application_id}}),
    )
    .await;
    old_token_is_revoked_where_it_was_minted(&w, "t", &old, &w.emulator).await;
    let (id, _) = current(&w, "t").await;
    let live = w.emulator.live_tokens();
    assert_eq!(
        live.iter().find(|t| t.token_id == id).unwrap().owner_id,
        sp.id
    );
}

#[tokio::test]
async fn unsetting_on_behalf_of_revokes_the_service_principals_old_token() {
    let mut w = World::new("id-obo-unset").await;
    let sp = w.emulator.add_service_principal("etl", false);
    w.start_operator();
    let mut s = spec("ws");
    s["onBehalfOf"] = json!({"applicationId": sp.application_id});
    w.create_token("t", s).await;
    let old = current(&w, "t").await;

    w.tokens()
        .patch(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"onBehalfOf": null}})),
        )
        .await
        .unwrap();
    old_token_is_revoked_where_it_was_minted(&w, "t", &old, &w.emulator).await;
}

#[tokio::test]
async fn a_changed_on_behalf_of_revokes_the_first_service_principals_token() {
    let mut w = World::new("id-obo-change").await;
    let first = w.emulator.add_service_principal("etl", false);
    let second = w.emulator.add_service_principal("reports", false);
    w.start_operator();
    let mut s = spec("ws");
    s["onBehalfOf"] = json!({"applicationId": first.application_id});
    w.create_token("t", s).await;
    let old = current(&w, "t").await;

    w.patch_spec(
        &w.tokens(),
        "t",
        json!({"onBehalfOf": {"applicationId": second.application_id}}),
    )
    .await;
    old_token_is_revoked_where_it_was_minted(&w, "t", &old, &w.emulator).await;
    let (id, _) = current(&w, "t").await;
    let live = w.emulator.live_tokens();
    assert_eq!(
        live.iter().find(|t| t.token_id == id).unwrap().owner_id,
        second.id
    );
}

#[tokio::test]
async fn a_credential_swapped_to_another_admin_revokes_the_first_identitys_token() {
    let mut w = World::new("id-cred").await;
    let other_admin = w.emulator.add_user("second-admin@example.com", true);
    w.create_secret("admin-b", &[("token", &other_admin.pat)])
        .await;
    w.start_operator();
    w.create_token("t", spec("ws")).await;
    let old = current(&w, "t").await;

    w.patch_spec(
        &w.workspaces(),
        "ws",
        json!({"auth": {"pat": {"secretRef": {"name": "admin-b"}}}}),
    )
    .await;
    old_token_is_revoked_where_it_was_minted(&w, "t", &old, &w.emulator).await;
    let (id, _) = current(&w, "t").await;
    let live = w.emulator.live_tokens();
    assert_eq!(
        live.iter().find(|t| t.token_id == id).unwrap().owner_id,
        other_admin.id
    );
    let reasons: Vec<String> = w.events_of("t").await.into_iter().map(|e| e.1).collect();
    assert!(
        !reasons.iter().any(|n| n.contains("RevokedOutside")),
        "a new identity is not a revocation outside the operator: {reasons:?}"
    );
}

#[tokio::test]
async fn a_credential_swapped_to_a_non_admin_keeps_the_old_token_recorded_and_says_so() {
    let mut w = World::new("id-cred-user").await;
    let user = w.emulator.add_user("user@example.com", false);
    w.create_secret("user", &[("token", &user.pat)]).await;
    w.start_operator();
    let mut s = spec("ws");
    s["lifetime"] = json!("40s");
    w.create_token("t", s).await;
    let old = current(&w, "t").await;

    w.patch_spec(
        &w.workspaces(),
        "ws",
        json!({"auth": {"pat": {"secretRef": {"name": "user"}}}}),
    )
    .await;
    // The new identity may neither delete the admin's token nor see it: nothing can revoke it
    // now, so it stays recorded, and status says why.
    let t = w
        .wait_token("t", "a Degraded condition about the old token", |t| {
            condition_reason(t, "Degraded").is_some_and(|(r, _)| r == "RevocationBlocked")
        })
        .await;
    let (_, message) = condition_reason(&t, "Degraded").unwrap();
    assert!(message.contains(&old.0), "{message}");
    assert!(is_live(&w.emulator, &old.0));
    assert!(
        t.status
            .unwrap()
            .previous_tokens
            .iter()
            .any(|p| p.token_id == old.0),
        "kept until it can be revoked"
    );
    assert!(
        !w.events_of("t")
            .await
            .iter()
            .any(|(r, n)| r == "Revoked" && n.contains(&old.0))
    );

    // Once expired it cannot authenticate any more: it is forgotten and Degraded clears.
    let old_id = old.0.clone();
    w.wait_token("t", "the expired token forgotten", move |t| {
        let status = t.status.as_ref().unwrap();
        !status.previous_tokens.iter().any(|p| p.token_id == old_id)
            && condition_is(t, "Degraded", "False")
    })
    .await;
    assert!(!w.emulator.accepts(&old.1));
}

#[tokio::test]
async fn a_spoofed_previous_tokens_annotation_revokes_nobody_elses_token() {
    let mut w = World::new("id-spoof").await;
    w.start_operator();
    w.create_token("victim", spec("ws")).await;
    w.create_token("t", spec("ws")).await;
    let victim = current(&w, "victim").await;
    current(&w, "t").await;
    let admin_id = w.admin_pat_id();

    let spoofed = json!([
        {"tokenId": admin_id, "revokeAfter": 0},
        {"tokenId": victim.0, "revokeAfter": 0},
    ])
    .to_string();
    w.secrets()
        .patch(
            "t",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"dbtoken.dev/previous-tokens": spoofed}}}),
            ),
        )
        .await
        .unwrap();
    // The operator reads the edited Secret and drops what is not this resource's.
    eventually("the spoofed entries leave the record", WAIT, || async {
        let s = w.secrets().get("t").await.ok()?;
        let previous = s
            .metadata
            .annotations?
            .get("dbtoken.dev/previous-tokens")?
            .clone();
        (!previous.contains(&admin_id) && !previous.contains(&victim.0)).then_some(())
    })
    .await;
    assert!(
        w.emulator.accepts(&w.admin_pat),
        "the admin credential still works"
    );
    assert!(
        w.emulator.accepts(&victim.1),
        "the other resource's token still works"
    );
    assert!(
        !w.events_of("t").await.iter().any(|(r, _)| r == "Revoked"),
        "nothing was revoked"
    );
}

/// With the workspace's clock `offset_ms` away from the cluster's, short tokens rotate on time:
/// the Secret always holds a token Databricks accepts, no rotation says Expired or
/// RevokedOutside, and the previous token works until its grace period ends.
async fn rotations_are_unaffected_by_a_clock_offset(prefix: &str, offset_ms: i64) {
    let mut w = World::with_emulator(
        prefix,
        EmulatorConfig {
            clock_offset_ms: offset_ms,
            ..EmulatorConfig::default()
        },
    )
    .await;
    w.start_operator();
    w.create_token(
        "t",
        json!({"workspaceRef": {"name": "ws"}, "lifetime": "30s", "rotation": {"gracePeriod": GRACE}}),
    )
    .await;
    let first = current(&w, "t").await;
    let started = tokio::time::Instant::now();
    let mut last_id = first.0.clone();
    let mut rotations = 0;
    while started.elapsed() < Duration::from_secs(45) {
        let Some(value) = w.secret_value("t", "token").await else {
            panic!("the Secret lost its token")
        };
        assert!(
            w.emulator.accepts(&value),
            "the Secret holds a token Databricks refuses ({:?} after the first mint)",
            started.elapsed()
        );
        let t = w.tokens().get("t").await.unwrap();
        let status = t.status.unwrap_or_default();
        if let Some(id) = status.token_id.clone()
            && id != last_id
        {
            rotations += 1;
            // The replaced token stays usable during its grace period.
            let replaced_at = tokio::time::Instant::now();
            if let Some(p) = status
                .previous_tokens
                .iter()
                .find(|p| p.token_id == last_id)
            {
                let revoke_after = p.revoke_after.as_millis();
                let now = databricks_token_operator::now_millis();
                assert!(
                    revoke_after - now >= 6_000,
                    "the previous token is to be revoked {} ms from now, before its {GRACE} grace period",
                    revoke_after - now
                );
            } else {
                panic!("rotation without a grace period for {last_id}: {status:?}");
            }
            let _ = replaced_at;
            last_id = id;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let notes: Vec<String> = w.events_of("t").await.into_iter().map(|e| e.1).collect();
    assert!(
        !notes
            .iter()
            .any(|n| n.contains("reason: Expired") || n.contains("reason: RevokedOutside")),
        "no spurious rotation: {notes:#?}"
    );
    assert!(
        (1..=3).contains(&rotations),
        "a 30 s token renews about every 20 s, not {rotations} times in 45 s"
    );
    assert!(
        w.emulator.minted_values().len() <= 5,
        "{} tokens minted in 45 s",
        w.emulator.minted_values().len()
    );
}

#[tokio::test]
async fn a_databricks_clock_five_minutes_ahead_changes_nothing() {
    rotations_are_unaffected_by_a_clock_offset("id-clock-ahead", 5 * 60_000).await;
}

#[tokio::test]
async fn a_databricks_clock_five_minutes_behind_changes_nothing() {
    rotations_are_unaffected_by_a_clock_offset("id-clock-behind", -5 * 60_000).await;
}

#[tokio::test]
async fn a_token_tagged_in_todays_layout_is_still_found_by_the_sweep() {
    let mut w = World::new("id-tag-legacy").await;
    w.start_operator();
    let t = w.create_token("t", spec("ws")).await;
    current(&w, "t").await;
    let uid = t.metadata.uid.unwrap();
    // What a crash between create and Secret write left, minted by an operator of today's layout.
    let orphan = create_direct(&w, &format!("nightly [dbtoken.dev/uid={uid}]")).await;
    wait_revoked_in(&w.emulator, &orphan).await;
    assert!(
        w.events_of("t")
            .await
            .iter()
            .any(|(r, n)| r == "OrphanRevoked" && n.contains(&orphan))
    );
}

#[tokio::test]
async fn only_the_tag_the_operator_placed_matches() {
    let mut w = World::new("id-tag-forged").await;
    w.start_operator();
    let t = w.create_token("t", spec("ws")).await;
    current(&w, "t").await;
    let uid = t.metadata.uid.unwrap();
    // Another resource's token, minted with a comment copied from a token list: t's tag is in
    // the user's text, the operator's own tag (another uid) at the end.
    let foreign = create_direct(
        &w,
        &format!(
            "copied [dbtoken.dev/uid={uid}] [dbtoken.dev/uid=6a1f7c2e-0000-4000-8000-000000000001]"
        ),
    )
    .await;
    // New layout: the operator's tag first, then the user's text.
    let own_new_layout = create_direct(&w, &format!("[dbtoken.dev/uid={uid}] nightly")).await;
    wait_revoked_in(&w.emulator, &own_new_layout).await;
    // The sweep has run (it revoked the orphan in the new layout) and spared the foreign token.
    assert!(
        is_live(&w.emulator, &foreign),
        "another resource's token was revoked"
    );
    let minted = status_of(&w, "t").await.token_id.unwrap();
    let comment = w
        .emulator
        .live_tokens()
        .into_iter()
        .find(|l| l.token_id == minted)
        .unwrap()
        .comment
        .unwrap();
    assert!(
        comment.starts_with(&format!("[dbtoken.dev/uid={uid}]")),
        "the tag leads the comment, where truncation keeps it: {comment}"
    );
}

/// A token of the admin, minted outside the operator with `comment`; returns its id.
async fn create_direct(w: &World, comment: &str) -> String {
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/2.0/token/create", w.emulator.base_url()))
        .bearer_auth(&w.admin_pat)
        .json(&json!({"lifetime_seconds": 3600, "comment": comment}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token_info"]["token_id"].as_str().unwrap().to_string()
}

/// The status of the DatabricksToken `name`, which has one.
async fn status_of(w: &World, name: &str) -> DatabricksTokenStatus {
    w.tokens().get(name).await.unwrap().status.unwrap()
}

/// Ids of the live tokens in `emulator` tagged for the resource `uid`.
fn tagged_for(emulator: &EmulatorHandle, uid: &str) -> Vec<String> {
    emulator
        .live_tokens()
        .into_iter()
        .filter(|l| l.comment.as_deref().and_then(tag_owner) == Some(uid))
        .map(|l| l.token_id)
        .collect()
}

/// Wait until `emulator` holds a token tagged for `uid` beyond `known`; returns its id.
async fn wait_minted_beyond(emulator: &EmulatorHandle, uid: &str, known: &[String]) -> String {
    eventually("a new token minted", WAIT, || async {
        tagged_for(emulator, uid)
            .into_iter()
            .find(|id| !known.contains(id))
    })
    .await
}

/// A second workspace `ws2` on its own emulator, whose creates answer `answer_delay_ms` late.
async fn second_workspace(w: &World, answer_delay_ms: u64) -> EmulatorHandle {
    let (other, other_pat) = World::another_workspace(EmulatorConfig::default()).await;
    if answer_delay_ms > 0 {
        other.add_fault(answer_late(answer_delay_ms));
    }
    w.create_secret("admin-2", &[("token", &other_pat)]).await;
    w.apply_workspace_at(
        "ws2",
        &other.base_url(),
        json!({"pat": {"secretRef": {"name": "admin-2"}}}),
    )
    .await;
    other
}

fn answer_late(ms: u64) -> FaultRule {
    FaultRule {
        latency_after_create_ms: Some(Latency::Fixed(ms)),
        ..FaultRule::on("token/create")
    }
}

/// Wait until `name` is Ready with a token `serving` accepts; returns its id.
async fn serving_from(w: &World, name: &str, serving: &EmulatorHandle) -> String {
    eventually("Ready with a token of the new workspace", WAIT, || async {
        let t = w.tokens().get(name).await.ok()?;
        let id = t.status.as_ref()?.token_id.clone()?;
        let value = w.secret_value(name, "token").await?;
        (condition_is(&t, "Ready", "True") && serving.accepts(&value)).then_some(id)
    })
    .await
}

/// The token `uid` minted in `minted_in` and never recorded is revoked there, while the resource
/// is Ready in `serving` with a token of its own.
async fn unrecorded_token_is_revoked(
    w: &World,
    name: &str,
    unrecorded: &str,
    minted_in: &EmulatorHandle,
    serving: &EmulatorHandle,
) {
    let id = serving_from(w, name, serving).await;
    assert_ne!(id, unrecorded);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while is_live(minted_in, unrecorded) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "token {unrecorded} is still live where it was minted, recorded nowhere; status: {:?}",
            w.tokens().get(name).await.unwrap().status
        );
        tokio::time::sleep(Duration::from_millis(250)).await; // polling the emulator's state
    }
    // Status says so once the place is swept: nothing is left to look for.
    w.wait_token(name, "no place left to sweep", |t| {
        t.status
            .as_ref()
            .is_some_and(|s| s.pending_sweeps.is_empty())
    })
    .await;
}

/// A resource `t` whose first create in `ws` minted a token whose answer was lost, switched to
/// `ws2` (returned) while `ws` can neither list nor mint; returns the lost token's id.
async fn lost_in_ws_then_switched(w: &mut World) -> (EmulatorHandle, String) {
    let other = second_workspace(w, 0).await;
    // The first create mints and its answer never arrives. Until the faults are cleared, the
    // workspace lists nothing and mints nothing more, so no retry there finds the lost token.
    w.emulator.add_fault(FaultRule {
        drop_response_after_create_rate: 1.0,
        limit: Some(1),
        ..FaultRule::on("token/create")
    });
    for endpoint in ["token/create", "token/list"] {
        w.emulator.add_fault(FaultRule {
            error_rate: 1.0,
            ..FaultRule::on(endpoint)
        });
    }
    w.start_operator();
    let uid = w.create_token("t", spec("ws")).await.metadata.uid.unwrap();
    let lost = wait_minted_beyond(&w.emulator, &uid, &[]).await;
    w.wait_token("t", "the lost create flagged", |t| {
        condition_reason(t, "Rotating").is_some_and(|(reason, _)| reason == "Minting")
    })
    .await;

    w.patch_spec(&w.tokens(), "t", json!({"workspaceRef": {"name": "ws2"}}))
        .await;
    serving_from(w, "t", &other).await;
    assert!(
        is_live(&w.emulator, &lost),
        "the first workspace cannot be listed yet"
    );
    let pending = status_of(w, "t").await.pending_sweeps;
    assert!(
        !pending.is_empty() && pending.iter().all(|p| p.workspace.name == "ws"),
        "status names the first workspace as still to sweep: {pending:?}"
    );
    (other, lost)
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_revoked_after_a_switch_to_another_workspace() {
    let mut w = World::new("id-lost-switch").await;
    let (other, lost) = lost_in_ws_then_switched(&mut w).await;
    let id = serving_from(&w, "t", &other).await;
    w.emulator.clear_faults();
    unrecorded_token_is_revoked(&w, "t", &lost, &w.emulator, &other).await;
    assert_eq!(
        status_of(&w, "t").await.token_id,
        Some(id),
        "the sweep leaves the resource's own token alone"
    );
}

#[tokio::test]
async fn deleting_a_resource_revokes_what_it_left_in_a_workspace_it_moved_away_from() {
    let mut w = World::new("id-lost-delete").await;
    let (other, lost) = lost_in_ws_then_switched(&mut w).await;
    let current = serving_from(&w, "t", &other).await;
    w.tokens()
        .delete("t", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    // The place cannot be listed yet: the deletion waits for it rather than forget it.
    w.wait_token("t", "deletion waiting", |t| {
        t.metadata.deletion_timestamp.is_some()
    })
    .await;
    assert!(is_live(&w.emulator, &lost));
    w.emulator.clear_faults();
    w.wait_token_gone("t").await;
    assert!(!is_live(&w.emulator, &lost), "the lost token is revoked");
    assert!(!is_live(&other, &current), "the current token is revoked");
}

/// The operator killed in the middle of `t`'s first create in `ws`, and `t` switched to `ws2`
/// before it restarts; returns `ws2` and the token minted in `ws`.
async fn killed_mid_first_mint_then_switched(w: &mut World) -> (EmulatorHandle, String) {
    let other = second_workspace(w, 0).await;
    w.emulator.add_fault(answer_late(60_000));
    w.start_operator();
    let uid = w.create_token("t", spec("ws")).await.metadata.uid.unwrap();
    let minted = wait_minted_beyond(&w.emulator, &uid, &[]).await;
    w.operator.as_mut().unwrap().kill();

    w.patch_spec(&w.tokens(), "t", json!({"workspaceRef": {"name": "ws2"}}))
        .await;
    w.emulator.clear_faults();
    (other, minted)
}

#[tokio::test]
async fn a_leader_killed_mid_mint_leaves_nothing_when_the_workspace_changes_before_a_restart() {
    let mut w = World::new("id-kill-switch").await;
    let (other, minted) = killed_mid_first_mint_then_switched(&mut w).await;
    w.start_operator();
    unrecorded_token_is_revoked(&w, "t", &minted, &w.emulator, &other).await;
}

#[tokio::test]
async fn a_resource_deleted_after_its_first_mint_was_cut_short_and_its_spec_changed_leaves_nothing()
{
    let mut w = World::new("id-kill-delete").await;
    let (_other, minted) = killed_mid_first_mint_then_switched(&mut w).await;
    // Deleted before any operator looked at it again: the deletion is its only chance.
    w.tokens()
        .delete("t", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    w.start_operator();
    w.wait_token_gone("t").await;
    assert!(
        !is_live(&w.emulator, &minted),
        "the token of the cut-short first create is revoked"
    );
}

#[tokio::test]
async fn a_leader_killed_mid_mint_after_a_switch_leaves_nothing_when_switched_back() {
    let mut w = World::new("id-kill-back").await;
    let other = second_workspace(&w, 60_000).await;
    w.start_operator();
    let uid = w.create_token("t", spec("ws")).await.metadata.uid.unwrap();
    current(&w, "t").await;

    w.patch_spec(&w.tokens(), "t", json!({"workspaceRef": {"name": "ws2"}}))
        .await;
    let minted = wait_minted_beyond(&other, &uid, &[]).await;
    w.operator.as_mut().unwrap().kill();
    w.patch_spec(&w.tokens(), "t", json!({"workspaceRef": {"name": "ws"}}))
        .await;
    other.clear_faults();
    w.start_operator();
    unrecorded_token_is_revoked(&w, "t", &minted, &other, &w.emulator).await;
}
