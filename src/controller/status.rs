//! The `DatabricksToken` status: built from the Secret's record (never from a token value)
//! and written with server-side apply only when it changed.

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};

use super::{Context, Error, FIELD_MANAGER, plan, token::Synced};
use crate::crd::{
    Condition, ConditionStatus, DatabricksToken, DatabricksTokenStatus, PreviousToken,
    find_condition, upsert_condition,
};
use crate::schedule::EpochMillis;
use crate::secret::format_time;

pub const READY: &str = "Ready";
pub const ROTATING: &str = "Rotating";
pub const DEGRADED: &str = "Degraded";
const MINTING: &str = "Minting";

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
    let expiry = record.current.expiry.map(format_time);
    status.token_id = Some(record.current.token_id.clone());
    status.short_token_id = Some(short_id(&record.current.token_id));
    status.secret_name = Some(synced.secret_name.clone());
    status.secret_resource_version = synced.secret_version.clone();
    status.expiry_time = expiry.clone();
    status.renewal_time = plan::renewal_of(token, record).map(format_time);
    if let Some(at) = synced.rotated_at {
        status.last_rotation_time = Some(format_time(at));
    }
    status.previous_tokens = record
        .previous
        .iter()
        .map(|p| PreviousToken {
            token_id: p.token_id.clone(),
            revoke_after: format_time(p.revoke_after),
        })
        .collect();
    status.observed_generation = generation;
    let ready_message = format!(
        "Secret {} holds token {} (expires {})",
        synced.secret_name,
        record.current.token_id,
        expiry.as_deref().unwrap_or("never")
    );
    let c = &mut status.conditions;
    upsert_condition(
        c,
        Condition::new(
            READY,
            ConditionStatus::True,
            "TokenReady",
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
            "Idle",
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
            "AsExpected",
            "",
            &now_text,
            generation,
        ),
    );
    status
}

/// Status after a failed sync: Degraded with the reason; still Ready while the Secret's token lives.
pub fn failed(token: &DatabricksToken, error: &Error, now: EpochMillis) -> DatabricksTokenStatus {
    let mut status = token.status.clone().unwrap_or_default();
    let generation = token.metadata.generation;
    let now_text = format_time(now);
    let reason = error.reason();
    let message = error.to_string();
    let token_alive = status
        .expiry_time
        .as_deref()
        .and_then(crate::secret::parse_time)
        .is_some_and(|expiry| expiry > now)
        && status.token_id.is_some();
    let c = &mut status.conditions;
    if !token_alive {
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
    let rotating = if error.mint_uncertain() {
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
            "Idle",
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
