//! The one gate for names that become paths, compose keys, NGINX
//! directives or certificate names, whatever their source (an argument, a
//! compose key or label, an openssl.cnf line). Small pure functions, called
//! where each name is used; each returns what is wrong, the caller adds
//! file:line and the fix.
//!
//! Grammars (documented here and in `--help` errors):
//! - service: a DNS label, `[a-z0-9-]{1,63}`, starting with a letter (so
//!   never a number), not ending with `-`, and not a plain scalar YAML 1.1 or 1.2 would read as anything but
//!   a string (`true`, `no`, `~`, `1e3`, `.inf`...): compose keys and
//!   container names are written unquoted.
//! - public path: `^/([A-Za-z0-9._~-]+/)*$` without `.` or `..` segments:
//!   no escapes, whitespace, control characters or `{};$"'\#`, so it can be
//!   written into an NGINX `location` and a compose label as is. Checked on
//!   the decoded value (a compose label after YAML decoding).
//! - volume name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, not a YAML word.
//! - container path: absolute, no control characters, no `:`.
//! - repository path: relative, no `..`, no NUL; `join` is the only way a
//!   name becomes a path under the repository.

use std::path::{Component, Path, PathBuf};

/// What YAML 1.1 or 1.2 reads as a bool, null, number or special float
/// when unquoted. Checked case-insensitively.
pub fn yaml_word(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    const WORDS: &[&str] = &[
        "true", "false", "null", "yes", "no", "on", "off", "y", "n", "~", ".inf", "-.inf", "+.inf",
        ".nan", "inf", "nan",
    ];
    if l.is_empty() || WORDS.contains(&l.as_str()) {
        return true;
    }
    let t = l.trim_start_matches(['+', '-']).replace('_', "");
    // Integers in any base YAML 1.1 knows, floats, sexagesimal (1:20).
    (t.starts_with(|c: char| c.is_ascii_digit() || c == '.') && t.parse::<f64>().is_ok())
        || (t.starts_with("0x") && t.len() > 2 && t[2..].chars().all(|c| c.is_ascii_hexdigit()))
        || (t.starts_with("0o") && t.len() > 2 && t[2..].chars().all(|c| c.is_digit(8)))
        || (t.starts_with("0b") && t.len() > 2 && t[2..].chars().all(|c| c == '0' || c == '1'))
        || (!t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_digit() || c == ':' || c == '.')
            && t.starts_with(|c: char| c.is_ascii_digit()))
}

pub fn service(name: &str) -> Result<(), String> {
    let label = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    if !label {
        return Err(format!(
            "{:?} is not a valid service name: it must be a DNS label (lowercase letters, digits and '-', starting with a letter, not ending with '-', 1-63 characters)",
            name
        ));
    }
    if yaml_word(name) {
        return Err(format!("`{name}` is not a valid service name: unquoted YAML reads it as a bool, null or number"));
    }
    Ok(())
}

/// A host name for a certificate: dot-separated DNS labels (`*` allowed as
/// the first label) or an IP address.
pub fn host(name: &str) -> Result<(), String> {
    let ok = name.len() <= 253
        && !name.is_empty()
        && name.split('.').enumerate().all(|(i, l)| {
            (i == 0 && l == "*")
                || (!l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
        });
    if ok || name.parse::<std::net::IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a host name (dot-separated letters, digits and '-')"
        ))
    }
}

pub fn public_path(p: &str) -> Result<(), String> {
    let bad = || {
        Err(format!("{p:?} is not a public path: it must look like `/api/billing/` (segments of letters, digits and `._~-`, each ending in `/`, no `.` or `..`)"))
    };
    let Some(rest) = p.strip_prefix('/') else {
        return bad();
    };
    if !(rest.is_empty() || rest.ends_with('/')) {
        return bad();
    }
    for seg in rest.split_terminator('/') {
        if seg.is_empty()
            || seg == "."
            || seg == ".."
            || !seg
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._~-".contains(&c))
        {
            return bad();
        }
    }
    Ok(())
}

pub fn volume(name: &str) -> Result<(), String> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c));
    if !ok {
        return Err(format!(
            "{name:?} is not a volume name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`)"
        ));
    }
    if yaml_word(name) {
        return Err(format!(
            "`{name}` is not a volume name: unquoted YAML reads it as a bool, null or number"
        ));
    }
    Ok(())
}

pub fn container_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') || p.contains(':') || p.chars().any(|c| c.is_control()) {
        return Err(format!(
            "{p:?} is not an absolute container path without control characters or `:`"
        ));
    }
    Ok(())
}

/// The repository path `rel` under `root`, refused if it could leave it:
/// absolute, `..`, NUL, or empty. (Symlinks inside the repository are the
/// transaction's business: it refuses writes through links that leave.)
pub fn join(root: &Path, rel: &str) -> Result<PathBuf, String> {
    if rel.is_empty() || rel.contains('\0') {
        return Err(format!("{rel:?} is not a repository path"));
    }
    let p = Path::new(rel);
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err(format!("`{rel}` leaves the repository (absolute or `..`)")),
        }
    }
    Ok(root.join(p))
}

// --- the repository's own names ------------------------------------------

use crate::model::compose::LABEL_PUBLIC;
/// A compose key of a service this tool does not manage: anything Compose
/// takes, except what could act as a path or break a line (a separator,
/// a leading dot, a control character).
pub fn plain_key(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.starts_with('.')
        || name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(format!(
            "`{}` could act as a path: no `/`, `\\`, leading `.` or control characters",
            name.escape_debug()
        ));
    }
    Ok(())
}

use crate::diag::{Diagnostic, Error};
use crate::model::repo::Repo;

/// A frontend's folder, as its label names it: only `Frontend` (the one
/// `add-service --frontend` writes), and never a link that leaves the
/// repository (NGINX's bind mount and the exports would follow it).
/// None when it is fine (or missing: `check` reports that as MR021).
pub fn frontend_dir(root: &std::path::Path, service: &str, dir: &str) -> Option<String> {
    let want = crate::plan::scaffold::FRONTEND_DIR;
    if dir != want {
        return Some(format!("`{}` is not `{want}`", dir.escape_debug()));
    }
    let rel = format!("{}/{service}/{want}", crate::model::repo::SERVICES_DIR);
    let path = join(root, &rel).ok()?;
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if meta.file_type().is_symlink() {
        let inside = match (path.canonicalize(), root.canonicalize()) {
            (Ok(t), Ok(r)) => t.starts_with(r),
            _ => false,
        };
        if !inside {
            return Some(format!(
                "{rel} is a symlink that leaves the repository (or dangles)"
            ));
        }
    }
    None
}

/// A name read from a file that the gate refuses: where, what, the fix.
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub msg: String,
    pub fix: String,
}

/// The line of `key:` inside the block of a service that starts at `from`
/// (the typed view keeps no line per label).
fn key_line(text: &str, from: usize, key: &str) -> usize {
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| {
            l.trim_start()
                .trim_start_matches(['"', '\''])
                .starts_with(key)
        })
        .map(|(i, _)| i + 1)
        .unwrap_or(from)
}

impl Repo {
    /// Every name from the compose file and openssl.cnf that would become
    /// a path, a compose key, an NGINX directive or a certificate name,
    /// checked against the grammars above. Writers refuse on the first
    /// (`refuse_untrusted`); `check` reports each one.
    pub fn name_problems(&self) -> Vec<Problem> {
        let mut out = vec![];
        let cf = self.compose_file.as_str();
        let mut p = |file: &str, line: usize, msg: String, fix: &str| {
            out.push(Problem {
                file: file.into(),
                line,
                msg,
                fix: fix.into(),
            })
        };
        for s in &self.compose.services {
            // A service this tool manages (built from src/backend_services/,
            // served over https or public) has its name turned into a folder,
            // certificate paths, a DNS entry and an NGINX upstream: a DNS
            // label. Any other service (the user's traefik, a `from_env`
            // helper) only needs a key that can never act as a path; its own
            // bind mounts are the user's business, as in Compose.
            let managed = s.is_backend() || s.https() || s.public_path().is_some();
            if let Err(e) = if managed {
                service(&s.name)
            } else {
                plain_key(&s.name)
            } {
                p(cf, s.line, format!("service key: {e}"), "rename the service to a DNS label such as `billing` (its folder, container_name and certificates follow the name)");
            }
            if let Some(pp) = s.public_path() {
                if let Err(e) = public_path(pp) {
                    p(
                        cf,
                        key_line(&self.compose_text, s.line, LABEL_PUBLIC),
                        format!(
                            "service `{}`: label {LABEL_PUBLIC}: {e}",
                            s.name.escape_debug()
                        ),
                        "write the public path as plain `/segment/` parts",
                    );
                }
            }
            if let Some(dir) = s.frontend() {
                let line = key_line(
                    &self.compose_text,
                    s.line,
                    crate::model::compose::LABEL_FRONTEND,
                );
                if let Some(e) = frontend_dir(&self.root, &s.name, dir) {
                    p(cf, line, format!("service `{}`: label {}: {e}", s.name.escape_debug(), crate::model::compose::LABEL_FRONTEND), "keep the page's files in a real folder src/backend_services/<name>/Frontend/ (label value `Frontend`)");
                }
            }
            for (f, l) in &s.env_file {
                match join(&self.root, f) {
                    Err(e) => p(cf, *l, format!("env_file: {e}"), "keep env files inside the repository, e.g. src/backend_services/<name>/service.env"),
                    Ok(path) => {
                        if let Err(e) = crate::model::repo::check_file(&path) {
                            p(cf, *l, format!("env_file `{f}`: {e}"), "make it a regular text file under the size limit");
                        }
                    }
                }
            }
            if let Some(b) = &s.build {
                let df = format!("{}/{}", b.context.trim_end_matches('/'), b.dockerfile);
                if let Err(e) = join(&self.root, &b.context).and_then(|_| join(&self.root, &df)) {
                    p(
                        cf,
                        b.line,
                        format!("service `{}`: build: {e}", s.name.escape_debug()),
                        "build from a folder inside the repository (`context: ./src`)",
                    );
                }
            }
            for m in s.volumes.iter().filter(|_| managed) {
                let r = if m.named {
                    volume(&m.source)
                } else if m.source.starts_with('.') {
                    join(&self.root, &m.source).map(|_| ())
                } else {
                    Err(format!(
                        "`{}` is neither a named volume nor a path inside the repository",
                        m.source
                    ))
                };
                if let Err(e) = r.and_then(|_| container_path(&m.target)) {
                    p(cf, m.line, format!("service `{}`: volume: {e}", s.name.escape_debug()), "mount a named volume (`data:/var/lib/x`) or a `./path` inside the repository");
                }
            }
        }
        for a in &self.cnf.alt_names {
            let r = match a.kind.as_str() {
                "DNS" => host(&a.value),
                "IP" => a
                    .value
                    .parse::<std::net::IpAddr>()
                    .map(|_| ())
                    .map_err(|_| format!("{:?} is not an IP address", a.value)),
                // email, URI, RID, dirName, otherName are kept as written and
                // never become a name, path or directive: only control
                // characters are refused (they would reach a log line).
                _ if a.value.chars().any(char::is_control) => {
                    Err(format!("{:?} holds a control character", a.value))
                }
                _ => Ok(()),
            };
            if let Err(e) = r {
                p(
                    &a.file,
                    a.line,
                    format!("[alt_names] {}.{}: {e}", a.kind, a.index),
                    "write a host name or an IP address",
                );
            }
        }
        out
    }

    /// Refuses (exit 2, file:line and the fix) a repository whose files
    /// name something the gate refuses. Every writing command calls it
    /// right after loading the model.
    pub fn refuse_untrusted(&self) -> Result<(), Error> {
        match self.name_problems().into_iter().next() {
            None => Ok(()),
            Some(p) => Err(Diagnostic::error(format!(
                "{}:{}: {} (nothing was written)",
                p.file, p.line, p.msg
            ))
            .fix(p.fix)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn yaml_words_are_not_names() {
        for w in [
            "true", "False", "null", "yes", "on", "off", "no", "y", "n", "~", "1", "0x1", "1e3",
            ".inf", ".nan", "0o7", "1_000", "1:20", "-1",
        ] {
            assert!(yaml_word(w), "{w}");
            assert!(service(w).is_err(), "{w}");
        }
        assert!(service("1a").is_err(), "a leading digit");
        for n in ["billing", "user-events", "a1", "x"] {
            assert!(!yaml_word(n), "{n}");
            assert!(service(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn public_paths() {
        for ok in ["/", "/api/", "/api/billing/", "/a.b_c~d-e/"] {
            assert!(public_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "api/",
            "/api",
            "/a/../b/",
            "/./",
            "//",
            "/a b/",
            "/a\x01b/",
            "/a/\\x20/",
            "/a/{/",
            "/a;/",
            "/a%20/",
            "/a/\n/",
        ] {
            assert!(public_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn join_refuses_leaving() {
        let r = Path::new("/repo");
        assert_eq!(
            join(r, "src/backend_services/a").unwrap(),
            Path::new("/repo/src/backend_services/a")
        );
        for bad in ["../x", "a/../../x", "/etc", "a\0b", ""] {
            assert!(join(r, bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn accepted_names_are_safe_everywhere(s in ".{0,70}") {
            if service(&s).is_ok() {
                prop_assert!(join(Path::new("/r"), &s).is_ok());
                prop_assert!(host(&s).is_ok());
                prop_assert!(s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
            }
            if public_path(&s).is_ok() {
                let forbidden = "{};$\"'\\#";
                prop_assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control() || forbidden.contains(c)));
                prop_assert!(!s.split('/').any(|seg| seg == ".."));
            }
            if let Ok(p) = join(Path::new("/r"), &s) {
                prop_assert!(p.starts_with("/r"));
                prop_assert!(!p.components().any(|c| c == Component::ParentDir));
            }
        }
    }
}
