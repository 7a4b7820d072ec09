//! The operator as a real process (the release binary), with what the kernel knows about it
//! (peak RSS, CPU time) and what its /metrics endpoint says.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::procfs;

pub struct Operator {
    child: Option<Child>,
    metrics_url: String,
}

impl Operator {
    pub fn start(
        binary: &Path,
        kubeconfig: &Path,
        namespace: &str,
        log_path: PathBuf,
    ) -> anyhow::Result<Self> {
        let log = File::create(&log_path)?;
        // A port chosen here rather than parsed from the logs, which stay at warn level.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(binary)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("RUST_LOG")
            .args(["--namespaces", namespace])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .arg("--insecure-allow-http")
            .arg("--leader-election=false")
            // The default: nothing is due while the idle figure is measured.
            .args(["--verify-interval", "10m"])
            .args(["--default-grace-period", "1s"])
            .args(["--log-filter", "warn"])
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        Ok(Self {
            child: Some(child),
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Peak resident set size (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        procfs::peak_rss_kib(self.pid())
    }

    /// User + system CPU seconds so far.
    pub fn cpu_seconds(&self) -> f64 {
        procfs::cpu_seconds(self.pid())
    }

    pub fn metrics_url(&self) -> Option<String> {
        Some(self.metrics_url.clone())
    }

    /// Number of `dbtoken_token_ready{...} 1` lines, or None while /metrics is not served.
    pub async fn ready_in_metrics(&self, http: &reqwest::Client) -> Option<usize> {
        let url = self.metrics_url()?;
        let text = http.get(url).send().await.ok()?.text().await.ok()?;
        Some(
            text.lines()
                .filter(|l| l.starts_with("dbtoken_token_ready{") && l.ends_with("} 1"))
                .count(),
        )
    }

    /// SIGTERM, then wait for the exit (SIGKILL after 30 s).
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        child.wait()?;
        bail!("the operator did not exit within 30 s of SIGTERM")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
