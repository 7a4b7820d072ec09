//! Fixtures shared by the integration tests: the real control plane, the operator process, and
//! one test's world (namespace + Databricks emulator + workspace).

#![allow(dead_code)]

pub mod cluster;
pub mod operator;
pub mod tools;
pub mod world;
