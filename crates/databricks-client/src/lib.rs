//! Databricks REST client for the token and token-management APIs.
//!
//! - Auth: PAT, Databricks OAuth M2M, Microsoft Entra ID service principal, and workload
//!   identity federation with either ([`Credentials`], [`federation`]).
//! - Errors: the Databricks error body mapped to [`Error`] kinds the operator can act on.
//! - Retries: reads and deletes on 429/5xx/connection errors with backoff and Retry-After;
//!   creates only when the server certainly did not act (a blind retry could mint twice).
//! - Limits: a per-workspace rate limit and concurrency cap.
//! - Secrets never appear in `Debug` output, logs or error messages.

mod auth;
mod client;
mod config;
mod error;
pub mod federation;
mod limit;
mod retry;
mod secret;
mod stream;
mod types;

pub use auth::{AZURE_DATABRICKS_SCOPE, AccessGrant, Credentials, DEFAULT_ENTRA_AUTHORITY};
pub use client::WorkspaceClient;
pub use config::{ClientConfig, Endpoint, RequestObserver};
pub use error::Error;
pub use retry::RetryPolicy;
pub use secret::{SecretString, scrub};
pub use types::{
    ADMINS_GROUP, CreateTokenRequest, CreatedToken, CurrentUser, GroupRef, ManagedTokenFilter,
    TokenInfo,
};
