//! Rules on the data layer: each service its own Postgres role and Redis
//! user (MR018), and no credential in a committed file (MR019).

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Error, Rule};
use crate::model::compose;
use crate::model::files::read_bounded;
use crate::model::repo::Repo;
use crate::model::secrets::is_secret_name;
use crate::plan::datalayer::{uses_pg, uses_redis};

/// (file, line) of `key=` in the first env file of `s` that sets it.
fn env_line(repo: &Repo, s: &compose::Service, key: &str) -> (String, usize) {
    for (f, _) in &s.env_file {
        let Ok(b) = read_bounded(&repo.root.join(f)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&b);
        if let Some(i) = text.lines().position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        }) {
            return (f.clone(), i + 1);
        }
    }
    (repo.compose_file.clone(), s.line)
}

/// MR018: every service that depends on postgres logs in as its own role
/// (PGUSER = its name, as plan/datalayer.rs creates it), every one that
/// depends on redis as its own ACL user; no two share one.
pub fn own_data_users(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    for (store, key, default, uses) in [
        (
            "Postgres role",
            "PGUSER",
            "app",
            uses_pg as fn(&compose::Service) -> bool,
        ),
        ("Redis user", "REDIS_USERNAME", "default", uses_redis),
    ] {
        let mut by_user: BTreeMap<String, Vec<&compose::Service>> = BTreeMap::new();
        for s in repo.compose.services.iter().filter(|s| uses(s)) {
            let env: BTreeMap<String, String> = repo.service_env(s).into_iter().collect();
            let user = env.get(key).cloned().unwrap_or_else(|| default.to_string());
            by_user.entry(user).or_default().push(s);
        }
        for (user, svcs) in &by_user {
            if svcs.len() > 1 {
                let names: Vec<&str> = svcs.iter().map(|s| s.name.as_str()).collect();
                let (f, l) = env_line(repo, svcs[1], key);
                out.push(Diagnostic::finding(Rule::OwnDataUsers, &f, l, format!("services {} share the {store} `{user}`", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" and ")), format!("set {key}=<service name> in each one's service.env; each gets its own from `cargo xtask sync`")));
            }
            for s in svcs.iter().filter(|s| s.name != *user) {
                if svcs.len() > 1 && svcs[1].name == s.name {
                    continue;
                }
                let (f, l) = env_line(repo, s, key);
                out.push(Diagnostic::finding(
                    Rule::OwnDataUsers,
                    &f,
                    l,
                    format!(
                        "service `{}` uses the {store} `{user}`, not its own `{}`",
                        s.name, s.name
                    ),
                    format!("set {key}={}", s.name),
                ));
            }
        }
    }
    Ok(())
}

/// A literal value (not `${VAR}` without a default, not a `<placeholder>`).
fn literal(v: &str) -> Option<&str> {
    let v = v.trim().trim_matches('"').trim_matches('\'');
    if v.is_empty() || v.starts_with('<') {
        return None;
    }
    if let Some(inner) = v.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        // `${X:-default}`: the default is written in the file.
        return inner
            .split_once(":-")
            .or_else(|| inner.split_once('-'))
            .map(|(_, d)| d)
            .filter(|d| !d.is_empty() && !d.starts_with('<'));
    }
    Some(v)
}

/// MR019: no file git tracks sets a secret-named variable (PASSWORD,
/// SECRET, TOKEN, ...) to a literal: env files (`*.env`, `.env*`) and the
/// compose file. The test fixtures under xtask/tests/ are not the stack.
pub fn committed_credentials(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    let Ok(o) = std::process::Command::new("git")
        .current_dir(&repo.root)
        .args(["ls-files", "-z"])
        .output()
    else {
        return Ok(());
    };
    if !o.status.success() {
        return Ok(()); // not a git checkout: nothing is committed
    }
    for f in o
        .stdout
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
    {
        let base = f.rsplit('/').next().unwrap_or(&f);
        let env_like = base.ends_with(".env") || base.starts_with(".env");
        // The repository's compose file (whichever name Compose found) and
        // its override file, not one fixed name.
        let compose_like =
            f == repo.compose_file || repo.override_file.as_ref().is_some_and(|(o, _)| *o == f);
        if f.starts_with("xtask/tests/") || !(env_like || compose_like) {
            continue;
        }
        let Ok(b) = read_bounded(&repo.root.join(&f)) else {
            continue;
        };
        for (i, line) in String::from_utf8_lossy(&b).lines().enumerate() {
            let l = line
                .trim_start()
                .trim_start_matches("- ")
                .trim_start_matches("export ");
            if l.starts_with('#') {
                continue;
            }
            let kv = if env_like {
                l.split_once('=')
            } else {
                l.split_once(':').or_else(|| l.split_once('='))
            };
            let Some((k, v)) = kv else { continue };
            let v = v.split(" #").next().unwrap_or(v);
            let k_is_var = !k.trim().is_empty()
                && k.trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if k_is_var && is_secret_name(k.trim()) && literal(v).is_some() {
                out.push(Diagnostic::finding(Rule::CommittedCredentials, &f, i + 1, format!("`{}` is set to a literal value in a committed file", k.trim()), "move it to the service's secrets/<service>.env (made per checkout by `cargo xtask certs`, git-ignored) and leave the variable out here"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn literals_and_placeholders() {
        use super::literal;
        assert_eq!(literal("app-dev-password"), Some("app-dev-password"));
        assert_eq!(literal("${PW}"), None);
        assert_eq!(literal("${PW:-secret}"), Some("secret"));
        assert_eq!(literal("<48 hex digits>"), None);
        assert_eq!(literal("\"\""), None);
    }
}
