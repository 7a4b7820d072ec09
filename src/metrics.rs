//! Prometheus metrics. Labels are namespaces, names, reasons, endpoints and status codes only:
//! never a token value or id.

use std::{sync::atomic::AtomicI64, time::Duration};

use databricks_client::{Endpoint, RequestObserver};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

pub struct Metrics {
    registry: Registry,
    expiry: Family<TokenLabels, FloatGauge>,
    renewal: Family<TokenLabels, FloatGauge>,
    ready: Family<TokenLabels, Gauge<i64, AtomicI64>>,
    rotations: Family<ReasonLabels, Counter>,
    mints: Counter,
    revocations: Family<OutcomeLabels, Counter>,
    orphans: Counter,
    reconcile_errors: Family<ReasonLabels, Counter>,
    reconcile_duration: Histogram,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<EndpointLabels, Histogram>,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            expiry: Family::default(),
            renewal: Family::default(),
            ready: Family::default(),
            rotations: Family::default(),
            mints: Counter::default(),
            revocations: Family::default(),
            orphans: Counter::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: duration_histogram(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(duration_histogram),
        };
        let r = &mut m.registry;
        let p = "dbtoken_";
        r.register(
            format!("{p}token_expiry_timestamp_seconds"),
            "When the current token expires (Unix time)",
            m.expiry.clone(),
        );
        r.register(
            format!("{p}token_renewal_timestamp_seconds"),
            "When the current token will be rotated (Unix time)",
            m.renewal.clone(),
        );
        r.register(
            format!("{p}token_ready"),
            "1 when the Secret holds a live token",
            m.ready.clone(),
        );
        r.register(
            format!("{p}rotations"),
            "Tokens replaced, by reason",
            m.rotations.clone(),
        );
        r.register(format!("{p}mints"), "Tokens minted", m.mints.clone());
        r.register(
            format!("{p}revocations"),
            "Tokens revoked, by cause",
            m.revocations.clone(),
        );
        r.register(
            format!("{p}orphans_revoked"),
            "Tagged tokens revoked by the orphan sweep",
            m.orphans.clone(),
        );
        r.register(
            format!("{p}reconcile_errors"),
            "Failed reconciles, by reason",
            m.reconcile_errors.clone(),
        );
        r.register(
            format!("{p}reconcile_duration_seconds"),
            "Reconcile duration",
            m.reconcile_duration.clone(),
        );
        r.register(
            format!("{p}databricks_requests"),
            "Databricks API requests, by endpoint and HTTP status",
            m.requests.clone(),
        );
        r.register(
            format!("{p}databricks_request_duration_seconds"),
            "Databricks API request duration",
            m.request_duration.clone(),
        );
        m
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn observe_token(
        &self,
        namespace: &str,
        name: &str,
        ready: bool,
        expiry_ms: Option<i64>,
        renewal_ms: Option<i64>,
    ) {
        let labels = TokenLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.ready.get_or_create(&labels).set(i64::from(ready));
        match expiry_ms {
            Some(ms) => {
                self.expiry.get_or_create(&labels).set(ms as f64 / 1000.0);
            }
            None => {
                self.expiry.remove(&labels);
            }
        }
        match renewal_ms {
            Some(ms) => {
                self.renewal.get_or_create(&labels).set(ms as f64 / 1000.0);
            }
            None => {
                self.renewal.remove(&labels);
            }
        }
    }

    pub fn forget_token(&self, namespace: &str, name: &str) {
        let labels = TokenLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.ready.remove(&labels);
        self.expiry.remove(&labels);
        self.renewal.remove(&labels);
    }

    pub fn rotation(&self, reason: &str) {
        self.rotations
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn mint(&self) {
        self.mints.inc();
    }

    pub fn revocation(&self, outcome: &str) {
        self.revocations
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn orphan_revoked(&self) {
        self.orphans.inc();
    }

    pub fn reconcile_error(&self, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn reconcile_duration(&self, d: Duration) {
        self.reconcile_duration.observe(d.as_secs_f64());
    }
}

impl RequestObserver for Metrics {
    fn observe(&self, endpoint: Endpoint, outcome: &str, elapsed: Duration) {
        let endpoint = endpoint.as_str().to_string();
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.clone(),
                status: outcome.into(),
            })
            .inc();
        self.request_duration
            .get_or_create(&EndpointLabels { endpoint })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_gauges_are_encoded_and_forgotten() {
        let m = Metrics::new();
        m.observe_token(
            "ns",
            "a",
            true,
            Some(1_700_000_000_000),
            Some(1_690_000_000_000),
        );
        let text = m.encode();
        assert!(
            text.contains(r#"dbtoken_token_ready{namespace="ns",name="a"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"dbtoken_token_expiry_timestamp_seconds{namespace="ns",name="a"} 1700000000.0"#
            ),
            "{text}"
        );
        m.forget_token("ns", "a");
        assert!(!m.encode().contains(r#"name="a""#));
    }

    #[test]
    fn counters_carry_reasons_and_endpoints() {
        let m = Metrics::new();
        m.rotation("Renewal");
        m.reconcile_error("QUOTA_EXCEEDED");
        m.observe(Endpoint::TokenCreate, "200", Duration::from_millis(5));
        let text = m.encode();
        assert!(
            text.contains(r#"dbtoken_rotations_total{reason="Renewal"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"dbtoken_reconcile_errors_total{reason="QUOTA_EXCEEDED"} 1"#));
        assert!(text.contains(
            r#"dbtoken_databricks_requests_total{endpoint="token/create",status="200"} 1"#
        ));
    }
}
