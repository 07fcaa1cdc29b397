//! Rules on what is derived from the compose entries: NGINX endpoints and
//! everything `sync` writes.

use crate::diag::{Diagnostic, Error, Rule};
use crate::model::compose;
use crate::model::repo::Repo;
use crate::plan::sync;

/// MR014: every public path has an NGINX endpoint that proxies to the
/// service's container name and port.
pub fn nginx_endpoint(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    for s in repo.backend() {
        let Some(path) = s.public_path() else { continue };
        match repo.routes.iter().find(|r| r.path == path) {
            None => out.push(Diagnostic::finding(Rule::NginxEndpoint, compose::FILE, s.line, format!("public path `{path}` of `{}` has no NGINX location", s.name), "run `cargo xtask sync`")),
            Some(r) => {
                let port = s.port().unwrap_or(0);
                if r.host != s.name || r.port != port {
                    out.push(Diagnostic::finding(
                        Rule::NginxEndpoint,
                        &r.file,
                        r.line,
                        format!("location `{path}` proxies to {}:{}, but `{}` is reached at {}:{port}", r.host, r.port, s.name, s.name),
                        "point it at the service's container name and port (`cargo xtask sync` rewrites generated endpoints)",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// MR015: `cargo xtask sync --check` is clean.
pub fn sync(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    for p in sync::plan(repo)?.paths() {
        out.push(Diagnostic::finding(Rule::Sync, &p, 0, "out of date with the compose file", "run `cargo xtask sync` (see `cargo xtask sync --check` for the diff)"));
    }
    Ok(())
}
