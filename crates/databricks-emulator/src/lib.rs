//! A local Databricks workspace emulator.
