//! Databricks API errors, typed so the controller can act on them.
//!
//! The body is `{"error_code", "message", "details"}`; `error_code` is usually a string but
//! legacy paths send a number (an invalid bearer is HTTP 403 `{"error_code":403,"message":"Invalid
//! access token."}`), so the HTTP status is the fallback.

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
    #[error("{code} (HTTP {status}): {message}")]
    Unavailable {
        status: u16,
        code: String,
        message: String,
        retry_after: Option<Duration>,
        uncertain: bool,
    },
    #[error("TRANSPORT: {message}")]
    Transport { message: String, uncertain: bool },
    #[error("AUTH_FLOW: {message}")]
    AuthFlow { message: String },
    #[error("CONFIG: {message}")]
    Config { message: String },
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
    /// name for failures that never reached the API.
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
        }
    }

    /// Worth retrying later (the same request may succeed).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. } | Error::Unavailable { .. } | Error::Transport { .. }
        )
    }

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
        let code = match &parsed.error_code {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => default_code(status).to_string(),
        };
        let message = scrub(parsed.message.as_deref().unwrap_or_else(|| body.trim()));
        let message = if message.is_empty() {
            format!("HTTP {status}")
        } else {
            message
        };
        let retry_after = retry_after_header.or_else(|| retry_info(&parsed.details));
        let numeric = matches!(parsed.error_code, Some(serde_json::Value::Number(_)));
        match (status, code.as_str()) {
            (_, "RESOURCE_DOES_NOT_EXIST" | "NOT_FOUND") | (404, _) => {
                Error::NotFound { code, message }
            }
            (_, "QUOTA_EXCEEDED") => Error::QuotaExceeded { code, message },
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
            (400, "INVALID_PARAMETER_VALUE")
                if message.to_ascii_lowercase().contains("lifetime") =>
            {
                Error::LifetimeExceeded { code, message }
            }
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

/// google.rpc.RetryInfo in `details`: `{"@type": ".../google.rpc.RetryInfo", "retry_delay": "3.5s"}`.
fn retry_info(details: &[serde_json::Value]) -> Option<Duration> {
    details.iter().find_map(|d| {
        let is_retry_info = d
            .get("@type")
            .and_then(|t| t.as_str())
            .is_some_and(|t| t.ends_with("RetryInfo"));
        let delay = d
            .get("retry_delay")
            .or_else(|| d.get("retryDelay"))?
            .as_str()?;
        let seconds: f64 = delay.strip_suffix('s')?.parse().ok()?;
        (is_retry_info && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
    })
}

/// Parse a `Retry-After` header given in seconds (the HTTP-date form is not used by Databricks).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, body: &str) -> Error {
        Error::from_response(status, body, None)
    }

    #[test]
    fn numeric_403_invalid_token_is_unauthenticated() {
        let e = map(
            403,
            r#"{"error_code":403,"message":"Invalid access token."}"#,
        );
        assert!(matches!(e, Error::Unauthenticated { .. }), "{e:?}");
        assert_eq!(e.error_code(), "403");
    }

    #[test]
    fn string_codes_map_to_their_kind() {
        let cases = [
            (404, "RESOURCE_DOES_NOT_EXIST", "NotFound"),
            (400, "INVALID_PARAMETER_VALUE", "InvalidParameter"),
            (403, "PERMISSION_DENIED", "PermissionDenied"),
            (401, "UNAUTHENTICATED", "Unauthenticated"),
            (400, "QUOTA_EXCEEDED", "QuotaExceeded"),
            (429, "REQUEST_LIMIT_EXCEEDED", "RateLimited"),
            (503, "TEMPORARILY_UNAVAILABLE", "Unavailable"),
            (500, "INTERNAL_ERROR", "Unavailable"),
            (409, "ALREADY_EXISTS", "Other"),
        ];
        for (status, code, kind) in cases {
            let e = map(
                status,
                &format!(r#"{{"error_code":"{code}","message":"m"}}"#),
            );
            assert!(
                format!("{e:?}").starts_with(kind),
                "{status} {code} -> {e:?}"
            );
            assert_eq!(e.error_code(), code);
        }
    }

    #[test]
    fn lifetime_over_the_maximum_is_its_own_kind() {
        let e = map(
            400,
            r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"Token lifetime exceeds the maximum lifetime of 730 days"}"#,
        );
        assert!(matches!(e, Error::LifetimeExceeded { .. }));
    }

    #[test]
    fn a_body_without_json_falls_back_to_the_status() {
        let e = map(502, "<html>bad gateway</html>");
        assert_eq!(e.error_code(), "BAD_GATEWAY");
        assert!(e.is_retryable());
        let e = map(418, "");
        assert_eq!(e.error_code(), "UNKNOWN");
        assert!(e.to_string().contains("HTTP 418"));
    }

    #[test]
    fn retry_after_header_and_retry_info_are_read() {
        let e = Error::from_response(
            429,
            r#"{"error_code":"REQUEST_LIMIT_EXCEEDED","message":"slow"}"#,
            Some(Duration::from_secs(7)),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        let body = r#"{"error_code":"TEMPORARILY_UNAVAILABLE","message":"m","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retry_delay":"3.5s"}]}"#;
        assert_eq!(
            map(503, body).retry_after(),
            Some(Duration::from_millis(3_500))
        );
        assert_eq!(parse_retry_after(" 12 "), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn messages_are_scrubbed_of_token_values() {
        let token = format!("dapi{}", "0f".repeat(16));
        let e = map(
            400,
            &format!(r#"{{"error_code":"BAD_REQUEST","message":"bad {token}"}}"#),
        );
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
    }
}
