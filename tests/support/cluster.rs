//! One real control plane (etcd + kube-apiserver from hack/build-tools.sh) per test process,
//! and a fresh namespace per test so tests run in parallel without stepping on each other.
//!
//! The control plane runs as `hack/control-plane.sh run DIR`, spawned from a thread that lives
//! as long as the process, with PR_SET_PDEATHSIG: when the test process exits, however it exits,
//! the kernel sends the script SIGTERM and its trap stops etcd and kube-apiserver.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};

pub struct Cluster {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NAMESPACES: AtomicU32 = AtomicU32::new(0);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Cluster {
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A new client (kube clients belong to the runtime that made them; each test has its own).
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

pub fn cluster_sync() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        if let Ok(path) = std::env::var("DBTOKEN_TEST_KUBECONFIG") {
            return Cluster {
                dir: PathBuf::new(),
                kubeconfig: PathBuf::from(path),
            };
        }
        ensure_binaries();
        let dir = std::env::temp_dir().join(format!("dbtoken-cp-{}", std::process::id()));
        let script = repo_root().join("hack/control-plane.sh");
        let dir_arg = dir.clone();
        // The spawning thread must outlive the tests: PDEATHSIG fires when it ends.
        std::thread::spawn(move || {
            let mut cmd = Command::new("bash");
            cmd.arg(script).arg("run").arg(&dir_arg);
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            let status = cmd.status();
            eprintln!("control plane exited: {status:?}");
        });
        let ready = dir.join("ready");
        let deadline = Instant::now() + Duration::from_secs(180);
        while !ready.exists() {
            assert!(
                Instant::now() < deadline,
                "control plane not ready in 180 s; see {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Cluster {
            kubeconfig: dir.join("kubeconfig"),
            dir,
        }
    })
}

/// Build the binaries if missing: a test never skips for want of them.
fn ensure_binaries() {
    let bin = repo_root().join(".cache/bin");
    if bin.join("kube-apiserver").exists() && bin.join("etcd").exists() {
        return;
    }
    let status = Command::new("bash")
        .arg(repo_root().join("hack/build-tools.sh"))
        .status()
        .expect("run hack/build-tools.sh");
    assert!(
        status.success(),
        "hack/build-tools.sh failed: the control plane binaries are needed"
    );
}

pub struct TestNamespace {
    pub name: String,
    pub client: kube::Client,
}

/// A namespace of its own for one test. Namespaces are not deleted: without a
/// kube-controller-manager they would never finish terminating anyway.
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
