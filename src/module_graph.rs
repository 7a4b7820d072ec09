//! A test that the library's modules import each other without a circle, and that no module
//! reaches into its parent (`super::Item` from a child is an import of the parent module).
//!
//! The graph is read from the sources: every `crate::a::b` and `super::a` path, `use` groups
//! expanded, resolved to the longest module path it names. Inline test modules are left out
//! (they sit at the end of their file, after `#[cfg(test)]`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`controller::token`) of each source file under `src/` (the crate root is "").
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(src).expect("under src");
            if rel.starts_with("bin") || rel == Path::new("main.rs") {
                continue; // separate crates
            }
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let mut parts: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            out.insert(parts.join("::"), text);
        }
    }
    out
}

/// Every path a source names after `crate::` or `super::`, with `use` groups expanded; each as
/// (`crate` or `super`, segments).
fn paths(text: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let rest = &bytes[i..];
        let (is_crate, skip) = if rest.starts_with(b"crate::") {
            (true, 7)
        } else if rest.starts_with(b"super::") {
            (false, 7)
        } else {
            i += 1;
            continue;
        };
        // Not part of a longer identifier (e.g. `my_crate::`).
        if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
            i += 1;
            continue;
        }
        let (expanded, used) = expand(&code[i + skip..]);
        for p in expanded {
            out.push((is_crate, p));
        }
        i += skip + used.max(1);
    }
    out
}

/// Expand `a::b::{c, d::e}` at the start of `s` into paths; returns them and the bytes read.
fn expand(s: &str) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    let mut i = 0;
    let b = s.as_bytes();
    loop {
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if i > start {
            prefix.push(s[start..i].to_string());
        }
        let group_next = if s[i..].starts_with("::") {
            i += 2;
            true
        } else {
            // `super::{a, b}`: the group comes first.
            i == 0 && s.starts_with('{')
        };
        if group_next {
            if s[i..].starts_with('{') {
                i += 1;
                let mut out = Vec::new();
                loop {
                    while i < b.len() && (b[i] == b' ' || b[i] == b'\n' || b[i] == b',') {
                        i += 1;
                    }
                    if i >= b.len() || b[i] == b'}' {
                        i += 1;
                        break;
                    }
                    let (inner, used) = expand(&s[i..]);
                    for p in inner {
                        let mut full = prefix.clone();
                        full.extend(p);
                        out.push(full);
                    }
                    i += used.max(1);
                    // Skip `as name` and anything else up to the next item.
                    while i < b.len() && b[i] != b',' && b[i] != b'}' {
                        i += 1;
                    }
                }
                return (out, i);
            }
            continue;
        }
        return (vec![prefix], i);
    }
}

/// Edges between modules: `from` uses something of `to`.
fn graph(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in modules {
        let here: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
        for (is_crate, path) in paths(text) {
            let mut full: Vec<String> = if is_crate {
                Vec::new()
            } else {
                here[..here.len().saturating_sub(1)]
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            };
            let mut path = path.into_iter().peekable();
            while path.peek().is_some_and(|p| p == "super") {
                path.next();
                full.pop();
            }
            full.extend(path);
            // The longest prefix that is a module.
            let target = (0..=full.len())
                .rev()
                .map(|n| full[..n].join("::"))
                .find(|m| modules.contains_key(m))
                .unwrap_or_default();
            if &target != module {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

/// A circle in the graph, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(c) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_modules_import_each_other_without_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    assert!(modules.contains_key("controller::token"), "sources found");
    let edges = graph(&modules);
    assert!(
        edges["controller::reconcile"].contains("controller::token"),
        "edges are read: {:?}",
        edges.get("controller::reconcile")
    );
    assert_eq!(find_cycle(&edges), None);
}

#[test]
fn a_child_naming_its_parent_is_a_circle() {
    let modules: BTreeMap<String, String> = [
        ("a".to_string(), "use crate::a::b::{x, y::Z};".to_string()),
        ("a::b".to_string(), "use super::Thing;".to_string()),
        ("a::b::y".to_string(), String::new()),
    ]
    .into();
    let edges = graph(&modules);
    assert_eq!(
        edges["a"],
        BTreeSet::from(["a::b".to_string(), "a::b::y".to_string()])
    );
    assert_eq!(edges["a::b"], BTreeSet::from(["a".to_string()]));
    assert!(find_cycle(&edges).is_some());
}
