//! Times as the operator writes them (RFC 3339, UTC, milliseconds) and reads them back.

use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};

use crate::schedule::EpochMillis;

/// A point in time in a resource's status: epoch milliseconds in Rust, on the wire the RFC 3339
/// text `format_time` writes (`2023-11-14T22:13:20.123Z`), so stored objects, the CRD schema
/// and printer columns stay as they were when these fields were strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(EpochMillis);

impl Timestamp {
    pub const fn from_millis(millis: EpochMillis) -> Self {
        Self(millis)
    }

    pub const fn as_millis(self) -> EpochMillis {
        self.0
    }

    /// Any RFC 3339 time (what `parse_time` reads), e.g. one written by an older version.
    pub fn parse(text: &str) -> Option<Self> {
        parse_time(text).map(Self)
    }
}

impl From<EpochMillis> for Timestamp {
    fn from(millis: EpochMillis) -> Self {
        Self(millis)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_time(self.0))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {text:?}")))
    }
}

/// The schema the string fields had: a plain string (no `format`), so the CRD does not change.
impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

/// For `Option<Timestamp>` status fields: text that is not a time reads as absent, as it did
/// when these fields were strings parsed on use. The API server accepts any string there (a
/// hand-edited status), and one unreadable object must not fail the whole watch.
pub fn lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    Ok(text.as_deref().and_then(Timestamp::parse))
}

/// For lists of entries holding a `Timestamp`: an entry that does not read is left out, as
/// entries with an unreadable time were skipped when the times were strings.
pub fn skip_unreadable<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let raw = Option::<Vec<serde_json::Value>>::deserialize(deserializer)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect())
}

/// RFC 3339 (UTC, seconds precision is not enough for short test lifetimes: keep millis).
pub fn format_time(millis: EpochMillis) -> String {
    jiff::Timestamp::from_millisecond(millis)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// Parse an RFC 3339 time into epoch milliseconds.
pub fn parse_time(text: &str) -> Option<EpochMillis> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// Milliseconds since the Unix epoch, the time unit of Databricks and of the schedule.
pub fn now_millis() -> EpochMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as EpochMillis)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_with_milliseconds() {
        let t = 1_700_000_000_123;
        assert_eq!(format_time(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(parse_time(&format_time(t)), Some(t));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_time("soon"), None);
    }

    #[test]
    fn timestamps_serialize_as_format_time_writes() {
        for millis in [0, 1_700_000_000_000, 1_700_000_000_123, 1_700_000_000_999] {
            let json = serde_json::to_value(Timestamp::from_millis(millis)).unwrap();
            assert_eq!(json, serde_json::Value::String(format_time(millis)));
            let back: Timestamp = serde_json::from_value(json).unwrap();
            assert_eq!(back.as_millis(), millis);
        }
        assert_eq!(
            Timestamp::from_millis(1_700_000_000_123).to_string(),
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn timestamps_read_any_time_parse_time_reads() {
        for (text, millis) in [
            ("2023-11-14T22:13:20.123Z", 1_700_000_000_123),
            ("2023-11-14T22:13:20Z", 1_700_000_000_000),
            ("2023-11-14T22:13:20.123456789Z", 1_700_000_000_123),
            ("2023-11-14T23:13:20.123+01:00", 1_700_000_000_123),
            ("2023-11-14t22:13:20z", 1_700_000_000_000),
        ] {
            assert_eq!(parse_time(text), Some(millis), "{text}");
            let t: Timestamp = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(t.as_millis(), millis, "{text}");
        }
    }

    #[test]
    fn text_that_is_not_a_time_is_an_error_for_the_type() {
        for bad in [
            serde_json::json!("soon"),
            serde_json::json!(""),
            serde_json::json!(5),
        ] {
            assert!(
                serde_json::from_value::<Timestamp>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_schema_is_the_plain_string_the_fields_had() {
        let mut generator = SchemaGenerator::default();
        assert_eq!(
            generator.subschema_for::<Timestamp>().as_value(),
            &serde_json::json!({"type": "string"})
        );
        assert_eq!(
            generator.subschema_for::<Option<Timestamp>>(),
            generator.subschema_for::<Option<String>>()
        );
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Entry {
        at: Timestamp,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Lenient {
        #[serde(default, deserialize_with = "lenient")]
        at: Option<Timestamp>,
        #[serde(default, deserialize_with = "skip_unreadable")]
        entries: Vec<Entry>,
    }

    #[test]
    fn lenient_fields_read_unreadable_times_as_absent() {
        let read = |v| serde_json::from_value::<Lenient>(v).unwrap().at;
        assert_eq!(read(serde_json::json!({"at": "soon"})), None);
        assert_eq!(read(serde_json::json!({"at": null})), None);
        assert_eq!(read(serde_json::json!({})), None);
        assert_eq!(
            read(serde_json::json!({"at": "2023-11-14T22:13:20Z"})),
            Some(Timestamp::from_millis(1_700_000_000_000))
        );
    }

    #[test]
    fn lists_leave_out_the_entries_that_do_not_read() {
        let l: Lenient = serde_json::from_value(serde_json::json!({"entries": [
            {"at": "later"}, {"at": "2023-11-14T22:13:20Z"}, {}
        ]}))
        .unwrap();
        assert_eq!(
            l.entries,
            [Entry {
                at: Timestamp::from_millis(1_700_000_000_000)
            }]
        );
        let none: Lenient = serde_json::from_value(serde_json::json!({"entries": null})).unwrap();
        assert!(none.entries.is_empty());
    }
}
