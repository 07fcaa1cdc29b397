//! The root `Cargo.toml`: `[workspace] members`, read and edited through
//! `toml_edit`, which keeps every comment and space it is not told to
//! change. Services written in Rust (a `Cargo.toml` in their folder) are
//! workspace members; everything else in the file is left alone.
//! The edits are in `edit::cargo_toml`.

use toml_edit::{Array, DocumentMut};

use crate::diag::{Diagnostic, Error};

pub const FILE: &str = "Cargo.toml";

#[derive(Debug, Clone)]
pub struct Members {
    pub members: Vec<String>,
}

fn members_line(text: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with("members"))
        .map_or(1, |i| i + 1)
}

fn bad(text: &str, why: impl std::fmt::Display) -> Error {
    Diagnostic::error(format!("cannot read `[workspace] members`: {why}"))
        .at(FILE, members_line(text))
        .fix("write it as `members = [\"xtask\", ...]` (an array of quoted paths) under `[workspace]`")
}

pub(crate) fn parse_doc(text: &str) -> Result<DocumentMut, Error> {
    text.parse::<DocumentMut>().map_err(|e| {
        let line = e.span().map_or(1, |s| {
            text[..s.start.min(text.len())].matches('\n').count() + 1
        });
        Diagnostic::error(format!("not valid TOML: {}", e.message()))
            .at(FILE, line)
            .fix("correct the syntax (cargo reports the same)")
    })
}

pub(crate) fn members_array<'a>(
    doc: &'a mut DocumentMut,
    text: &str,
) -> Result<&'a mut Array, Error> {
    // (`Item::get_mut` would insert an empty item; the table-like view does not.)
    let ws = doc
        .as_table_mut()
        .get_mut("workspace")
        .and_then(|w| w.as_table_like_mut())
        .ok_or_else(|| bad(text, "no `[workspace]` table"))?;
    let m = ws
        .get_mut("members")
        .ok_or_else(|| bad(text, "no `members` under `[workspace]`"))?;
    m.as_array_mut()
        .ok_or_else(|| bad(text, "`members` is not an array"))
}

pub fn parse(text: &str) -> Result<Members, Error> {
    let mut doc = parse_doc(text)?;
    let arr = members_array(&mut doc, text)?;
    let members = arr
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(text, format!("`{v}` is not a string")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Members { members })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_line() {
        let e = parse("[workspace]\nresolver = \"2\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Cargo.toml:1") && e.contains("no `members`"),
            "{e}"
        );
        let e = parse("[workspace]\nmembers = [\n  1,\n]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Cargo.toml:2") && e.contains("not a string"),
            "{e}"
        );
        let e = parse("[workspace]\nmembers = [\n").unwrap_err().to_string();
        assert!(
            e.contains("Cargo.toml:") && e.contains("not valid TOML"),
            "{e}"
        );
    }
}
