//! The real `kubectl` against the test control plane, and kubeconfigs for other identities.

#![allow(dead_code)]

use std::{path::Path, process::Command};

/// Run kubectl; (success, stdout followed by stderr).
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A kubeconfig for the same API server that authenticates as `namespace/sa` with a bound token.
pub fn service_account_kubeconfig(
    admin: &Path,
    namespace: &str,
    sa: &str,
    dir: &Path,
) -> std::path::PathBuf {
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
