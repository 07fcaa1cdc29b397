//! A read-only YAML tree with line numbers, built from saphyr-parser events.
//!
//! Edits never go through this tree: `compose.rs` splices text at the lines
//! the tree reports, so comments and formatting survive untouched.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

#[derive(Clone, Debug)]
pub enum Value {
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    /// 1-based line of the node's first token.
    pub line: usize,
    /// 1-based column of the node's first token.
    pub col: usize,
    /// Flow style (`[a, b]` / `{a: b}`) for collections; quoted for scalars.
    pub flow: bool,
}

#[derive(Debug)]
pub struct YamlError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s) if !self.flow && (s.is_empty() || s == "~" || s == "null"))
    }
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }
    /// Looks a key up in a mapping, following `<<` merge keys.
    pub fn get(&self, key: &str) -> Option<&Node> {
        let m = self.as_map()?;
        if let Some((_, v)) = m.iter().find(|(k, _)| k.as_str() == Some(key)) {
            return Some(v);
        }
        let merge = m.iter().find(|(k, _)| k.as_str() == Some("<<"))?;
        match &merge.1.value {
            Value::Map(_) => merge.1.get(key),
            Value::Seq(items) => items.iter().find_map(|n| n.get(key)),
            Value::Scalar(_) => None,
        }
    }
    /// Keys of a mapping (merged keys included, own keys first).
    pub fn keys(&self) -> Vec<(&str, usize)> {
        let mut out: Vec<(&str, usize)> = Vec::new();
        let Some(m) = self.as_map() else { return out };
        for (k, _) in m {
            if let Some(s) = k.as_str() {
                if s != "<<" {
                    out.push((s, k.line));
                }
            }
        }
        if let Some((_, merged)) = m.iter().find(|(k, _)| k.as_str() == Some("<<")) {
            let sources: Vec<&Node> = match &merged.value {
                Value::Seq(items) => items.iter().collect(),
                _ => vec![merged],
            };
            for src in sources {
                for (k, l) in src.keys() {
                    if !out.iter().any(|(o, _)| *o == k) {
                        out.push((k, l));
                    }
                }
            }
        }
        out
    }
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Scalar(_) if self.is_null() => "null",
            Value::Scalar(_) => "a scalar",
            Value::Seq(_) => "a sequence",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses one YAML document. Rejects tabs in indentation and duplicate keys,
/// both of which Compose would reject or silently resolve.
pub fn parse(src: &str) -> Result<Option<Node>, YamlError> {
    for (i, line) in src.lines().enumerate() {
        let indent: String = line.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
        if indent.contains('\t') && !line.trim().is_empty() {
            return Err(YamlError {
                line: i + 1,
                col: indent.find('\t').unwrap() + 1,
                msg: "tab character in indentation (YAML allows only spaces)".into(),
            });
        }
    }
    let mut parser = Parser::new_from_str(src);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut docs = 0;
    // Markers count chars; for ASCII text (the usual compose file) they are
    // byte offsets too. Decided once: per node it would be quadratic.
    let ascii = src.is_ascii();
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(|e| YamlError {
            line: e.marker().line(),
            col: e.marker().col() + 1,
            msg: e.info().to_string(),
        })?;
        let (line, col) = (span.start.line(), span.start.col() + 1);
        let node = match ev {
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    return Err(YamlError { line, col, msg: "more than one YAML document".into() });
                }
                continue;
            }
            Event::Scalar(v, style, anchor, _) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
                let n = Node { value: Value::Scalar(v.into_owned()), line, col, flow: quoted };
                if anchor > 0 {
                    anchors.insert(anchor, n.clone());
                }
                n
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => n.clone(),
                None => return Err(YamlError { line, col, msg: "alias to an unknown anchor".into() }),
            },
            Event::SequenceStart(anchor, _) => {
                let flow = src_char_at(src, ascii, span.start.index()) == Some('[');
                stack.push(Frame { node: Node { value: Value::Seq(vec![]), line, col, flow }, anchor, key: None });
                continue;
            }
            Event::MappingStart(anchor, _) => {
                let flow = src_char_at(src, ascii, span.start.index()) == Some('{');
                stack.push(Frame { node: Node { value: Value::Map(vec![]), line, col, flow }, anchor, key: None });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let f = stack.pop().expect("balanced events");
                if f.anchor > 0 {
                    anchors.insert(f.anchor, f.node.clone());
                }
                f.node
            }
            _ => continue,
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(f) => match &mut f.node.value {
                Value::Seq(items) => items.push(node),
                Value::Map(entries) => match f.key.take() {
                    None => f.key = Some(node),
                    Some(k) => {
                        if let Some(ks) = k.as_str() {
                            if ks != "<<" {
                                if let Some((prev, _)) = entries.iter().find(|(p, _)| p.as_str() == Some(ks)) {
                                    return Err(YamlError {
                                        line: k.line,
                                        col: k.col,
                                        msg: format!("duplicate key `{ks}` (first defined on line {})", prev.line),
                                    });
                                }
                            }
                        }
                        entries.push((k, node));
                    }
                },
                Value::Scalar(_) => unreachable!(),
            },
        }
    }
    Ok(root)
}

struct Frame {
    node: Node,
    anchor: usize,
    key: Option<Node>,
}

fn src_char_at(src: &str, ascii: bool, char_index: usize) -> Option<char> {
    if ascii {
        src.as_bytes().get(char_index).map(|b| *b as char)
    } else {
        src.chars().nth(char_index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_merge_keys_and_flow() {
        let src = "x-base: &base\n  restart: always\nservices:\n  a:\n    <<: *base\n    ports: [\"1:1\"]\n";
        let root = parse(src).unwrap().unwrap();
        let a = root.get("services").unwrap().get("a").unwrap();
        assert_eq!(a.line, 5);
        assert_eq!(a.get("restart").unwrap().as_str(), Some("always"));
        let ports = a.get("ports").unwrap();
        assert!(ports.flow);
        assert_eq!(ports.line, 6);
    }

    #[test]
    fn rejects_duplicates_and_tabs() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.msg.contains("duplicate key `a`"), "{}", e.msg);
        let e = parse("a:\n\tb: 1\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.line >= 1, "{e:?}");
    }
}
