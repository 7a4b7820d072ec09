//! Databricks REST client for the token APIs.
