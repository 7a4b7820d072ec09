//! Fault injection: per endpoint, an error rate (500/503), rate limiting (429 with or without
//! Retry-After), latency, and creates whose response is lost after the token was minted.
//!
//! Decisions come from a seedable RNG, so a test that sets [`Faults::seed`] sees the same
//! sequence every run. A rule with [`FaultRule::limit`] stops firing after that many hits, which
//! lets a test say "fail the next two creates" without any randomness.

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

/// Added latency: a fixed number of milliseconds (`250` in JSON) or a uniform range
/// (`[100, 400]` in JSON).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Latency {
    Fixed(u64),
    Between(u64, u64),
}

/// What the client sees when a create's response is dropped (the token is minted either way).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DropMode {
    /// The connection is closed without any response bytes.
    #[default]
    Close,
    /// A proxy-style 502 Bad Gateway without the token.
    BadGateway,
    /// A proxy-style 504 Gateway Timeout without the token.
    GatewayTimeout,
}

/// One rule. `endpoint` is an endpoint name (see [`crate::ENDPOINTS`]) or `*` for all.
/// Rates are probabilities in 0..=1, applied per request.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FaultRule {
    pub endpoint: String,
    /// Share of requests answered with `error_status` (500 or 503; default 503).
    pub error_rate: f64,
    pub error_status: Option<u16>,
    /// Answer those errors as a proxy would: an HTML page (CRLF line ends), not a Databricks body.
    pub error_html: bool,
    /// Share of requests answered 429 REQUEST_LIMIT_EXCEEDED.
    pub rate_limit_rate: f64,
    /// Retry-After seconds sent with those 429s (none: no header).
    pub retry_after_seconds: Option<u64>,
    /// Added before the request is handled.
    pub latency_ms: Option<Latency>,
    /// Added after a create (token/create, obo/create) minted its token, before the answer
    /// leaves: a client that dies in this window never learns of a token that exists.
    pub latency_after_create_ms: Option<Latency>,
    /// Share of creates (token/create, obo/create) that mint the token and then lose the response.
    #[serde(alias = "drop_response_rate")]
    pub drop_response_after_create_rate: f64,
    pub drop_mode: DropMode,
    /// Fire at most this many times (errors, 429s and drops count; latency alone does not).
    pub limit: Option<u64>,
}

impl FaultRule {
    /// An inert rule for `endpoint`; set the fields you need with struct update syntax.
    pub fn on(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            ..Self::default()
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Faults {
    pub rules: Vec<FaultRule>,
    /// Seed for reproducible fault sequences (none: seeded from the OS).
    pub seed: Option<u64>,
}

impl Faults {
    pub fn new(rules: Vec<FaultRule>) -> Self {
        Self { rules, seed: None }
    }
    pub fn seeded(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

/// How a request fails, if it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answer with this 5xx status before doing anything.
    Error(u16),
    /// The same, as a proxy's HTML page.
    HtmlError(u16),
    /// Answer 429 before doing anything, with an optional Retry-After.
    RateLimited(Option<u64>),
    /// Do the work (a create), then lose the response this way.
    DropAfterCommit(DropMode),
}

/// What to do with one request.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    pub delay: Duration,
    /// For creates: the wait between minting and answering.
    pub delay_after_create: Duration,
    pub outcome: Option<Outcome>,
}

pub struct FaultState {
    faults: Faults,
    hits: Vec<u64>,
    rng: StdRng,
}

impl Default for FaultState {
    fn default() -> Self {
        Self {
            faults: Faults::default(),
            hits: Vec::new(),
            rng: StdRng::from_os_rng(),
        }
    }
}

impl FaultState {
    pub fn set(&mut self, faults: Faults) {
        self.rng = match faults.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        self.hits = vec![0; faults.rules.len()];
        self.faults = faults;
    }

    /// Add a rule, keeping the others and their hit counts.
    pub fn add(&mut self, rule: FaultRule) {
        self.faults.rules.push(rule);
        self.hits.push(0);
    }

    pub fn current(&self) -> Faults {
        self.faults.clone()
    }

    /// Decide the fate of one request to `endpoint`; `is_create` enables response drops.
    pub fn decide(&mut self, endpoint: &str, is_create: bool) -> Decision {
        let mut d = Decision::default();
        for i in 0..self.faults.rules.len() {
            let rule = self.faults.rules[i].clone();
            if rule.endpoint != "*" && rule.endpoint != endpoint {
                continue;
            }
            d.delay += self.latency(rule.latency_ms);
            if is_create {
                d.delay_after_create += self.latency(rule.latency_after_create_ms);
            }
            if d.outcome.is_some() || rule.limit.is_some_and(|l| self.hits[i] >= l) {
                continue;
            }
            d.outcome = if self.chance(rule.rate_limit_rate) {
                Some(Outcome::RateLimited(rule.retry_after_seconds))
            } else if self.chance(rule.error_rate) {
                let status = rule.error_status.unwrap_or(503);
                Some(if rule.error_html {
                    Outcome::HtmlError(status)
                } else {
                    Outcome::Error(status)
                })
            } else if is_create && self.chance(rule.drop_response_after_create_rate) {
                Some(Outcome::DropAfterCommit(rule.drop_mode))
            } else {
                None
            };
            if d.outcome.is_some() {
                self.hits[i] += 1;
            }
        }
        d
    }

    fn latency(&mut self, latency: Option<Latency>) -> Duration {
        let ms = match latency {
            None => 0,
            Some(Latency::Fixed(ms)) => ms,
            Some(Latency::Between(lo, hi)) if hi > lo => self.rng.random_range(lo..=hi),
            Some(Latency::Between(lo, _)) => lo,
        };
        Duration::from_millis(ms)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random_bool(p.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(faults: Faults) -> FaultState {
        let mut s = FaultState::default();
        s.set(faults);
        s
    }

    #[test]
    fn errors_can_come_as_a_proxy_page() {
        let mut s = state(Faults::new(vec![FaultRule {
            error_rate: 1.0,
            error_status: Some(502),
            error_html: true,
            ..FaultRule::on("*")
        }]));
        assert_eq!(
            s.decide("token/list", false).outcome,
            Some(Outcome::HtmlError(502))
        );
    }

    #[test]
    fn latency_after_a_create_applies_to_creates_only() {
        let mut s = state(Faults::new(vec![FaultRule {
            latency_after_create_ms: Some(Latency::Fixed(120)),
            ..FaultRule::on("*")
        }]));
        assert_eq!(
            s.decide("token/create", true).delay_after_create,
            Duration::from_millis(120)
        );
        assert_eq!(s.decide("token/list", false), Decision::default());
    }

    #[test]
    fn a_rule_applies_only_to_its_endpoint() {
        let mut s = state(Faults::new(vec![FaultRule {
            error_rate: 1.0,
            ..FaultRule::on("token/create")
        }]));
        assert_eq!(
            s.decide("token/create", true).outcome,
            Some(Outcome::Error(503))
        );
        assert_eq!(s.decide("token/list", false), Decision::default());
    }

    #[test]
    fn a_star_rule_applies_to_every_endpoint() {
        let mut s = state(Faults::new(vec![FaultRule {
            rate_limit_rate: 1.0,
            retry_after_seconds: Some(2),
            ..FaultRule::on("*")
        }]));
        assert_eq!(
            s.decide("token/list", false).outcome,
            Some(Outcome::RateLimited(Some(2)))
        );
        assert_eq!(
            s.decide("oidc/token", false).outcome,
            Some(Outcome::RateLimited(Some(2)))
        );
    }

    #[test]
    fn drops_happen_only_on_creates() {
        let mut s = state(Faults::new(vec![FaultRule {
            drop_response_after_create_rate: 1.0,
            drop_mode: DropMode::GatewayTimeout,
            ..FaultRule::on("*")
        }]));
        assert_eq!(s.decide("token/delete", false).outcome, None);
        assert_eq!(
            s.decide("token/create", true).outcome,
            Some(Outcome::DropAfterCommit(DropMode::GatewayTimeout))
        );
    }

    #[test]
    fn a_limited_rule_stops_after_its_hits() {
        let mut s = state(Faults::new(vec![FaultRule {
            error_rate: 1.0,
            error_status: Some(500),
            limit: Some(2),
            ..FaultRule::on("token/list")
        }]));
        let outcomes: Vec<_> = (0..4)
            .map(|_| s.decide("token/list", false).outcome)
            .collect();
        assert_eq!(
            outcomes,
            vec![
                Some(Outcome::Error(500)),
                Some(Outcome::Error(500)),
                None,
                None
            ]
        );
    }

    #[test]
    fn an_added_rule_keeps_the_others_hit_counts() {
        let mut s = state(Faults::new(vec![FaultRule {
            error_rate: 1.0,
            limit: Some(1),
            ..FaultRule::on("token/list")
        }]));
        assert!(s.decide("token/list", false).outcome.is_some());
        s.add(FaultRule {
            rate_limit_rate: 1.0,
            ..FaultRule::on("token/create")
        });
        assert_eq!(s.decide("token/list", false).outcome, None);
        assert!(s.decide("token/create", true).outcome.is_some());
    }

    #[test]
    fn fixed_and_ranged_latency_add_delay() {
        let mut s = state(Faults::new(vec![
            FaultRule {
                latency_ms: Some(Latency::Fixed(30)),
                ..FaultRule::on("*")
            },
            FaultRule {
                latency_ms: Some(Latency::Between(10, 20)),
                ..FaultRule::on("token/list")
            },
        ]));
        let d = s.decide("token/list", false).delay;
        assert!(
            d >= Duration::from_millis(40) && d <= Duration::from_millis(50),
            "{d:?}"
        );
        assert_eq!(
            s.decide("token/create", true).delay,
            Duration::from_millis(30)
        );
    }

    #[test]
    fn seeded_faults_repeat() {
        let faults = Faults::new(vec![FaultRule {
            error_rate: 0.5,
            ..FaultRule::on("*")
        }])
        .seeded(42);
        let mut a = state(faults.clone());
        let mut b = state(faults);
        let xs: Vec<_> = (0..50).map(|_| a.decide("x", false).outcome).collect();
        let ys: Vec<_> = (0..50).map(|_| b.decide("x", false).outcome).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().any(Option::is_some) && xs.iter().any(Option::is_none));
    }

    #[test]
    fn latency_reads_a_number_or_a_pair_from_json() {
        let rule: FaultRule =
            serde_json::from_str(r#"{"endpoint":"*","latency_ms":[5,9]}"#).unwrap();
        assert_eq!(rule.latency_ms, Some(Latency::Between(5, 9)));
        let rule: FaultRule = serde_json::from_str(r#"{"latency_ms":7}"#).unwrap();
        assert_eq!(rule.latency_ms, Some(Latency::Fixed(7)));
    }
}
