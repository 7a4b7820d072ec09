//! A string that never shows itself in logs or debug output.

use std::fmt;

/// A credential or token value. `Debug` and `Display` print `<redacted>`; use [`expose`](Self::expose)
/// at the one place the value is really needed (an HTTP header, a Secret's data).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        SecretString(s.to_string())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Remove anything that looks like a Databricks token (`dapi` + 32 hex) from text that came
/// from elsewhere (server messages), in case a server echoes a credential.
pub fn scrub(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"dapi") {
            let hex_len = bytes[i + 4..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            if hex_len >= 32 {
                out.push_str("dapi<redacted>");
                i += 4 + hex_len;
                continue;
            }
        }
        let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = SecretString::from("super-secret");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(s.expose(), "super-secret");
    }

    #[test]
    fn scrub_removes_token_like_values_only() {
        let token = format!("dapi{}", "ab12".repeat(8));
        let text = format!("bad token {token} here; dapi123 stays");
        let clean = scrub(&text);
        assert!(!clean.contains(&token));
        assert_eq!(clean, "bad token dapi<redacted> here; dapi123 stays");
    }

    #[test]
    fn scrub_keeps_unicode() {
        assert_eq!(scrub("héllo – ok"), "héllo – ok");
    }
}
