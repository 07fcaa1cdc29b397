//! Rules on the services with a web page (`add-service --frontend`): the
//! page's files, and the NGINX routes and mount that serve them.

use crate::diag::{Diagnostic, Error, Rule};
use crate::edit::nginx as endpoint;
use crate::model::nginx::{self, Directive};
use crate::model::repo::{Repo, SERVICES_DIR};
use crate::plan::scaffold::FRONTEND_DIR;

/// MR021: a frontend service's `Frontend/` has the page, `index.html`.
pub fn frontend_files(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    for s in repo.backend().filter(|s| s.frontend().is_some()) {
        let rel = format!("{SERVICES_DIR}/{}/{FRONTEND_DIR}/index.html", s.name);
        let Ok(path) = crate::model::names::join(&repo.root, &rel) else {
            continue;
        };
        if !path.is_file() {
            out.push(Diagnostic::finding(
                Rule::FrontendFiles,
                &repo.compose_file,
                s.line,
                format!("`{}` has a page (label {}) but no {rel}", s.name, crate::model::compose::LABEL_FRONTEND),
                format!("add {rel} (`cargo xtask add-service --frontend` writes one), or drop the label"),
            ));
        }
    }
    Ok(())
}

/// The `location` blocks of a file, nested ones included: (modifier, path, line).
fn locations(ds: &[Directive], out: &mut Vec<(String, String, usize)>) {
    for d in ds {
        if d.args[0] == "location" && d.args.len() >= 2 {
            let m = if d.args.len() > 2 {
                d.args[1].clone()
            } else {
                String::new()
            };
            out.push((m, d.args.last().unwrap().clone(), d.line));
        }
        if let Some(b) = &d.block {
            locations(b, out);
        }
    }
}

/// MR022: a frontend service's NGINX routes are there (its page at the
/// public path, the redirect from the path without its slash; its API is
/// MR014's) and NGINX's compose entry mounts its `Frontend/` where the
/// endpoint's `root` looks.
pub fn frontend_routes(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    let cf = repo.compose_file.clone();
    let pages: Vec<_> = repo.backend().filter(|s| s.frontend().is_some()).collect();
    if pages.is_empty() {
        return Ok(());
    }
    // Every location of every file, nested ones too, read once.
    let mut found = vec![];
    for f in nginx::conf_files(&repo.root) {
        let text = crate::model::repo::read_text(&repo.root, &f)?;
        if let Ok(ds) = nginx::parse(&text, &f) {
            locations(&ds, &mut found);
        }
    }
    for s in pages {
        let path = s.public_path().unwrap_or("/");
        let bare = path.trim_end_matches('/');
        let file = nginx::location_file(&s.name);
        for (want, modifier, what) in [
            (path, "", "its page"),
            (bare, "=", "the redirect to its page"),
        ] {
            if !found
                .iter()
                .any(|(m, p, _)| p == want && (m == modifier || (modifier.is_empty() && m == "^~")))
            {
                out.push(Diagnostic::finding(
                    Rule::FrontendRoutes,
                    &repo.compose_file,
                    s.line,
                    format!("`{}` has a page at `{path}` but NGINX has no `location {modifier}{}{want}` ({what})", s.name, if modifier.is_empty() { "" } else { " " }),
                    format!("run `cargo xtask sync` (it writes {file})"),
                ));
            }
        }
        let mount = endpoint::frontend_mount(&s.name, path);
        let (source, target) = {
            let mut it = mount.rsplitn(3, ':').skip(1);
            let t = it.next().unwrap_or("").to_string();
            (it.next().unwrap_or("").to_string(), t)
        };
        let norm = |p: &str| p.trim_start_matches("./").trim_end_matches('/').to_string();
        match repo.compose.service("nginx") {
            None => out.push(Diagnostic::finding(
                Rule::FrontendRoutes,
                &cf,
                s.line,
                format!(
                    "`{}` has a page, and there is no `nginx` service to serve it",
                    s.name
                ),
                "add the `nginx` service (this repository's compose file shows one)",
            )),
            Some(n)
                if !n.volumes.iter().any(|m| {
                    !m.named && norm(&m.source) == norm(&source) && m.target == target
                }) =>
            {
                out.push(Diagnostic::finding(
                    Rule::FrontendRoutes,
                    &cf,
                    n.line,
                    format!(
                        "NGINX does not mount the page of `{}` ({source} at {target})",
                        s.name
                    ),
                    format!("add `- {mount}` to the `volumes:` of `nginx`"),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}
