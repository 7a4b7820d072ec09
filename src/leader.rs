//! Leader election on a coordination.k8s.io/v1 Lease, through kube-lease-manager (server-side
//! apply on the Lease makes two holders impossible). Only the leader reconciles; a replica that
//! loses the Lease exits so that it can never act beside the new leader.

use std::time::Duration;

use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::{sync::watch, task::JoinHandle};

pub struct LeaderElector {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

impl LeaderElector {
    /// Start competing for the Lease `namespace/name` as `identity`.
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        lease_duration: Duration,
    ) -> Result<Self, LeaseManagerError> {
        let seconds = lease_duration.as_secs().max(3);
        let manager = LeaseManagerBuilder::new(client, name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(seconds)
            // Renew a third of the duration before expiry, so one slow request does not lose it.
            .with_grace((seconds / 3).max(1))
            .with_field_manager(format!("databricks-token-operator/{identity}"))
            .build()
            .await?;
        let (state, task) = manager.watch().await;
        Ok(Self { state, task })
    }

    /// Resolves once this replica holds the Lease.
    pub async fn acquire(&mut self) -> Result<(), watch::error::RecvError> {
        self.state.wait_for(|leading| *leading).await.map(|_| ())
    }

    /// Resolves when leadership is lost after having been held.
    pub async fn lost(&mut self) {
        let _ = self.state.wait_for(|leading| !*leading).await;
    }

    /// Give the Lease up, so another replica takes over at once rather than after it expires.
    pub async fn release(self) {
        drop(self.state);
        let _ = self.task.await;
    }
}
