//! The operator process: flags, logging, HTTP probes and metrics, leader election, controllers.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use clap::Parser;
use databricks_token_operator::{
    config::{Config, init_tracing},
    controller,
    http::{self, HttpState},
    leader::LeaderElector,
    metrics::Metrics,
};
use futures::FutureExt;
use tokio::sync::watch;
use tracing::{error, info};

// jemalloc: with thousands of cached objects its peak RSS is well below that of glibc's
// per-thread arenas (BENCHMARKS.md), and the static (musl) image gets the same allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(config.log_format, &config.log_filter)
        .map_err(|e| anyhow::anyhow!("logging: {e}"))?;
    let kube = kube::Client::try_default().await?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let shutdown = async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }
    .boxed()
    .shared();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    });

    let listener = tokio::net::TcpListener::bind(&config.metrics_addr).await?;
    info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let http_state = HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let server = tokio::spawn(http::serve(listener, http_state, shutdown.clone()));

    // A standby replica is healthy and ready: it only waits for the Lease.
    ready.store(true, Ordering::SeqCst);

    if config.leader_election {
        let mut elector = LeaderElector::start(
            kube.clone(),
            &config.lease_namespace,
            &config.lease_name,
            &config.identity,
            config.lease_duration,
        )
        .await?;
        info!(identity = %config.identity, lease = %config.lease_name, "waiting for leadership");
        tokio::select! {
            acquired = elector.acquire() => acquired?,
            _ = shutdown.clone() => {
                elector.release().await;
                return Ok(());
            }
        }
        info!(identity = %config.identity, "acquired leadership");
        tokio::select! {
            _ = controller::run(kube, config.controller.clone(), metrics, shutdown.clone()) => {}
            _ = elector.lost() => {
                // Another replica may act already: stop at once rather than race it.
                error!("lost leadership; exiting");
                std::process::exit(1);
            }
        }
        elector.release().await;
    } else {
        controller::run(kube, config.controller.clone(), metrics, shutdown.clone()).await;
    }
    let _ = server.await;
    info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
