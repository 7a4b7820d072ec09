//! The per-token gauges (ready, expiry, renewal): one small entry per token, written out in
//! chunks at scrape time. Three prometheus-client families would hold three label sets and three
//! gauges per token, and encoding them builds the whole text at once: at 10,000 tokens that is
//! megabytes of each (BENCHMARKS.md).

use std::{
    collections::BTreeMap,
    fmt::Write,
    ops::Bound,
    sync::{Arc, Mutex, MutexGuard},
};

/// Series per chunk: a lock is held only while one chunk is written.
const CHUNK_SERIES: usize = 500;

/// What the gauges show for one token.
#[derive(Clone, Copy, Debug, PartialEq)]
struct TokenState {
    ready: bool,
    expiry_ms: Option<i64>,
    renewal_ms: Option<i64>,
}

/// The three gauges: name, help, and the value a token shows (None: no series).
type Gauge = (&'static str, &'static str, fn(&TokenState) -> Option<Value>);

enum Value {
    Int(i64),
    Seconds(i64),
}

const GAUGES: [Gauge; 3] = [
    (
        "dbtoken_token_expiry_timestamp_seconds",
        "When the current token expires (Unix time)",
        |s| s.expiry_ms.map(Value::Seconds),
    ),
    (
        "dbtoken_token_renewal_timestamp_seconds",
        "When the current token will be rotated (Unix time)",
        |s| s.renewal_ms.map(Value::Seconds),
    ),
    (
        "dbtoken_token_ready",
        "1 when the Secret holds a live token",
        |s| Some(Value::Int(i64::from(s.ready))),
    ),
];

/// Tokens by `namespace/name` (neither may contain a slash), so the output is sorted.
#[derive(Debug, Default)]
pub struct TokenGauges {
    tokens: Mutex<BTreeMap<Box<str>, TokenState>>,
}

impl TokenGauges {
    pub fn set(
        &self,
        namespace: &str,
        name: &str,
        ready: bool,
        expiry_ms: Option<i64>,
        renewal_ms: Option<i64>,
    ) {
        let state = TokenState {
            ready,
            expiry_ms,
            renewal_ms,
        };
        let key = key(namespace, name);
        let mut tokens = self.lock();
        match tokens.get_mut(key.as_str()) {
            Some(current) => *current = state,
            None => {
                tokens.insert(key.into_boxed_str(), state);
            }
        }
    }

    pub fn remove(&self, namespace: &str, name: &str) {
        self.lock().remove(key(namespace, name).as_str());
    }

    /// The gauges in the OpenMetrics text format, a chunk of series at a time.
    pub fn chunks(self: &Arc<Self>) -> Chunks {
        Chunks {
            gauges: self.clone(),
            gauge: 0,
            after: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Box<str>, TokenState>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write up to CHUNK_SERIES series of `gauge` after `after`; returns the last key written,
    /// or None once the gauge is done.
    fn write_chunk(
        &self,
        gauge: &Gauge,
        after: Option<&str>,
        out: &mut String,
    ) -> Option<Box<str>> {
        let (metric, help, value_of) = gauge;
        if after.is_none() {
            let _ = write!(out, "# HELP {metric} {help}.\n# TYPE {metric} gauge\n");
        }
        let tokens = self.lock();
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut range = tokens.range::<str, _>((from, Bound::Unbounded));
        let mut last = None;
        for (key, state) in range.by_ref().take(CHUNK_SERIES) {
            last = Some(key);
            let Some(value) = value_of(state) else {
                continue;
            };
            let (namespace, name) = key.split_once('/').unwrap_or(("", key));
            let _ = write!(
                out,
                "{metric}{{namespace=\"{}\",name=\"{}\"}} ",
                escape(namespace),
                escape(name)
            );
            let _ = match value {
                Value::Int(v) => writeln!(out, "{v}"),
                // Debug keeps the decimal point of whole seconds, as the gauge's float type does.
                Value::Seconds(ms) => writeln!(out, "{:?}", ms as f64 / 1000.0),
            };
        }
        let more = range.next().is_some();
        last.filter(|_| more).cloned()
    }
}

/// The text of the gauges, chunk by chunk.
pub struct Chunks {
    gauges: Arc<TokenGauges>,
    gauge: usize,
    after: Option<Box<str>>,
}

impl Iterator for Chunks {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let gauge = GAUGES.get(self.gauge)?;
        let mut out = String::new();
        self.after = self
            .gauges
            .write_chunk(gauge, self.after.as_deref(), &mut out);
        if self.after.is_none() {
            self.gauge += 1;
        }
        Some(out)
    }
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Label values escape backslash, quote and newline. Kubernetes names hold none of them; this
/// keeps the output well formed regardless.
pub(super) fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_written_once_across_chunks_in_order() {
        let gauges = Arc::new(TokenGauges::default());
        let n = CHUNK_SERIES * 2 + 7;
        for i in 0..n {
            gauges.set("ns", &format!("t{i:05}"), true, Some(1_000), None);
        }
        let chunks: Vec<String> = gauges.chunks().collect();
        assert!(chunks.len() > 3, "written in chunks: {}", chunks.len());
        let text = chunks.concat();
        let ready: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("dbtoken_token_ready{"))
            .collect();
        assert_eq!(ready.len(), n);
        assert!(ready.is_sorted());
        assert_eq!(
            ready[0],
            r#"dbtoken_token_ready{namespace="ns",name="t00000"} 1"#
        );
        let expiry = text
            .lines()
            .filter(|l| l.starts_with("dbtoken_token_expiry_timestamp_seconds{"))
            .count();
        assert_eq!(expiry, n);
        assert!(!text.contains("dbtoken_token_renewal_timestamp_seconds{"));
        assert_eq!(text.matches("# TYPE dbtoken_token_ready gauge").count(), 1);
        assert_eq!(
            text.matches("# TYPE dbtoken_token_renewal_timestamp_seconds gauge")
                .count(),
            1,
            "a gauge without series still has its descriptor"
        );
    }

    #[test]
    fn an_update_replaces_and_a_removal_drops_the_series() {
        let gauges = Arc::new(TokenGauges::default());
        gauges.set("a", "x", true, Some(2_500), Some(1_000));
        gauges.set("a", "x", false, None, None);
        gauges.set("b", "y", true, None, None);
        gauges.remove("b", "y");
        let text: String = gauges.chunks().collect();
        assert!(text.contains("dbtoken_token_ready{namespace=\"a\",name=\"x\"} 0\n"));
        assert!(!text.contains("name=\"y\""), "{text}");
        assert!(!text.contains("timestamp_seconds{"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("plain-name"), "plain-name");
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
