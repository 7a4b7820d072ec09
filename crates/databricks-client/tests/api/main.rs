//! The client against the in-process Databricks emulator (and, where the emulator cannot stage
//! a situation, a small scripted server): every endpoint, its error paths, auth flows, retries
//! and the per-workspace limits.

mod auth;
mod federation;
mod limits;
mod management;
mod retries;
mod support;
mod tokens;
