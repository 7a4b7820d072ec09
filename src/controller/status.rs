//! The `DatabricksToken` status: built from the Secret's record (never from a token value)
//! and written with server-side apply only when it changed.

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};

use super::context::{Context, FIELD_MANAGER};
use super::error::Error;
use super::{
    outcome::{Failed, Synced},
    plan,
};
use crate::crd::condition_types::{DEGRADED, READY, ROTATING};
use crate::crd::reasons::{AS_EXPECTED, IDLE, MINTING, TOKEN_READY};
use crate::crd::{
    Condition, ConditionStatus, DatabricksToken, DatabricksTokenStatus, PreviousToken, Timestamp,
    find_condition, upsert_condition,
};
use crate::schedule::EpochMillis;
use crate::secret::{TokenOrigin, format_time};

/// Whether the last create failed with an unknown outcome, so a token may exist that the Secret
/// does not hold.
pub fn is_minting(token: &DatabricksToken) -> bool {
    token
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, ROTATING))
        .is_some_and(|c| c.status == ConditionStatus::True && c.reason == MINTING)
}

/// Enough of a 64-hex-digit token id to tell tokens apart in `kubectl get -o wide`.
fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// Status after a successful sync.
pub fn synced(token: &DatabricksToken, synced: &Synced, now: EpochMillis) -> DatabricksTokenStatus {
    let mut status = token.status.clone().unwrap_or_default();
    let generation = token.metadata.generation;
    let now_text = format_time(now);
    let record = &synced.record;
    let expiry = record.current.expiry.map(Timestamp::from_millis);
    status.token_id = Some(record.current.token_id.clone());
    status.short_token_id = Some(short_id(&record.current.token_id));
    status.secret_name = Some(synced.secret_name.clone());
    status.secret_resource_version = synced.secret_version.clone();
    status.expiry_time = expiry;
    status.renewal_time = plan::renewal_of(token, record).map(Timestamp::from_millis);
    if let Some(at) = synced.rotated_at {
        status.last_rotation_time = Some(Timestamp::from_millis(at));
    }
    status.previous_tokens = record
        .previous
        .iter()
        .map(|p| PreviousToken {
            token_id: p.token_id.clone(),
            revoke_after: Timestamp::from_millis(p.revoke_after),
        })
        .collect();
    status.observed_generation = generation;
    let ready_message = format!(
        "Secret {} holds token {} (expires {})",
        synced.secret_name,
        record.current.token_id,
        expiry.map_or_else(|| "never".into(), |t| t.to_string())
    );
    let c = &mut status.conditions;
    upsert_condition(
        c,
        Condition::new(
            READY,
            ConditionStatus::True,
            TOKEN_READY,
            ready_message,
            &now_text,
            generation,
        ),
    );
    upsert_condition(
        c,
        Condition::new(
            ROTATING,
            ConditionStatus::False,
            IDLE,
            "",
            &now_text,
            generation,
        ),
    );
    upsert_condition(
        c,
        Condition::new(
            DEGRADED,
            ConditionStatus::False,
            AS_EXPECTED,
            "",
            &now_text,
            generation,
        ),
    );
    status
}

/// Status after a failed sync: Degraded with the reason. Ready stays True only while the
/// Secret serves a token that has not expired; what the sync completed before failing (a
/// rotation) is recorded first.
pub fn failed(token: &DatabricksToken, failed: &Failed, now: EpochMillis) -> DatabricksTokenStatus {
    let mut status = match &failed.partial {
        Some(partial) => synced(token, partial, now),
        None => token.status.clone().unwrap_or_default(),
    };
    let error = &failed.error;
    let generation = token.metadata.generation;
    let now_text = format_time(now);
    let reason = error.reason();
    let message = error.to_string();
    let token_alive = status
        .expiry_time
        .is_none_or(|expiry| expiry.as_millis() > now)
        && status.token_id.is_some();
    let c = &mut status.conditions;
    if !plan::ready_after_failure(failed.secret_serves, token_alive) {
        upsert_condition(
            c,
            Condition::new(
                READY,
                ConditionStatus::False,
                &reason,
                message.clone(),
                &now_text,
                generation,
            ),
        );
    }
    // An uncertain create stays flagged until a reconcile succeeds whole (its token list
    // included): only then has the token it may have left been looked for.
    let rotating = if error.mint_uncertain() || is_minting(token) {
        Condition::new(
            ROTATING,
            ConditionStatus::True,
            MINTING,
            "The last create may have minted a token; it will be found and revoked",
            &now_text,
            generation,
        )
    } else {
        Condition::new(
            ROTATING,
            ConditionStatus::False,
            IDLE,
            "",
            &now_text,
            generation,
        )
    };
    upsert_condition(c, rotating);
    upsert_condition(
        c,
        Condition::new(
            DEGRADED,
            ConditionStatus::True,
            &reason,
            message,
            &now_text,
            generation,
        ),
    );
    status
}

/// Whether the status says Ready=True.
pub fn is_ready(status: &DatabricksTokenStatus) -> bool {
    find_condition(&status.conditions, READY).is_some_and(|c| c.status == ConditionStatus::True)
}

/// Whether a failure differs from the one already reported (worth an event).
pub fn failure_is_news(
    before: Option<&DatabricksTokenStatus>,
    after: &DatabricksTokenStatus,
) -> bool {
    let degraded = |s: &DatabricksTokenStatus| {
        find_condition(&s.conditions, DEGRADED)
            .map(|c| (c.status, c.reason.clone(), c.message.clone()))
    };
    before.and_then(degraded) != degraded(after)
}

/// Write `desired` unless it equals what the object already has (and nothing else touched it).
pub async fn write_if_changed(
    token: &DatabricksToken,
    ctx: &Context,
    desired: &DatabricksTokenStatus,
) -> Result<(), Error> {
    if token.status.as_ref() == Some(desired) {
        return Ok(());
    }
    write(token, ctx, desired).await
}

/// Record, before a create, the places a token may be left unrecorded (see `sweep`).
pub async fn record_pending_sweeps(
    token: &DatabricksToken,
    ctx: &Context,
    pending: &[TokenOrigin],
) -> Result<(), Error> {
    let mut desired = token.status.clone().unwrap_or_default();
    desired.pending_sweeps = pending.to_vec();
    write_if_changed(token, ctx, &desired).await
}

async fn write(
    token: &DatabricksToken,
    ctx: &Context,
    status: &DatabricksTokenStatus,
) -> Result<(), Error> {
    let api: Api<DatabricksToken> =
        Api::namespaced(ctx.kube.clone(), &token.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "dbtoken.dev/v1alpha1",
        "kind": "DatabricksToken",
        "status": status,
    });
    api.patch_status(
        &token.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube("write status"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DatabricksTokenSpec;
    use crate::secret::{CurrentToken, TokenRecord};

    const NOW: EpochMillis = 1_700_000_000_000;
    const HOUR: EpochMillis = 3_600_000;

    /// A resource whose status says Ready with token `old`, expiring in an hour.
    fn ready_token() -> DatabricksToken {
        let spec: DatabricksTokenSpec =
            serde_yaml::from_str("workspaceRef: {name: ws}\nlifetime: 3h\n").unwrap();
        let mut t = DatabricksToken::new("t", spec);
        t.metadata.generation = Some(1);
        let synced = synced_with("old", NOW - HOUR);
        t.status = Some(synced_status(&t, &synced));
        t
    }

    fn synced_with(id: &str, creation: EpochMillis) -> Synced {
        Synced {
            record: TokenRecord {
                current: CurrentToken {
                    token_id: id.into(),
                    creation,
                    expiry: Some(creation + 2 * HOUR),
                    value_digest: "d".into(),
                    origin: None,
                },
                previous: vec![],
                spec_hash: "h".into(),
                rotate_request_handled: None,
            },
            secret_name: "t".into(),
            secret_version: Some("1".into()),
            rotated_at: Some(creation),
            next_verification: creation + HOUR,
        }
    }

    fn synced_status(t: &DatabricksToken, s: &Synced) -> DatabricksTokenStatus {
        synced(t, s, s.record.current.creation)
    }

    fn quota() -> Error {
        Error::databricks("create token")(databricks_client::Error::QuotaExceeded {
            code: "QUOTA_EXCEEDED".into(),
            message: "too many tokens".into(),
        })
    }

    fn failure(secret_serves: Option<bool>, partial: Option<Synced>) -> Failed {
        Failed {
            error: quota(),
            secret_serves,
            partial,
        }
    }

    fn condition(s: &DatabricksTokenStatus, type_: &str) -> (ConditionStatus, String) {
        let c = find_condition(&s.conditions, type_).expect(type_);
        (c.status, c.reason.clone())
    }

    #[test]
    fn a_failed_replacement_of_a_lost_token_is_not_ready() {
        let t = ready_token();
        let s = failed(&t, &failure(Some(false), None), NOW);
        assert_eq!(
            condition(&s, READY),
            (ConditionStatus::False, "QUOTA_EXCEEDED".into())
        );
        assert!(!is_ready(&s));
        assert_eq!(
            condition(&s, DEGRADED),
            (ConditionStatus::True, "QUOTA_EXCEEDED".into())
        );
    }

    #[test]
    fn a_failed_renewal_stays_ready_while_the_token_lives() {
        let t = ready_token();
        for serves in [Some(true), None] {
            let s = failed(&t, &failure(serves, None), NOW);
            assert!(is_ready(&s), "{serves:?}");
        }
        let s = failed(&t, &failure(Some(true), None), NOW + HOUR);
        assert!(!is_ready(&s), "expired");
    }

    #[test]
    fn a_rotation_is_recorded_although_a_later_step_failed() {
        let t = ready_token();
        let s = failed(&t, &failure(Some(true), Some(synced_with("new", NOW))), NOW);
        assert_eq!(s.token_id.as_deref(), Some("new"));
        assert_eq!(s.last_rotation_time, Some(Timestamp::from_millis(NOW)));
        assert!(is_ready(&s));
        assert_eq!(condition(&s, DEGRADED).0, ConditionStatus::True);
    }

    #[test]
    fn the_same_failure_again_is_no_news() {
        let t = ready_token();
        let first = failed(&t, &failure(Some(true), None), NOW);
        assert!(failure_is_news(t.status.as_ref(), &first));
        let again = failed(&t, &failure(Some(true), None), NOW + 1_000);
        assert!(!failure_is_news(Some(&first), &again));
        let other = Failed {
            error: Error::SecretConflict { name: "t".into() },
            secret_serves: Some(false),
            partial: None,
        };
        assert!(failure_is_news(Some(&first), &failed(&t, &other, NOW)));
    }

    #[test]
    fn an_uncertain_create_stays_flagged_until_a_whole_success() {
        let mut t = ready_token();
        let s = failed(&t, &failure(Some(true), None), NOW);
        assert!(!is_minting_status(&s));
        let uncertain = Failed {
            error: Error::databricks("create token")(databricks_client::Error::Transport {
                message: "reset".into(),
                uncertain: true,
            }),
            secret_serves: Some(true),
            partial: None,
        };
        t.status = Some(failed(&t, &uncertain, NOW));
        assert!(is_minting(&t));
        // A later failure (the list it needs failed, a rotation went through) keeps the flag.
        let later = failed(&t, &failure(Some(true), Some(synced_with("new", NOW))), NOW);
        assert!(is_minting_status(&later));
        assert!(!is_minting_status(&synced(
            &t,
            &synced_with("new", NOW),
            NOW
        )));
    }

    fn is_minting_status(s: &DatabricksTokenStatus) -> bool {
        find_condition(&s.conditions, ROTATING)
            .is_some_and(|c| c.status == ConditionStatus::True && c.reason == MINTING)
    }
}
