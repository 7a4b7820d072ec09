//! databricks-token-operator: keeps Databricks personal access tokens alive in Kubernetes Secrets.

pub mod config;
pub mod controller;
pub mod crd;
pub mod databricks;
pub mod hash;
pub mod http;
pub mod inventory;
pub mod leader;
pub mod metrics;
#[cfg(test)]
mod module_graph;
pub mod schedule;
pub mod secret;
pub mod tenancy;
pub mod time;
pub mod workload_identity;
pub mod workspace;

pub use time::now_millis;
