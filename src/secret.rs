//! The Secret a `DatabricksToken` owns: rendering it, and reading back the token state its
//! annotations hold. Those annotations are the source of truth for the current token (id,
//! times, a digest of the value) and for replaced tokens still in their grace period.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};

pub use crate::crd::TokenOrigin;
use crate::crd::{DatabricksToken, DeletionPolicy};
use crate::schedule::EpochMillis;

pub use crate::hash::value_digest;
pub use crate::time::{format_time, parse_time};

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "databricks-token-operator";
pub const TOKEN_NAME_LABEL: &str = "dbtoken.dev/token";

pub const ANN_TOKEN_ID: &str = "dbtoken.dev/token-id";
pub const ANN_CREATION: &str = "dbtoken.dev/creation-time";
pub const ANN_EXPIRY: &str = "dbtoken.dev/expiry-time";
pub const ANN_VALUE_DIGEST: &str = "dbtoken.dev/token-sha256";
pub const ANN_SPEC_HASH: &str = "dbtoken.dev/spec-hash";
pub const ANN_PREVIOUS: &str = "dbtoken.dev/previous-tokens";
/// Where the current token was minted (JSON [`TokenOrigin`]).
pub const ANN_ORIGIN: &str = "dbtoken.dev/origin";
pub const ANN_ROTATE_HANDLED: &str = "dbtoken.dev/rotate-request-handled";
/// On a `Retain` Secret: the uid of the `DatabricksToken` that owns it. Such a Secret carries no
/// ownerReference, which the garbage collector would follow to delete it with its resource
/// (a foreground cascading delete deletes dependents before the operator can detach them).
pub const ANN_OWNER_UID: &str = "dbtoken.dev/owner-uid";
/// Set by users on the `DatabricksToken` to ask for a rotation now.
pub const ANN_ROTATE_REQUESTED: &str = "dbtoken.dev/rotate-requested-at";

pub const ENV_HOST_KEY: &str = "DATABRICKS_HOST";
pub const ENV_TOKEN_KEY: &str = "DATABRICKS_TOKEN";
pub const DATABRICKSCFG_KEY: &str = ".databrickscfg";

/// The current token as recorded on the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentToken {
    pub token_id: String,
    pub creation: EpochMillis,
    /// None: the token never expires.
    pub expiry: Option<EpochMillis>,
    /// SHA-256 of the value, to notice a value altered by hand without storing the value twice.
    pub value_digest: String,
    /// Where it was minted; None in records written before origins were kept (then the
    /// current workspace and owner are assumed, as before).
    pub origin: Option<TokenOrigin>,
}

/// A replaced token and the moment it may be revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviousTokenRecord {
    pub token_id: String,
    pub revoke_after: EpochMillis,
    /// When it dies by itself (None: unknown or never): a token nothing can revoke is
    /// forgotten once it has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<EpochMillis>,
    /// Where it was minted; absent in records written before origins were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<TokenOrigin>,
}

impl PreviousTokenRecord {
    /// Whether its grace period is over, so it is to be revoked now.
    pub fn is_due(&self, now: EpochMillis) -> bool {
        self.revoke_after <= now
    }

    /// Whether it has certainly expired, so it cannot authenticate any more.
    pub fn has_expired(&self, now: EpochMillis) -> bool {
        self.expiry.is_some_and(|e| e <= now)
    }
}

/// Everything the Secret's annotations say about the tokens of one `DatabricksToken`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub current: CurrentToken,
    pub previous: Vec<PreviousTokenRecord>,
    pub spec_hash: String,
    pub rotate_request_handled: Option<String>,
}

impl TokenRecord {
    /// Whether a replaced token is to be revoked now.
    pub fn has_revocations_due(&self, now: EpochMillis) -> bool {
        self.previous.iter().any(|p| p.is_due(now))
    }
}

/// What the Secret should contain apart from the token state.
pub struct SecretLayout<'a> {
    pub name: &'a str,
    pub host: &'a str,
}

/// The Secret's name for this resource.
pub fn secret_name(token: &DatabricksToken) -> String {
    token
        .spec
        .secret
        .name
        .clone()
        .unwrap_or_else(|| token.name_any())
}

/// Read the token state from a Secret written by the operator; None when it holds none.
pub fn read_record(meta: &ObjectMeta) -> Option<TokenRecord> {
    let ann = meta.annotations.as_ref()?;
    let current = CurrentToken {
        token_id: ann.get(ANN_TOKEN_ID)?.clone(),
        creation: parse_time(ann.get(ANN_CREATION)?)?,
        expiry: match ann.get(ANN_EXPIRY).map(String::as_str) {
            Some("never") | None => None,
            Some(t) => Some(parse_time(t)?),
        },
        value_digest: ann.get(ANN_VALUE_DIGEST)?.clone(),
        origin: ann
            .get(ANN_ORIGIN)
            .and_then(|o| serde_json::from_str(o).ok()),
    };
    let previous = ann
        .get(ANN_PREVIOUS)
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    Some(TokenRecord {
        current,
        previous,
        spec_hash: ann.get(ANN_SPEC_HASH).cloned().unwrap_or_default(),
        rotate_request_handled: ann.get(ANN_ROTATE_HANDLED).cloned(),
    })
}

/// The token value stored under `key`, if any.
pub fn stored_value(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Whether the Secret is controlled by this `DatabricksToken` (so it may be overwritten): by
/// its controller ownerReference, or for a `Retain` Secret by the owner annotation.
pub fn is_owned_by(secret: &Secret, token: &DatabricksToken) -> bool {
    let Some(uid) = token.meta().uid.as_deref() else {
        return false;
    };
    let by_reference = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true));
    // Whatever the policy is now: a resource switched from Retain to Revoke adopts its Secret.
    let by_annotation = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_OWNER_UID))
        .is_some_and(|v| v == uid);
    by_reference || by_annotation
}

/// The full Secret for `record` with token `value`, for server-side apply.
pub fn render(
    token: &DatabricksToken,
    layout: &SecretLayout,
    record: &TokenRecord,
    value: &str,
) -> Secret {
    let spec = &token.spec.secret;
    let mut data = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        data.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
    };
    put(&spec.token_key, value);
    put(&spec.host_key, layout.host);
    if spec.env_keys {
        put(ENV_HOST_KEY, layout.host);
        put(ENV_TOKEN_KEY, value);
    }
    if let Some(profile) = &spec.databricks_cfg_profile {
        put(
            DATABRICKSCFG_KEY,
            &format!("[{profile}]\nhost  = {}\ntoken = {value}\n", layout.host),
        );
    }

    let mut labels = spec.labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels.insert(TOKEN_NAME_LABEL.into(), token.name_any());

    let mut annotations = spec.annotations.clone();
    annotations.extend(record_annotations(record));
    // Retain: the Secret outlives its resource, so the garbage collector must not see an owner.
    let retain = token.spec.deletion_policy == DeletionPolicy::Retain;
    if retain && let Some(uid) = token.uid() {
        annotations.insert(ANN_OWNER_UID.into(), uid);
    }

    Secret {
        metadata: ObjectMeta {
            name: Some(layout.name.to_string()),
            namespace: token.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: token
                .controller_owner_ref(&())
                .filter(|_| !retain)
                .map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}

fn record_annotations(record: &TokenRecord) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(ANN_TOKEN_ID.into(), record.current.token_id.clone());
    a.insert(ANN_CREATION.into(), format_time(record.current.creation));
    a.insert(
        ANN_EXPIRY.into(),
        record
            .current
            .expiry
            .map(format_time)
            .unwrap_or_else(|| "never".into()),
    );
    a.insert(ANN_VALUE_DIGEST.into(), record.current.value_digest.clone());
    a.insert(ANN_SPEC_HASH.into(), record.spec_hash.clone());
    a.insert(
        ANN_PREVIOUS.into(),
        serde_json::to_string(&record.previous).unwrap_or_else(|_| "[]".into()),
    );
    if let Some(handled) = &record.rotate_request_handled {
        a.insert(ANN_ROTATE_HANDLED.into(), handled.clone());
    }
    if let Some(origin) = &record.current.origin
        && let Ok(json) = serde_json::to_string(origin)
    {
        a.insert(ANN_ORIGIN.into(), json);
    }
    a
}

/// Whether the live Secret already carries everything `desired` sets (so no write is needed).
pub fn is_up_to_date(live: &Secret, desired: &Secret) -> bool {
    fn covers(
        live: Option<&BTreeMap<String, String>>,
        want: Option<&BTreeMap<String, String>>,
    ) -> bool {
        want.into_iter()
            .flatten()
            .all(|(k, v)| live.and_then(|l| l.get(k)) == Some(v))
    }
    let live_data = live.data.as_ref();
    let data_matches = desired.data.as_ref().is_some_and(|want| {
        live_data.is_some_and(|have| {
            have.len() == want.len() && want.iter().all(|(k, v)| have.get(k) == Some(v))
        })
    });
    data_matches
        && covers(
            live.metadata.labels.as_ref(),
            desired.metadata.labels.as_ref(),
        )
        && covers(
            live.metadata.annotations.as_ref(),
            desired.metadata.annotations.as_ref(),
        )
        && live.metadata.owner_references == desired.metadata.owner_references
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DatabricksTokenSpec, WorkspaceKey};

    fn token(spec_yaml: &str) -> DatabricksToken {
        let spec: DatabricksTokenSpec = serde_yaml::from_str(spec_yaml).unwrap();
        let mut t = DatabricksToken::new("reports", spec);
        t.metadata.namespace = Some("team-a".into());
        t.metadata.uid = Some("uid-1".into());
        t
    }

    fn origin(host: &str) -> TokenOrigin {
        TokenOrigin {
            workspace: WorkspaceKey {
                kind: crate::crd::WorkspaceKind::DatabricksWorkspace,
                namespace: Some("team-a".into()),
                name: "ws".into(),
            },
            host: host.into(),
            application_id: None,
            identity: Some("1001".into()),
        }
    }

    fn record() -> TokenRecord {
        TokenRecord {
            current: CurrentToken {
                token_id: "tid-1".into(),
                creation: 1_700_000_000_000,
                expiry: Some(1_700_000_600_000),
                value_digest: value_digest("secret-value"),
                origin: Some(origin("https://h")),
            },
            previous: vec![PreviousTokenRecord {
                token_id: "tid-0".into(),
                revoke_after: 1_700_000_060_000,
                expiry: Some(1_700_000_600_000),
                origin: Some(TokenOrigin {
                    application_id: Some("8a4f9d1e-52f6-4c3a-9a57-1c8b0c0f5b21".into()),
                    identity: None,
                    ..origin("https://old")
                }),
            }],
            spec_hash: "h".into(),
            rotate_request_handled: Some("2026-01-01T00:00:00Z".into()),
        }
    }

    const SPEC: &str = "workspaceRef: {name: ws}\nlifetime: 1h\n";

    #[test]
    fn rendered_secret_round_trips_its_record() {
        let t = token(SPEC);
        let s = render(
            &t,
            &SecretLayout {
                name: "reports",
                host: "https://h",
            },
            &record(),
            "secret-value",
        );
        assert_eq!(read_record(&s.metadata), Some(record()));
    }

    #[test]
    fn rendered_secret_has_token_host_and_env_keys_by_default() {
        let t = token(SPEC);
        let s = render(
            &t,
            &SecretLayout {
                name: "reports",
                host: "https://h",
            },
            &record(),
            "v",
        );
        let keys: Vec<_> = s.data.as_ref().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            vec!["DATABRICKS_HOST", "DATABRICKS_TOKEN", "host", "token"]
        );
        assert_eq!(stored_value(&s, "token").as_deref(), Some("v"));
        assert_eq!(
            stored_value(&s, "DATABRICKS_HOST").as_deref(),
            Some("https://h")
        );
    }

    #[test]
    fn custom_keys_and_databrickscfg_profile() {
        let t = token(&format!(
            "{SPEC}secret: {{tokenKey: pat, hostKey: url, envKeys: false, databricksCfgProfile: prod}}\n"
        ));
        let s = render(
            &t,
            &SecretLayout {
                name: "x",
                host: "https://h",
            },
            &record(),
            "v",
        );
        let cfg = stored_value(&s, ".databrickscfg").unwrap();
        assert_eq!(cfg, "[prod]\nhost  = https://h\ntoken = v\n");
        assert!(stored_value(&s, "pat").is_some() && stored_value(&s, "url").is_some());
        assert!(stored_value(&s, "DATABRICKS_TOKEN").is_none());
    }

    #[test]
    fn secret_is_controlled_by_the_token_and_labelled() {
        let t = token(SPEC);
        let s = render(
            &t,
            &SecretLayout {
                name: "reports",
                host: "https://h",
            },
            &record(),
            "v",
        );
        assert!(is_owned_by(&s, &t));
        assert_eq!(
            s.metadata.labels.as_ref().unwrap()[MANAGED_BY_LABEL],
            MANAGED_BY
        );
        assert_eq!(s.metadata.namespace.as_deref(), Some("team-a"));
    }

    #[test]
    fn a_retain_secret_has_no_owner_the_garbage_collector_could_follow() {
        let t = token("workspaceRef: {name: ws}\nlifetime: 1h\ndeletionPolicy: Retain\n");
        let layout = SecretLayout {
            name: "reports",
            host: "https://h",
        };
        let s = render(&t, &layout, &record(), "v");
        assert!(s.metadata.owner_references.is_none());
        assert!(is_owned_by(&s, &t), "owned through the annotation");
        let mut other = t.clone();
        other.metadata.uid = Some("uid-2".into());
        assert!(!is_owned_by(&s, &other), "another resource does not own it");
        // Switched to Revoke: still its Secret, which gets its ownerReference back.
        let revoke = token(SPEC);
        assert!(is_owned_by(&s, &revoke));
        let rewritten = render(&revoke, &layout, &record(), "v");
        assert!(rewritten.metadata.owner_references.is_some());
    }

    #[test]
    fn annotations_never_contain_the_value() {
        let t = token(SPEC);
        let s = render(
            &t,
            &SecretLayout {
                name: "reports",
                host: "https://h",
            },
            &record(),
            "secret-value",
        );
        for v in s.metadata.annotations.unwrap().values() {
            assert!(!v.contains("secret-value"));
        }
    }

    #[test]
    fn up_to_date_detects_changed_data_and_missing_annotations() {
        let t = token(SPEC);
        let layout = SecretLayout {
            name: "reports",
            host: "https://h",
        };
        let desired = render(&t, &layout, &record(), "v");
        assert!(is_up_to_date(&desired, &desired));
        let other = render(&t, &layout, &record(), "w");
        assert!(!is_up_to_date(&other, &desired));
        let mut stripped = desired.clone();
        stripped
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(ANN_TOKEN_ID);
        assert!(!is_up_to_date(&stripped, &desired));
    }

    #[test]
    fn records_written_before_origins_were_kept_still_read() {
        let annotations: BTreeMap<String, String> = [
            (ANN_TOKEN_ID, "tid-1"),
            (ANN_CREATION, "2023-11-14T22:13:20.000Z"),
            (ANN_EXPIRY, "never"),
            (ANN_VALUE_DIGEST, "d"),
            (ANN_SPEC_HASH, "h"),
            (
                ANN_PREVIOUS,
                r#"[{"tokenId":"tid-0","revokeAfter":1700000060000}]"#,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let meta = ObjectMeta {
            annotations: Some(annotations),
            ..ObjectMeta::default()
        };
        let record = read_record(&meta).unwrap();
        assert_eq!(record.current.origin, None);
        assert_eq!(
            record.previous,
            vec![PreviousTokenRecord {
                token_id: "tid-0".into(),
                revoke_after: 1_700_000_060_000,
                expiry: None,
                origin: None,
            }]
        );
    }

    #[test]
    fn origins_are_recorded_in_the_annotations() {
        let t = token(SPEC);
        let s = render(
            &t,
            &SecretLayout {
                name: "reports",
                host: "https://h",
            },
            &record(),
            "v",
        );
        let ann = s.metadata.annotations.unwrap();
        let current: serde_json::Value = serde_json::from_str(&ann[ANN_ORIGIN]).unwrap();
        assert_eq!(
            current,
            serde_json::json!({
                "workspace": {"kind": "DatabricksWorkspace", "namespace": "team-a", "name": "ws"},
                "host": "https://h",
                "identity": "1001",
            })
        );
        let previous: serde_json::Value = serde_json::from_str(&ann[ANN_PREVIOUS]).unwrap();
        assert_eq!(previous[0]["origin"]["host"], "https://old");
        assert_eq!(
            previous[0]["origin"]["applicationId"],
            "8a4f9d1e-52f6-4c3a-9a57-1c8b0c0f5b21"
        );
    }

    #[test]
    fn a_secret_without_annotations_has_no_record() {
        assert_eq!(read_record(&ObjectMeta::default()), None);
    }

    #[test]
    fn times_round_trip_with_millisecond_precision() {
        assert_eq!(
            parse_time(&format_time(1_700_000_000_123)),
            Some(1_700_000_000_123)
        );
    }
}
