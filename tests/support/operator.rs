//! The operator as a real process against the test control plane: started per test, watching
//! only that test's namespace, with its logs kept for inspection (and for the leak check).

#![allow(dead_code)]

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

pub struct Operator {
    child: Option<Child>,
    pub log_path: PathBuf,
    _dir: tempfile::TempDir,
}

/// Options a test may change; the defaults suit fast tests.
#[derive(Clone)]
pub struct OperatorOptions {
    pub namespaces: Vec<String>,
    pub verify_interval: &'static str,
    pub default_grace_period: &'static str,
    pub log_filter: &'static str,
    pub leader_election: bool,
    pub lease_namespace: Option<String>,
    pub identity: Option<String>,
    pub extra_args: Vec<String>,
    pub extra_env: Vec<(String, String)>,
}

impl OperatorOptions {
    pub fn for_namespace(ns: &str) -> Self {
        Self {
            namespaces: vec![ns.to_string()],
            verify_interval: "2s",
            default_grace_period: "5s",
            log_filter: "info,databricks_token_operator=debug,databricks_client=debug",
            leader_election: false,
            lease_namespace: None,
            identity: None,
            extra_args: vec![],
            extra_env: vec![],
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Operator {
    pub fn start(kubeconfig: &Path, options: &OperatorOptions) -> Operator {
        let dir = tempfile::tempdir().expect("temp dir");
        let log_path = dir.path().join("operator.log");
        let log = File::create(&log_path).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_databricks-token-operator"));
        cmd.env("KUBECONFIG", kubeconfig)
            .env_remove("RUST_LOG")
            .arg("--namespaces")
            .arg(options.namespaces.join(","))
            .arg("--metrics-addr")
            .arg("127.0.0.1:0")
            .arg("--insecure-allow-http")
            .arg("--verify-interval")
            .arg(options.verify_interval)
            .arg("--default-grace-period")
            .arg(options.default_grace_period)
            .arg("--log-filter")
            .arg(options.log_filter)
            .arg(format!("--leader-election={}", options.leader_election))
            .args(&options.extra_args)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log));
        if let Some(ns) = &options.lease_namespace {
            cmd.arg("--lease-namespace").arg(ns);
        }
        if let Some(id) = &options.identity {
            cmd.arg("--identity").arg(id);
        }
        for (k, v) in &options.extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the operator binary");
        Operator {
            child: Some(child),
            log_path,
            _dir: dir,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: no shutdown path runs, as in a node failure or OOM kill.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The metrics URL, from the address the process logged after binding port 0.
    pub fn metrics_url(&self) -> Option<String> {
        let logs = self.logs();
        let line = logs.lines().find(|l| l.contains("serving /metrics"))?;
        let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
        Some(format!("http://{addr}/metrics"))
    }

    pub async fn metrics(&self) -> String {
        let Some(url) = self.metrics_url() else {
            return String::new();
        };
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- operator log ({}) ----\n{}",
                self.log_path.display(),
                self.logs()
            );
        }
    }
}

/// Poll `check` until it returns Some, or fail after `timeout` saying what was awaited.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
