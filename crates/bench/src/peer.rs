//! The peer users compare the operator with: cert-manager, which also renews a credential into a
//! Secret before it expires. Its controller runs as a real process against the same control
//! plane, issuing N ECDSA certificates from a CA Issuer, and is measured the way the operator is:
//! time to all Ready, Kubernetes writes and API-server / etcd CPU per object, peak RSS, idle CPU,
//! and what a restart with N Ready costs.
//!
//! The binary is an input (`--peer cert-manager=PATH`, CRDs with `--peer-crds DIR`); nothing of
//! cert-manager is in this repository. BENCHMARKS.md says how it was built.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt, stream};
use kube::{
    Api,
    api::{DynamicObject, GroupVersionKind, ObjectMeta, PostParams},
    core::ApiResource,
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

use crate::cluster::{ControlPlaneCpu, Writes, apiserver_writes};
use crate::procfs;

/// A cert-manager controller and what is needed to run it.
#[derive(Clone, Debug)]
pub struct PeerSetup {
    pub binary: PathBuf,
    pub kubeconfig: PathBuf,
    pub control_plane_dir: PathBuf,
    pub log_dir: PathBuf,
    pub in_flight: usize,
    pub idle: Duration,
    /// The operator runs 32 reconciles at once: the peer gets as many workers.
    pub workers: u32,
}

#[derive(Debug, Default, Clone)]
pub struct PeerResult {
    pub n: usize,
    pub ready_seconds: f64,
    /// Writes by resource while the N became Ready, without the benchmark's own creates.
    pub writes: u64,
    pub writes_by_resource: Vec<(String, u64)>,
    pub control_plane_cpu: ControlPlaneCpu,
    pub cpu_seconds: f64,
    pub peak_rss_kib: u64,
    pub idle_cpu_seconds: f64,
    pub idle_writes: u64,
    /// After a restart with N Ready: time until the controller's CPU settles, and its writes.
    pub restart_settle_seconds: f64,
    pub restart_writes: u64,
    pub restart_peak_rss_kib: u64,
}

/// Flags that keep the peer comparable: no leader election, one namespace, client-side rate
/// limits lifted as the operator has none, as many workers as the operator's reconciles.
fn args(kubeconfig: &Path, namespace: &str, workers: u32) -> anyhow::Result<Vec<String>> {
    let port = |_: ()| -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    Ok(vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        "--leader-elect=false".into(),
        format!("--namespace={namespace}"),
        format!("--cluster-resource-namespace={namespace}"),
        "--kube-api-qps=10000".into(),
        "--kube-api-burst=10000".into(),
        format!("--concurrent-workers={workers}"),
        format!("--metrics-listen-address=127.0.0.1:{}", port(())?),
        format!("--internal-healthz-listen-address=127.0.0.1:{}", port(())?),
        "--v=1".into(),
    ])
}

struct Process {
    child: Option<Child>,
}

impl Process {
    fn start(binary: &Path, args: &[String], log: PathBuf) -> anyhow::Result<Self> {
        let log = File::create(log)?;
        let child = Command::new(binary)
            .args(args)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        Ok(Self { child: Some(child) })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    fn cpu_seconds(&self) -> f64 {
        procfs::cpu_seconds(self.pid())
    }

    fn peak_rss_kib(&self) -> u64 {
        procfs::peak_rss_kib(self.pid())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child by its pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn install_crds(kubeconfig: &Path, crds: &Path) -> anyhow::Result<()> {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(["apply", "--server-side", "-f"])
        .arg(crds)
        .output()
        .context("kubectl apply the peer's CRDs")?;
    if !out.status.success() {
        bail!("peer CRDs: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args([
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd",
            "-l",
        ])
        .arg("app.kubernetes.io/name=cert-manager")
        .output()?;
    if !out.status.success() {
        // The labels differ between releases: wait on the two kinds the bench uses instead.
        for crd in ["certificates.cert-manager.io", "issuers.cert-manager.io"] {
            let out = Command::new("kubectl")
                .env("KUBECONFIG", kubeconfig)
                .args([
                    "wait",
                    "--for=condition=established",
                    "--timeout=60s",
                    "crd",
                    crd,
                ])
                .output()?;
            if !out.status.success() {
                bail!("peer CRD {crd}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
    Ok(())
}

fn api(client: &kube::Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("cert-manager.io", "v1", kind);
    let resource = ApiResource::from_gvk(&gvk);
    Api::namespaced_with(client.clone(), ns, &resource)
}

fn object(kind: &str, name: &str, spec: serde_json::Value) -> DynamicObject {
    let gvk = GroupVersionKind::gvk("cert-manager.io", "v1", kind);
    let mut obj = DynamicObject::new(name, &ApiResource::from_gvk(&gvk));
    obj.metadata = ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    };
    obj.data = json!({ "spec": spec });
    obj
}

fn certificate(name: &str, issuer: &str, is_ca: bool) -> DynamicObject {
    object(
        "Certificate",
        name,
        json!({
            "secretName": name,
            "commonName": format!("{name}.bench.local"),
            "isCA": is_ca,
            "duration": "24h",
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "issuerRef": {"name": issuer, "kind": "Issuer"},
        }),
    )
}

fn is_ready(obj: &DynamicObject) -> bool {
    obj.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Watch `kind` in `ns` until every name satisfies Ready.
async fn wait_ready(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    names: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut pending: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let events = watcher(api(client, ns, kind), watcher::Config::default()).applied_objects();
    let wait = async {
        let mut events = std::pin::pin!(events);
        while !pending.is_empty() {
            let Some(obj) = events.try_next().await? else {
                break;
            };
            if is_ready(&obj) {
                pending.remove(obj.metadata.name.as_deref().unwrap_or_default());
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(timeout, wait)
        .await
        .with_context(|| format!("{kind}: still waiting after {timeout:?}"))??;
    Ok(())
}

/// The peer's own writes, as the operator's are counted: its kinds, Secrets and events (not the
/// control plane's leases and the like).
fn is_peers(resource: &str) -> bool {
    [
        "certificate",
        "issuer",
        "order",
        "challenge",
        "secrets",
        "events",
    ]
    .iter()
    .any(|prefix| resource.starts_with(prefix))
}

fn total(before: &Writes, after: &Writes) -> (u64, Vec<(String, u64)>) {
    let by: Vec<(String, u64)> = after
        .iter()
        .filter(|(k, _)| is_peers(k))
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    (by.iter().map(|(_, d)| d).sum(), by)
}

/// Time until `cpu` grows by less than 1% of a core over `window`, or `limit` passes.
async fn settle(process: &Process, window: Duration, limit: Duration) -> f64 {
    let started = Instant::now();
    let mut last = process.cpu_seconds();
    loop {
        tokio::time::sleep(window).await;
        let now = process.cpu_seconds();
        if now - last < 0.01 * window.as_secs_f64() || started.elapsed() > limit {
            return (started.elapsed().saturating_sub(window)).as_secs_f64();
        }
        last = now;
    }
}

pub async fn run(client: &kube::Client, setup: &PeerSetup, n: usize) -> anyhow::Result<PeerResult> {
    let ns = format!("peer-{n}");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let namespace = k8s_openapi::api::core::v1::Namespace {
        metadata: ObjectMeta {
            name: Some(ns.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &namespace)
        .await?;
    let args = args(&setup.kubeconfig, &ns, setup.workers)?;
    let mut controller = Process::start(
        &setup.binary,
        &args,
        setup.log_dir.join(format!("peer-{n}-first.log")),
    )?;

    // A self-signed root, a CA certificate from it, and the CA Issuer the N come from.
    let pp = PostParams::default();
    api(client, &ns, "Issuer")
        .create(
            &pp,
            &object("Issuer", "selfsigned", json!({"selfSigned": {}})),
        )
        .await?;
    api(client, &ns, "Certificate")
        .create(&pp, &certificate("bench-ca", "selfsigned", true))
        .await?;
    wait_ready(
        client,
        &ns,
        "Certificate",
        &["bench-ca".into()],
        Duration::from_secs(120),
    )
    .await?;
    api(client, &ns, "Issuer")
        .create(
            &pp,
            &object("Issuer", "ca", json!({"ca": {"secretName": "bench-ca"}})),
        )
        .await?;
    wait_ready(
        client,
        &ns,
        "Issuer",
        &["ca".into()],
        Duration::from_secs(120),
    )
    .await?;

    let mut r = PeerResult {
        n,
        ..Default::default()
    };
    let names: Vec<String> = (0..n).map(|i| format!("c{i:05}")).collect();
    let w0 = apiserver_writes(client).await?;
    let cpu0 = controller.cpu_seconds();
    let cp0 = ControlPlaneCpu::of(&setup.control_plane_dir);
    let started = Instant::now();
    let certs = api(client, &ns, "Certificate");
    stream::iter(&names)
        .map(|name| {
            let certs = certs.clone();
            async move {
                certs
                    .create(&PostParams::default(), &certificate(name, "ca", false))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(setup.in_flight)
        .try_collect::<Vec<()>>()
        .await?;
    let timeout = Duration::from_secs(600).max(Duration::from_millis(200) * n as u32);
    wait_ready(client, &ns, "Certificate", &names, timeout).await?;
    r.ready_seconds = started.elapsed().as_secs_f64();
    r.control_plane_cpu = ControlPlaneCpu::of(&setup.control_plane_dir).since(cp0);
    let w1 = apiserver_writes(client).await?;
    let (writes, by) = total(&w0, &w1);
    // The bench's own N creates are not the peer's writes.
    r.writes = writes.saturating_sub(n as u64);
    r.writes_by_resource = by;
    r.cpu_seconds = controller.cpu_seconds() - cpu0;
    r.peak_rss_kib = controller.peak_rss_kib();

    let cpu1 = controller.cpu_seconds();
    tokio::time::sleep(setup.idle).await;
    r.idle_cpu_seconds = controller.cpu_seconds() - cpu1;
    let w2 = apiserver_writes(client).await?;
    r.idle_writes = total(&w1, &w2).0;

    controller.stop();
    let w3 = apiserver_writes(client).await?;
    controller = Process::start(
        &setup.binary,
        &args,
        setup.log_dir.join(format!("peer-{n}-restart.log")),
    )?;
    r.restart_settle_seconds = settle(
        &controller,
        Duration::from_secs(3),
        Duration::from_secs(600),
    )
    .await;
    r.restart_writes = total(&w3, &apiserver_writes(client).await?).0;
    r.restart_peak_rss_kib = controller.peak_rss_kib();
    controller.stop();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_totals_count_only_what_changed() {
        let before: Writes = [("secrets".to_string(), 5), ("events".to_string(), 1)].into();
        let after: Writes = [
            ("secrets".to_string(), 9),
            ("events".to_string(), 1),
            ("certificates/status".to_string(), 3),
            ("leases".to_string(), 40),
        ]
        .into();
        let (n, by) = total(&before, &after);
        assert_eq!(n, 7);
        assert_eq!(
            by,
            [
                ("certificates/status".to_string(), 3),
                ("secrets".to_string(), 4)
            ]
        );
    }

    #[test]
    fn a_certificate_is_ready_only_with_ready_true() {
        let mut cert = certificate("c", "ca", false);
        assert!(!is_ready(&cert));
        cert.data["status"] = json!({"conditions": [{"type": "Ready", "status": "False"}]});
        assert!(!is_ready(&cert));
        cert.data["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
        assert!(is_ready(&cert));
    }
}
