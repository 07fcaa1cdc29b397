//! `openssl.cnf` text edits: add a `DNS.N` line, remove lines, renumber
//! `[alt_names]`. Lines that are already right are left byte for byte.

use crate::model::cnf::Cnf;

/// Adds `DNS.N = name` after the last alt name (or right after the header).
pub fn add_dns(text: &str, cnf: &Cnf, name: &str) -> String {
    let n = cnf.next_dns_index();
    let after = cnf.alt_names.last().map(|a| a.line).unwrap_or(cnf.section_line);
    insert_line(text, after, &format!("DNS.{n} = {name}"))
}

fn insert_line(text: &str, after: usize, new: &str) -> String {
    let mut out = String::with_capacity(text.len() + new.len() + 1);
    for (i, l) in text.split_inclusive('\n').enumerate() {
        out.push_str(l);
        if i + 1 == after {
            if !l.ends_with('\n') {
                out.push('\n');
                out.push_str(new);
            } else {
                out.push_str(new);
                out.push('\n');
            }
        }
    }
    out
}

/// Removes the lines (1-based) given.
pub fn remove_lines(text: &str, lines: &[usize]) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if !lines.contains(&(i + 1)) {
            out.push_str(l);
        }
    }
    out
}

/// Rewrites `[alt_names]` so that every name in `wanted` (in order) has one
/// `DNS.N` line and every N is unique: duplicates of a name are dropped,
/// clashing indices after a merge of two branches get the next free number.
/// Lines that are already right are left byte for byte.
pub fn sync_alt_names(text: &str, cnf: &Cnf, wanted: &[String]) -> String {
    let mut drop = vec![];
    let mut renumber: Vec<(usize, String)> = vec![];
    let mut seen_names: Vec<&str> = vec![];
    let mut seen_idx: Vec<(String, u32)> = vec![];
    let mut next = cnf.next_dns_index().max(cnf.alt_names.iter().filter(|a| a.kind == "IP").map(|a| a.index).max().unwrap_or(0) + 1);
    for a in &cnf.alt_names {
        if a.kind == "DNS" {
            if seen_names.contains(&a.value.as_str()) {
                drop.push(a.line);
                continue;
            }
            seen_names.push(&a.value);
        }
        if seen_idx.contains(&(a.kind.clone(), a.index)) {
            renumber.push((a.line, format!("{}.{} = {}", a.kind, next, a.value)));
            next += 1;
        } else {
            seen_idx.push((a.kind.clone(), a.index));
        }
    }
    let mut out = String::with_capacity(text.len());
    for (i, l) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        if drop.contains(&n) {
            continue;
        }
        if let Some((_, new)) = renumber.iter().find(|(ln, _)| *ln == n) {
            out.push_str(new);
            if l.ends_with('\n') {
                out.push('\n');
            }
            continue;
        }
        out.push_str(l);
    }
    let mut cnf2 = Cnf::parse(&out).expect("still parses");
    for name in wanted {
        if cnf2.dns(name).is_none() {
            out = add_dns(&out, &cnf2, name);
            cnf2 = Cnf::parse(&out).expect("still parses");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Certificates for local development.\n[ req ]\ndistinguished_name = req_distinguished_name\n\n[ req_distinguished_name ]\nCN = monorepo\n\n[ alt_names ]\nDNS.1 = localhost   # host access\nDNS.2 = nginx\n\n# end\n";

    #[test]
    fn add_and_remove_round_trip() {
        let c = Cnf::parse(SAMPLE).unwrap();
        assert_eq!(c.alt_names.len(), 2);
        let added = add_dns(SAMPLE, &c, "accounts");
        assert!(added.contains("DNS.2 = nginx\nDNS.3 = accounts\n\n# end"), "{added}");
        let c2 = Cnf::parse(&added).unwrap();
        let line = c2.dns("accounts").unwrap().line;
        assert_eq!(remove_lines(&added, &[line]), SAMPLE);
    }

    #[test]
    fn sync_renumbers_duplicates() {
        let merged = SAMPLE.replace("DNS.2 = nginx\n", "DNS.2 = nginx\nDNS.3 = a\nDNS.3 = b\nDNS.4 = a\n");
        let c = Cnf::parse(&merged).unwrap();
        let out = sync_alt_names(&merged, &c, &["a".into(), "b".into(), "c".into()]);
        assert!(out.contains("DNS.2 = nginx\nDNS.3 = a\nDNS.5 = b\nDNS.6 = c\n"), "{out}");
        // Already in sync: nothing changes.
        assert_eq!(sync_alt_names(&out, &Cnf::parse(&out).unwrap(), &["a".into()]), out);
    }
}
