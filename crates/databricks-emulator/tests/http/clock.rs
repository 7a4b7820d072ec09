//! The workspace's clock can be offset from the host's: reported times and expiry checks use it.

use databricks_emulator::EmulatorConfig;
use serde_json::json;

use crate::support::{ids, now_ms, world, world_with};

const FIVE_MINUTES: i64 = 5 * 60 * 1000;

#[tokio::test]
async fn creation_and_expiry_are_reported_on_the_offset_clock() {
    for offset in [FIVE_MINUTES, -FIVE_MINUTES] {
        let w = world_with(EmulatorConfig {
            clock_offset_ms: offset,
            ..EmulatorConfig::default()
        })
        .await;
        let before = now_ms();
        let (value, info) = w
            .create(&w.admin.pat, json!({"lifetime_seconds": 60}))
            .await;
        let after = now_ms();
        let creation = info["creation_time"].as_i64().unwrap();
        assert!(
            (before + offset..=after + offset).contains(&creation),
            "offset {offset}: creation {creation} not in [{before}, {after}] + offset"
        );
        assert_eq!(info["expiry_time"].as_i64().unwrap() - creation, 60_000);
        assert!(
            w.emulator.accepts(&value),
            "a lifetime is a lifetime on any clock"
        );
        let listed = w.get("/api/2.0/token/list", &w.admin.pat).await;
        let entry = listed.body["token_infos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["token_id"] == info["token_id"])
            .cloned()
            .unwrap();
        assert_eq!(entry["creation_time"], info["creation_time"]);
        let now = w.emulator.now_ms();
        assert!((now - now_ms() - offset).abs() < 1_000);
    }
}

#[tokio::test]
async fn expiry_checks_follow_the_offset_clock_changed_at_runtime() {
    let w = world().await;
    let (value, info) = w
        .create(&w.admin.pat, json!({"lifetime_seconds": 30}))
        .await;
    let id = info["token_id"].as_str().unwrap().to_string();
    assert!(w.emulator.accepts(&value));

    // Thirty-one seconds later on the workspace's clock, the token has expired there.
    w.emulator.set_clock_offset_ms(31_000);
    assert_eq!(w.emulator.settings().clock_offset_ms, 31_000);
    assert!(!w.emulator.accepts(&value));
    let listed = w.get("/api/2.0/token/list", &w.admin.pat).await;
    assert!(!ids(&listed.body).contains(&id));
    let r = w
        .post(
            "/api/2.0/token/delete",
            &w.admin.pat,
            json!({"token_id": id}),
        )
        .await;
    assert_eq!(
        r.status,
        reqwest::StatusCode::NOT_FOUND,
        "expired: nothing to revoke"
    );

    // Expiry is judged on the workspace's clock whenever it is asked: the same token is alive
    // again when that clock is set back.
    w.emulator.set_clock_offset_ms(-60_000);
    assert!(w.emulator.accepts(&value));
    let listed = w.get("/api/2.0/token/list", &w.admin.pat).await;
    assert!(ids(&listed.body).contains(&id));
}
