//! The local control plane (hack/control-plane.sh), a kube client for it, and the API server's
//! own write counters (`apiserver_request_total`), which count every write whoever made it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::procfs;

/// CPU seconds of the control plane's two processes.
#[derive(Clone, Copy, Debug, Default)]
pub struct ControlPlaneCpu {
    pub apiserver: f64,
    pub etcd: f64,
}

impl ControlPlaneCpu {
    /// CPU seconds so far of the control plane whose pid files are in `dir`.
    pub fn of(dir: &Path) -> ControlPlaneCpu {
        let of = |name: &str| {
            std::fs::read_to_string(dir.join(format!("{name}.pid")))
                .ok()
                .and_then(|pid| pid.trim().parse().ok())
                .map_or(0.0, procfs::cpu_seconds)
        };
        ControlPlaneCpu {
            apiserver: of("kube-apiserver"),
            etcd: of("etcd"),
        }
    }

    pub fn since(self, before: ControlPlaneCpu) -> ControlPlaneCpu {
        ControlPlaneCpu {
            apiserver: self.apiserver - before.apiserver,
            etcd: self.etcd - before.etcd,
        }
    }
}

/// Stops the control plane when dropped, so a failed run leaves no etcd behind.
pub struct ControlPlane {
    script: PathBuf,
    dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    pub fn start(root: &Path, dir: &Path) -> anyhow::Result<Self> {
        let script = root.join("hack/control-plane.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(dir)
            .output()
            .context("run hack/control-plane.sh start")?;
        if !out.status.success() {
            bail!(
                "control plane did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Self {
            script,
            dir: dir.to_path_buf(),
            kubeconfig: dir.join("kubeconfig"),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

/// Write requests (anything but GET/LIST/WATCH) by resource, e.g. `secrets`,
/// `databrickstokens/status`, `events`.
pub type Writes = BTreeMap<String, u64>;

pub async fn apiserver_writes(client: &kube::Client) -> anyhow::Result<Writes> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let mut writes = Writes::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let verb = label(labels, "verb").unwrap_or_default();
        if matches!(verb, "GET" | "LIST" | "WATCH" | "CONNECT") {
            continue;
        }
        let resource = label(labels, "resource").unwrap_or_default();
        let key = match label(labels, "subresource").filter(|s| !s.is_empty()) {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        };
        let n = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *writes.entry(key).or_default() += n;
    }
    Ok(writes)
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

/// `after - before` for one resource.
pub fn delta(before: &Writes, after: &Writes, resource: &str) -> u64 {
    after
        .get(resource)
        .copied()
        .unwrap_or(0)
        .saturating_sub(before.get(resource).copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_read_by_name() {
        let l =
            r#"code="201",component="apiserver",resource="secrets",subresource="",verb="APPLY""#;
        assert_eq!(label(l, "resource"), Some("secrets"));
        assert_eq!(label(l, "verb"), Some("APPLY"));
        assert_eq!(label(l, "subresource"), Some(""));
        assert_eq!(label(l, "group"), None);
    }
}
