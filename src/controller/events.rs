//! Kubernetes events on a `DatabricksToken`: every mint, rotation, revocation and failure.
//! Notes carry token ids and reasons, never token values.

use kube::{
    Resource,
    runtime::events::{Event, EventType},
};
use tracing::warn;

use super::Context;
use crate::crd::DatabricksToken;

pub async fn publish(
    ctx: &Context,
    token: &DatabricksToken,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &token.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish event");
    }
}
