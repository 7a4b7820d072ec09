//! The real command-line tools the tests drive (kubectl, helm, promtool, prometheus), and
//! kubeconfigs for other identities.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use super::cluster::repo_root;

/// Run a command to completion; (success, stdout followed by stderr).
pub fn run(command: &mut Command) -> (bool, String) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A binary `hack/build-tools.sh` builds into .cache/bin (built now if missing); `build_args`
/// selects an opt-in group, e.g. `["prometheus"]`.
pub fn tool(name: &str, build_args: &[&str]) -> PathBuf {
    let path = repo_root().join(".cache/bin").join(name);
    if !path.exists() {
        let status = Command::new("bash")
            .arg(repo_root().join("hack/build-tools.sh"))
            .args(build_args)
            .status()
            .expect("run hack/build-tools.sh");
        assert!(
            status.success(),
            "hack/build-tools.sh {build_args:?} must build {name}"
        );
    }
    path
}

/// The real `kubectl` with this kubeconfig.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    run(Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args))
}

/// The real `helm` with this kubeconfig (None: no cluster, e.g. `helm template`).
pub fn helm(kubeconfig: Option<&Path>, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(tool("helm", &[]));
    command
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("helm-cache"))
        .args(args);
    if let Some(kubeconfig) = kubeconfig {
        command.env("KUBECONFIG", kubeconfig);
    }
    run(&mut command)
}

/// The YAML documents of a multi-document text (a rendered chart), empty ones left out.
pub fn documents(text: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .filter(|d: &serde_yaml::Value| !d.is_null())
        .collect()
}

/// A kubeconfig for the same API server that authenticates as `namespace/sa` with a bound token.
pub fn service_account_kubeconfig(admin: &Path, namespace: &str, sa: &str, dir: &Path) -> PathBuf {
    let (ok, token) = kubectl(
        admin,
        &["create", "token", sa, "-n", namespace, "--duration", "2h"],
    );
    assert!(ok, "kubectl create token: {token}");
    let admin_config = std::fs::read_to_string(admin).expect("admin kubeconfig");
    let line = |key: &str| {
        admin_config
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("{key} in the admin kubeconfig"))
            .trim()
            .to_string()
    };
    let (server, ca) = (line("server:"), line("certificate-authority-data:"));
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    {server}\n    {ca}\nusers:\n- name: sa\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context: {{cluster: local, user: sa, namespace: {namespace}}}\ncurrent-context: sa\n",
        token.trim()
    );
    let path = dir.join(format!("{sa}-kubeconfig"));
    std::fs::write(&path, config).expect("write kubeconfig");
    path
}

/// The Python of the venv holding the official Databricks SDK (`hack/python-venv.sh`, run now
/// so that a fresh machine gets it).
pub fn python_with_sdk() -> PathBuf {
    let root = repo_root();
    let status = Command::new("bash")
        .arg(root.join("hack/python-venv.sh"))
        .status();
    let python = root.join(".cache/venv/bin/python");
    assert!(
        matches!(status, Ok(s) if s.success()) && python.exists(),
        "the Databricks SDK venv is missing and hack/python-venv.sh could not create it ({status:?})"
    );
    python
}
