//! `docker-compose.yml` text edits: insert and remove a top-level entry by
//! splicing lines, without touching any other byte of the file. Each works
//! on the text and finds its place from a fresh look at the lines.

use crate::model::compose::err;
use crate::model::yaml;
use crate::{Diagnostic, Error};

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// Index (0-based) of the last line of the block that starts at `start`:
/// everything indented deeper than the key, comments included, up to the
/// last content line.
fn block_end(lines: &[&str], start: usize) -> usize {
    let key_indent = indent_of(lines[start]);
    let mut end = start;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        if !is_content(l) {
            if !l.trim().is_empty() && indent_of(l) > key_indent {
                end = i;
            }
            continue;
        }
        if indent_of(l) <= key_indent {
            break;
        }
        end = i;
    }
    // Trailing comment lines belong to what follows unless deeper-indented
    // content came after them; trim back to the last content line.
    while end > start && !is_content(lines[end]) {
        end -= 1;
    }
    end
}

fn split_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// Finds a top-level key's line index, e.g. `services:`.
fn top_key(lines: &[&str], key: &str) -> Option<usize> {
    lines.iter().position(|l| {
        l.starts_with(key) && l[key.len()..].trim_start().starts_with(':') && !l.starts_with(' ')
    })
}

/// Indentation of the children of the block that begins at `idx`, or
/// `default` when the block has none.
fn child_indent(lines: &[&str], idx: usize, default: usize) -> usize {
    lines[idx + 1..]
        .iter()
        .find(|l| is_content(l))
        .map(|l| indent_of(l))
        .filter(|i| *i > indent_of(lines[idx]))
        .unwrap_or(default)
}

/// The indentation step used in the file (2 unless the file says otherwise).
pub fn indent_unit(text: &str) -> usize {
    let lines = split_lines(text);
    top_key(&lines, "services")
        .map(|i| child_indent(&lines, i, 2))
        .unwrap_or(2)
        .max(1)
}

fn ensure_newline(s: &mut String) {
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
}

/// Inserts `block` (already indented) as the last entry of a top-level
/// mapping `section`, creating the section at the end of the file if absent.
/// Keeps the file's habit of blank lines between entries.
pub fn insert_entry(text: &str, section: &str, block: &str) -> Result<String, Error> {
    let lines = split_lines(text);
    let Some(sec) = top_key(&lines, section) else {
        let mut out = text.to_string();
        ensure_newline(&mut out);
        // Always one blank line before a section appended here, even after
        // a blank line the user left at the end: remove_entry takes exactly
        // that one back, so add then remove gives back every byte.
        let blank = if out.is_empty() { "" } else { "\n" };
        return Ok(format!("{out}{blank}{section}:\n{block}"));
    };
    let rest = lines[sec]
        .trim_start_matches(section)
        .trim_start()
        .trim_start_matches(':')
        .trim();
    if !(rest.is_empty() || rest.starts_with('#')) {
        return Err(err(
            sec + 1,
            format!(
                "top-level `{section}:` is written inline (`{}`)",
                lines[sec].trim_end()
            ),
            &format!("write `{section}:` on its own line with one entry per line below it"),
        ));
    }
    let entry_indent = child_indent(&lines, sec, 0);
    let entries: Vec<usize> = (sec + 1..lines.len())
        .take_while(|&i| !is_content(lines[i]) || indent_of(lines[i]) > 0)
        .filter(|&i| is_content(lines[i]) && indent_of(lines[i]) == entry_indent)
        .collect();
    let mut out = String::new();
    match entries.last() {
        None => {
            for l in &lines[..=sec] {
                out.push_str(l);
            }
            ensure_newline(&mut out);
            out.push_str(block);
            for l in &lines[sec + 1..] {
                out.push_str(l);
            }
        }
        Some(&last) => {
            let end = block_end(&lines, last);
            // Entries separated by blank lines get a blank line before the new one.
            let spaced =
                entries.len() >= 2 && lines[entries[entries.len() - 1] - 1].trim().is_empty();
            for l in &lines[..=end] {
                out.push_str(l);
            }
            ensure_newline(&mut out);
            if spaced {
                out.push('\n');
            }
            out.push_str(block);
            for l in &lines[end + 1..] {
                out.push_str(l);
            }
        }
    }
    Ok(out)
}

/// Removes the entry `name` from the top-level mapping `section`, with the
/// blank line that `insert_entry` put before it. With `drop_empty`, a
/// section left empty goes too (as `insert_entry` creates missing ones).
pub fn remove_entry(text: &str, section: &str, name: &str, drop_empty: bool) -> Option<String> {
    let lines = split_lines(text);
    let sec = top_key(&lines, section)?;
    let entry_indent = child_indent(&lines, sec, 0);
    let mut entries = vec![];
    for (i, l) in lines.iter().enumerate().skip(sec + 1) {
        if is_content(l) && indent_of(l) == 0 {
            break;
        }
        if is_content(l) && indent_of(l) == entry_indent {
            entries.push(i);
        }
    }
    let key_matches = |l: &str| {
        let t = l.trim_start();
        let t = t
            .strip_prefix('"')
            .and_then(|t| t.strip_prefix(name))
            .and_then(|t| t.strip_prefix('"'))
            .or_else(|| {
                t.strip_prefix('\'')
                    .and_then(|t| t.strip_prefix(name))
                    .and_then(|t| t.strip_prefix('\''))
            })
            .or_else(|| t.strip_prefix(name));
        t.is_some_and(|t| t.trim_start().starts_with(':'))
    };
    let start = *entries.iter().find(|&&i| key_matches(lines[i]))?;
    let end = block_end(&lines, start);
    // The comment block just above the entry (at its indentation) is its own.
    let mut start = start;
    while start > sec + 1
        && lines[start - 1].trim_start().starts_with('#')
        && indent_of(lines[start - 1]) == entry_indent
    {
        start -= 1;
    }
    let (mut from, to) = (start, end);
    if entries.len() == 1 && drop_empty {
        // Last entry: drop the section header as well, and the blank line
        // that `insert_entry` put before a section it created.
        from = sec;
        // Sections are appended one after another, each after a blank
        // line: that blank goes when the end of the file or another blank
        // line follows (never a blank line that separates two sections).
        let after_is_blank = lines.get(to + 1).is_none_or(|l| l.trim().is_empty());
        if from > 0 && lines[from - 1].trim().is_empty() && after_is_blank {
            from -= 1;
        }
    } else if from > 0 && lines[from - 1].trim().is_empty() {
        let next_is_sibling = lines
            .get(to + 1)
            .is_some_and(|l| is_content(l) && indent_of(l) == entry_indent);
        if !next_is_sibling {
            from -= 1;
        }
    }
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i < from || i > to {
            out.push_str(l);
        }
    }
    // A block that was the last thing in the file leaves no dangling text.
    if !text.ends_with('\n') && out.ends_with('\n') && to + 1 >= lines.len() {
        out.pop();
    }
    Some(out)
}

/// The block list `key:` of service `service`: the key's line and its
/// items' first lines (0-based), or why it cannot be edited as one.
fn service_list(lines: &[&str], service: &str, key: &str) -> Result<(usize, Vec<usize>), String> {
    let sec = top_key(lines, "services").ok_or("there is no `services:`")?;
    let entry_indent = child_indent(lines, sec, 0);
    let entry = (sec + 1..lines.len())
        .take_while(|&i| !is_content(lines[i]) || indent_of(lines[i]) > 0)
        .find(|&i| {
            indent_of(lines[i]) == entry_indent
                && lines[i]
                    .trim_start()
                    .strip_prefix(service)
                    .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .ok_or(format!("there is no service `{service}`"))?;
    let end = block_end(lines, entry);
    let field_indent = child_indent(lines, entry, entry_indent + 1);
    let k = (entry + 1..=end)
        .find(|&i| {
            is_content(lines[i])
                && indent_of(lines[i]) == field_indent
                && lines[i]
                    .trim_start()
                    .strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .ok_or(format!("`{service}` has no `{key}:` list"))?;
    let rest = lines[k].trim_start()[key.len()..].trim_start()[1..].trim();
    if !(rest.is_empty() || rest.starts_with('#')) {
        return Err(format!(
            "`{service}`'s `{key}:` is written inline (`{}`)",
            lines[k].trim()
        ));
    }
    let mut items = vec![];
    for (i, l) in lines.iter().enumerate().take(end + 1).skip(k + 1) {
        if !is_content(l) {
            continue;
        }
        let (ind, t) = (indent_of(l), l.trim_start());
        if ind < field_indent || (ind == field_indent && !t.starts_with("- ")) {
            break;
        }
        if t.starts_with("- ") && items.first().is_none_or(|&f| indent_of(lines[f]) == ind) {
            items.push(i);
        }
    }
    if items.is_empty() {
        return Err(format!("`{service}`'s `{key}:` has no items"));
    }
    Ok((k, items))
}

/// Appends `- item` to the block list `key:` of service `service` (as the
/// last item, at the items' indentation). Errors (with the line) when the
/// list is not a block list with at least one item: the edit never
/// rewrites a line the user wrote.
pub fn add_list_item(text: &str, service: &str, key: &str, item: &str) -> Result<String, Error> {
    let lines = split_lines(text);
    let (_, items) = service_list(&lines, service, key).map_err(|e| {
        err(
            0,
            format!("cannot add `{item}` to `{service}`: {e}"),
            &format!("write `{service}`'s `{key}:` as a block list with one `- item` per line"),
        )
    })?;
    let last = *items.last().unwrap();
    let mut end = last;
    // The last item may span lines (a long-form mount): its deeper lines.
    for (i, l) in lines.iter().enumerate().skip(last + 1) {
        if is_content(l) && indent_of(l) <= indent_of(lines[last]) {
            break;
        }
        if is_content(l) {
            end = i;
        }
    }
    let pad = " ".repeat(indent_of(lines[last]));
    let mut out: String = lines[..=end].concat();
    ensure_newline(&mut out);
    out += &format!("{pad}- {item}\n");
    out += &lines[end + 1..].concat();
    // The file's last line stays without its newline.
    if !text.ends_with('\n') && end + 1 == lines.len() {
        out.pop();
    }
    Ok(out)
}

/// Removes the item `- item` that `add_list_item` added; None when it is
/// not there.
pub fn remove_list_item(text: &str, service: &str, key: &str, item: &str) -> Option<String> {
    let lines = split_lines(text);
    let (_, items) = service_list(&lines, service, key).ok()?;
    let i = *items
        .iter()
        .find(|&&i| lines[i].trim_start().strip_prefix("- ").map(str::trim_end) == Some(item))?;
    let mut out: String = lines[..i].concat();
    out += &lines[i + 1..].concat();
    if !text.ends_with('\n') && i + 1 == lines.len() && out.ends_with('\n') {
        out.pop();
    }
    Some(out)
}

/// Whether service `service`'s `key:` list has the item `- item`.
pub fn has_list_item(text: &str, service: &str, key: &str, item: &str) -> bool {
    let lines = split_lines(text);
    service_list(&lines, service, key).is_ok_and(|(_, items)| {
        items
            .iter()
            .any(|&i| lines[i].trim_start().strip_prefix("- ").map(str::trim_end) == Some(item))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::compose::tests::{none, SAMPLE};
    use crate::model::compose::Compose;

    #[test]
    fn insert_then_remove_is_identity() {
        let block = "  new:\n    image: x\n";
        let added = insert_entry(SAMPLE, "services", block).unwrap();
        assert!(
            added
                .contains("        condition: service_started\n\n  new:\n    image: x\n# trailing"),
            "{added}"
        );
        Compose::parse(&added, &none)
            .unwrap()
            .service("new")
            .unwrap();
        assert_eq!(
            remove_entry(&added, "services", "new", false).unwrap(),
            SAMPLE
        );

        let vols = insert_entry(SAMPLE, "volumes", "  data:\n").unwrap();
        assert!(
            vols.ends_with("  pg-network: {}\n\nvolumes:\n  data:\n"),
            "{vols}"
        );
        assert_eq!(
            remove_entry(&vols, "volumes", "data", true).unwrap(),
            SAMPLE
        );
    }

    #[test]
    fn list_items_add_and_remove_byte_for_byte() {
        let item = "./src/backend_services/w/Frontend:/usr/share/nginx/frontends/w:ro";
        for text in [
            "services:\n  nginx:\n    image: n\n    volumes:\n      - ./a:/a:ro   # certs\n    ports: [\"1:1\"]\n  b:\n    image: b\n",
            "services:\n    nginx:\n        volumes:\n        - ./a:/a\n        # a comment\n        - type: bind\n          source: ./b\n          target: /b\n",
            "services:\n  nginx:\n    volumes:\n      - ./a:/a",
        ] {
            let added = add_list_item(text, "nginx", "volumes", item).unwrap();
            let tree = yaml::parse(&added).unwrap().unwrap();
            let vols = tree.get("services").unwrap().get("nginx").unwrap().get("volumes").unwrap();
            let last = vols.as_seq().unwrap().last().unwrap();
            assert_eq!(last.as_str(), Some(item), "{added}");
            assert!(has_list_item(&added, "nginx", "volumes", item));
            assert!(!has_list_item(text, "nginx", "volumes", item));
            assert_eq!(remove_list_item(&added, "nginx", "volumes", item).unwrap(), text);
        }
        for bad in [
            "services:\n  nginx:\n    volumes: [./a:/a]\n",
            "services:\n  nginx:\n    image: n\n",
            "services:\n  web:\n    volumes:\n      - ./a:/a\n",
        ] {
            let e = add_list_item(bad, "nginx", "volumes", item).unwrap_err();
            assert!(e.fix.is_some(), "{e}");
        }
    }

    #[test]
    fn removes_a_middle_entry() {
        let removed = remove_entry(SAMPLE, "services", "postgres", false).unwrap();
        assert!(removed.contains("services:\n\n  api:\n"), "{removed}");
        assert!(!removed.contains("POSTGRES_IMAGE"));
    }
}

/// The text of entry `name` of top-level `section` (key line to block end),
/// for deciding whether a declaration is exactly what add-service writes.
pub fn entry_text(text: &str, section: &str, name: &str) -> Option<String> {
    let lines = split_lines(text);
    let sec = top_key(&lines, section)?;
    let entry_indent = child_indent(&lines, sec, 0);
    let start = (sec + 1..lines.len())
        .take_while(|&i| !is_content(lines[i]) || indent_of(lines[i]) > 0)
        .find(|&i| {
            indent_of(lines[i]) == entry_indent
                && lines[i]
                    .trim_start()
                    .strip_prefix(name)
                    .is_some_and(|r| r.starts_with(':'))
        })?;
    Some(lines[start..=block_end(&lines, start)].concat())
}

/// Indentation of the entries of top-level `section`, or `default` when it
/// is missing or empty: each section keeps its own.
pub fn section_indent(text: &str, section: &str, default: usize) -> usize {
    let lines = split_lines(text);
    top_key(&lines, section)
        .map(|i| child_indent(&lines, i, default))
        .unwrap_or(default)
}

/// How a file is written: byte-order mark, CRLF line ends, final newline.
/// Edits work on the plain form (LF, final newline, no mark) and `restore`
/// puts the file's own form back, so inserted lines match their neighbours.
#[derive(Debug, Clone, Copy)]
pub struct Form {
    bom: bool,
    crlf: bool,
    final_newline: bool,
}

impl Form {
    pub fn plain(text: &str) -> (Form, String) {
        let bom = text.starts_with('\u{feff}');
        let t = text.strip_prefix('\u{feff}').unwrap_or(text);
        // CRLF only when every line ends so; a mixed file is left as written.
        let crlf = t.contains("\r\n") && t.matches('\n').count() == t.matches("\r\n").count();
        let mut t = if crlf {
            t.replace("\r\n", "\n")
        } else {
            t.to_string()
        };
        let final_newline = t.is_empty() || t.ends_with('\n');
        if !final_newline {
            t.push('\n');
        }
        (
            Form {
                bom,
                crlf,
                final_newline,
            },
            t,
        )
    }
    /// Whether the plain text is the file's own (a byte-order mark aside,
    /// which the YAML reader skips): then the file's tree is the plain
    /// text's, and an edit need not parse it again.
    pub fn is_plain(&self) -> bool {
        !self.crlf && self.final_newline
    }
    pub fn restore(&self, text: &str) -> String {
        let mut t = text.to_string();
        if !self.final_newline && t.ends_with('\n') {
            t.pop();
        }
        if self.crlf {
            t = t.replace('\n', "\r\n");
        }
        if self.bom {
            t.insert(0, '\u{feff}');
        }
        t
    }
}

/// The top-level entries an edit may add or remove, by section.
pub struct Change<'a> {
    pub added: Vec<(&'a str, String)>,
    pub removed: Vec<(&'a str, String)>,
    /// Entries that may differ (NGINX's, when a frontend's mount is added
    /// or removed).
    pub changed: Vec<(&'a str, String)>,
}

/// Every edit checks itself: the models of `old` and `new` must differ by
/// exactly `change`, every other key equal (lines aside). Anything else is a
/// bug in the editor, reported with a request for the file.
///
/// `loaded` is the tree of `old` when the caller holds it already (the file
/// as `Repo::load` read it, when that is the text edited: `Form::is_plain`),
/// so only `new` is parsed. Returns the tree of `new`, for the caller's
/// typed read-back (`Compose::from_tree`) without a third parse.
pub fn verify_edit(
    old: &str,
    loaded: Option<&yaml::Node>,
    new: &str,
    change: &Change,
    file: &str,
) -> Result<Option<yaml::Node>, Error> {
    let bug = |what: String| {
        Diagnostic::error(format!(
            "internal check failed: the edit would also change {what}; nothing was written"
        ))
        .at(file, 0)
        .fix(format!(
            "this is a bug in xtask: please report it with a copy of {file}"
        ))
    };
    let parse = |t: &str| {
        yaml::parse(t).map_err(|e| bug(format!("the YAML syntax (line {}: {})", e.line, e.msg)))
    };
    let parsed_old;
    let a = match loaded {
        Some(tree) => Some(tree),
        None => {
            parsed_old = parse(old)?;
            parsed_old.as_ref()
        }
    };
    let new_tree = parse(new)?;
    let empty = yaml::Node {
        value: yaml::Value::Map(vec![]),
        line: 0,
        col: 0,
        flow: false,
    };
    let (a, b) = (a.unwrap_or(&empty), new_tree.as_ref().unwrap_or(&empty));
    let keys = |n: &yaml::Node| -> Vec<String> {
        n.as_map()
            .unwrap_or_default()
            .iter()
            .filter_map(|(k, _)| k.as_str().map(str::to_string))
            .collect()
    };
    let mut top = keys(a);
    top.extend(keys(b).into_iter().filter(|k| !keys(a).contains(k)));
    for k in top {
        let (x, y) = (a.get(&k), b.get(&k));
        if let Some(sec) = ["services", "networks", "volumes"]
            .into_iter()
            .find(|s| *s == k)
        {
            let (x, y) = (x.unwrap_or(&empty), y.unwrap_or(&empty));
            // Maps by key: a lookup per entry would be quadratic in services.
            fn entries(n: &yaml::Node) -> std::collections::HashMap<&str, &yaml::Node> {
                n.as_map()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|(k, v)| k.as_str().map(|k| (k, v)))
                    .collect()
            }
            let (mx, my) = (entries(x), entries(y));
            for e in mx.keys().chain(my.keys().filter(|e| !mx.contains_key(*e))) {
                match (mx.get(e), my.get(e)) {
                    (Some(p), Some(q)) if p.same(q) => {}
                    (None, Some(_)) if change.added.iter().any(|(s, n)| *s == sec && n == e) => {}
                    (Some(_), None) if change.removed.iter().any(|(s, n)| *s == sec && n == e) => {}
                    (Some(_), Some(_))
                        if change.changed.iter().any(|(s, n)| *s == sec && n == e) => {}
                    _ => return Err(bug(format!("`{sec}.{e}`"))),
                }
            }
        } else if !matches!((x, y), (Some(p), Some(q)) if p.same(q)) {
            return Err(bug(format!("top-level `{k}`")));
        }
    }
    Ok(new_tree)
}

/// Anchors (`&a`) defined inside service `name`'s block and aliased (`*a`)
/// elsewhere, with the alias's line: removing the block would leave those
/// aliases dangling. A text scan: quoted `&`/`*` inside the block may give a
/// false refusal, never a broken file.
pub fn anchors_used_outside(text: &str, name: &str) -> Vec<(String, usize)> {
    let lines = split_lines(text);
    let Some(sec) = top_key(&lines, "services") else {
        return vec![];
    };
    let ind = child_indent(&lines, sec, 0);
    let Some(start) = (sec + 1..lines.len())
        .take_while(|&i| !is_content(lines[i]) || indent_of(lines[i]) > 0)
        .find(|&i| {
            indent_of(lines[i]) == ind
                && lines[i]
                    .trim_start()
                    .trim_start_matches(['"', '\''])
                    .strip_prefix(name)
                    .is_some_and(|r| r.trim_start_matches(['"', '\'']).starts_with(':'))
        })
    else {
        return vec![];
    };
    let end = block_end(&lines, start);
    let tokens = |l: &str, sigil: char| -> Vec<String> {
        let l = l.split(" #").next().unwrap_or("");
        let mut out = vec![];
        let mut prev = ' ';
        for (i, c) in l.char_indices() {
            if c == sigil && matches!(prev, ' ' | '[' | ',' | '{') {
                let n: String = l[i + 1..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
                    .collect();
                if !n.is_empty() {
                    out.push(n);
                }
            }
            prev = c;
        }
        out
    };
    let defined: Vec<String> = lines[start..=end]
        .iter()
        .flat_map(|l| tokens(l, '&'))
        .collect();
    let mut out = vec![];
    for (i, l) in lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < start || *i > end)
    {
        for a in tokens(l, '*').into_iter().filter(|a| defined.contains(a)) {
            out.push((a, i + 1));
        }
    }
    out
}
