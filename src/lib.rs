//! databricks-token-operator: keeps Databricks personal access tokens alive in Kubernetes Secrets.

pub mod config;
pub mod controller;
pub mod crd;
pub mod databricks;
pub mod http;
pub mod inventory;
pub mod leader;
pub mod metrics;
pub mod schedule;
pub mod secret;
pub mod tenancy;
pub mod workload_identity;
pub mod workspace;

/// Milliseconds since the Unix epoch, the time unit of Databricks and of the schedule.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
