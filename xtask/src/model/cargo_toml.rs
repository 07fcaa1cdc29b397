//! The root `Cargo.toml`: reads and edits `[workspace] members` line by
//! line. Services written in Rust (a `Cargo.toml` in their folder) are
//! workspace members; everything else in the file is left alone.

use crate::Error;

pub const FILE: &str = "Cargo.toml";

#[derive(Debug, Clone)]
pub struct Members {
    pub members: Vec<(String, usize)>,
    /// 1-based lines of `members = [` and of its closing `]`.
    pub open: usize,
    pub close: usize,
}

fn unquote(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches(',').trim();
    let s = s.strip_prefix('"').and_then(|s| s.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))?;
    Some(s.to_string())
}

fn strip_comment(l: &str) -> &str {
    // Member paths never contain '#', so a plain split is enough here.
    l.split('#').next().unwrap_or("")
}

pub fn parse(text: &str) -> Result<Members, Error> {
    let lines: Vec<&str> = text.lines().collect();
    let mut in_ws = false;
    for (i, l) in lines.iter().enumerate() {
        let t = strip_comment(l).trim();
        if t.starts_with('[') {
            in_ws = t == "[workspace]";
            continue;
        }
        if !in_ws || !t.starts_with("members") {
            continue;
        }
        let Some(rhs) = t.split_once('=').map(|x| x.1.trim()) else { continue };
        let bad = |line: usize| {
            Error::input(format!(
                "{FILE}:{line}: cannot read `members`\n  fix: write it as `members = [` with one quoted path per line and `]` on its own line"
            ))
        };
        let Some(rest) = rhs.strip_prefix('[') else { return Err(bad(i + 1)) };
        if let Some(inner) = rest.strip_suffix(']') {
            let members = inner
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| unquote(s).map(|m| (m, i + 1)).ok_or_else(|| bad(i + 1)))
                .collect::<Result<_, _>>()?;
            return Ok(Members { members, open: i + 1, close: i + 1 });
        }
        let mut members = vec![];
        for (j, l) in lines.iter().enumerate().skip(i + 1) {
            let t = strip_comment(l).trim();
            if t.is_empty() {
                continue;
            }
            if t.starts_with(']') {
                return Ok(Members { members, open: i + 1, close: j + 1 });
            }
            for part in t.split(',').filter(|p| !p.trim().is_empty()) {
                members.push((unquote(part).ok_or_else(|| bad(j + 1))?, j + 1));
            }
        }
        return Err(bad(i + 1));
    }
    Err(Error::input(format!(
        "{FILE}:1: no `members` under `[workspace]`\n  fix: add `members = [\"xtask\"]` under `[workspace]`"
    )))
}

/// Makes `members` exactly `wanted` (order of the existing entries kept, new
/// ones appended). Returns the text unchanged when nothing differs.
pub fn sync(text: &str, m: &Members, wanted: &[String]) -> String {
    let have: Vec<&str> = m.members.iter().map(|(s, _)| s.as_str()).collect();
    let add: Vec<&String> = wanted.iter().filter(|w| !have.contains(&w.as_str())).collect();
    let remove: Vec<usize> = m.members.iter().filter(|(s, _)| !wanted.contains(s)).map(|(_, l)| *l).collect();
    if add.is_empty() && remove.is_empty() {
        return text.to_string();
    }
    if m.open == m.close {
        let mut keep: Vec<String> = m.members.iter().filter(|(s, _)| wanted.contains(s)).map(|(s, _)| s.clone()).collect();
        keep.extend(add.into_iter().cloned());
        let list = keep.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
        return text
            .split_inclusive('\n')
            .enumerate()
            .map(|(i, l)| {
                if i + 1 == m.open {
                    let nl = if l.ends_with('\n') { "\n" } else { "" };
                    let indent = &l[..l.len() - l.trim_start().len()];
                    format!("{indent}members = [{list}]{nl}")
                } else {
                    l.to_string()
                }
            })
            .collect();
    }
    let indent = text
        .lines()
        .nth(m.members.first().map(|(_, l)| l - 1).unwrap_or(m.open))
        .map(|l| l[..l.len() - l.trim_start().len()].to_string())
        .unwrap_or_else(|| "    ".into());
    let mut out = String::new();
    for (i, l) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        if n == m.close {
            for a in &add {
                out.push_str(&format!("{indent}\"{a}\",\n"));
            }
        }
        // A line is dropped only when every member on it goes.
        if remove.contains(&n) && m.members.iter().filter(|(_, ml)| *ml == n).all(|(s, _)| !wanted.contains(s)) {
            continue;
        }
        out.push_str(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_add_remove_round_trip() {
        let src = "[workspace]\n# the members\nmembers = [\n    \"xtask\",  # automation\n    \"probe\",\n]\n\n[profile.dev]\ndebug = 0\n";
        let m = parse(src).unwrap();
        assert_eq!(m.members.len(), 2);
        let w: Vec<String> = vec!["xtask".into(), "probe".into(), "src/backend_services/r".into()];
        let added = sync(src, &m, &w);
        assert!(added.contains("    \"probe\",\n    \"src/backend_services/r\",\n]"), "{added}");
        let back = sync(&added, &parse(&added).unwrap(), &w[..2]);
        assert_eq!(back, src);
    }

    #[test]
    fn single_line() {
        let src = "[workspace]\nmembers = [\"xtask\"]\n";
        let m = parse(src).unwrap();
        let out = sync(src, &m, &["xtask".into(), "b".into()]);
        assert_eq!(out, "[workspace]\nmembers = [\"xtask\", \"b\"]\n");
    }
}
