//! The HTTP server loop. Written by hand rather than with `axum::serve` so that a handler can
//! make the server close the connection without answering (a create whose response is lost).

use axum::{Router, extract::Request};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{net::TcpListener, task::JoinSet};
use tower::ServiceExt;

use crate::respond::AbortConnection;

/// Returned to hyper instead of a response: it drops the connection, writing nothing.
#[derive(Debug, thiserror::Error)]
#[error("connection aborted by fault injection")]
struct Aborted;

/// Serve `app` until the task is aborted; open connections end with it.
pub async fn run(listener: TcpListener, app: Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_connection(TokioIo::new(stream), app.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(io: TokioIo<tokio::net::TcpStream>, app: Router) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let app = app.clone();
        async move {
            let response = match app.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if response.extensions().get::<AbortConnection>().is_some() {
                Err(Aborted)
            } else {
                Ok::<_, Aborted>(response)
            }
        }
    });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}
