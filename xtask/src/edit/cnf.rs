//! `openssl.cnf` text edits: add a `DNS.N` line, remove lines, renumber
//! the names section. Whole lines are spliced in the file's line endings,
//! so every other byte stays as the user wrote it.

use crate::model::cnf::{Cnf, FILE};
use crate::Error;

/// The line ending the file uses (of its first line; `\n` when it has none).
fn eol(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// Adds `DNS.N = name` after the last alt name (or right after the header).
pub fn add_dns(text: &str, cnf: &Cnf, name: &str) -> Result<String, Error> {
    let after = cnf.insert_after()?;
    Ok(insert_line(
        text,
        after,
        &format!("DNS.{} = {name}", cnf.next_dns_index()),
    ))
}

fn insert_line(text: &str, after: usize, new: &str) -> String {
    let nl = eol(text);
    let mut out = String::with_capacity(text.len() + new.len() + 2);
    for (i, l) in text.split_inclusive('\n').enumerate() {
        out.push_str(l);
        if i + 1 == after {
            if l.ends_with('\n') {
                out.push_str(new);
                out.push_str(if l.ends_with("\r\n") { "\r\n" } else { "\n" });
            } else {
                // The last line had no newline: neither does the new one.
                out.push_str(nl);
                out.push_str(new);
            }
        }
    }
    out
}

/// Removes the lines (1-based) given. When the file's last line goes and it
/// had no newline, the line before it loses its newline too, so add then
/// remove gives back every byte.
pub fn remove_lines(text: &str, lines: &[usize]) -> String {
    let all: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    for (i, l) in all.iter().enumerate() {
        if !lines.contains(&(i + 1)) {
            out.push_str(l);
        }
    }
    let last_removed = all.last().is_some_and(|l| !l.ends_with('\n')) && lines.contains(&all.len());
    if last_removed && !out.is_empty() {
        let cut = if out.ends_with("\r\n") {
            2
        } else {
            usize::from(out.ends_with('\n'))
        };
        out.truncate(out.len() - cut);
    }
    out
}

/// Rewrites the names section so that every name in `wanted` (in order) has
/// one `DNS.N` line and every key is unique: duplicates of a name are
/// dropped, clashing keys after a merge of two branches get the next free
/// number. Lines that are already right are left byte for byte.
pub fn sync_alt_names(text: &str, cnf: &Cnf, wanted: &[String]) -> Result<String, Error> {
    let mut drop: Vec<usize> = vec![];
    let mut renumber: Vec<(usize, String, String)> = vec![];
    let mut seen_names: Vec<&str> = vec![];
    let mut seen_keys: Vec<&str> = vec![];
    let mut next = cnf.next_dns_index().max(
        cnf.alt_names
            .iter()
            .filter(|a| a.kind == "IP")
            .map(|a| a.index)
            .max()
            .unwrap_or(0)
            + 1,
    );
    for a in cnf.alt_names.iter().filter(|a| a.file == FILE) {
        if a.kind == "DNS" {
            if seen_names.contains(&a.value.as_str()) {
                drop.extend(a.lines());
                continue;
            }
            seen_names.push(&a.value);
        }
        if seen_keys.contains(&a.key.as_str()) {
            renumber.push((a.line, a.key.clone(), format!("{}.{next}", a.kind)));
            next += 1;
        } else {
            seen_keys.push(&a.key);
        }
    }
    let mut out = String::with_capacity(text.len());
    for (i, l) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        if drop.contains(&n) {
            continue;
        }
        match renumber.iter().find(|(ln, ..)| *ln == n) {
            // Only the key changes; spacing, value and comment stay.
            Some((_, old, new)) => out.push_str(&l.replacen(old.as_str(), new, 1)),
            None => out.push_str(l),
        }
    }
    let mut cnf2 = cnf.reparse(&out)?;
    for name in wanted {
        if cnf2.dns(name).is_none() {
            out = add_dns(&out, &cnf2, name)?;
            cnf2 = cnf.reparse(&out)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Certificates for local development.\n[ req ]\ndistinguished_name = req_distinguished_name\n\n[ req_distinguished_name ]\nCN = monorepo\n\n[ alt_names ]\nDNS.1 = localhost   # host access\nDNS.2 = nginx\n\n# end\n";

    #[test]
    fn add_and_remove_round_trip() {
        let c = Cnf::parse(SAMPLE).unwrap();
        assert_eq!(c.alt_names.len(), 2);
        let added = add_dns(SAMPLE, &c, "accounts").unwrap();
        assert!(
            added.contains("DNS.2 = nginx\nDNS.3 = accounts\n\n# end"),
            "{added}"
        );
        let c2 = Cnf::parse(&added).unwrap();
        assert_eq!(
            remove_lines(&added, &c2.dns("accounts").unwrap().lines()),
            SAMPLE
        );
    }

    #[test]
    fn sync_renumbers_duplicates() {
        let merged = SAMPLE.replace(
            "DNS.2 = nginx\n",
            "DNS.2 = nginx\nDNS.3 = a\nDNS.3 = b\nDNS.4 = a\n",
        );
        let c = Cnf::parse(&merged).unwrap();
        let out = sync_alt_names(&merged, &c, &["a".into(), "b".into(), "c".into()]).unwrap();
        assert!(
            out.contains("DNS.2 = nginx\nDNS.3 = a\nDNS.5 = b\nDNS.6 = c\n"),
            "{out}"
        );
        // Already in sync: nothing changes.
        assert_eq!(
            sync_alt_names(&out, &Cnf::parse(&out).unwrap(), &["a".into()]).unwrap(),
            out
        );
    }

    #[test]
    fn crlf_and_no_final_newline_round_trip() {
        for src in [
            SAMPLE.replace('\n', "\r\n"),
            SAMPLE.trim_end().to_string(),
            "[ alt_names ]\r\nDNS.1 = a".to_string(),
        ] {
            let c = Cnf::parse(&src).unwrap();
            let added = add_dns(&src, &c, "zz").unwrap();
            if src.contains("\r\n") {
                assert!(
                    added.contains("zz\r\n")
                        || added.ends_with("\r\nDNS.3 = zz")
                        || added.ends_with("\r\nDNS.2 = zz"),
                    "{added:?}"
                );
                assert!(!added.replace("\r\n", "").contains('\n'), "{added:?}");
            }
            let c2 = Cnf::parse(&added).unwrap();
            assert_eq!(
                remove_lines(&added, &c2.dns("zz").unwrap().lines()),
                src,
                "{src:?}"
            );
        }
    }
}
