//! One reconcile of a `DatabricksToken`, end to end: finalize a deleted resource, otherwise
//! sync it and record the outcome (status, metrics, events, backoff); and when to look again
//! after a failure.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use kube::{
    Resource, ResourceExt,
    runtime::{controller::Action, events::EventType},
};
use tracing::{Instrument, debug, info_span, warn};

use super::context::Context;
use super::error::Error;
use super::{cleanup, events, finalizer, oauth_token, plan, status, sweep, token};
use crate::crd::{DatabricksToken, Timestamp, TokenType, event_actions};
use crate::schedule::EpochMillis;
use crate::workspace::Workspaces;

/// How soon a reconcile whose write met a newer object (HTTP 409) runs again.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);

pub async fn reconcile(token: Arc<DatabricksToken>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!("reconcile", namespace = %token.namespace().unwrap_or_default(), name = %token.name_any());
    async move {
        // Until the watch caches are filled, a workspace or Secret would look missing.
        ctx.caches_ready.clone().await;
        let started = Instant::now();
        let result = reconcile_inner(&token, &ctx).await;
        ctx.metrics.reconcile_duration(started.elapsed());
        result
    }
    .instrument(span)
    .await
}

async fn reconcile_inner(token: &DatabricksToken, ctx: &Context) -> Result<Action, Error> {
    if token.meta().deletion_timestamp.is_some() {
        return cleanup::finalize(token, ctx).await;
    }
    let ns = token.namespace().unwrap_or_default();
    let name = token.name_any();
    let now = crate::now_millis();
    // Where this resource may have left a token it does not record (see `sweep`).
    let mut pending = token
        .status
        .as_ref()
        .map(|s| s.pending_sweeps.clone())
        .unwrap_or_default();
    // A refused finalizer (workspace being deleted) is a failure shown in status like any other.
    let result = async {
        finalizer::ensure(token, ctx).await?;
        // An OAuth access token has its own, much shorter, life (oauth_token).
        match token.spec.token_type {
            TokenType::Pat => token::sync(token, ctx, now, &mut pending).await,
            TokenType::OAuth => {
                let synced = oauth_token::sync(token, ctx, now).await;
                if synced.is_ok() && !pending.is_empty() {
                    // Tokens left from when it was a PAT resource: none of them is its own now.
                    pending =
                        sweep::sweep_pending(ctx, token, std::mem::take(&mut pending), None, None)
                            .await;
                }
                synced
            }
        }
    }
    .await;
    let with_pending = |mut status: crate::crd::DatabricksTokenStatus| {
        status.pending_sweeps = pending.clone();
        status
    };
    match result {
        Ok(synced) => {
            let desired = with_pending(status::synced(token, &synced, now));
            status::write_if_changed(token, ctx, &desired).await?;
            let renewal = plan::renewal_of(token, &synced.record);
            ctx.metrics
                .observe_token(&ns, &name, true, synced.record.current.expiry, renewal);
            let uid = token.uid().unwrap_or_default();
            ctx.failure_events.clear(&uid);
            let wakeup = plan::next_wakeup(
                token,
                &synced.record,
                synced.next_verification,
                now,
                ctx.settings.max_requeue(),
            );
            if pending.is_empty() {
                ctx.backoff.reset(&uid);
                Ok(Action::requeue(wakeup))
            } else {
                // A place that could not be swept is tried again, backing off.
                Ok(Action::requeue(
                    wakeup.min(ctx.backoff.next_delay(&uid, None)),
                ))
            }
        }
        Err(failed) if failed.error.is_conflict() => {
            // What the sync completed is recorded all the same; the rest retries at once.
            if let Some(partial) = &failed.partial {
                let desired = with_pending(status::synced(token, partial, now));
                if let Err(e) = status::write_if_changed(token, ctx, &desired).await {
                    warn!(error = %e, "could not record the rotation in status");
                }
            }
            ctx.metrics.reconcile_error("Conflict");
            Err(failed.error)
        }
        Err(failed) => {
            let error = &failed.error;
            if error.is_auth_failure() {
                ctx.workspaces.invalidate(&Workspaces::key_for(token));
            }
            if error.is_refused() {
                // The workspace says at once whether its credential is what was refused.
                ctx.workspace_triggers.refused(&Workspaces::key_for(token));
            }
            let desired = with_pending(status::failed(token, &failed, now));
            let changed = token.status.as_ref() != Some(&desired);
            if let Err(e) = status::write_if_changed(token, ctx, &desired).await {
                warn!(error = %e, "could not record the failure in status");
            }
            // A new failure is published at once, a persisting one again now and then, so that
            // `kubectl get events` shows it is current.
            let news = changed && status::failure_is_news(token.status.as_ref(), &desired);
            if ctx
                .failure_events
                .due(&token.uid().unwrap_or_default(), news, now)
            {
                events::publish(
                    ctx,
                    token,
                    EventType::Warning,
                    &error.reason(),
                    event_actions::RECONCILE,
                    error.to_string(),
                )
                .await;
            }
            let ready = status::is_ready(&desired);
            let expiry = desired.expiry_time.map(Timestamp::as_millis);
            let renewal = desired.renewal_time.map(Timestamp::as_millis);
            ctx.metrics
                .observe_token(&ns, &name, ready, expiry, renewal);
            ctx.metrics.reconcile_error(&error.reason());
            Err(failed.error)
        }
    }
}

pub fn error_policy(token: Arc<DatabricksToken>, error: &Error, ctx: Arc<Context>) -> Action {
    if error.is_conflict() {
        debug!(namespace = %token.namespace().unwrap_or_default(), name = %token.name_any(), error = %error, "write conflict; retrying from the newer object");
        return Action::requeue(CONFLICT_RETRY);
    }
    let now = crate::now_millis();
    let workspace_retry = ctx
        .workspace_backoff
        .retry_at(&Workspaces::key_for(&token))
        .filter(|_| error.is_workspace_failure());
    let delay = match error.wait_until() {
        // A wait someone else set (the workspace's backoff, the replacement budget): the
        // resource's own backoff does not grow meanwhile.
        Some(until) => wait_until(now, until),
        None => {
            let own = ctx
                .backoff
                .next_delay(&token.uid().unwrap_or_default(), error.retry_after());
            own.max(workspace_retry.map_or(Duration::ZERO, |at| wait_until(now, at)))
        }
    };
    // However long the backoff, look again when the token in the Secret expires: Ready must turn
    // False then, not when the backoff ends.
    let expiry = token
        .status
        .as_ref()
        .and_then(|s| s.expiry_time)
        .map(Timestamp::as_millis);
    let delay = plan::failure_wakeup(delay, expiry, now);
    warn!(
        namespace = %token.namespace().unwrap_or_default(),
        name = %token.name_any(),
        reason = %error.reason(),
        error = %error,
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// The delay until `at`, a little later so that the wait is surely over, and spread.
fn wait_until(now: EpochMillis, at: EpochMillis) -> Duration {
    let wait = Duration::from_millis(at.saturating_sub(now).max(0) as u64);
    wait + Duration::from_millis(100) + wait.mul_f64(rand::random_range(0.0..0.1))
}

#[cfg(test)]
mod tests;
