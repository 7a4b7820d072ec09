//! Workload identity federation: policies that let a JWT from an outside identity provider (a
//! Kubernetes ServiceAccount token, say) stand in for a service principal's secret.
//!
//! A Databricks service principal federation policy names an `issuer`, the `audiences` a token
//! may carry (one match is enough) and the `subject`; optionally the issuer's JWKS pasted into
//! the policy (`jwks_json`), for issuers whose discovery document nobody outside can reach.
//! An Entra app's federated identity credential has the same three fields. A token is accepted
//! when its RS256 signature verifies against the issuer's keys and its `iss`, `aud`, `sub`, `exp`
//! and `nbf` fit one policy, judged on the workspace's (possibly offset) clock.
//!
//! Keys: the policy's pasted JWKS, else the JWKS the emulator holds for that issuer
//! ([`Federation::publish_issuer_keys`]), standing in for a fetch of the issuer's
//! `/.well-known/openid-configuration` -> `jwks_uri`. The emulator fetches nothing itself: a test
//! control plane's issuer (`https://kubernetes.default.svc.cluster.local`) is not a reachable
//! URL, and its `/openid/v1/jwks` sits behind the API server's TLS and authentication, so tests
//! read that document with their admin client and hand it over.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::{Deserialize, Serialize};

/// The audience Entra expects in a federated client assertion unless the credential says
/// otherwise.
pub const ENTRA_DEFAULT_AUDIENCE: &str = "api://AzureADTokenExchange";

/// One federation policy (Databricks) or federated identity credential (Entra).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FederationPolicy {
    pub issuer: String,
    /// A token matches when its `aud` (one value or any of a list) is one of these.
    pub audiences: Vec<String>,
    /// The exact `sub` accepted, e.g. `system:serviceaccount:team-a:databricks`.
    pub subject: String,
    /// The issuer's JWKS document, pasted into the policy; None: the issuer's published keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_json: Option<String>,
}

/// The claims a subject token is judged on (only those read; unverified until [`verify`] says).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Claims {
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    #[serde(default, deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Aud>::deserialize(d)? {
        None => Vec::new(),
        Some(Aud::One(a)) => vec![a],
        Some(Aud::Many(a)) => a,
    })
}

/// Why a subject token was refused. Each is answered in the endpoint's own words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a JWT, or not an RS256 one.
    Malformed(String),
    /// No policy of this principal names the token's issuer, audience and subject.
    NoPolicyMatches {
        iss: String,
        sub: String,
        aud: Vec<String>,
    },
    /// The issuer's keys are unknown (no pasted JWKS and none published).
    NoKeys {
        issuer: String,
    },
    /// The signature does not verify with any key the issuer's JWKS holds for its `kid`.
    BadSignature,
    Expired {
        exp: i64,
        now: i64,
    },
    NotYetValid {
        nbf: i64,
        now: i64,
    },
    MissingExpiry,
}

/// Policies per principal, and the keys each issuer publishes.
#[derive(Default)]
pub struct Federation {
    /// By Databricks service principal application id.
    service_principals: HashMap<String, Vec<FederationPolicy>>,
    /// By Entra app client id.
    entra_apps: HashMap<String, Vec<FederationPolicy>>,
    /// Issuer -> JWKS document, as fetching its discovery document would give.
    issuer_keys: HashMap<String, String>,
}

impl Federation {
    pub fn add_service_principal_policy(&mut self, application_id: &str, p: FederationPolicy) {
        self.service_principals
            .entry(application_id.to_string())
            .or_default()
            .push(p);
    }

    pub fn add_entra_credential(&mut self, client_id: &str, p: FederationPolicy) {
        self.entra_apps
            .entry(client_id.to_string())
            .or_default()
            .push(p);
    }

    pub fn publish_issuer_keys(&mut self, issuer: &str, jwks_json: &str) {
        self.issuer_keys
            .insert(issuer.to_string(), jwks_json.to_string());
    }

    /// Verify `token` for the service principal `application_id`, at `now` (epoch seconds).
    pub fn verify_for_service_principal(
        &self,
        application_id: &str,
        token: &str,
        now: i64,
    ) -> Result<Claims, Refusal> {
        let policies = self
            .service_principals
            .get(application_id)
            .map_or(&[][..], Vec::as_slice);
        verify(token, policies, &self.issuer_keys, now)
    }

    /// Verify a client assertion for the Entra app `client_id`, at `now` (epoch seconds).
    pub fn verify_for_entra_app(
        &self,
        client_id: &str,
        token: &str,
        now: i64,
    ) -> Result<Claims, Refusal> {
        let policies = self
            .entra_apps
            .get(client_id)
            .map_or(&[][..], Vec::as_slice);
        verify(token, policies, &self.issuer_keys, now)
    }
}

/// Judge `token` against `policies`: the policy that names its issuer, audience and subject,
/// then that issuer's key, then the time claims.
pub fn verify(
    token: &str,
    policies: &[FederationPolicy],
    issuer_keys: &HashMap<String, String>,
    now: i64,
) -> Result<Claims, Refusal> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| Refusal::Malformed(format!("not a JWT ({e})")))?;
    if header.alg != Algorithm::RS256 {
        return Err(Refusal::Malformed(format!(
            "signed with {:?}; only RS256 is accepted",
            header.alg
        )));
    }
    let claims = unverified_claims(token)?;
    let policy = matching_policy(policies, &claims).ok_or_else(|| Refusal::NoPolicyMatches {
        iss: claims.iss.clone(),
        sub: claims.sub.clone(),
        aud: claims.aud.clone(),
    })?;
    let jwks = policy
        .jwks_json
        .as_deref()
        .or_else(|| issuer_keys.get(&policy.issuer).map(String::as_str))
        .ok_or_else(|| Refusal::NoKeys {
            issuer: policy.issuer.clone(),
        })?;
    verify_signature(token, header.kid.as_deref(), jwks)?;
    check_times(&claims, now)?;
    Ok(claims)
}

/// The policy naming the token's issuer and subject and one of its audiences.
fn matching_policy<'a>(
    policies: &'a [FederationPolicy],
    claims: &Claims,
) -> Option<&'a FederationPolicy> {
    policies.iter().find(|p| {
        p.issuer == claims.iss
            && p.subject == claims.sub
            && claims.aud.iter().any(|a| p.audiences.contains(a))
    })
}

/// The claims, before anything about them is trusted (to find the policy and its keys).
fn unverified_claims(token: &str) -> Result<Claims, Refusal> {
    let mut v = Validation::new(Algorithm::RS256);
    v.insecure_disable_signature_validation();
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&[]), &v)
        .map(|d| d.claims)
        .map_err(|e| Refusal::Malformed(format!("unreadable claims ({e})")))
}

/// The signature alone; the time claims are judged on the workspace's clock, not the host's.
fn verify_signature(token: &str, kid: Option<&str>, jwks_json: &str) -> Result<(), Refusal> {
    let set: JwkSet = serde_json::from_str(jwks_json).map_err(|_| Refusal::BadSignature)?;
    let mut v = Validation::new(Algorithm::RS256);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let verifies = set
        .keys
        .iter()
        .filter(|k| kid.is_none() || k.common.key_id.as_deref() == kid)
        .filter_map(|k| DecodingKey::from_jwk(k).ok())
        .any(|key| jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).is_ok());
    if verifies {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

fn check_times(claims: &Claims, now: i64) -> Result<(), Refusal> {
    let exp = claims.exp.ok_or(Refusal::MissingExpiry)?;
    if exp <= now {
        return Err(Refusal::Expired { exp, now });
    }
    if let Some(nbf) = claims.nbf
        && nbf > now
    {
        return Err(Refusal::NotYetValid { nbf, now });
    }
    Ok(())
}

impl Refusal {
    /// The Databricks token endpoint's words (OAuth error body, `error_description`).
    pub fn databricks_description(&self, application_id: &str) -> String {
        match self {
            Refusal::Malformed(why) => format!("Invalid subject_token: {why}"),
            Refusal::NoPolicyMatches { iss, sub, aud } => format!(
                "No federation policy of service principal {application_id} matches the subject token (iss: '{iss}', sub: '{sub}', aud: '{}')",
                aud.join(",")
            ),
            Refusal::NoKeys { issuer } => {
                format!("Could not fetch the signing keys of issuer '{issuer}'")
            }
            Refusal::BadSignature => {
                "Invalid subject_token: the signature does not verify with the issuer's keys".into()
            }
            Refusal::Expired { exp, now } => {
                format!("Invalid subject_token: the token expired at {exp} (now {now})")
            }
            Refusal::NotYetValid { nbf, now } => {
                format!("Invalid subject_token: the token is not valid before {nbf} (now {now})")
            }
            Refusal::MissingExpiry => "Invalid subject_token: the token has no exp claim".into(),
        }
    }

    /// Entra's AADSTS code and words for a refused client assertion.
    pub fn entra_code_and_description(&self) -> (u32, String) {
        match self {
            Refusal::NoPolicyMatches { iss, sub, aud } => (
                70021,
                format!(
                    "No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{}'.",
                    aud.join(",")
                ),
            ),
            Refusal::Expired { .. } | Refusal::NotYetValid { .. } | Refusal::MissingExpiry => (
                700024,
                "Client assertion is not within its valid time range.".into(),
            ),
            Refusal::NoKeys { issuer } => (
                700211,
                format!(
                    "No matching federated identity record found for presented assertion issuer '{issuer}'."
                ),
            ),
            Refusal::Malformed(_) | Refusal::BadSignature => {
                (50027, "JWT token is invalid or malformed.".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(aud: &str, sub: &str) -> FederationPolicy {
        FederationPolicy {
            issuer: "https://issuer".into(),
            audiences: vec![aud.into()],
            subject: sub.into(),
            jwks_json: None,
        }
    }

    fn claims(exp: Option<i64>, nbf: Option<i64>) -> Claims {
        Claims {
            iss: "i".into(),
            sub: "s".into(),
            aud: vec!["a".into()],
            exp,
            nbf,
        }
    }

    #[test]
    fn times_are_judged_on_the_given_clock() {
        assert_eq!(check_times(&claims(Some(100), None), 99), Ok(()));
        assert_eq!(
            check_times(&claims(Some(100), None), 100),
            Err(Refusal::Expired { exp: 100, now: 100 })
        );
        assert_eq!(
            check_times(&claims(Some(200), Some(150)), 100),
            Err(Refusal::NotYetValid { nbf: 150, now: 100 })
        );
        assert_eq!(
            check_times(&claims(None, None), 100),
            Err(Refusal::MissingExpiry)
        );
    }

    #[test]
    fn aud_may_be_a_string_or_a_list() {
        let one: Claims = serde_json::from_str(r#"{"iss":"i","sub":"s","aud":"x"}"#).unwrap();
        let many: Claims =
            serde_json::from_str(r#"{"iss":"i","sub":"s","aud":["x","y"]}"#).unwrap();
        assert_eq!(one.aud, vec!["x"]);
        assert_eq!(many.aud, vec!["x", "y"]);
    }

    #[test]
    fn a_policy_matches_on_issuer_subject_and_one_audience() {
        let policies = [policy("aud-1", "sub-1")];
        let table: [(&str, &str, &[&str], bool); 5] = [
            ("https://issuer", "sub-1", &["other", "aud-1"], true),
            ("https://issuer", "sub-2", &["aud-1"], false),
            ("https://other", "sub-1", &["aud-1"], false),
            ("https://issuer", "sub-1", &["aud-2"], false),
            ("https://issuer", "sub-1", &[], false),
        ];
        for (iss, sub, aud, expected) in table {
            let c = Claims {
                iss: iss.into(),
                sub: sub.into(),
                aud: aud.iter().map(|a| a.to_string()).collect(),
                exp: None,
                nbf: None,
            };
            assert_eq!(
                matching_policy(&policies, &c).is_some(),
                expected,
                "{iss} {sub} {aud:?}"
            );
        }
    }
}
