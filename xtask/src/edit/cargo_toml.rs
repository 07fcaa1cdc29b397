//! `Cargo.toml` text edit: make `[workspace] members` a given list.

use crate::model::cargo_toml::Members;

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
    use crate::model::cargo_toml::parse;

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
