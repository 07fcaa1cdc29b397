//! `openssl.cnf`, read with OpenSSL's own grammar (`man 5 config`, checked
//! against `openssl req` 3.0): `\` continuations, `#` comments outside
//! quotes, quoted values and escapes, `$var` / `${var}` / `$(var)` /
//! `$section::name` / `$ENV::X` expansion, `.include` and `.pragma`, spaces
//! inside `[ section ]`. The subject alternative names are found the way
//! OpenSSL finds them: `[req] x509_extensions`/`req_extensions` name an
//! extension section whose `subjectAltName = @section` points at them
//! (`[alt_names]` when nothing points). Written by hand: no crate reads this
//! format with line numbers. Edits splice whole lines, in the file's line
//! endings, so every other byte stays as the user wrote it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Error};

pub const FILE: &str = "openssl.cnf";
/// The kinds `subjectAltName` accepts (OpenSSL compares them case-sensitively).
pub const KINDS: &[&str] = &["DNS", "IP", "email", "URI", "RID", "dirName", "otherName"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AltName {
    /// One of `KINDS`.
    pub kind: String,
    /// The key as written (`DNS.3`, `DNS`, `DNS.two`).
    pub key: String,
    /// The number after the dot, 0 when there is none.
    pub index: u32,
    /// The decoded value (quotes, escapes, variables, continuations resolved).
    pub value: String,
    /// Repository-relative file, and its 1-based first and last physical line.
    pub file: String,
    pub line: usize,
    pub last_line: usize,
}

impl AltName {
    pub fn lines(&self) -> Vec<usize> {
        (self.line..=self.last_line).collect()
    }
}

/// One `key = value` as OpenSSL reads it.
#[derive(Debug, Clone)]
struct Entry {
    section: String,
    key: String,
    value: String,
    file: String,
    line: usize,
    last_line: usize,
}

#[derive(Debug, Clone)]
pub struct Cnf {
    pub alt_names: Vec<AltName>,
    /// The section holding the names (`alt_names` unless `@` says otherwise).
    pub section: String,
    /// 1-based line of its header in `openssl.cnf`, 0 when it has none there.
    pub section_line: usize,
    /// Where the section comes from when it is not `openssl.cnf` itself.
    pub section_file: String,
    /// Whether `[ req ]` (or the default section) names `distinguished_name`,
    /// without which `openssl req -config openssl.cnf` refuses the file.
    pub has_dn: bool,
    root: Option<PathBuf>,
}

struct Reader<'a> {
    root: Option<&'a Path>,
    entries: Vec<Entry>,
    /// (section, file, line) of every header.
    headers: Vec<(String, String, usize)>,
    vars: HashMap<(String, String), String>,
    dollarid: bool,
    includedir: Option<String>,
    depth: usize,
}

fn err(file: &str, line: usize, what: impl std::fmt::Display, fix: &str) -> Error {
    Diagnostic::error(what.to_string()).at(file, line).fix(fix)
}

/// Physical lines joined at a trailing `\` (not `\\`), the way OpenSSL does:
/// the backslash goes, the next line follows without a newline.
fn logical_lines(text: &str) -> Vec<(String, usize, usize)> {
    let mut out = vec![];
    let mut cur: Option<(String, usize)> = None;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let l = raw.trim_end_matches(['\n', '\r']);
        let (mut s, first) = cur.take().unwrap_or((String::new(), i + 1));
        s.push_str(l);
        let b = s.as_bytes();
        if b.last() == Some(&b'\\') && (b.len() < 2 || b[b.len() - 2] != b'\\') {
            s.pop();
            cur = Some((s, first));
        } else {
            out.push((s, first, i + 1));
        }
    }
    if let Some((s, first)) = cur {
        let last = text.split_inclusive('\n').count();
        out.push((s, first, last));
    }
    out
}

/// Cuts a `#` comment that is outside quotes and not escaped.
fn strip_comment(l: &str) -> &str {
    let b = l.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => return &l[..i],
            b'\\' => i += 2,
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    l
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Reader<'_> {
    fn lookup(&self, section: &str, name: &str) -> Option<String> {
        if section == "ENV" {
            return std::env::var(name).ok();
        }
        self.vars
            .get(&(section.to_string(), name.to_string()))
            .cloned()
    }

    /// OpenSSL's `str_copy`: quotes, escapes and variables of one value.
    fn decode(&self, v: &str, section: &str, file: &str, line: usize) -> Result<String, Error> {
        let c: Vec<char> = v.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < c.len() {
            let ch = c[i];
            if ch == '"' || ch == '\'' {
                i += 1;
                while i < c.len() && c[i] != ch {
                    if c[i] == '\\' && i + 1 < c.len() {
                        i += 1;
                    }
                    out.push(c[i]);
                    i += 1;
                }
                i += 1;
            } else if ch == '\\' {
                let Some(&n) = c.get(i + 1) else { break };
                out.push(match n {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'b' => '\u{8}',
                    o => o,
                });
                i += 2;
            } else if ch == '$' && (!self.dollarid || matches!(c.get(i + 1), Some('{' | '('))) {
                let close = match c.get(i + 1) {
                    Some('{') => Some('}'),
                    Some('(') => Some(')'),
                    _ => None,
                };
                let mut j = i + 1 + usize::from(close.is_some());
                let name_at = |j: usize| c[j..].iter().take_while(|c| is_name_char(**c)).count();
                let n = name_at(j);
                let mut sec = section.to_string();
                let mut name: String = c[j..j + n].iter().collect();
                j += n;
                if c.get(j) == Some(&':') && c.get(j + 1) == Some(&':') {
                    j += 2;
                    let n2 = name_at(j);
                    sec = name;
                    name = c[j..j + n2].iter().collect();
                    j += n2;
                }
                if let Some(cl) = close {
                    if c.get(j) != Some(&cl) {
                        return Err(err(
                            file,
                            line,
                            format!("variable reference in `{v}` has no closing `{cl}`"),
                            &format!("close it with `{cl}`"),
                        ));
                    }
                    j += 1;
                }
                let val = self.lookup(&sec, &name).or_else(|| {
                    (sec == section)
                        .then(|| self.lookup("default", &name))
                        .flatten()
                });
                let Some(val) = val else {
                    return Err(err(
                        file,
                        line,
                        format!("variable `{}{name}` in `{v}` has no value (OpenSSL refuses this file too)", if sec == section { String::new() } else { format!("{sec}::") }),
                        "define it above this line, or escape the dollar sign as `\\$`",
                    ));
                };
                out.push_str(&val);
                i = j;
            } else {
                out.push(ch);
                i += 1;
            }
        }
        Ok(out)
    }

    fn read(&mut self, text: &str, file: &str, section: &mut String) -> Result<(), Error> {
        for (raw, line, last_line) in logical_lines(text) {
            let l = strip_comment(&raw).trim();
            if l.is_empty() {
                continue;
            }
            if let Some(rest) = l.strip_prefix('[') {
                let rest = rest.trim_start();
                let n = rest
                    .find(|c: char| c.is_whitespace() || c == ']')
                    .unwrap_or(rest.len());
                if !rest[n..].trim_start().starts_with(']') {
                    return Err(err(
                        file,
                        line,
                        format!("`{l}`: missing `]` (OpenSSL refuses this file too)"),
                        "write the header as `[ name ]`",
                    ));
                }
                *section = rest[..n].to_string();
                self.headers.push((section.clone(), file.to_string(), line));
                continue;
            }
            let directive = |d: &str| {
                l.strip_prefix(d)
                    .filter(|r| r.starts_with(|c: char| c.is_whitespace() || c == '='))
                    .map(|r| r.trim_start().trim_start_matches('=').trim())
            };
            if let Some(p) = directive(".pragma") {
                let (name, val) = p
                    .split_once(':')
                    .map(|(a, b)| (a.trim(), b.trim()))
                    .unwrap_or((p, ""));
                let on = matches!(val, "on" | "true");
                match name {
                    "dollarid" => self.dollarid = on,
                    "includedir" => self.includedir = Some(self.decode(val, section, file, line)?),
                    _ => {} // `abspath` and pragmas of later versions change nothing we read.
                }
                continue;
            }
            if let Some(p) = directive(".include") {
                let p = self.decode(p, section, file, line)?;
                self.include(&p, file, line, section)?;
                continue;
            }
            let n = l
                .find(|c: char| c.is_whitespace() || c == '=')
                .unwrap_or(l.len());
            let (key, rest) = l.split_at(n);
            let Some(value) = rest.trim_start().strip_prefix('=') else {
                return Err(err(
                    file,
                    line,
                    format!("`{l}` is not a `key = value` line (OpenSSL refuses this file too)"),
                    "write `key = value`, or comment it out with `#`",
                ));
            };
            let (sec, key) = match key.split_once("::") {
                Some((s, k)) => (s.to_string(), k.to_string()),
                None => (section.clone(), key.to_string()),
            };
            let value = self.decode(value.trim(), &sec, file, line)?;
            self.vars.insert((sec.clone(), key.clone()), value.clone());
            self.entries.push(Entry {
                section: sec,
                key,
                value,
                file: file.to_string(),
                line,
                last_line,
            });
        }
        Ok(())
    }

    /// `.include`: a file, or every `*.cnf`/`*.conf` in a folder. Relative
    /// paths are relative to the repository (where `openssl req` runs).
    /// A missing file is skipped, as OpenSSL does after printing an error.
    fn include(
        &mut self,
        p: &str,
        file: &str,
        line: usize,
        section: &mut String,
    ) -> Result<(), Error> {
        let Some(root) = self.root else { return Ok(()) };
        if self.depth > 8 {
            return Err(err(
                file,
                line,
                format!("`.include {p}` nests more than 8 deep"),
                "remove the include cycle",
            ));
        }
        let joined = match &self.includedir {
            Some(d) if !Path::new(p).is_absolute() => Path::new(d).join(p),
            _ => PathBuf::from(p),
        };
        let full = root.join(&joined);
        let mut files = vec![];
        if full.is_dir() {
            for e in std::fs::read_dir(&full).into_iter().flatten().flatten() {
                let f = e.path();
                if f.extension().is_some_and(|x| x == "cnf" || x == "conf") {
                    files.push(f);
                }
            }
            files.sort();
        } else if full.is_file() {
            files.push(full);
        }
        for f in files {
            let rel = f
                .strip_prefix(root)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_else(|_| f.to_string_lossy().into_owned());
            let text = match f.strip_prefix(root) {
                Ok(r) => crate::model::files::read_text(root, &r.to_string_lossy())?,
                Err(_) => std::fs::read_to_string(&f).unwrap_or_default(),
            };
            self.depth += 1;
            self.read(&text, &rel, section)?;
            self.depth -= 1;
        }
        Ok(())
    }
}

impl Cnf {
    /// Reads `openssl.cnf` alone (includes are not followed).
    #[cfg(test)]
    pub fn parse(text: &str) -> Result<Cnf, Error> {
        Cnf::load(text, None)
    }

    /// Reads `openssl.cnf` and the files it includes, relative to `root`.
    pub fn load(text: &str, root: Option<&Path>) -> Result<Cnf, Error> {
        let mut r = Reader {
            root,
            entries: vec![],
            headers: vec![],
            vars: HashMap::new(),
            dollarid: false,
            includedir: None,
            depth: 0,
        };
        r.read(text, FILE, &mut "default".to_string())?;
        let get = |sec: &str, key: &str| {
            r.entries
                .iter()
                .rev()
                .find(|e| e.section == sec && e.key == key)
        };
        // Follow [req] -> extension section -> subjectAltName = @section.
        let mut section = "alt_names".to_string();
        'find: for ext_key in ["x509_extensions", "req_extensions"] {
            let Some(ext) = get("req", ext_key).or_else(|| get("default", ext_key)) else {
                continue;
            };
            let Some(san) = get(&ext.value, "subjectAltName") else {
                continue;
            };
            for item in san.value.split(',') {
                if let Some(s) = item.trim().strip_prefix('@') {
                    if !r.headers.iter().any(|(h, ..)| h == s) {
                        return Err(err(&san.file, san.line, format!("`subjectAltName` points at `[ {s} ]`, which does not exist (OpenSSL refuses this)"), &format!("add a `[ {s} ]` section with `DNS.1 = localhost`")));
                    }
                    section = s.to_string();
                    break 'find;
                }
            }
        }
        let mut alt_names = vec![];
        for e in r.entries.iter().filter(|e| e.section == section) {
            let (kind, idx) = e.key.split_once('.').unwrap_or((&e.key, ""));
            if !KINDS.contains(&kind) {
                return Err(err(
                    &e.file,
                    e.line,
                    format!("`{}` under [ {section} ] is not a kind OpenSSL knows (it refuses the file too)", e.key),
                    "write `DNS.<n> = <name>`, or IP, email, URI, RID, dirName, otherName (case matters)",
                ));
            }
            alt_names.push(AltName {
                kind: kind.to_string(),
                key: e.key.clone(),
                index: idx.parse().unwrap_or(0),
                value: e.value.clone(),
                file: e.file.clone(),
                line: e.line,
                last_line: e.last_line,
            });
        }
        let header = r
            .headers
            .iter()
            .find(|(h, f, _)| *h == section && f == FILE)
            .or_else(|| r.headers.iter().find(|(h, ..)| *h == section));
        let (section_file, section_line) = match header {
            Some((_, f, l)) if f == FILE => (FILE.to_string(), *l),
            Some((_, f, _)) => (f.clone(), 0),
            None => (FILE.to_string(), 0),
        };
        let has_dn = get("req", "distinguished_name")
            .or_else(|| get("default", "distinguished_name"))
            .is_some();
        Ok(Cnf {
            alt_names,
            section,
            section_line,
            section_file,
            has_dn,
            root: root.map(Path::to_path_buf),
        })
    }

    /// What `openssl req -config openssl.cnf` needs before it reads anything
    /// else: the repository's certificates are made from this file.
    pub fn usable(self) -> Result<Cnf, Error> {
        if !self.has_dn {
            return Err(err(
                FILE,
                1,
                format!("no `distinguished_name` under `[ req ]`: `openssl req -config {FILE}` refuses this file"),
                "add `[ req ]` with `distinguished_name = dn`, and `[ dn ]` with `CN = localhost`",
            ));
        }
        Ok(self)
    }

    /// Reads an edited `openssl.cnf` with the same includes.
    pub fn reparse(&self, text: &str) -> Result<Cnf, Error> {
        Cnf::load(text, self.root.as_deref())
    }

    pub fn dns(&self, name: &str) -> Option<&AltName> {
        self.alt_names
            .iter()
            .find(|a| a.kind == "DNS" && a.value == name)
    }

    pub fn next_dns_index(&self) -> u32 {
        self.alt_names
            .iter()
            .filter(|a| a.kind == "DNS")
            .map(|a| a.index)
            .max()
            .unwrap_or(0)
            + 1
    }

    /// The line after which a new name goes: the last name of the section
    /// in `openssl.cnf`, or its header. An error when the names live
    /// elsewhere (an included file) or nowhere.
    pub fn insert_after(&self) -> Result<usize, Error> {
        if self.section_line == 0 {
            let in_file = self.section_file == FILE;
            return Err(err(
                &self.section_file,
                1,
                if in_file {
                    format!("no `[ {} ]` section to add names to", self.section)
                } else {
                    format!("the `[ {} ]` section is in an included file, not in openssl.cnf where names are added", self.section)
                },
                &if in_file {
                    format!("add `[ {} ]` with `DNS.1 = localhost` to openssl.cnf, and `subjectAltName = @{}` to the extension section", self.section, self.section)
                } else {
                    format!("add the `DNS.N = <service>` line to {} yourself, or move the section into openssl.cnf", self.section_file)
                },
            ));
        }
        Ok(self
            .alt_names
            .iter()
            .filter(|a| a.file == FILE)
            .map(|a| a.last_line)
            .max()
            .unwrap_or(self.section_line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_line() {
        let e = Cnf::parse("[ alt_names ]\ndns.1 = a\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("openssl.cnf:2") && e.contains("dns.1"), "{e}");
        let e = Cnf::parse("[ req\n").unwrap_err().to_string();
        assert!(
            e.contains("openssl.cnf:1") && e.contains("missing `]`"),
            "{e}"
        );
        let e = Cnf::parse("a = 1\n[ alt_names ]\nDNS.1 = $b\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("openssl.cnf:3") && e.contains("`b`"), "{e}");
        // No section is read fine; only adding a name is refused.
        let e = Cnf::parse("[ req ]\n")
            .unwrap()
            .insert_after()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no `[ alt_names ]`") || e.contains("[ alt_names ]"),
            "{e}"
        );
    }

    /// Point 7: the grammar of `man 5 config`, each value as OpenSSL decodes it.
    #[test]
    fn reads_the_real_grammar() {
        let src = ".pragma dollarid:on\n.include other.cnf\nbase = ex\n[req]\nx509_extensions = ext\n[ext]\nsubjectAltName = DNS:x, @san\n[ alt_names ]\nDNS.1 = decoy\n[ san ]\nDNS = plain\nDNS.1 = long\\\nname # c\nDNS.2 = \"q # not a comment\"\nDNS.3 = ${base}.local\nDNS.4 = a$b\nDNS.5 = esc\\#aped\nIP.1 = 127.0.0.1\nemail.1 = ops@example.com\nURI.1 = https://x/\nRID.1 = 1.2.3.4\ndirName.1 = dir_sect\notherName.1 = 1.2.3.4;UTF8:x\n";
        let c = Cnf::parse(src).unwrap();
        assert_eq!(c.section, "san");
        let got: Vec<(&str, &str, usize, usize)> = c
            .alt_names
            .iter()
            .map(|a| (a.key.as_str(), a.value.as_str(), a.line, a.last_line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("DNS", "plain", 11, 11),
                ("DNS.1", "longname", 12, 13),
                ("DNS.2", "q # not a comment", 14, 14),
                ("DNS.3", "ex.local", 15, 15),
                ("DNS.4", "a$b", 16, 16),
                ("DNS.5", "esc#aped", 17, 17),
                ("IP.1", "127.0.0.1", 18, 18),
                ("email.1", "ops@example.com", 19, 19),
                ("URI.1", "https://x/", 20, 20),
                ("RID.1", "1.2.3.4", 21, 21),
                ("dirName.1", "dir_sect", 22, 22),
                ("otherName.1", "1.2.3.4;UTF8:x", 23, 23),
            ]
        );
        assert_eq!(c.next_dns_index(), 6);
        // Without dollarid, `$b` is a variable and must exist.
        assert!(Cnf::parse("[alt_names]\nDNS.1 = a$b\n").is_err());
        assert_eq!(
            Cnf::parse("b = B\n[alt_names]\nDNS.1 = a$b\n")
                .unwrap()
                .alt_names[0]
                .value,
            "aB"
        );
        assert_eq!(
            Cnf::parse("[x]\nb = B\n[alt_names]\nDNS.1 = $x::b-$(x::b)\n")
                .unwrap()
                .alt_names[0]
                .value,
            "B-B"
        );
    }
}
