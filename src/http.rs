//! The small HTTP server: `/healthz` (the process answers), `/readyz` (ready to serve its role),
//! `/metrics` (Prometheus text format 0.0.4, or OpenMetrics when `Accept` asks for it).

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::get,
};

use crate::metrics::{Format, Metrics};

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "Accept"),
        ],
        // Streamed: with thousands of tokens the text is megabytes.
        Body::from_stream(futures::stream::iter(
            state.metrics.text_chunks(format).map(Ok::<_, Infallible>),
        )),
    )
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Server {
        base: String,
        ready: Arc<AtomicBool>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    async fn start(ready: bool) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = HttpState {
            metrics: Arc::new(Metrics::new()),
            ready: Arc::new(AtomicBool::new(ready)),
        };
        state.metrics.rotation("Renewal");
        let ready = state.ready.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async {
            let _ = stopped.await;
        }));
        Server {
            base: format!("http://{addr}"),
            ready,
            stop: Some(stop),
            task,
        }
    }

    async fn get(server: &Server, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", server.base))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn healthz_answers_while_the_process_runs() {
        let server = start(false).await;
        assert_eq!(get(&server, "/healthz").await.status(), 200);
    }

    #[tokio::test]
    async fn readyz_is_unavailable_until_ready_then_ok() {
        let server = start(false).await;
        assert_eq!(get(&server, "/readyz").await.status(), 503);
        server.ready.store(true, Ordering::SeqCst);
        assert_eq!(get(&server, "/readyz").await.status(), 200);
    }

    #[tokio::test]
    async fn metrics_are_served_in_the_prometheus_text_format_by_default() {
        let server = start(true).await;
        let response = get(&server, "/metrics").await;
        assert_eq!(response.status(), 200);
        let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let body = response.text().await.unwrap();
        assert!(
            body.contains("# TYPE dbtoken_rotations_total counter\n"),
            "{body}"
        );
        assert!(!body.contains("# EOF"), "{body}");
    }

    #[tokio::test]
    async fn metrics_are_served_in_openmetrics_when_accept_asks_for_it() {
        let server = start(true).await;
        let response = reqwest::Client::new()
            .get(format!("{}/metrics", server.base))
            .header(
                header::ACCEPT,
                "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.2",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
        assert!(
            content_type.starts_with("application/openmetrics-text; version=1.0.0"),
            "{content_type}"
        );
        let body = response.text().await.unwrap();
        assert!(
            body.contains(r#"dbtoken_rotations_total{reason="Renewal"} 1"#),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[tokio::test]
    async fn unknown_paths_are_not_found() {
        let server = start(true).await;
        assert_eq!(get(&server, "/debug").await.status(), 404);
    }

    #[tokio::test]
    async fn serve_returns_once_shutdown_resolves() {
        let mut server = start(true).await;
        let _ = server.stop.take().unwrap().send(());
        let result = tokio::time::timeout(std::time::Duration::from_secs(10), server.task)
            .await
            .expect("server stops in time")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
    }
}
