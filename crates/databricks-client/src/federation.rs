//! Workload identity federation, the client's side: where a subject token (a JWT from the
//! workload's identity provider, e.g. a Kubernetes ServiceAccount token) comes from, and what a
//! refusal of it means.
//!
//! The token endpoint's refusals are sorted by their words into a reason a person can act on:
//! no federation policy matches the token (fix the policy or the ServiceAccount), or the token
//! itself was refused (expired, not yet valid, bad signature). The exact words of the real
//! Databricks endpoint are unverified; Entra's AADSTS codes are documented.

use std::{fmt, future::Future, pin::Pin, sync::Arc};

use crate::{Error, SecretString};

/// Condition reason: no federation policy (Databricks) or federated credential (Entra) of the
/// service principal accepts the token's issuer, subject and audience.
pub const FEDERATION_POLICY_MISMATCH: &str = "FederationPolicyMismatch";
/// Condition reason: the token endpoint refused the subject token for another reason (expired,
/// not yet valid, signature, unknown client).
pub const TOKEN_EXCHANGE_REFUSED: &str = "TokenExchangeRefused";

/// RFC 8693 token exchange grant and subject token type (Databricks workload identity).
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 7523 client assertion type (Entra federated credential instead of a client secret).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The audience Entra expects in federated client assertions unless configured otherwise.
pub const ENTRA_TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

pub type SubjectTokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SecretString, Error>> + Send + 'a>>;

/// Where fresh subject tokens come from. Called once per exchange; the token is sent and
/// dropped, never cached (it is short-lived and only the exchanged token is reused).
pub trait SubjectTokenSource: Send + Sync {
    fn subject_token(&self) -> SubjectTokenFuture<'_>;
    /// Who the token speaks for, for messages (e.g. `ServiceAccount team-a/databricks`).
    fn describe(&self) -> String;
}

/// A shared source, printable without its tokens.
#[derive(Clone)]
pub struct SubjectTokens(pub Arc<dyn SubjectTokenSource>);

impl fmt::Debug for SubjectTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.describe())
    }
}

/// The reason a refusal's words (`error` and `error_description`) point to.
pub fn refusal_reason(text: &str) -> &'static str {
    let text = text.to_ascii_lowercase();
    let token_refused = [
        "expired",
        "not valid before",
        "valid time range",
        "aadsts700024",
    ];
    let no_match = [
        "federation policy",
        "federated identity record",
        "aadsts70021",
    ];
    if token_refused.iter().any(|w| text.contains(w)) {
        TOKEN_EXCHANGE_REFUSED
    } else if no_match.iter().any(|w| text.contains(w)) {
        FEDERATION_POLICY_MISMATCH
    } else {
        TOKEN_EXCHANGE_REFUSED
    }
}

/// A token endpoint's refusal of a subject token, with its reason and whose token it was.
/// Outages and transport failures stay as they are (retryable).
pub(crate) fn classify(error: Error, source: &SubjectTokens, principal: &str) -> Error {
    match error {
        Error::AuthFlow { message } => Error::Federation {
            reason: refusal_reason(&message),
            message: format!(
                "{message} (subject token of {} for service principal {principal})",
                source.0.describe()
            ),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_sorted_by_what_the_user_must_fix() {
        let table = [
            (
                "invalid_request No federation policy of service principal x matches the subject token",
                FEDERATION_POLICY_MISMATCH,
            ),
            (
                "invalid_request AADSTS70021: No matching federated identity record found for presented assertion.",
                FEDERATION_POLICY_MISMATCH,
            ),
            (
                "invalid_request Invalid subject_token: the token expired at 1 (now 2)",
                TOKEN_EXCHANGE_REFUSED,
            ),
            (
                "invalid_client AADSTS700024: Client assertion is not within its valid time range.",
                TOKEN_EXCHANGE_REFUSED,
            ),
            (
                "invalid_request Invalid subject_token: the signature does not verify",
                TOKEN_EXCHANGE_REFUSED,
            ),
            (
                "invalid_client Client authentication failed",
                TOKEN_EXCHANGE_REFUSED,
            ),
        ];
        for (text, reason) in table {
            assert_eq!(refusal_reason(text), reason, "{text}");
        }
    }
}
