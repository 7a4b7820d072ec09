//! Leader election on a coordination.k8s.io/v1 Lease: only the leader reconciles.
//!
//! Written here rather than taken from kube-lease-manager: that crate frees an expired Lease with
//! an unconditional patch (a slow candidate can wipe a holder that has just taken it) and keeps
//! reporting leadership while its renewals fail, so two replicas could act at once. Here:
//! - every write is a `replace` carrying the resourceVersion it was based on, so of two candidates
//!   racing for a free or expired Lease exactly one wins (the other gets 409 Conflict);
//! - a Lease held by another identity counts as expired only after `leaseDurationSeconds` have
//!   passed on the local clock since its resourceVersion last changed (no cross-node clock
//!   comparison, as client-go does);
//! - a leader that cannot renew within the renew deadline (2/3 of the lease duration, counted
//!   from when its last successful renewal was sent) reports the loss before any other replica
//!   may take the Lease. Losing is final for an elector: the process is expected to exit.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use rand::Rng;
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
    time::{Instant, sleep, timeout_at},
};
use tracing::{debug, info, warn};

/// Where this replica stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the Lease.
    Candidate,
    /// Holds the Lease.
    Leading,
    /// Held the Lease and lost it (or could not renew it in time). Final.
    Lost,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease duration {0:?} is too short: use at least 2s")]
    DurationTooShort(Duration),
    #[error("leader election stopped before this replica became the leader")]
    Stopped,
}

/// Competes for one Lease in the background from `start` until `release` (or drop).
pub struct LeaderElector {
    phase: watch::Receiver<Phase>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    lease_duration: Duration,
}

impl LeaderElector {
    /// Start competing for the Lease `namespace/name` as `identity`. The Lease is created when
    /// missing. Fails only on a lease duration under 2 s; API errors are logged and retried.
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        lease_duration: Duration,
    ) -> Result<Self, LeaderError> {
        if lease_duration < Duration::from_secs(2) {
            return Err(LeaderError::DurationTooShort(lease_duration));
        }
        // The Lease holds whole seconds: round up so that others never wait less than we assume.
        let seconds = lease_duration.as_secs() + u64::from(lease_duration.subsec_nanos() > 0);
        let lease_duration = Duration::from_secs(seconds);
        let campaign = Campaign {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_seconds: i32::try_from(seconds).unwrap_or(i32::MAX),
            lease_duration,
            retry_period: lease_duration / 3,
            renew_deadline: lease_duration * 2 / 3,
            observed: None,
        };
        let (phase_tx, phase) = watch::channel(Phase::Candidate);
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(campaign.run(phase_tx, stop_rx));
        Ok(Self {
            phase,
            stop,
            task,
            lease_duration,
        })
    }

    /// Resolves once this replica holds the Lease; fails if the elector stopped first.
    pub async fn acquire(&mut self) -> Result<(), LeaderError> {
        match self.phase.wait_for(|p| *p != Phase::Candidate).await {
            Ok(p) if *p == Phase::Leading => Ok(()),
            _ => Err(LeaderError::Stopped),
        }
    }

    /// Resolves when leadership is lost (or the elector has stopped): stop acting at once.
    pub async fn lost(&mut self) {
        let _ = self.phase.wait_for(|p| *p == Phase::Lost).await;
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// A receiver that sees every change of phase.
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.clone()
    }

    /// Stop competing and, if leading, free the Lease so that another replica takes over at once
    /// rather than after it expires. Waits at most one lease duration.
    pub async fn release(self) {
        let _ = self.stop.send(());
        let deadline = Instant::now() + self.lease_duration;
        if timeout_at(deadline, self.task).await.is_err() {
            warn!("leader election did not stop in time");
        }
    }
}

struct Campaign {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_seconds: i32,
    lease_duration: Duration,
    retry_period: Duration,
    renew_deadline: Duration,
    /// The Lease's resourceVersion as last seen and when it was first seen.
    observed: Option<(String, Instant)>,
}

enum Renewal {
    Renewed(Box<Lease>),
    /// Someone else holds the Lease, or it is gone.
    Lost,
    /// Could not tell; try again until the deadline.
    Failed(kube::Error),
}

impl Campaign {
    async fn run(mut self, phase: watch::Sender<Phase>, mut stop: oneshot::Receiver<()>) {
        let (mut lease, mut renewed_at) = loop {
            let sent = Instant::now();
            match self.try_acquire().await {
                Ok(Some(lease)) => break (lease, sent),
                Ok(None) => {}
                Err(e) => warn!(error = %e, lease = %self.name, "cannot read or take the Lease"),
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = sleep(self.jittered_retry()) => {}
            }
        };
        info!(identity = %self.identity, lease = %self.name, "acquired leadership");
        let _ = phase.send(Phase::Leading);

        loop {
            tokio::select! {
                _ = &mut stop => {
                    self.release(lease).await;
                    return;
                }
                _ = sleep(self.retry_period) => {}
            }
            let deadline = renewed_at + self.renew_deadline;
            match self.renew_until(lease, deadline, &mut stop).await {
                Some((renewed, sent)) => {
                    lease = renewed;
                    renewed_at = sent;
                }
                None => {
                    warn!(identity = %self.identity, lease = %self.name, "lost leadership");
                    let _ = phase.send(Phase::Lost);
                    return;
                }
            }
        }
    }

    /// Renew, retrying failures until `deadline`. None: leadership is lost (or we were stopped,
    /// in which case the Lease is left to expire: we can no longer prove we hold it).
    async fn renew_until(
        &mut self,
        mut lease: Lease,
        deadline: Instant,
        stop: &mut oneshot::Receiver<()>,
    ) -> Option<(Lease, Instant)> {
        loop {
            let sent = Instant::now();
            match timeout_at(deadline, self.renew(lease.clone())).await {
                Err(_) => {
                    warn!(lease = %self.name, "renewal deadline passed");
                    return None;
                }
                Ok(Renewal::Renewed(renewed)) => return Some((*renewed, sent)),
                Ok(Renewal::Lost) => return None,
                Ok(Renewal::Failed(e)) => {
                    warn!(error = %e, lease = %self.name, "cannot renew the Lease; retrying");
                }
            }
            let pause = (self.retry_period / 4).max(Duration::from_millis(200));
            tokio::select! {
                _ = &mut *stop => return None,
                _ = tokio::time::sleep_until(deadline.min(Instant::now() + pause)) => {}
            }
            if Instant::now() >= deadline {
                warn!(lease = %self.name, "renewal deadline passed");
                return None;
            }
            // A Conflict may mean only that our copy is stale: re-read before retrying.
            match self.api.get_opt(&self.name).await {
                Ok(Some(fresh)) if self.holds(&fresh) => lease = fresh,
                Ok(_) => return None,
                Err(_) => {}
            }
        }
    }

    /// One attempt to take the Lease. Some(lease as written) when this replica now holds it.
    async fn try_acquire(&mut self) -> Result<Option<Lease>, kube::Error> {
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.held_spec(0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => Ok(Some(created)),
                Err(e) if is_status(&e, 409) => Ok(None),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let transitions = spec.lease_transitions.unwrap_or(0);
        let transitions = match holder {
            // Our own identity: a restarted container of the same pod, whose old process is gone.
            Some(h) if h == self.identity => transitions,
            None => transitions.saturating_add(1),
            Some(h) => {
                if !self.expired(&current, spec.lease_duration_seconds) {
                    debug!(holder = %h, lease = %self.name, "Lease held by another replica");
                    return Ok(None);
                }
                info!(previous = %h, lease = %self.name, "taking over an expired Lease");
                transitions.saturating_add(1)
            }
        };
        let mut lease = current;
        lease.spec = Some(self.held_spec(transitions));
        self.replace(&lease).await.map(|r| r.ok())
    }

    async fn renew(&self, mut lease: Lease) -> Renewal {
        let mut spec = lease.spec.take().unwrap_or_default();
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        spec.lease_duration_seconds = Some(self.lease_seconds);
        lease.spec = Some(spec);
        match self.replace(&lease).await {
            Ok(Ok(renewed)) => Renewal::Renewed(Box::new(renewed)),
            Ok(Err(Conflict)) => match self.api.get_opt(&self.name).await {
                // Still ours (someone touched e.g. its labels): retry on the fresh copy.
                Ok(Some(fresh)) if self.holds(&fresh) => match self.replace_renewed(fresh).await {
                    Ok(Ok(renewed)) => Renewal::Renewed(Box::new(renewed)),
                    Ok(Err(Conflict)) => Renewal::Lost,
                    Err(e) => Renewal::Failed(e),
                },
                Ok(_) => Renewal::Lost,
                Err(e) => Renewal::Failed(e),
            },
            Err(e) if is_status(&e, 404) => Renewal::Lost,
            Err(e) => Renewal::Failed(e),
        }
    }

    async fn replace_renewed(
        &self,
        mut lease: Lease,
    ) -> Result<Result<Lease, Conflict>, kube::Error> {
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        self.replace(&lease).await
    }

    /// Free the Lease we hold; the next candidate takes it without waiting for expiry.
    async fn release(&self, mut lease: Lease) {
        let mut spec = lease.spec.take().unwrap_or_default();
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        lease.spec = Some(spec);
        let deadline = Instant::now() + self.renew_deadline;
        match timeout_at(deadline, self.replace(&lease)).await {
            Ok(Ok(Ok(_))) => info!(lease = %self.name, "released leadership"),
            Ok(Ok(Err(Conflict))) => info!(lease = %self.name, "Lease already taken by another"),
            Ok(Err(e)) => warn!(error = %e, lease = %self.name, "cannot release the Lease"),
            Err(_) => warn!(lease = %self.name, "releasing the Lease timed out"),
        }
    }

    /// Replace, conditional on the resourceVersion carried by `lease`.
    async fn replace(&self, lease: &Lease) -> Result<Result<Lease, Conflict>, kube::Error> {
        match self
            .api
            .replace(&self.name, &PostParams::default(), lease)
            .await
        {
            Ok(written) => Ok(Ok(written)),
            Err(e) if is_status(&e, 409) => Ok(Err(Conflict)),
            Err(e) => Err(e),
        }
    }

    fn held_spec(&self, transitions: i32) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_seconds),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    fn holds(&self, lease: &Lease) -> bool {
        lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.identity.as_str())
    }

    /// Whether the Lease has gone unchanged for its duration, by our own clock.
    fn expired(&mut self, lease: &Lease, duration_seconds: Option<i32>) -> bool {
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let seen_at = match &self.observed {
            Some((v, at)) if *v == version => *at,
            _ => {
                let now = Instant::now();
                self.observed = Some((version, now));
                now
            }
        };
        let duration = duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.lease_duration);
        seen_at.elapsed() > duration
    }

    /// The retry period with up to 20% jitter, so candidates do not move in lockstep.
    fn jittered_retry(&self) -> Duration {
        let factor = rand::rng().random_range(1.0..1.2);
        self.retry_period.mul_f64(factor)
    }
}

/// The Lease changed since we read it.
struct Conflict;

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}
