//! The official Databricks Python SDK against the emulator: the wire format is confirmed by a
//! client nobody here wrote (tokens, token-management, OBO, errors, OAuth M2M).

use std::process::Command;

use databricks_emulator::{Emulator, EmulatorConfig};

#[tokio::test]
async fn the_official_python_sdk_works_against_the_emulator() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let setup = Command::new("bash")
        .arg(root.join("hack/python-venv.sh"))
        .status()
        .expect("run hack/python-venv.sh");
    assert!(
        setup.success(),
        "hack/python-venv.sh failed: the SDK venv is required"
    );

    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let admin = emulator.add_user("admin@example.com", true);
    let sp = emulator.add_service_principal("sdk-bot", false);
    let python = root.join(".cache/venv/bin/python");
    let script = root.join("tests/sdk/check_sdk.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .env("EMULATOR_HOST", emulator.base_url())
        .env("ADMIN_TOKEN", &admin.pat)
        .env("SP_APPLICATION_ID", &sp.application_id)
        .env("SP_CLIENT_SECRET", &sp.client_secret)
        .output()
        .await
        .expect("run the SDK check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "SDK check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"));
    // Every SDK call went through the emulator's API.
    assert!(emulator.stats().count("token/create") >= 2);
    assert!(emulator.stats().count("obo/create") >= 2);
}
