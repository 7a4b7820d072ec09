//! Response shapes shared by the endpoints: Databricks error bodies, OAuth error bodies, the
//! answers to injected faults, and the marker that makes the server close a connection.

use axum::{
    Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{
    faults::{DropMode, Outcome},
    state::{ApiError, random_uuid},
};

/// Put in a response's extensions: the server closes the connection instead of answering.
#[derive(Clone, Copy, Debug)]
pub struct AbortConnection;

/// Which error dialect an endpoint speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `{"error_code", "message", "details"}` (the workspace REST API).
    Databricks,
    /// `{"error", "error_description"}` (the workspace OIDC token endpoint).
    OAuth,
    /// OAuth with AADSTS codes, trace and correlation ids (the Entra-like endpoint).
    Entra,
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A Databricks error. String error codes carry a google.rpc RequestInfo detail, as the
/// service's newer error bodies do; legacy numeric codes (auth failures) carry none.
pub fn api_error(e: ApiError) -> Response {
    let mut body = e.body;
    if body.get("error_code").is_some_and(Value::is_string) {
        body["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.RequestInfo",
            "request_id": random_uuid(),
            "serving_data": "",
        }]);
    }
    (status(e.status), Json(body)).into_response()
}

pub fn oauth_error(code: u16, error: &str, description: &str) -> Response {
    (
        status(code),
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// An Entra (AADSTS) error: `description` starts with "AADSTSnnnn:".
pub fn entra_error(code: u16, error: &str, aadsts: u32, description: &str) -> Response {
    let trace = random_uuid();
    (
        status(code),
        Json(json!({
            "error": error,
            "error_description": format!("AADSTS{aadsts}: {description} Trace ID: {trace}"),
            "error_codes": [aadsts],
            "trace_id": trace,
            "correlation_id": random_uuid(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={aadsts}"),
        })),
    )
        .into_response()
}

/// The answer to an injected fault, in the endpoint's dialect.
pub fn fault(dialect: Dialect, outcome: Outcome) -> Response {
    match outcome {
        Outcome::RateLimited(retry_after) => rate_limited(dialect, retry_after),
        Outcome::Error(code) => server_error(dialect, code),
        Outcome::HtmlError(code) => proxy_page(code),
        Outcome::DropAfterCommit(mode) => dropped(mode),
    }
}

fn rate_limited(dialect: Dialect, retry_after: Option<u64>) -> Response {
    let mut r = match dialect {
        Dialect::Databricks => {
            let mut e = ApiError::new(
                429,
                "REQUEST_LIMIT_EXCEEDED",
                "Too many requests. Please wait a moment and try again.",
            );
            if let Some(s) = retry_after {
                e.body["details"] = json!([{
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retry_delay": format!("{s}s"),
                }]);
                return with_retry_after((status(429), Json(e.body)).into_response(), retry_after);
            }
            api_error(e)
        }
        Dialect::OAuth => oauth_error(429, "slow_down", "Too many requests"),
        Dialect::Entra => entra_error(
            429,
            "temporarily_unavailable",
            50196,
            "The server terminated an operation because it encountered a client request loop.",
        ),
    };
    r = with_retry_after(r, retry_after);
    r
}

fn with_retry_after(mut r: Response, retry_after: Option<u64>) -> Response {
    if let Some(s) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, s.into());
    }
    r
}

fn server_error(dialect: Dialect, code: u16) -> Response {
    let (error_code, message) = match code {
        503 => (
            "TEMPORARILY_UNAVAILABLE",
            "The service is temporarily unavailable. Please try again later.",
        ),
        504 => ("DEADLINE_EXCEEDED", "The request timed out."),
        _ => ("INTERNAL_ERROR", "An internal error occurred."),
    };
    match dialect {
        Dialect::Databricks => api_error(ApiError::new(code, error_code, message)),
        Dialect::OAuth => oauth_error(code, "server_error", message),
        Dialect::Entra => entra_error(code, "temporarily_unavailable", 50001, message),
    }
}

/// A load balancer's error page, as nginx writes it (CRLF line ends included).
fn proxy_page(code: u16) -> Response {
    let title = format!(
        "{code} {}",
        status(code).canonical_reason().unwrap_or("Error")
    );
    let page = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    (status(code), [(header::CONTENT_TYPE, "text/html")], page).into_response()
}

/// A create's lost response: the token exists, the client never learns its value.
fn dropped(mode: DropMode) -> Response {
    match mode {
        DropMode::Close => {
            let mut r = StatusCode::OK.into_response();
            r.extensions_mut().insert(AbortConnection);
            r
        }
        // A load balancer's page, not a Databricks body: the backend's answer never arrived.
        DropMode::BadGateway => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        DropMode::GatewayTimeout => (
            StatusCode::GATEWAY_TIMEOUT,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>504 Gateway Time-out</h1></body></html>",
        )
            .into_response(),
    }
}

/// The status a response is counted under: 0 when the connection is closed instead.
pub fn counted_status(r: &Response) -> u16 {
    if r.extensions().get::<AbortConnection>().is_some() {
        0
    } else {
        r.status().as_u16()
    }
}
