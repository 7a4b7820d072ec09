//! One real control plane (etcd + kube-apiserver + kube-controller-manager from
//! hack/build-tools.sh) per test process, and a fresh namespace per test so tests run in parallel
//! without stepping on each other.
//!
//! ```ignore
//! let ns = support::cluster::namespace("rotate").await; // TestNamespace { name, client }
//! let kubeconfig = support::cluster::cluster().await.kubeconfig_path();
//! ```
//!
//! Lifetime: the control plane runs as `hack/control-plane.sh run DIR`, spawned from a thread
//! that lives as long as the test process, with PR_SET_PDEATHSIG. When the test process exits,
//! however it exits (success, panic, abort, SIGKILL), the kernel sends the script SIGTERM and its
//! trap stops every component and deletes DIR. A static destructor or Drop would not run
//! on abort or SIGKILL, and Rust runs no destructors of statics at all. The signal is tied to the
//! spawning *thread*, so that thread must never end: it waits on the script for the whole run.
//!
//! `DBTOKEN_TEST_KUBECONFIG=path` makes the tests use an existing cluster instead.
//!
//! kube-controller-manager runs the namespace, garbage-collector and serviceaccount-token
//! controllers: a deleted namespace empties and goes away (after objects with finalizers are
//! released), and objects whose owners are gone are collected, as in a real cluster. Nothing
//! schedules or runs pods.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};

/// Starting takes ~5-15 s; the bound is generous for two busy cores.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

pub struct Cluster {
    /// Empty for an external cluster (DBTOKEN_TEST_KUBECONFIG).
    dir: PathBuf,
    kubeconfig: PathBuf,
}

/// The outcome of the one start attempt: a failure is kept so every test fails fast with it.
static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static NAMESPACES: AtomicU32 = AtomicU32::new(0);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Cluster {
    /// An admin kubeconfig (group system:masters) for kubectl, helm or the operator process.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The control plane's state and logs (etcd.log, kube-apiserver.log,
    /// kube-controller-manager.log); empty if external.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new admin client. kube clients belong to the tokio runtime that made them and each
    /// `#[tokio::test]` has its own runtime, so tests get a fresh one rather than a shared one.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("kubeconfig");
        kube::Client::try_from(config).expect("client")
    }
}

/// The shared control plane, started on first use.
pub async fn cluster() -> &'static Cluster {
    tokio::task::spawn_blocking(cluster_sync)
        .await
        .expect("start control plane")
}

/// Same as [`cluster`], for code outside an async context (or already past the first start).
pub fn cluster_sync() -> &'static Cluster {
    match CLUSTER.get_or_init(start) {
        Ok(cluster) => cluster,
        Err(why) => panic!("{why}"),
    }
}

fn start() -> Result<Cluster, String> {
    if let Ok(path) = std::env::var("DBTOKEN_TEST_KUBECONFIG") {
        return Ok(Cluster {
            dir: PathBuf::new(),
            kubeconfig: PathBuf::from(path),
        });
    }
    ensure_binaries()?;
    let dir = std::env::temp_dir().join(format!("dbtoken-cp-{}", std::process::id()));
    let script = repo_root().join("hack/control-plane.sh");
    let (exited_tx, exited_rx) = mpsc::channel();
    let dir_arg = dir.clone();
    std::thread::Builder::new()
        .name("control-plane".into())
        .spawn(move || {
            let mut cmd = Command::new("bash");
            // stdout only repeats the kubeconfig path; stderr carries the logs of a failure.
            cmd.arg(script)
                .arg("run")
                .arg(&dir_arg)
                .stdout(std::process::Stdio::null());
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let status = cmd.status();
            // Only reached if the control plane died under the tests (or never started).
            let _ = exited_tx.send(format!("{status:?}"));
            eprintln!("control plane exited: {status:?}");
        })
        .map_err(|e| format!("spawn control plane thread: {e}"))?;

    let ready = dir.join("ready");
    let deadline = Instant::now() + READY_TIMEOUT;
    while !ready.exists() {
        if let Ok(status) = exited_rx.try_recv() {
            return Err(format!(
                "control plane failed to start ({status}); its logs were in {}",
                dir.display()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "control plane not ready in {READY_TIMEOUT:?}; see the logs in {}",
                dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Cluster {
        kubeconfig: dir.join("kubeconfig"),
        dir,
    })
}

/// Build the binaries if missing: a test never skips for want of them.
fn ensure_binaries() -> Result<(), String> {
    let bin = repo_root().join(".cache/bin");
    if ["kube-apiserver", "kube-controller-manager", "etcd"]
        .iter()
        .all(|b| bin.join(b).exists())
    {
        return Ok(());
    }
    eprintln!("control plane binaries missing: running hack/build-tools.sh (cold: ~10 min)");
    let status = Command::new("bash")
        .arg(repo_root().join("hack/build-tools.sh"))
        .status()
        .map_err(|e| format!("run hack/build-tools.sh: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "hack/build-tools.sh failed ({status}): the tests need kube-apiserver, kube-controller-manager and etcd in .cache/bin"
        ))
    }
}

pub struct TestNamespace {
    pub name: String,
    pub client: kube::Client,
}

/// A namespace of its own for one test, named `{prefix}-{pid}-{n}`. Namespaces are left in
/// place: the whole control plane goes when the test process exits.
pub async fn namespace(prefix: &str) -> TestNamespace {
    let cluster = cluster().await;
    let client = cluster.client().await;
    let n = NAMESPACES.fetch_add(1, Ordering::SeqCst);
    let name = format!("{prefix}-{}-{n}", std::process::id());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    TestNamespace { name, client }
}

/// Run the real `kubectl` against the test cluster; returns (succeeded, stdout + stderr).
pub fn kubectl(args: &[&str]) -> (bool, String) {
    super::tools::kubectl(cluster_sync().kubeconfig_path(), args)
}
