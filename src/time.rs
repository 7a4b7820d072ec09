//! Times as the operator writes them (RFC 3339, UTC, milliseconds) and reads them back.

use crate::schedule::EpochMillis;

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
}
