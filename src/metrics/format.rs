//! The two exposition formats `/metrics` speaks: OpenMetrics 1.0.0 when the scraper asks for it
//! in `Accept`, else the Prometheus text format 0.0.4, which every scraper and `promtool check
//! metrics` read. The registry encodes OpenMetrics; `to_text_004` rewrites it.

use std::collections::HashSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text004,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text004 => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// OpenMetrics only when `Accept` names it and prefers it (by q) to the plain text format;
    /// anything else, including no `Accept` or `*/*`, gets text 0.0.4.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text004
        }
    }
}

/// Rewrite OpenMetrics text as text 0.0.4: a counter's family is named with its `_total`
/// suffix, `unknown` is `untyped`, and `# UNIT`, `# EOF`, `_created` series and exemplars go.
pub fn to_text_004(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, kind)| kind.trim() == "counter")
        .map(|(name, _)| name)
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let Some((keyword, rest)) = rest.split_once(' ') else {
                continue;
            };
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if counters.contains(name) {
                "_total"
            } else {
                ""
            };
            match keyword {
                "HELP" => out.push_str(&format!("# HELP {name}{suffix} {tail}\n")),
                "TYPE" => {
                    let kind = if tail == "unknown" { "untyped" } else { tail };
                    out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
                }
                _ => {}
            }
            continue;
        }
        let sample = line.split_once(" # ").map_or(line, |(s, _)| s);
        let name = sample.split(['{', ' ']).next().unwrap_or_default();
        if name
            .strip_suffix("_created")
            .is_some_and(|family| counters.contains(family))
        {
            continue;
        }
        out.push_str(sample);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_text_unless_openmetrics_is_asked_for() {
        let cases = [
            (None, Format::Text004),
            (Some(""), Format::Text004),
            (Some("*/*"), Format::Text004),
            (Some("text/plain"), Format::Text004),
            (
                Some("text/plain;version=0.0.4;q=0.9,*/*;q=0.1"),
                Format::Text004,
            ),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                Format::OpenMetrics,
            ),
            // What Prometheus 3 sends with its default scrape protocols.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                ),
                Format::OpenMetrics,
            ),
            // Prometheus with `scrape_protocols: [PrometheusText0.0.4]`.
            (
                Some("text/plain;version=0.0.4;q=0.2,*/*;q=0.1"),
                Format::Text004,
            ),
            (
                Some("text/plain;q=1,application/openmetrics-text;q=0.5"),
                Format::Text004,
            ),
            (Some("application/openmetrics-text;q=0"), Format::Text004),
            (
                Some("Application/OpenMetrics-Text ; Q=0.7"),
                Format::OpenMetrics,
            ),
        ];
        for (accept, expected) in cases {
            assert_eq!(Format::negotiate(accept), expected, "Accept: {accept:?}");
        }
    }

    #[test]
    fn counters_are_named_with_total_and_openmetrics_only_lines_go() {
        let openmetrics = "\
# HELP dbtoken_rotations Tokens replaced, by reason.
# TYPE dbtoken_rotations counter
dbtoken_rotations_total{reason=\"Renewal\"} 2
dbtoken_rotations_created{reason=\"Renewal\"} 1700000000.0
# HELP dbtoken_reconcile_duration_seconds Reconcile duration.
# TYPE dbtoken_reconcile_duration_seconds histogram
# UNIT dbtoken_reconcile_duration_seconds seconds
dbtoken_reconcile_duration_seconds_bucket{le=\"0.5\"} 1 # {trace_id=\"x\"} 0.2
dbtoken_reconcile_duration_seconds_count 1
# HELP dbtoken_thing Something.
# TYPE dbtoken_thing unknown
dbtoken_thing 3
# EOF
";
        let expected = "\
# HELP dbtoken_rotations_total Tokens replaced, by reason.
# TYPE dbtoken_rotations_total counter
dbtoken_rotations_total{reason=\"Renewal\"} 2
# HELP dbtoken_reconcile_duration_seconds Reconcile duration.
# TYPE dbtoken_reconcile_duration_seconds histogram
dbtoken_reconcile_duration_seconds_bucket{le=\"0.5\"} 1
dbtoken_reconcile_duration_seconds_count 1
# HELP dbtoken_thing Something.
# TYPE dbtoken_thing untyped
dbtoken_thing 3
";
        assert_eq!(to_text_004(openmetrics), expected);
    }

    #[test]
    fn gauges_pass_unchanged() {
        let gauge = "# HELP dbtoken_token_ready 1 when ready.\n# TYPE dbtoken_token_ready gauge\ndbtoken_token_ready{namespace=\"a\",name=\"b\"} 1\n";
        assert_eq!(to_text_004(gauge), gauge);
    }
}
