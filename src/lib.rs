//! databricks-token-operator: keeps Databricks personal access tokens alive in Kubernetes Secrets.

pub mod crd;
pub mod schedule;
pub mod secret;
