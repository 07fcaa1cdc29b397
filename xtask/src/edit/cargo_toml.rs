//! `Cargo.toml` edit: make `[workspace] members` a given list, through
//! `toml_edit`, which keeps every comment and space it is not told to change.
//!
//! toml_edit stores the text between array elements as each element's
//! prefix (the rest of the previous element's line, then the new line's
//! indentation) and the text before `]` as the array's trailing. The edits
//! below move those pieces so that a comment stays with the line it was on
//! and add-then-remove gives back the same bytes.

use toml_edit::{Array, Value};

use crate::model::cargo_toml::{members_array, parse, parse_doc, Members, FILE};
use crate::{Diagnostic, Error};

fn prefix(v: &Value) -> String {
    v.decor()
        .prefix()
        .and_then(|p| p.as_str())
        .unwrap_or("")
        .to_string()
}

/// Splits decor text at its first newline: (the rest of the previous line
/// with the newline, what follows). Without a newline: ("", all).
fn split_nl(s: &str) -> (&str, &str) {
    match s.find('\n') {
        Some(i) => s.split_at(i + 1),
        None => ("", s),
    }
}

fn suffix(v: &Value) -> String {
    v.decor()
        .suffix()
        .and_then(|p| p.as_str())
        .unwrap_or("")
        .to_string()
}

/// The text between the last element and `]`: its suffix (where it is
/// kept without a trailing comma) plus the array's trailing.
fn take_end(arr: &mut Array) -> String {
    let n = arr.len();
    let mut end = if n > 0 {
        arr.get(n - 1).map(suffix).unwrap_or_default()
    } else {
        String::new()
    };
    end.push_str(arr.trailing().as_str().unwrap_or(""));
    if n > 0 {
        arr.get_mut(n - 1).unwrap().decor_mut().set_suffix("");
    }
    arr.set_trailing("");
    end
}

fn put_end(arr: &mut Array, end: String) {
    match (arr.trailing_comma(), arr.len()) {
        (false, n) if n > 0 => arr.get_mut(n - 1).unwrap().decor_mut().set_suffix(end),
        _ => arr.set_trailing(end),
    }
}

fn remove(arr: &mut Array, i: usize) {
    let gone = prefix(arr.get(i).unwrap());
    let (gone_head, gone_tail) = split_nl(&gone);
    if i + 1 < arr.len() {
        let next = prefix(arr.get(i + 1).unwrap());
        let new = if next.contains('\n') {
            format!("{gone_head}{}", split_nl(&next).1)
        } else {
            format!("{gone_head}{gone_tail}")
        };
        arr.get_mut(i + 1).unwrap().decor_mut().set_prefix(new);
        arr.remove(i);
    } else {
        let t = take_end(arr);
        arr.remove(i);
        put_end(
            arr,
            if t.contains('\n') && i > 0 {
                format!("{gone_head}{}", split_nl(&t).1)
            } else {
                t
            },
        );
    }
}

fn push(arr: &mut Array, member: &str, eol: &str) {
    let last = arr.iter().last().map(prefix);
    let t = take_end(arr);
    let multi_line = last.as_deref().is_some_and(|p| p.contains('\n')) || t.contains('\n');
    let mut v = Value::from(member);
    let mut end = t.clone();
    if multi_line {
        let indent = last
            .as_deref()
            .map(|p| p.rsplit('\n').next().unwrap_or(""))
            .unwrap_or("    ")
            .to_string();
        let (head, tail) = split_nl(&t);
        if t.contains('\n') {
            v.decor_mut().set_prefix(format!("{head}{indent}"));
            end = format!("{eol}{tail}");
        } else {
            v.decor_mut().set_prefix(format!("{eol}{indent}"));
        }
    } else {
        v.decor_mut()
            .set_prefix(if arr.is_empty() { "" } else { " " });
    }
    v.decor_mut().set_suffix("");
    arr.push_formatted(v);
    put_end(arr, end);
}

/// Makes `members` exactly `wanted` (order of the existing entries kept, new
/// ones appended). Returns the text unchanged when nothing differs.
pub fn sync(text: &str, m: &Members, wanted: &[String]) -> Result<String, Error> {
    let add: Vec<&String> = wanted.iter().filter(|w| !m.members.contains(w)).collect();
    if add.is_empty()
        && m.members.iter().all(|s| wanted.contains(s))
        && m.members.len() == wanted.len()
    {
        return Ok(text.to_string());
    }
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut doc = parse_doc(text)?;
    let arr = members_array(&mut doc, text)?;
    // Drop what is not wanted, and second copies of what is.
    let mut seen: Vec<String> = vec![];
    let mut i = 0;
    while i < arr.len() {
        let s = arr.get(i).unwrap().as_str().unwrap_or("").to_string();
        if !wanted.contains(&s) || seen.contains(&s) {
            remove(arr, i);
        } else {
            seen.push(s);
            i += 1;
        }
    }
    for a in add {
        push(arr, a, eol);
    }
    let mut out = doc.to_string();
    // toml_edit writes LF; a file in CRLF stays CRLF.
    if eol == "\r\n" && !text.replace("\r\n", "").contains('\n') {
        out = out.replace("\r\n", "\n").replace('\n', "\r\n");
    }
    // Read back: the edit must give exactly the wanted set.
    let back = parse(&out)?;
    let mut got = back.members.clone();
    let mut want = wanted.to_vec();
    got.sort();
    want.sort();
    if got != want {
        return Err(Diagnostic::error(format!(
            "internal error: editing {FILE} gave members {:?}, not {:?}",
            back.members, wanted
        ))
        .fix(format!(
            "nothing was written; please report this with your {FILE}"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(src: &str, extra: &str) -> String {
        let m = parse(src).unwrap();
        let mut w = m.members.clone();
        w.push(extra.to_string());
        let added = sync(src, &m, &w).unwrap();
        assert_eq!(parse(&added).unwrap().members, w, "{added}");
        let back = sync(&added, &parse(&added).unwrap(), &m.members).unwrap();
        assert_eq!(
            back, src,
            "add then remove of {extra} in\n{src}\nvia\n{added}"
        );
        added
    }

    #[test]
    fn multi_line_add_remove_round_trip() {
        let src = "[workspace]\n# the members\nmembers = [\n    \"xtask\",  # automation\n    \"probe\", # probes\n]\n\n[profile.dev]\ndebug = 0\n";
        let added = round_trip(src, "src/backend_services/r");
        assert!(
            added.contains("    \"probe\", # probes\n    \"src/backend_services/r\",\n]"),
            "{added}"
        );
        round_trip(&src.replace('\n', "\r\n"), "r");
        round_trip("[workspace]\nmembers = [\n  \"xtask\"\n]\n", "r");
    }

    #[test]
    fn single_line_keeps_its_comment() {
        let src = "[workspace]\nmembers = [\"xtask\"]  # keep sorted\n";
        assert_eq!(
            round_trip(src, "b"),
            "[workspace]\nmembers = [\"xtask\", \"b\"]  # keep sorted\n"
        );
        round_trip("[workspace]\nmembers = []\n", "b");
        round_trip("[workspace]\nmembers = [ \"a\" ]\n", "b");
    }

    /// Point 9: the first member on the opening line is read; removing one
    /// of two members on one line converges.
    #[test]
    fn real_world_layouts() {
        let src = "[workspace]\nmembers = [ \"xtask\",\n            \"probe\" ]\n";
        assert_eq!(parse(src).unwrap().members, ["xtask", "probe"]);
        let added = round_trip(src, "c");
        assert_eq!(
            added,
            "[workspace]\nmembers = [ \"xtask\",\n            \"probe\",\n            \"c\" ]\n"
        );
        for (src, want) in [
            (
                "[workspace]\nmembers = [\"gone\", \"xtask\"]\n",
                "[workspace]\nmembers = [\"xtask\"]\n",
            ),
            (
                "[workspace]\nmembers = [\"xtask\", \"gone\"] # c\n",
                "[workspace]\nmembers = [\"xtask\"] # c\n",
            ),
            (
                "[workspace]\nmembers = [\n    \"gone\", # old\n    \"xtask\", # tool\n]\n",
                "[workspace]\nmembers = [\n    \"xtask\", # tool\n]\n",
            ),
            (
                "[workspace]\nmembers = [\"xtask\", \"xtask\"]\n",
                "[workspace]\nmembers = [\"xtask\"]\n",
            ),
        ] {
            let out = sync(src, &parse(src).unwrap(), &["xtask".into()]).unwrap();
            assert_eq!(out, want);
            assert_eq!(
                sync(&out, &parse(&out).unwrap(), &["xtask".into()]).unwrap(),
                out,
                "converges"
            );
        }
    }
}
