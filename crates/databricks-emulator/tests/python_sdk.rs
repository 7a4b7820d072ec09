//! The official Databricks Python SDK (`databricks-sdk` on PyPI) against the emulator: its wire
//! format is confirmed by a client nobody here wrote. The venv comes from hack/python-venv.sh
//! (run here; it is cached and idempotent). A missing venv fails the test, it never skips.

use std::{path::PathBuf, process::Stdio, time::Duration};

use databricks_emulator::{Emulator, EmulatorConfig};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Make sure the SDK venv exists, or fail naming the script that creates it.
fn python_with_sdk() -> PathBuf {
    let root = repo_root();
    let script = root.join("hack/python-venv.sh");
    let status = std::process::Command::new("bash").arg(&script).status();
    let python = root.join(".cache/venv/bin/python");
    assert!(
        matches!(status, Ok(s) if s.success()) && python.exists(),
        "the Databricks SDK venv is missing and hack/python-venv.sh could not create it \
         ({status:?}); run `hack/python-venv.sh` (needs python3 with venv and PyPI access)"
    );
    python
}

#[tokio::test]
async fn the_official_python_sdk_works_against_the_emulator() {
    let python = python_with_sdk();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let admin = emulator.add_user("admin@example.com", true);
    let sp = emulator.add_service_principal("sdk-bot", false);
    let run = tokio::process::Command::new(python)
        .arg(repo_root().join("tests/sdk/check_sdk.py"))
        .env("EMULATOR_HOST", emulator.base_url())
        .env("ADMIN_TOKEN", &admin.pat)
        .env("SP_APPLICATION_ID", &sp.application_id)
        .env("SP_CLIENT_SECRET", &sp.client_secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the SDK check finishes within 3 minutes")
        .expect("run tests/sdk/check_sdk.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "SDK check failed:\n{stdout}\n{stderr}"
    );
    let passed: u32 = stdout
        .lines()
        .find_map(|l| l.strip_suffix(" passed, 0 failed"))
        .and_then(|n| n.parse().ok())
        .expect("a summary line");
    assert!(passed >= 30, "{passed} checks ran");

    // The SDK's calls reached the emulator's endpoints, as counted on the server side.
    let stats = emulator.stats();
    for (endpoint, method) in [
        ("token/create", "POST"),
        ("token/list", "GET"),
        ("token/delete", "POST"),
        ("obo/create", "POST"),
        ("token-management/list", "GET"),
        ("token-management/get", "GET"),
        ("token-management/delete", "DELETE"),
        ("scim/me", "GET"),
        ("oidc/token", "POST"),
    ] {
        assert!(
            stats.count_request(endpoint, method, 200) >= 1,
            "{endpoint} {method}"
        );
    }
    assert!(
        stats.count_status("token/list", 403) >= 1,
        "the revoked-token check"
    );
    assert!(
        stats.count_status("token/delete", 404) >= 1,
        "the unknown-id check"
    );

    // No value the emulator handed out appears in the script's output.
    let output = format!("{stdout}{stderr}");
    let mut secrets = emulator.minted_values();
    secrets.extend(emulator.access_tokens());
    secrets.push(sp.client_secret.clone());
    assert!(secrets.len() > 5);
    for secret in secrets {
        assert!(
            !output.contains(&secret),
            "a credential reached the SDK check's output"
        );
    }
}
