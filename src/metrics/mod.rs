//! Prometheus metrics. Labels are namespaces, names, reasons, endpoints and status codes, and
//! the inventory's workspace, class and owner (an identity id): never a token value, and a token
//! id only in the opt-in per-token inventory series.

mod format;
mod inventory_gauges;
mod token_gauges;

pub use format::Format;
pub use inventory_gauges::WorkspaceLabels;

use std::{sync::Arc, time::Duration};

use databricks_client::{Endpoint, RequestObserver};
use prometheus_client::{
    encoding::{
        EncodeLabelSet,
        text::{encode_eof, encode_registry},
    },
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

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

pub struct Metrics {
    registry: Registry,
    tokens: Arc<token_gauges::TokenGauges>,
    inventory: inventory_gauges::InventoryGauges,
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
            tokens: Arc::default(),
            inventory: Default::default(),
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

    /// The metrics text, in chunks: the registry's metrics, then the per-token gauges a few
    /// hundred series at a time (with thousands of tokens the whole text is megabytes), then
    /// OpenMetrics' EOF. The token gauges read the same in both formats.
    pub fn text_chunks(&self, format: Format) -> impl Iterator<Item = String> + Send + 'static {
        let mut head = String::new();
        let _ = encode_registry(&mut head, &self.registry);
        let mut eof = String::new();
        match format {
            Format::OpenMetrics => {
                let _ = encode_eof(&mut eof);
            }
            Format::Text004 => head = format::to_text_004(&head),
        }
        std::iter::once(head)
            .chain(self.tokens.chunks())
            .chain(self.inventory.chunks())
            .chain(std::iter::once(eof).filter(|e| !e.is_empty()))
    }

    /// The whole OpenMetrics text at once.
    pub fn encode(&self) -> String {
        self.text_chunks(Format::OpenMetrics).collect()
    }

    pub fn observe_token(
        &self,
        namespace: &str,
        name: &str,
        ready: bool,
        expiry_ms: Option<i64>,
        renewal_ms: Option<i64>,
    ) {
        self.tokens
            .set(namespace, name, ready, expiry_ms, renewal_ms);
    }

    pub fn forget_token(&self, namespace: &str, name: &str) {
        self.tokens.remove(namespace, name);
    }

    /// Replace a workspace's inventory series with those of its latest inventory.
    pub fn observe_inventory(
        &self,
        workspace: WorkspaceLabels,
        tally: &crate::inventory::Tally,
        at: crate::schedule::EpochMillis,
    ) {
        self.inventory.set(workspace, tally, at);
    }

    /// Drop a workspace's inventory series (inventory turned off, workspace deleted).
    pub fn forget_inventory(&self, workspace: &WorkspaceLabels) {
        self.inventory.remove(workspace);
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

    fn line_of<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn token_gauges_carry_namespace_and_name_in_seconds() {
        let m = Metrics::new();
        m.observe_token(
            "ns",
            "a",
            true,
            Some(1_700_000_000_500),
            Some(1_690_000_000_000),
        );
        let text = m.encode();
        assert!(
            text.contains(r#"dbtoken_token_ready{namespace="ns",name="a"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"dbtoken_token_expiry_timestamp_seconds{namespace="ns",name="a"} 1700000000.5"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"dbtoken_token_renewal_timestamp_seconds{namespace="ns",name="a"} 1690000000.0"#
            ),
            "{text}"
        );
    }

    #[test]
    fn a_token_without_a_known_expiry_has_no_expiry_series() {
        let m = Metrics::new();
        m.observe_token("ns", "a", true, Some(1_700_000_000_000), Some(1));
        m.observe_token("ns", "a", false, None, None);
        let text = m.encode();
        assert!(
            text.contains(r#"dbtoken_token_ready{namespace="ns",name="a"} 0"#),
            "{text}"
        );
        assert!(
            line_of(&text, "dbtoken_token_expiry_timestamp_seconds{").is_none(),
            "{text}"
        );
        assert!(
            line_of(&text, "dbtoken_token_renewal_timestamp_seconds{").is_none(),
            "{text}"
        );
    }

    #[test]
    fn forgetting_a_token_removes_only_its_series() {
        let m = Metrics::new();
        m.observe_token("ns", "a", true, Some(1_000), Some(500));
        m.observe_token("ns", "b", true, Some(2_000), Some(1_000));
        m.forget_token("ns", "a");
        let text = m.encode();
        assert!(!text.contains(r#"name="a""#), "{text}");
        assert!(
            text.contains(r#"dbtoken_token_ready{namespace="ns",name="b"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn counters_count_by_reason_and_outcome() {
        let m = Metrics::new();
        m.rotation("Renewal");
        m.rotation("Renewal");
        m.rotation("SecretDeleted");
        m.mint();
        m.revocation("grace_period_over");
        m.orphan_revoked();
        m.reconcile_error("QUOTA_EXCEEDED");
        let text = m.encode();
        for expected in [
            r#"dbtoken_rotations_total{reason="Renewal"} 2"#,
            r#"dbtoken_rotations_total{reason="SecretDeleted"} 1"#,
            "dbtoken_mints_total 1",
            r#"dbtoken_revocations_total{outcome="grace_period_over"} 1"#,
            "dbtoken_orphans_revoked_total 1",
            r#"dbtoken_reconcile_errors_total{reason="QUOTA_EXCEEDED"} 1"#,
            "# TYPE dbtoken_rotations counter",
        ] {
            assert!(text.contains(expected), "missing {expected} in {text}");
        }
    }

    #[test]
    fn reconcile_durations_fill_the_histogram() {
        let m = Metrics::new();
        m.reconcile_duration(Duration::from_millis(30));
        m.reconcile_duration(Duration::from_secs(2));
        let text = m.encode();
        assert!(
            text.contains("# TYPE dbtoken_reconcile_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("dbtoken_reconcile_duration_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains(r#"dbtoken_reconcile_duration_seconds_bucket{le="0.05"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"dbtoken_reconcile_duration_seconds_bucket{le="2.5"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn databricks_requests_are_counted_by_endpoint_and_status() {
        let m = Metrics::new();
        m.observe(Endpoint::TokenCreate, "200", Duration::from_millis(5));
        m.observe(Endpoint::TokenCreate, "429", Duration::from_millis(5));
        m.observe(Endpoint::TokenList, "transport", Duration::from_secs(1));
        let text = m.encode();
        for expected in [
            r#"dbtoken_databricks_requests_total{endpoint="token/create",status="200"} 1"#,
            r#"dbtoken_databricks_requests_total{endpoint="token/create",status="429"} 1"#,
            r#"dbtoken_databricks_requests_total{endpoint="token/list",status="transport"} 1"#,
            r#"dbtoken_databricks_request_duration_seconds_count{endpoint="token/create"} 2"#,
            r#"dbtoken_databricks_request_duration_seconds_count{endpoint="token/list"} 1"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in {text}");
        }
    }

    #[test]
    fn only_known_label_names_are_ever_exported() {
        let m = Metrics::new();
        m.observe_token("ns", "a", true, Some(1), Some(1));
        m.rotation("Renewal");
        m.revocation("orphan");
        m.reconcile_error("x");
        m.observe(Endpoint::TokenDelete, "404", Duration::from_millis(1));
        m.reconcile_duration(Duration::from_millis(1));
        let mut tally = crate::inventory::Tally::new(false);
        tally.by_owner.insert("1".into(), Default::default());
        m.observe_inventory(
            WorkspaceLabels {
                kind: "DatabricksWorkspace".into(),
                namespace: "ns".into(),
                workspace: "w".into(),
            },
            &tally,
            1,
        );
        let allowed = [
            "namespace",
            "name",
            "reason",
            "outcome",
            "endpoint",
            "status",
            "le",
            "kind",
            "workspace",
            "class",
            "owner",
        ];
        let text = m.encode();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some(labels) = line.split_once('{').map(|(_, rest)| rest) else {
                continue;
            };
            let labels = labels.split_once('}').map_or("", |(l, _)| l);
            for pair in labels.split(',') {
                let key = pair.split_once('=').map_or("", |(k, _)| k);
                assert!(allowed.contains(&key), "label {key:?} in {line}");
            }
        }
    }

    #[test]
    fn encoding_ends_with_the_openmetrics_eof_marker() {
        assert!(Metrics::new().encode().ends_with("# EOF\n"));
    }

    #[test]
    fn the_text_format_names_counter_families_with_total_and_has_no_eof() {
        let m = Metrics::new();
        m.rotation("Renewal");
        m.observe_token("ns", "a", true, Some(1_000), Some(500));
        let text: String = m.text_chunks(Format::Text004).collect();
        assert!(
            text.contains("# TYPE dbtoken_rotations_total counter\n"),
            "{text}"
        );
        assert!(!text.contains("# TYPE dbtoken_rotations counter"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains(r#"dbtoken_token_ready{namespace="ns",name="a"} 1"#),
            "{text}"
        );
    }
}
