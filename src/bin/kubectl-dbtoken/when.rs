//! Times as a person reads them next to the RFC 3339 text: "in 39m", "2m ago".

use databricks_token_operator::{crd::Timestamp, schedule::EpochMillis};

/// A distance in time in the largest unit that keeps it short.
pub fn span(millis: i64) -> String {
    let secs = millis.unsigned_abs() / 1000;
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// `at` relative to `now`.
pub fn relative(at: EpochMillis, now: EpochMillis) -> String {
    if at >= now {
        format!("in {}", span(at - now))
    } else {
        format!("{} ago", span(now - at))
    }
}

/// A time as RFC 3339 followed by its distance from now.
pub fn annotated(at: Timestamp, now: EpochMillis) -> String {
    format!("{at} ({})", relative(at.as_millis(), now))
}

/// The first characters of a 64-hex token id: enough to tell tokens apart on a screen.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_pick_a_readable_unit() {
        for (millis, text) in [
            (0, "0s"),
            (59_000, "59s"),
            (119_999, "119s"),
            (120_000, "2m"),
            (3_600_000, "60m"),
            (7_200_000, "2h"),
            (172_800_000, "2d"),
            (-90_000, "90s"),
        ] {
            assert_eq!(span(millis), text, "{millis} ms");
        }
    }

    #[test]
    fn relative_says_which_side_of_now() {
        assert_eq!(relative(10_000 + 300_000, 10_000), "in 5m");
        assert_eq!(relative(10_000, 10_000 + 300_000), "5m ago");
    }

    #[test]
    fn annotated_times_show_the_stored_text_and_the_distance() {
        let at = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(
            annotated(at, 1_700_000_000_123 - 300_000),
            "2023-11-14T22:13:20.123Z (in 5m)"
        );
    }

    #[test]
    fn short_ids_keep_twelve_characters() {
        assert_eq!(short_id(&"ab".repeat(32)), "abababababab");
        assert_eq!(short_id("abc"), "abc");
    }
}
