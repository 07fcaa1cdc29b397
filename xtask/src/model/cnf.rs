//! `openssl.cnf`: reads `[alt_names]` and edits its `DNS.N` lines one line
//! at a time, so every other line stays as the user wrote it.

use crate::diag::{Diagnostic, Error};

pub const FILE: &str = "openssl.cnf";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AltName {
    /// `DNS` or `IP`.
    pub kind: String,
    pub index: u32,
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct Cnf {
    pub alt_names: Vec<AltName>,
    /// 1-based line of the `[ alt_names ]` header.
    pub section_line: usize,
}

fn section_name(line: &str) -> Option<&str> {
    let t = line.trim();
    t.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

fn strip_comment(line: &str) -> &str {
    line.split('#').next().unwrap_or("")
}

impl Cnf {
    pub fn parse(text: &str) -> Result<Cnf, Error> {
        let mut section = String::new();
        let mut alt_names = Vec::new();
        let mut section_line = None;
        for (i, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with('[') {
                let Some(name) = section_name(line) else {
                    return Err(Diagnostic::error(format!("{FILE}:{}: malformed section header `{line}`",
                        i + 1
                    )).fix("write it as `[ name ]`"));
                };
                section = name.to_string();
                if section == "alt_names" {
                    section_line = Some(i + 1);
                }
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(Diagnostic::error(format!("{FILE}:{}: `{line}` is not a `key = value` line",
                    i + 1
                )).fix("write `key = value` or comment it out with `#`"));
            };
            let (k, v) = (k.trim(), v.trim());
            if section.as_str() == "alt_names" {
                let parsed = k.split_once('.').and_then(|(kind, n)| {
                    let kind = kind.to_ascii_uppercase();
                    (kind == "DNS" || kind == "IP").then_some(())?;
                    Some((kind, n.parse::<u32>().ok()?))
                });
                let Some((kind, index)) = parsed.filter(|_| !v.is_empty() && !v.contains(char::is_whitespace)) else {
                    return Err(Diagnostic::error(format!("{FILE}:{}: malformed alt name `{line}`",
                        i + 1
                    )).fix("write `DNS.<number> = <name>` (or `IP.<number> = <address>`)"));
                };
                alt_names.push(AltName { kind, index, value: v.to_string(), line: i + 1 });
            }
        }
        let section_line = section_line.ok_or_else(|| {
            Diagnostic::error(format!("{FILE}:1: no `[ alt_names ]` section")).fix("add `[ alt_names ]` with `DNS.1 = localhost`, and `subjectAltName = @alt_names` under `[ v3_req ]`")
        })?;
        Ok(Cnf { alt_names, section_line })
    }

    pub fn dns(&self, name: &str) -> Option<&AltName> {
        self.alt_names.iter().find(|a| a.kind == "DNS" && a.value == name)
    }

    pub fn next_dns_index(&self) -> u32 {
        self.alt_names.iter().filter(|a| a.kind == "DNS").map(|a| a.index).max().unwrap_or(0) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;


    #[test]
    fn errors_name_the_line() {
        let e = Cnf::parse("[ alt_names ]\nDNS.x = a\n").unwrap_err().to_string();
        assert!(e.contains("openssl.cnf:2"), "{e}");
        let e = Cnf::parse("[ req ]\n").unwrap_err().to_string();
        assert!(e.contains("no `[ alt_names ]`"), "{e}");
    }
}
