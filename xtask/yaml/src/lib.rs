//! A read-only YAML tree with line numbers, built from saphyr-parser events
//! (the xtask's `model::yaml` re-exports it and holds its tests).
//!
//! Edits never go through this tree: the xtask splices text at the lines
//! the tree reports, so comments and formatting survive untouched.
//!
//! A crate of its own only for speed: `Parser<StrInput>` is generic, so
//! saphyr's scanner is compiled here, and the workspace's dev profile
//! builds this crate at opt-level 3 while the xtask stays at 0 (a parse of
//! a 500-service compose file: 31 ms at 0, 7 ms at 3).

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
    /// Structural equality, ignoring positions: the same scalars, quoted
    /// alike, in sequences and mappings of the same shape (keys in the same
    /// order). A collection's flow or block style is not compared.
    pub fn same(&self, other: &Node) -> bool {
        match (&self.value, &other.value) {
            (Value::Scalar(x), Value::Scalar(y)) => x == y && self.flow == other.flow,
            (Value::Seq(x), Value::Seq(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.same(q))
            }
            (Value::Map(x), Value::Map(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|((k, v), (l, w))| k.same(l) && v.same(w))
            }
            _ => false,
        }
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

/// Nesting deeper than this is refused: a compose file nests a handful of
/// levels, and a hostile one must not exhaust the stack or memory.
pub const MAX_DEPTH: usize = 100;
/// Nodes that aliases may copy in all. A compose file reuses small blocks
/// (`<<: *defaults`); an alias bomb (`&a [*b, *b, ...]` nested) copies
/// billions, so past this budget the file is refused.
pub const MAX_ALIAS_NODES: usize = 1_000_000;

/// Parses one YAML document. Rejects duplicate keys (Compose rejects them);
/// tabs are the parser's business (allowed inside block scalars, refused as
/// indentation). A byte-order mark is skipped, as Compose skips it.
pub fn parse(src: &str) -> Result<Option<Node>, YamlError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    match parse_exact(src) {
        Err(e) if e.msg.contains("indentation") => match relax_flow_indentation(src) {
            // go-yaml (Compose) accepts a flow collection continued or closed
            // at its key's indentation; the YAML spec and saphyr do not. The
            // relaxed copy has the same lines, so lines stay exact.
            Some(relaxed) => parse_exact(&relaxed).map_err(|_| e),
            None => Err(e),
        },
        r => r,
    }
}

fn parse_exact(src: &str) -> Result<Option<Node>, YamlError> {
    let mut parser = Parser::new_from_str(src);
    let mut stack: Vec<Frame> = Vec::new();
    // Anchored nodes with their size in nodes, to bound alias expansion.
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut aliased = 0usize;
    let mut root: Option<Node> = None;
    let mut docs = 0;
    // Markers count chars. The char at a marker is found through its line
    // (a table of line starts): constant per node, so parsing stays linear.
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(src.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let char_at = |line: usize, col: usize| -> Option<char> {
        let start = *line_starts.get(line.checked_sub(1)?)?;
        src[start..].chars().nth(col)
    };
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(scan_error)?;
        let (line, col) = (span.start.line(), span.start.col() + 1);
        let (node, size) = match ev {
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    return Err(YamlError {
                        line,
                        col,
                        msg: "more than one YAML document".into(),
                    });
                }
                continue;
            }
            Event::Scalar(v, style, anchor, _) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
                let n = Node {
                    value: Value::Scalar(v.into_owned()),
                    line,
                    col,
                    flow: quoted,
                };
                if anchor > 0 {
                    anchors.insert(anchor, (n.clone(), 1));
                }
                (n, 1)
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((n, size)) => {
                    aliased += size;
                    if aliased > MAX_ALIAS_NODES {
                        return Err(YamlError {
                            line,
                            col,
                            msg: format!("aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)"),
                        });
                    }
                    (n.clone(), *size)
                }
                None => {
                    return Err(YamlError {
                        line,
                        col,
                        msg: "alias to an unknown anchor".into(),
                    })
                }
            },
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError {
                        line,
                        col,
                        msg: format!("collections nested more than {MAX_DEPTH} deep"),
                    });
                }
                let is_seq = matches!(ev, Event::SequenceStart(..));
                stack.push(Frame::open(
                    is_seq,
                    anchor,
                    line,
                    col,
                    char_at(line, col - 1),
                ));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let f = stack.pop().expect("balanced events");
                if f.anchor > 0 {
                    anchors.insert(f.anchor, (f.node.clone(), f.size));
                }
                (f.node, f.size)
            }
            _ => continue,
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(f) => f.add(node, size)?,
        }
    }
    Ok(root)
}

/// The parser's error at its place, in Compose's words for deep nesting.
fn scan_error(e: saphyr_parser::ScanError) -> YamlError {
    YamlError {
        line: e.marker().line(),
        col: e.marker().col() + 1,
        msg: match e.info() {
            m if m.contains("recursion limit") => format!("collections nested too deep ({m})"),
            m => m.to_string(),
        },
    }
}

struct Frame {
    node: Node,
    anchor: usize,
    key: Option<Node>,
    /// Nodes in this collection, itself included.
    size: usize,
    /// Keys of a mapping so far, with their lines.
    seen: HashMap<String, usize>,
}

impl Frame {
    /// A collection that starts at (line, col); `c` is the character there
    /// (`[` or `{` for the flow style).
    fn open(is_seq: bool, anchor: usize, line: usize, col: usize, c: Option<char>) -> Frame {
        let (value, flow) = if is_seq {
            (Value::Seq(vec![]), c == Some('['))
        } else {
            (Value::Map(vec![]), c == Some('{'))
        };
        Frame {
            node: Node {
                value,
                line,
                col,
                flow,
            },
            anchor,
            key: None,
            size: 1,
            seen: HashMap::new(),
        }
    }

    /// Adds a finished node (`size` nodes) to this collection: an item, a
    /// key, or the value of the pending key (duplicate keys refused).
    fn add(&mut self, node: Node, size: usize) -> Result<(), YamlError> {
        self.size += size;
        match &mut self.node.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match self.key.take() {
                None => self.key = Some(node),
                Some(k) => {
                    if let Some(ks) = k.as_str() {
                        if ks != "<<" {
                            // A set per mapping: a linear search here made
                            // 40k services take seconds (quadratic).
                            if let Some(prev) = self.seen.insert(ks.to_string(), k.line) {
                                return Err(YamlError {
                                    line: k.line,
                                    col: k.col,
                                    msg: format!(
                                        "duplicate key `{ks}` (first defined on line {prev})"
                                    ),
                                });
                            }
                        }
                    }
                    entries.push((k, node));
                }
            },
            Value::Scalar(_) => unreachable!(),
        }
        Ok(())
    }
}

/// A copy of `src` in which every line that continues a flow collection
/// (`[` or `{` still open) is indented one column deeper than the line that
/// opened it, or None when no line needs it. Quotes, comments and block
/// scalars are skipped so their brackets do not count.
fn relax_flow_indentation(src: &str) -> Option<String> {
    let mut out = String::with_capacity(src.len() + 64);
    let mut depth = 0usize;
    let mut opener_indent = 0usize;
    let mut block_scalar: Option<usize> = None;
    let mut changed = false;
    for line in src.split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let body = line.trim();
        if let Some(bi) = block_scalar {
            if body.is_empty() || indent > bi {
                out.push_str(line);
                continue;
            }
            block_scalar = None;
        }
        if depth > 0 && indent <= opener_indent && !body.is_empty() {
            out.push_str(&" ".repeat(opener_indent + 1 - indent));
            changed = true;
        } else if depth == 0 {
            opener_indent = indent;
        }
        out.push_str(line);
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            match quote {
                Some('"') if c == '\\' => {
                    chars.next();
                }
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '#' if prev == ' ' || prev == '\t' => break,
                    '"' | '\'' if matches!(prev, ' ' | '[' | '{' | ',' | ':' | '-') => {
                        quote = Some(c)
                    }
                    '[' | '{' => depth += 1,
                    ']' | '}' => depth = depth.saturating_sub(1),
                    _ => {}
                },
            }
            prev = c;
        }
        let trimmed = body.split(" #").next().unwrap_or("").trim_end();
        if depth == 0 && quote.is_none() {
            let last = trimmed.rsplit([' ', ':']).next().unwrap_or("");
            if trimmed.ends_with(['|', '>']) || (last.starts_with(['|', '>']) && last.len() <= 3) {
                block_scalar = Some(indent);
            }
        }
    }
    changed.then_some(out)
}
