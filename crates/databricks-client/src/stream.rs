//! Reading a token list as it arrives: the elements of the top-level `token_infos` array are
//! cut out of the byte stream one at a time and parsed alone, so a list of 50,000 tokens costs
//! the memory of one token, not of the whole body and a `Vec` of every token.

use crate::TokenInfo;

/// Where the scanner stands in the JSON text.
#[derive(Default)]
pub(crate) struct TokenArrayScanner {
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// The last string read at depth 1 (an object key, or a value; only the one right before
    /// a `[` matters, and that is the array's key). Capped: no key of interest is long.
    key: Vec<u8>,
    /// Inside the `token_infos` array (depth 2).
    in_array: bool,
    /// The bytes of the element being read (an object at depth 3 and below).
    element: Vec<u8>,
    in_element: bool,
}

const KEY: &[u8] = b"token_infos";
const KEY_CAP: usize = 32;

/// What a chunk held: each complete element, parsed (or the parser's complaint, without the text).
pub(crate) type Parsed = Result<TokenInfo, serde_json::Error>;

impl TokenArrayScanner {
    /// Feed the next bytes; `found` receives every element completed by them.
    pub(crate) fn feed(&mut self, bytes: &[u8], mut found: impl FnMut(Parsed)) {
        for &b in bytes {
            if self.in_element {
                self.element.push(b);
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                } else if self.depth == 1 && self.key.len() < KEY_CAP {
                    self.key.push(b);
                }
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.depth == 1 {
                        self.key.clear();
                    }
                }
                b'{' | b'[' => {
                    if self.depth == 1 && b == b'[' && self.key == KEY {
                        self.in_array = true;
                    }
                    if self.in_array && self.depth == 2 && b == b'{' {
                        self.in_element = true;
                        self.element.clear();
                        self.element.push(b);
                    }
                    self.depth += 1;
                }
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.in_element && self.depth == 2 {
                        self.in_element = false;
                        found(serde_json::from_slice(&self.element));
                        // Keep the allocation, drop the text.
                        self.element.clear();
                    }
                    if self.in_array && self.depth == 1 {
                        self.in_array = false;
                    }
                }
                _ => {}
            }
        }
    }

    /// Whether the text ended where a JSON document may end (every bracket closed).
    pub(crate) fn complete(&self) -> bool {
        self.depth == 0 && !self.in_string
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in_pieces(text: &str, piece: usize) -> (Vec<String>, bool) {
        let mut scanner = TokenArrayScanner::default();
        let mut ids = Vec::new();
        for chunk in text.as_bytes().chunks(piece.max(1)) {
            scanner.feed(chunk, |t| ids.push(t.expect("element parses").token_id));
        }
        (ids, scanner.complete())
    }

    #[test]
    fn elements_are_found_however_the_text_is_cut() {
        let text = r#"{"other": {"token_infos": [{"token_id": "nested"}]},
            "note": "token_infos",
            "token_infos": [
              {"token_id": "a", "comment": "has } and ] and \" and [ inside", "expiry_time": -1},
              {"token_id": "b", "scopes": ["x", "y"], "comment": "\\"},
              {"token_id": "c", "creation_time": 1, "extra": {"deep": [{"token_id": "no"}]}}
            ],
            "next": [{"token_id": "not-a-token"}]}"#;
        for piece in [1, 2, 3, 7, 64, text.len()] {
            let (ids, complete) = scan_in_pieces(text, piece);
            assert_eq!(ids, ["a", "b", "c"], "cut every {piece} bytes");
            assert!(complete, "cut every {piece} bytes");
        }
    }

    #[test]
    fn an_empty_or_missing_list_finds_nothing() {
        for text in [
            r#"{}"#,
            r#"{"token_infos": []}"#,
            r#"{"token_infos": null}"#,
        ] {
            let (ids, complete) = scan_in_pieces(text, 3);
            assert!(ids.is_empty(), "{text}");
            assert!(complete, "{text}");
        }
    }

    #[test]
    fn a_text_cut_short_is_not_complete() {
        let (ids, complete) = scan_in_pieces(r#"{"token_infos": [{"token_id": "a"}, {"tok"#, 5);
        assert_eq!(ids, ["a"]);
        assert!(!complete);
    }

    #[test]
    fn a_malformed_element_is_reported_and_the_rest_still_read() {
        let mut scanner = TokenArrayScanner::default();
        let mut results = Vec::new();
        scanner.feed(
            br#"{"token_infos": [{"token_id": 5}, {"token_id": "b"}]}"#,
            |t| results.push(t.map(|t| t.token_id).map_err(|_| ())),
        );
        assert_eq!(results, [Err(()), Ok("b".to_string())]);
    }

    #[test]
    fn memory_held_is_one_element_not_the_list() {
        let element = r#"{"token_id": "0123456789abcdef", "comment": "a comment of some length", "expiry_time": 1700000000000}"#;
        let text = format!(
            r#"{{"token_infos": [{}]}}"#,
            vec![element; 10_000].join(",")
        );
        let mut scanner = TokenArrayScanner::default();
        let mut count = 0;
        for chunk in text.as_bytes().chunks(8192) {
            scanner.feed(chunk, |t| {
                t.expect("parses");
                count += 1;
            });
            assert!(scanner.element.capacity() < 4 * element.len());
        }
        assert_eq!(count, 10_000);
    }
}
