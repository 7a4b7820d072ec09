//! The `databricks-emulator` binary: listen address, port file, seeded admin written to a file
//! and never to its output.

use std::{process::Stdio, time::Duration};

use reqwest::StatusCode;

use crate::support::eventually;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_writes_its_address_and_the_seeded_admin_and_serves() {
    let dir = std::env::temp_dir().join(format!("emulator-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (port_file, seed_file) = (dir.join("addr"), dir.join("admin.json"));
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_databricks-emulator"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--quota-per-owner",
                "5",
                "--seed-admin-user",
                "admin@example.com",
            ])
            .arg("--port-file")
            .arg(&port_file)
            .arg("--seed-output")
            .arg(&seed_file)
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
            .spawn()
            .unwrap(),
    );
    eventually("the port file", Duration::from_secs(20), async || {
        port_file.exists()
    })
    .await;
    let addr = std::fs::read_to_string(&port_file).unwrap();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let seed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&seed_file).unwrap()).unwrap();
    let pat = seed["pat"].as_str().unwrap();
    assert_eq!(seed["user_name"], "admin@example.com");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&seed_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the seed file is private");
    }

    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let r = http
        .get(format!("{base}/api/2.0/token-management/tokens"))
        .bearer_auth(pat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let settings: serde_json::Value = http
        .get(format!("{base}/_emulator/settings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings["quota_per_owner"], 5);

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let logs = std::fs::read_to_string(&out).unwrap() + &std::fs::read_to_string(&err).unwrap();
    assert!(logs.contains("listening on"), "{logs}");
    assert!(!logs.contains(pat), "the PAT never reaches the output");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn seeding_without_an_output_file_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_databricks-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--seed-admin-user",
            "admin@example.com",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seed-output"));
}
