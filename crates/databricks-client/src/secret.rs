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

/// Remove anything that looks like a credential from text that came from elsewhere (server
/// messages, transport errors): Databricks tokens (`dapi` + 32 hex or more) and whatever follows
/// `Bearer ` (OAuth and Entra access tokens have no fixed shape).
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(ch) = rest.chars().next() {
        if let Some(hex_len) = token_hex_len(rest) {
            out.push_str("dapi<redacted>");
            rest = &rest[4 + hex_len..];
        } else if let Some(prefix_len) = bearer_prefix_len(rest) {
            out.push_str(&rest[..prefix_len]);
            out.push_str("<redacted>");
            let value_len = rest[prefix_len..]
                .find(|c: char| !is_token68(c))
                .unwrap_or(rest.len() - prefix_len);
            rest = &rest[prefix_len + value_len..];
        } else {
            out.push(ch);
            rest = &rest[ch.len_utf8()..];
        }
    }
    out
}

/// `dapi` followed by at least 32 hex digits: the number of hex digits.
fn token_hex_len(text: &str) -> Option<usize> {
    let hex = text.strip_prefix("dapi")?;
    let len = hex.bytes().take_while(u8::is_ascii_hexdigit).count();
    (len >= 32).then_some(len)
}

/// The characters of a bearer credential (RFC 6750 b64token).
fn is_token68(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~+/=".contains(c)
}

/// `Bearer ` (any case) followed by a value: the length of the prefix.
fn bearer_prefix_len(text: &str) -> Option<usize> {
    let head = text.get(..7)?;
    let has_value = text[7..].starts_with(is_token68);
    (head.eq_ignore_ascii_case("bearer ") && has_value).then_some(7)
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
    fn scrub_removes_bearer_values() {
        let text = "header was Authorization: Bearer eyJabc.def-ghi end; bearer  spaced";
        assert_eq!(
            scrub(text),
            "header was Authorization: Bearer <redacted> end; bearer  spaced"
        );
        assert_eq!(
            scrub(r#"{"h":"Bearer xyz"}"#),
            r#"{"h":"Bearer <redacted>"}"#
        );
    }

    #[test]
    fn scrub_removes_upper_case_and_longer_token_values() {
        let token = format!("dapi{}-2", "AB12".repeat(9));
        assert_eq!(scrub(&token), "dapi<redacted>-2");
    }

    #[test]
    fn scrub_keeps_unicode() {
        assert_eq!(scrub("héllo – ok"), "héllo – ok");
    }
}
