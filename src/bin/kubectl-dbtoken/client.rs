//! A Kubernetes client from kubectl's flags, and the namespace they select.

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::cli::KubeFlags;

pub struct Target {
    pub client: kube::Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
}

pub async fn connect(flags: &KubeFlags) -> anyhow::Result<Target> {
    let options = KubeConfigOptions {
        context: flags.context.clone(),
        ..Default::default()
    };
    let config = match &flags.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None if flags.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer()
            .await
            .context("no kubeconfig found (set --kubeconfig or KUBECONFIG)")?,
    };
    let namespace = flags
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok(Target {
        client: kube::Client::try_from(config)?,
        namespace,
    })
}
