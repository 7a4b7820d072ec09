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

/// The SDK's own workload identity federation (file-oidc and env-oidc auth types) exchanges a
/// JWT at `/oidc/v1/token` under a federation policy, and gets a refusal for a foreign subject.
#[tokio::test]
async fn the_official_python_sdk_exchanges_a_federated_token() {
    use databricks_emulator::{FederationPolicy, test_issuer::TestIssuer};
    let python = python_with_sdk();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let sp = emulator.add_service_principal("federated-bot", false);
    let issuer = TestIssuer::generate("https://kubernetes.default.svc.cluster.local");
    let subject = "system:serviceaccount:team-a:databricks";
    let audience = format!("{}/oidc/v1/token", emulator.base_url());
    emulator.add_federation_policy(
        &sp.application_id,
        FederationPolicy {
            issuer: issuer.issuer.clone(),
            audiences: vec![audience.clone()],
            subject: subject.into(),
            jwks_json: Some(issuer.jwks_json()),
        },
    );
    let dir = tempfile_dir();
    let own = issuer.service_account_token(subject, &audience, 600);
    let foreign =
        issuer.service_account_token("system:serviceaccount:team-b:databricks", &audience, 600);
    std::fs::write(dir.join("token"), &own).unwrap();
    std::fs::write(dir.join("foreign"), &foreign).unwrap();
    let run = tokio::process::Command::new(python)
        .arg(repo_root().join("tests/sdk/check_federation.py"))
        .env("EMULATOR_HOST", emulator.base_url())
        .env("SP_APPLICATION_ID", &sp.application_id)
        .env("SUBJECT_TOKEN_FILE", dir.join("token"))
        .env("FOREIGN_TOKEN_FILE", dir.join("foreign"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the SDK check finishes within 3 minutes")
        .expect("run tests/sdk/check_federation.py");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "SDK federation check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("6 passed, 0 failed"), "{stdout}");
    // The exchanges happened at the token endpoint, as the server counted them.
    let stats = emulator.stats();
    assert!(stats.count_request("oidc/token", "POST", 200) >= 2);
    assert!(stats.count_request("oidc/token", "POST", 400) >= 1);
    let text = format!("{stdout}{stderr}");
    for secret in [own, foreign]
        .into_iter()
        .chain(emulator.access_tokens())
        .chain(emulator.minted_values())
    {
        assert!(
            !text.contains(&secret),
            "a token reached the SDK check's output"
        );
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dbtoken-sdk-federation-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
