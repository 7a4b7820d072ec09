//! Fault injection: per endpoint, an error rate (500/503), rate limiting (429 with or without
//! Retry-After), latency, and creates whose response is lost after the token was minted.

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

/// One rule; `endpoint` is an endpoint name (see [`crate::ENDPOINTS`]) or `*` for all.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FaultRule {
    pub endpoint: String,
    /// Share of requests answered with `error_status` (500 or 503).
    pub error_rate: f64,
    pub error_status: Option<u16>,
    /// Share of requests answered 429 REQUEST_LIMIT_EXCEEDED.
    pub rate_limit_rate: f64,
    /// Retry-After seconds sent with those 429s (none: no header).
    pub retry_after_seconds: Option<u64>,
    /// Added latency, uniformly between min and max milliseconds.
    pub latency_ms: Option<(u64, u64)>,
    /// Share of creates that mint the token and then lose the response.
    pub drop_response_rate: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Faults {
    pub rules: Vec<FaultRule>,
    /// Seed for reproducible fault sequences.
    pub seed: Option<u64>,
}

/// What to do with one request.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    pub delay: Duration,
    pub error_status: Option<u16>,
    pub rate_limited: Option<Option<u64>>,
    pub drop_response: bool,
}

pub struct FaultState {
    faults: Faults,
    rng: StdRng,
}

impl Default for FaultState {
    fn default() -> Self {
        Self {
            faults: Faults::default(),
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
        self.faults = faults;
    }

    pub fn current(&self) -> Faults {
        self.faults.clone()
    }

    pub fn decide(&mut self, endpoint: &str) -> Decision {
        let mut d = Decision::default();
        let rules: Vec<FaultRule> = self
            .faults
            .rules
            .iter()
            .filter(|r| r.endpoint == "*" || r.endpoint == endpoint)
            .cloned()
            .collect();
        for rule in rules {
            if let Some((lo, hi)) = rule.latency_ms {
                let ms = if hi > lo {
                    self.rng.random_range(lo..=hi)
                } else {
                    lo
                };
                d.delay += Duration::from_millis(ms);
            }
            if d.error_status.is_none() && d.rate_limited.is_none() {
                if self.chance(rule.rate_limit_rate) {
                    d.rate_limited = Some(rule.retry_after_seconds);
                } else if self.chance(rule.error_rate) {
                    d.error_status = Some(rule.error_status.unwrap_or(503));
                }
            }
            if self.chance(rule.drop_response_rate) {
                d.drop_response = true;
            }
        }
        d
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random_bool(p.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_to_their_endpoint_or_all() {
        let mut s = FaultState::default();
        s.set(Faults {
            rules: vec![FaultRule {
                endpoint: "token/create".into(),
                error_rate: 1.0,
                ..Default::default()
            }],
            seed: Some(1),
        });
        assert_eq!(s.decide("token/create").error_status, Some(503));
        assert_eq!(s.decide("token/list"), Decision::default());
        s.set(Faults {
            rules: vec![FaultRule {
                endpoint: "*".into(),
                rate_limit_rate: 1.0,
                retry_after_seconds: Some(2),
                ..Default::default()
            }],
            seed: None,
        });
        assert_eq!(s.decide("token/list").rate_limited, Some(Some(2)));
    }

    #[test]
    fn seeded_faults_repeat() {
        let faults = Faults {
            rules: vec![FaultRule {
                endpoint: "*".into(),
                error_rate: 0.5,
                ..Default::default()
            }],
            seed: Some(42),
        };
        let mut a = FaultState::default();
        let mut b = FaultState::default();
        a.set(faults.clone());
        b.set(faults);
        let xs: Vec<_> = (0..50).map(|_| a.decide("x").error_status).collect();
        let ys: Vec<_> = (0..50).map(|_| b.decide("x").error_status).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().any(Option::is_some) && xs.iter().any(Option::is_none));
    }
}
