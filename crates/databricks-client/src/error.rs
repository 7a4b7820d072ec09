//! Databricks API errors, typed so the controller can act on them.
//!
//! The body is `{"error_code", "message", "details"}`; `error_code` is usually a string but
//! legacy paths send a number (an invalid bearer is HTTP 403 `{"error_code":403,"message":"Invalid
//! access token."}`), so the HTTP status is the fallback. Messages come from the server and are
//! scrubbed of anything token-shaped before they are kept.

use std::time::Duration;

use serde::Deserialize;

use crate::secret::scrub;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{code}: {message}")]
    NotFound { code: String, message: String },
    #[error("{code}: {message}")]
    InvalidParameter { code: String, message: String },
    #[error("{code}: {message}")]
    LifetimeExceeded { code: String, message: String },
    #[error("{code}: {message}")]
    PermissionDenied { code: String, message: String },
    /// HTTP 401, or the legacy 403 with a numeric code for an invalid or expired bearer.
    #[error("{code}: {message}")]
    Unauthenticated { code: String, message: String },
    #[error("{code}: {message}")]
    QuotaExceeded { code: String, message: String },
    #[error("{code}: {message}")]
    RateLimited {
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// HTTP 500/502/503/504. `uncertain`: a create that may have been carried out.
    #[error("{code} (HTTP {status}): {message}")]
    Unavailable {
        status: u16,
        code: String,
        message: String,
        retry_after: Option<Duration>,
        uncertain: bool,
    },
    /// No usable HTTP response. `uncertain`: a create whose request may have reached the server.
    #[error("TRANSPORT: {message}")]
    Transport { message: String, uncertain: bool },
    /// The OAuth / Entra ID token endpoint refused the client credentials.
    #[error("AUTH_FLOW: {message}")]
    AuthFlow { message: String },
    #[error("CONFIG: {message}")]
    Config { message: String },
    /// Workload identity federation failed: the subject token could not be had, or the token
    /// endpoint refused it. `reason` is a CamelCase condition reason (see `federation`).
    #[error("{reason}: {message}")]
    Federation {
        reason: &'static str,
        message: String,
    },
    #[error("{code} (HTTP {status}): {message}")]
    Other {
        status: u16,
        code: String,
        message: String,
    },
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error_code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

impl Error {
    /// The Databricks `error_code` (string codes as sent, numeric ones as digits), or a stable
    /// name for failures that never got an API answer.
    pub fn error_code(&self) -> &str {
        match self {
            Error::NotFound { code, .. }
            | Error::InvalidParameter { code, .. }
            | Error::LifetimeExceeded { code, .. }
            | Error::PermissionDenied { code, .. }
            | Error::Unauthenticated { code, .. }
            | Error::QuotaExceeded { code, .. }
            | Error::RateLimited { code, .. }
            | Error::Unavailable { code, .. }
            | Error::Other { code, .. } => code,
            Error::Transport { .. } => "TRANSPORT",
            Error::AuthFlow { .. } => "AUTH_FLOW",
            Error::Config { .. } => "CONFIG",
            Error::Federation { reason, .. } => reason,
        }
    }

    /// Worth trying again later (the same request may succeed). For a create whose outcome is
    /// uncertain, "later" means after looking for the token it may have minted.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. } | Error::Unavailable { .. } | Error::Transport { .. }
        )
    }

    /// The server's requested delay (Retry-After header or google.rpc RetryInfo).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } | Error::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// A create that may have been carried out although no token came back.
    pub fn create_outcome_uncertain(&self) -> bool {
        matches!(
            self,
            Error::Unavailable {
                uncertain: true,
                ..
            } | Error::Transport {
                uncertain: true,
                ..
            }
        )
    }

    /// Map an HTTP error response to a typed error.
    pub fn from_response(status: u16, body: &str, retry_after_header: Option<Duration>) -> Error {
        let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
        let numeric = matches!(parsed.error_code, Some(serde_json::Value::Number(_)));
        let code = match &parsed.error_code {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => default_code(status).to_string(),
        };
        let raw_message = parsed
            .message
            .unwrap_or_else(|| not_an_api_answer(status, body));
        let message = match one_line(&scrub(&raw_message)) {
            m if m.is_empty() => format!("HTTP {status}"),
            m => m,
        };
        let retry_after = retry_after_header.or_else(|| retry_info(&parsed.details));
        match (status, code.as_str()) {
            (_, "QUOTA_EXCEEDED") => Error::QuotaExceeded { code, message },
            (_, "MAX_TOKEN_LIFETIME_EXCEEDED") => Error::LifetimeExceeded { code, message },
            (400, "INVALID_PARAMETER_VALUE") if is_lifetime_limit(&message) => {
                Error::LifetimeExceeded { code, message }
            }
            (_, "RESOURCE_DOES_NOT_EXIST" | "NOT_FOUND") | (404, _) => {
                Error::NotFound { code, message }
            }
            (_, "REQUEST_LIMIT_EXCEEDED" | "RESOURCE_EXHAUSTED" | "TOO_MANY_REQUESTS")
            | (429, _) => Error::RateLimited {
                code,
                message,
                retry_after,
            },
            (_, "UNAUTHENTICATED") | (401, _) => Error::Unauthenticated { code, message },
            // Legacy: an invalid or expired bearer is a 403 with a numeric code.
            (403, _) if numeric || message.contains("Invalid access token") => {
                Error::Unauthenticated { code, message }
            }
            (_, "PERMISSION_DENIED") | (403, _) => Error::PermissionDenied { code, message },
            (400, _) => Error::InvalidParameter { code, message },
            (500 | 502 | 503 | 504, _) => Error::Unavailable {
                status,
                code,
                message,
                retry_after,
                uncertain: false,
            },
            _ => Error::Other {
                status,
                code,
                message,
            },
        }
    }
}

/// Older workspaces report a lifetime above maxTokenLifetimeDays as a plain invalid parameter.
fn is_lifetime_limit(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("lifetime") && (m.contains("exceed") || m.contains("maximum"))
}

/// A body that is not a Databricks error (a proxy's HTML page, a plain-text line): the status
/// and a short reason, never the page itself.
fn not_an_api_answer(status: u16, body: &str) -> String {
    let phrase = reason_phrase(status);
    let text = body.trim();
    let looks_html = text.starts_with('<') || text.to_ascii_lowercase().contains("<html");
    if looks_html {
        return match html_title(text) {
            Some(title) if !title.is_empty() => {
                format!(
                    "HTTP {status} {phrase} (HTML page from a proxy: {})",
                    short(&title)
                )
            }
            _ => format!("HTTP {status} {phrase} (HTML page from a proxy)"),
        };
    }
    match one_line(text) {
        t if t.is_empty() => format!("HTTP {status} {phrase}"),
        t => format!("HTTP {status} {phrase}: {}", short(&t)),
    }
}

/// The text of an HTML page's `<title>` (or first `<h1>`), tags stripped.
fn html_title(page: &str) -> Option<String> {
    let lower = page.to_ascii_lowercase();
    let (open, close) = [("<title", "</title>"), ("<h1", "</h1>")]
        .into_iter()
        .find(|(o, _)| lower.contains(o))?;
    let start = lower.find(open)?;
    let start = start + lower[start..].find('>')? + 1;
    let end = start + lower[start..].find(close)?;
    Some(one_line(&page[start..end]))
}

/// Control characters and runs of whitespace become single spaces: a condition message is one
/// line.
fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Cut short: context, not content.
fn short(text: &str) -> String {
    const MAX: usize = 120;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

fn default_code(status: u16) -> &'static str {
    match status {
        400 => "BAD_REQUEST",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "REQUEST_LIMIT_EXCEEDED",
        500 => "INTERNAL_ERROR",
        501 => "NOT_IMPLEMENTED",
        502 => "BAD_GATEWAY",
        503 => "TEMPORARILY_UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// google.rpc.RetryInfo in `details`: `{"@type": ".../google.rpc.RetryInfo", "retry_delay": "3.5s"}`
/// (proto3 JSON of a Duration); the `{"seconds", "nanos"}` object form is read too.
fn retry_info(details: &[serde_json::Value]) -> Option<Duration> {
    details.iter().find_map(|d| {
        let kind = d.get("@type").and_then(|t| t.as_str())?;
        if !kind.ends_with("google.rpc.RetryInfo") {
            return None;
        }
        let delay = d.get("retry_delay").or_else(|| d.get("retryDelay"))?;
        let seconds = match delay {
            serde_json::Value::String(s) => s.trim().strip_suffix('s')?.parse::<f64>().ok()?,
            serde_json::Value::Object(o) => {
                let whole = o.get("seconds").and_then(number)?;
                whole + o.get("nanos").and_then(number).unwrap_or(0.0) / 1e9
            }
            _ => return None,
        };
        (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(86_400.0)))
    })
}

/// proto3 JSON writes int64 as a string, int32 as a number.
fn number(v: &serde_json::Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str()?.parse().ok())
}

/// Parse a `Retry-After` header given in seconds (Databricks does not send the HTTP-date form).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, body: &str) -> Error {
        Error::from_response(status, body, None)
    }

    fn kind(e: &Error) -> &'static str {
        match e {
            Error::NotFound { .. } => "NotFound",
            Error::InvalidParameter { .. } => "InvalidParameter",
            Error::LifetimeExceeded { .. } => "LifetimeExceeded",
            Error::PermissionDenied { .. } => "PermissionDenied",
            Error::Unauthenticated { .. } => "Unauthenticated",
            Error::QuotaExceeded { .. } => "QuotaExceeded",
            Error::RateLimited { .. } => "RateLimited",
            Error::Unavailable { .. } => "Unavailable",
            Error::Transport { .. } => "Transport",
            Error::AuthFlow { .. } => "AuthFlow",
            Error::Config { .. } => "Config",
            Error::Federation { .. } => "Federation",
            Error::Other { .. } => "Other",
        }
    }

    #[test]
    fn string_error_codes_map_to_their_kind() {
        let cases = [
            (400, "INVALID_PARAMETER_VALUE", "InvalidParameter"),
            (400, "INVALID_STATE", "InvalidParameter"),
            (400, "BAD_REQUEST", "InvalidParameter"),
            (400, "MAX_TOKEN_LIFETIME_EXCEEDED", "LifetimeExceeded"),
            (400, "QUOTA_EXCEEDED", "QuotaExceeded"),
            (409, "QUOTA_EXCEEDED", "QuotaExceeded"),
            (401, "UNAUTHENTICATED", "Unauthenticated"),
            (403, "PERMISSION_DENIED", "PermissionDenied"),
            (404, "RESOURCE_DOES_NOT_EXIST", "NotFound"),
            (404, "NOT_FOUND", "NotFound"),
            (409, "ALREADY_EXISTS", "Other"),
            (409, "ABORTED", "Other"),
            (429, "REQUEST_LIMIT_EXCEEDED", "RateLimited"),
            (429, "RESOURCE_EXHAUSTED", "RateLimited"),
            (500, "INTERNAL_ERROR", "Unavailable"),
            (500, "UNKNOWN", "Unavailable"),
            (501, "NOT_IMPLEMENTED", "Other"),
            (503, "TEMPORARILY_UNAVAILABLE", "Unavailable"),
            (504, "DEADLINE_EXCEEDED", "Unavailable"),
        ];
        for (status, code, expected) in cases {
            let e = map(
                status,
                &format!(r#"{{"error_code":"{code}","message":"m"}}"#),
            );
            assert_eq!(kind(&e), expected, "{status} {code}");
            assert_eq!(e.error_code(), code);
        }
    }

    #[test]
    fn numeric_403_invalid_token_is_unauthenticated() {
        let e = map(
            403,
            r#"{"error_code":403,"message":"Invalid access token."}"#,
        );
        assert_eq!(kind(&e), "Unauthenticated");
        assert_eq!(e.error_code(), "403");
        assert!(!e.is_retryable());
    }

    #[test]
    fn numeric_401_for_missing_credentials_is_unauthenticated() {
        let body = r#"{"error_code":401,"message":"Credential was not sent or was of an unsupported type for this API."}"#;
        assert_eq!(kind(&map(401, body)), "Unauthenticated");
    }

    #[test]
    fn string_permission_denied_on_403_stays_permission_denied() {
        let e = map(
            403,
            r#"{"error_code":"PERMISSION_DENIED","message":"Only Admins can access token management APIs."}"#,
        );
        assert_eq!(kind(&e), "PermissionDenied");
    }

    #[test]
    fn unknown_codes_fall_back_to_the_status() {
        let cases = [
            (400, "InvalidParameter"),
            (401, "Unauthenticated"),
            (403, "PermissionDenied"),
            (404, "NotFound"),
            (429, "RateLimited"),
            (502, "Unavailable"),
            (418, "Other"),
        ];
        for (status, expected) in cases {
            let e = map(status, r#"{"error_code":"SOMETHING_NEW","message":"m"}"#);
            assert_eq!(kind(&e), expected, "{status}");
            assert_eq!(e.error_code(), "SOMETHING_NEW");
        }
    }

    #[test]
    fn lifetime_over_the_maximum_is_its_own_kind() {
        let e = map(
            400,
            r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"Token lifetime exceeds the maximum lifetime of 730 days"}"#,
        );
        assert_eq!(kind(&e), "LifetimeExceeded");
    }

    #[test]
    fn other_lifetime_complaints_stay_invalid_parameter() {
        let e = map(
            400,
            r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"lifetime_seconds must be a positive number of seconds"}"#,
        );
        assert_eq!(kind(&e), "InvalidParameter");
    }

    #[test]
    fn a_body_without_json_falls_back_to_the_status() {
        let e = map(502, "<html>bad gateway</html>");
        assert_eq!(e.error_code(), "BAD_GATEWAY");
        assert!(e.is_retryable());
        assert!(e.to_string().contains("HTTP 502 Bad Gateway"), "{e}");
        let e = map(418, "");
        assert_eq!(e.error_code(), "UNKNOWN");
        assert!(e.to_string().contains("HTTP 418"));
    }

    #[test]
    fn long_non_json_bodies_are_cut_short() {
        let e = map(502, &"x".repeat(5_000));
        assert!(e.to_string().len() < 300);
    }

    #[test]
    fn a_proxy_page_becomes_status_and_a_short_reason() {
        let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
        let e = map(502, page);
        assert_eq!(
            e.to_string(),
            "BAD_GATEWAY (HTTP 502): HTTP 502 Bad Gateway (HTML page from a proxy: 502 Bad Gateway)"
        );
        let untitled = map(
            503,
            "<html><body><p>down\r\nfor maintenance</p></body></html>",
        );
        assert_eq!(
            untitled.to_string(),
            "TEMPORARILY_UNAVAILABLE (HTTP 503): HTTP 503 Service Unavailable (HTML page from a proxy)"
        );
    }

    #[test]
    fn messages_are_one_line() {
        let e = map(500, "upstream\r\nconnect error\tor reset");
        assert_eq!(
            e.to_string(),
            "INTERNAL_ERROR (HTTP 500): HTTP 500 Internal Server Error: upstream connect error or reset"
        );
        let e = map(
            400,
            r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"line one\nline two"}"#,
        );
        assert_eq!(e.to_string(), "INVALID_PARAMETER_VALUE: line one line two");
    }

    #[test]
    fn display_has_code_and_message() {
        let e = map(
            404,
            r#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"No valid token with ID abc found."}"#,
        );
        assert_eq!(
            e.to_string(),
            "RESOURCE_DOES_NOT_EXIST: No valid token with ID abc found."
        );
        let e = map(
            503,
            r#"{"error_code":"TEMPORARILY_UNAVAILABLE","message":"later"}"#,
        );
        assert_eq!(e.to_string(), "TEMPORARILY_UNAVAILABLE (HTTP 503): later");
    }

    #[test]
    fn retry_after_header_is_read() {
        let body = r#"{"error_code":"REQUEST_LIMIT_EXCEEDED","message":"slow"}"#;
        let e = Error::from_response(429, body, Some(Duration::from_secs(7)));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 12 "), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1_500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn retry_info_in_details_is_a_retry_hint() {
        let body = r#"{"error_code":"TEMPORARILY_UNAVAILABLE","message":"m","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"x"},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retry_delay":"3.5s"}]}"#;
        assert_eq!(
            map(503, body).retry_after(),
            Some(Duration::from_millis(3_500))
        );
        let body = r#"{"error_code":"RESOURCE_EXHAUSTED","message":"m","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retry_delay":{"seconds":"2","nanos":500000000}}]}"#;
        assert_eq!(
            map(429, body).retry_after(),
            Some(Duration::from_millis(2_500))
        );
    }

    #[test]
    fn the_retry_after_header_wins_over_retry_info() {
        let body = r#"{"error_code":"REQUEST_LIMIT_EXCEEDED","message":"m","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retry_delay":"9s"}]}"#;
        let e = Error::from_response(429, body, Some(Duration::from_secs(1)));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn retry_delay_outside_retry_info_is_ignored() {
        let body = r#"{"error_code":"TEMPORARILY_UNAVAILABLE","message":"m","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","retry_delay":"3s"}]}"#;
        assert_eq!(map(503, body).retry_after(), None);
    }

    #[test]
    fn messages_are_scrubbed_of_token_values() {
        let token = format!("dapi{}", "0f".repeat(16));
        let e = map(
            400,
            &format!(r#"{{"error_code":"BAD_REQUEST","message":"bad {token}"}}"#),
        );
        assert!(!e.to_string().contains(&token));
        assert!(!format!("{e:?}").contains(&token));
        let e = map(502, &format!("<html>Authorization: Bearer {token}</html>"));
        assert!(!e.to_string().contains(&token));
    }

    #[test]
    fn only_uncertain_creates_say_so() {
        let e = Error::Transport {
            message: "reset".into(),
            uncertain: true,
        };
        assert!(e.create_outcome_uncertain());
        assert!(!map(503, "{}").create_outcome_uncertain());
        assert!(!map(429, "{}").create_outcome_uncertain());
    }

    #[test]
    fn only_transient_kinds_are_retryable() {
        for status in [429, 500, 502, 503, 504] {
            assert!(map(status, "{}").is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 501] {
            assert!(!map(status, "{}").is_retryable(), "{status}");
        }
        assert!(
            !Error::AuthFlow {
                message: "x".into()
            }
            .is_retryable()
        );
    }
}
