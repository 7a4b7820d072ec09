//! Restarting workloads after a rotation, the way `kubectl rollout restart` does: by stamping
//! their pod template with an annotation.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::EventType,
};

use super::context::Context;
use super::events;
use crate::crd::{DatabricksToken, RolloutKind, event_actions, event_reasons};
use crate::schedule::EpochMillis;

pub const RESTARTED_AT: &str = "dbtoken.dev/restarted-at";

/// Best effort: a failure is an event, not a failed rotation (the Secret already holds the token).
pub async fn restart_targets(token: &DatabricksToken, ctx: &Context, now: EpochMillis) {
    let Some(rotation) = &token.spec.rotation else {
        return;
    };
    let ns = token.namespace().unwrap_or_default();
    let stamp = crate::secret::format_time(now);
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}});
    let params = PatchParams::default();
    for target in &rotation.rollout_restart_targets {
        let result = match target.kind {
            RolloutKind::Deployment => Api::<Deployment>::namespaced(ctx.kube.clone(), &ns)
                .patch(&target.name, &params, &Patch::Merge(&patch))
                .await
                .map(|_| ()),
            RolloutKind::StatefulSet => Api::<StatefulSet>::namespaced(ctx.kube.clone(), &ns)
                .patch(&target.name, &params, &Patch::Merge(&patch))
                .await
                .map(|_| ()),
            RolloutKind::DaemonSet => Api::<DaemonSet>::namespaced(ctx.kube.clone(), &ns)
                .patch(&target.name, &params, &Patch::Merge(&patch))
                .await
                .map(|_| ()),
        };
        let (type_, reason, note) = match result {
            Ok(()) => (
                EventType::Normal,
                event_reasons::ROLLOUT_RESTARTED,
                format!("Restarted {:?} {}", target.kind, target.name),
            ),
            Err(e) => (
                EventType::Warning,
                event_reasons::ROLLOUT_RESTART_FAILED,
                format!("Could not restart {:?} {}: {e}", target.kind, target.name),
            ),
        };
        events::publish(
            ctx,
            token,
            type_,
            reason,
            event_actions::ROLLOUT_RESTART,
            note,
        )
        .await;
    }
}
