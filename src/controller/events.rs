//! Kubernetes events on a `DatabricksToken`: every mint, rotation, revocation and failure.
//! Notes carry token ids and reasons, never token values.

use kube::{
    Resource,
    runtime::events::{Event, EventType, Recorder},
};
use tracing::warn;

use super::context::Context;
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
    // A Recorder per event: kube's Recorder caches every event it publishes for six minutes (to
    // count repeats as a series), which at thousands of mints is megabytes and a scan of the
    // whole cache per publish. Failures are published when status changes and then at most once
    // per `failure_events::REPEAT_FAILURE_EVERY`, so there are few repeats to count.
    let recorder = Recorder::new(ctx.kube.clone(), ctx.reporter.clone());
    if let Err(e) = recorder.publish(&event, &token.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish event");
    }
}
