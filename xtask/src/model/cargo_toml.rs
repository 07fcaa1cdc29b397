//! The root `Cargo.toml`: reads and edits `[workspace] members` line by
//! line. Services written in Rust (a `Cargo.toml` in their folder) are
//! workspace members; everything else in the file is left alone.

use crate::diag::{Diagnostic, Error};

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
            Diagnostic::error(format!("{FILE}:{line}: cannot read `members`")).fix("write it as `members = [` with one quoted path per line and `]` on its own line")
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
    Err(Diagnostic::error(format!("{FILE}:1: no `members` under `[workspace]`")).fix("add `members = [\"xtask\"]` under `[workspace]`"))
}
