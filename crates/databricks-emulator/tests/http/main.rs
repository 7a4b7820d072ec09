//! The emulator over HTTP, endpoint by endpoint and error path by error path, with a plain
//! reqwest client (no code shared with the operator's client).

mod admin;
mod auth;
mod binary;
mod clock;
mod faults;
mod federation;
mod limits;
mod management;
mod oauth;
mod support;
mod tokens;
mod workspaces;
