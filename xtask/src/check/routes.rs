//! Rules on what is derived from the compose entries: NGINX endpoints and
//! everything `sync` writes.

use crate::diag::{Diagnostic, Error, Label, Rule};
use crate::model::repo::Repo;
use crate::plan::sync;

/// MR014: every public path has an NGINX endpoint that proxies to the
/// service's container name and port: some location for the path reaches
/// it, directly or through an `upstream`'s servers.
pub fn nginx_endpoint(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    for s in repo.backend() {
        let Some(public) = s.public_path() else {
            continue;
        };
        // A frontend's page is files; its API is what proxies to it.
        let api;
        let path = if s.frontend().is_some() {
            api = crate::edit::nginx::api_path(public);
            api.as_str()
        } else {
            public
        };
        let port = s.port().unwrap_or(0);
        let routes: Vec<_> = repo
            .nginx
            .routes
            .iter()
            .filter(|r| r.path == path && r.modifier != "~" && r.modifier != "~*")
            .collect();
        if routes
            .iter()
            .any(|r| r.targets.iter().any(|(h, p)| h == &s.name && *p == port))
        {
            continue;
        }
        match routes.first() {
            None => out.push(Diagnostic::finding(
                Rule::NginxEndpoint,
                &repo.compose_file,
                s.line,
                format!("public path `{path}` of `{}` has no NGINX location", s.name),
                "run `cargo xtask sync`",
            )),
            Some(r) => {
                let to = r
                    .targets
                    .iter()
                    .map(|(h, p)| format!("{h}:{p}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let svc = Label::at(
                    &repo.compose_file,
                    s.line,
                    format!("`{}` has the public path `{public}`", s.name),
                );
                out.push(Diagnostic::finding(
                    Rule::NginxEndpoint,
                    &r.file,
                    r.line,
                    format!("location `{path}` proxies to {to}, but `{}` is reached at {}:{port}", s.name, s.name),
                    "point it at the service's container name and port (`cargo xtask sync` rewrites generated endpoints)",
                ).label(svc));
            }
        }
    }
    Ok(())
}

/// MR015: `cargo xtask sync --check` is clean. The files were read; a sync
/// that cannot be planned (say, an https service and no names section in
/// openssl.cnf to add it to) is this finding, with sync's own reason and
/// fix, not a failure of check.
pub fn sync(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    match sync::plan(repo) {
        Ok(plan) => {
            for p in plan.paths() {
                out.push(Diagnostic::finding(
                    Rule::Sync,
                    &p,
                    0,
                    "out of date with the compose file",
                    "run `cargo xtask sync` (see `cargo xtask sync --check` for the diff)",
                ));
            }
        }
        Err(e) => out.push(Diagnostic::finding(
            Rule::Sync,
            &e.file,
            e.line,
            format!(
                "`cargo xtask sync` cannot bring this up to date: {}",
                e.message
            ),
            e.fix.unwrap_or_default(),
        )),
    }
    Ok(())
}
