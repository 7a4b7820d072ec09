//! The baseline: the seed's rotation script (tests/sdk/rotation_baseline.py, official Python
//! SDK), rotating M tokens one after the other against an emulator of its own.

use std::{path::Path, process::Command};

use anyhow::{Context, bail};
use databricks_emulator::{Emulator, EmulatorConfig};

use crate::fleet::Calls;

pub struct Baseline {
    pub rotations: u64,
    pub seconds: f64,
    pub calls: Calls,
}

pub async fn run(root: &Path, python: &Path, m: usize) -> anyhow::Result<Baseline> {
    let emulator = Emulator::start(EmulatorConfig {
        quota_per_owner: 1_000_000,
        ..EmulatorConfig::default()
    })
    .await?;
    let admin = emulator.add_user("admin@example.com", true);
    let script = root.join("tests/sdk/rotation_baseline.py");
    let run_script = |mode: &str| {
        let mut cmd = Command::new(python);
        cmd.arg(&script)
            .arg(mode)
            .arg(m.to_string())
            .env("DATABRICKS_HOST", emulator.base_url())
            .env("DATABRICKS_TOKEN", &admin.pat);
        async move {
            // The emulator serves on this runtime: run the child off it.
            let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
            if !out.status.success() {
                bail!(
                    "rotation_baseline.py {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)
                .context("rotation_baseline.py printed no JSON")?;
            anyhow::Ok(v)
        }
    };
    run_script("seed").await?;
    let before = emulator.stats();
    let out = run_script("rotate").await?;
    let calls = Calls::between(&before, &emulator.stats());
    Ok(Baseline {
        rotations: out["rotations"].as_u64().unwrap_or(0),
        seconds: out["seconds"].as_f64().unwrap_or(0.0),
        calls,
    })
}
