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
