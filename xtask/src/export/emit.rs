//! Writes a `serde_json::Value` as block-style YAML, the form people read in
//! manifests. Hand-written because the serde YAML serializers are deprecated
//! or unmaintained (serde_yaml, serde_yaml_ng, serde_norway) and we need only this
//! subset: strings are always double-quoted (JSON escapes are valid YAML, so
//! `"true"` or `"0440"` stay strings), multi-line text is a literal block,
//! keys are plain when they are safe. Keys come out sorted (serde_json's
//! map), which puts `apiVersion`, `kind`, `metadata`, `spec` in that order.

use serde_json::Value;

pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => block(v, 0, &mut out),
        Value::Array(a) if !a.is_empty() => block(v, 0, &mut out),
        _ => {
            out.push_str(&inline(v, 0).unwrap_or_default());
            out.push('\n');
        }
    }
    out
}

/// A value that fits after `key: ` (or `- `), or None for a nested block.
fn inline(v: &Value, indent: usize) -> Option<String> {
    Some(match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => match literal(s, indent) {
            Some(l) => l,
            None => serde_json::to_string(s).expect("a string serializes"),
        },
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(m) if m.is_empty() => "{}".into(),
        _ => return None,
    })
}

/// `|` block for text with newlines that a literal block keeps exactly.
fn literal(s: &str, indent: usize) -> Option<String> {
    let ok = s.contains('\n')
        && s.ends_with('\n')
        && !s.ends_with("\n\n")
        && !s.starts_with([' ', '\n'])
        // A tab opening a line is legal YAML, but readers (ours too) take it for indentation.
        && !s.lines().any(|l| l.starts_with('\t'))
        && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control());
    if !ok {
        return None;
    }
    let pad = " ".repeat(indent + 2);
    let mut out = String::from("|");
    for line in s.lines() {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    Some(out)
}

fn key(k: &str) -> String {
    const RESERVED: &[&str] = &[
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
    ];
    let plain = k.starts_with(|c: char| c.is_ascii_alphabetic())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
        && !RESERVED.contains(&k.to_ascii_lowercase().as_str());
    if plain {
        k.to_string()
    } else {
        serde_json::to_string(k).expect("a string serializes")
    }
}

fn block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                out.push_str(&format!("{pad}{}:", key(k)));
                match inline(val, indent) {
                    Some(s) => out.push_str(&format!(" {s}\n")),
                    None => {
                        out.push('\n');
                        // Sequences under a key are indented too (kubectl's style).
                        block(val, indent + 2, out);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match inline(item, indent) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        // Render the item one level deeper, then put the dash
                        // into the first line's indentation.
                        let mut inner = String::new();
                        block(item, indent + 2, &mut inner);
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&inner[indent + 2..]);
                    }
                }
            }
        }
        _ => unreachable!("scalars are inline"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::yaml::{self, Value as Y};
    use serde_json::json;

    #[test]
    fn round_trips_through_the_reader() {
        let v = json!({
            "kind": "X",
            "metadata": {"labels": {"net.monorepo/pg-network": "true", "8bad key": "v"}},
            "list": [{"a": 1, "b": [{"c": "d"}, "e"]}, [], {}, "yes", "0440"],
            "text": "line 1\n\tline 2\n\nlast\n",
            "odd": "  lead\n",
        });
        let text = to_yaml(&v);
        let root = yaml::parse(&text).unwrap().unwrap();
        assert_eq!(
            root.get("metadata")
                .unwrap()
                .get("labels")
                .unwrap()
                .get("net.monorepo/pg-network")
                .unwrap()
                .as_str(),
            Some("true")
        );
        assert!(root
            .get("metadata")
            .unwrap()
            .get("labels")
            .unwrap()
            .get("8bad key")
            .is_some());
        let list = root.get("list").unwrap().as_seq().unwrap();
        assert_eq!(
            list[0].get("b").unwrap().as_seq().unwrap()[0]
                .get("c")
                .unwrap()
                .as_str(),
            Some("d")
        );
        assert!(matches!(&list[1].value, Y::Seq(s) if s.is_empty()));
        assert_eq!(list[3].as_str(), Some("yes"));
        assert!(list[3].flow, "a string that looks like a bool is quoted");
        assert_eq!(
            root.get("text").unwrap().as_str(),
            Some("line 1\n\tline 2\n\nlast\n")
        );
        assert_eq!(root.get("odd").unwrap().as_str(), Some("  lead\n"));
        assert!(
            text.starts_with("kind: \"X\"\nlist:\n  - a: 1\n    b:\n      - c: \"d\"\n"),
            "{text}"
        );
    }
}
