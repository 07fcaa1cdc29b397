//! `remove-service`: the exact reverse of `add-service`, planned the same way.

use std::path::Path;

use crate::plan::certs;
use crate::model::cnf::{self, Cnf};
use crate::edit::compose as edit_compose;
use crate::model::compose::{self};
use crate::model::nginx;
use crate::model::repo::{Repo, SERVICES_DIR};
use crate::plan::txn::{self, Txn};
use crate::edit;
use crate::diag::{did_you_mean, Diagnostic, Error};


pub fn run(root: &Path, name: &str, keep_files: bool, dry_run: bool) -> Result<(), Error> {
    let _lock = if dry_run { txn::lock_shared(root)? } else { txn::lock(root)? };
    let repo = Repo::load(root)?;
    repo.refuse_untrusted()?;
    let Some(svc) = repo.compose.service(name) else {
        let names: Vec<&str> = repo.compose.services.iter().map(|s| s.name.as_str()).collect();
        let fix = match did_you_mean(name, &names) {
            Some(near) => format!("did you mean `{near}`? (`cargo xtask list` shows the services)"),
            None => "`cargo xtask list` shows the services".to_string(),
        };
        return Err(Diagnostic::error(format!("no service `{name}` in {}", compose::FILE)).fix(fix));
    };
    let dependents: Vec<&str> = repo.compose.services.iter().filter(|s| s.depends(name)).map(|s| s.name.as_str()).collect();
    if !dependents.is_empty() {
        return Err(Diagnostic::error(format!("`{name}` is a dependency of: {}", dependents.join(", "))).fix("remove it from their depends_on first"));
    }
    let mut t = Txn::new(&repo.root);
    let mut text = edit_compose::remove_entry(&repo.compose_text, "services", name, false)
        .ok_or_else(|| Diagnostic::error(format!("{}:{}: cannot find the block of `{name}` to remove", compose::FILE, svc.line)))?;
    for m in svc.volumes.iter().filter(|m| m.named) {
        let shared = repo.compose.services.iter().any(|s| s.name != name && s.volumes.iter().any(|o| o.named && o.source == m.source));
        if !shared {
            if let Some(t2) = edit_compose::remove_entry(&text, "volumes", &m.source, true) {
                text = t2;
            }
        }
    }
    let env = |k: &str| repo.env(k);
    let parsed = compose::Compose::parse(&text, &env).map_err(|e| Diagnostic::error(format!("internal error: the edited compose file does not parse: {e}")))?;
    t.write(compose::FILE, text)?;
    // Its role, ACL user and credentials go with it.
    crate::plan::datalayer::plan(&mut t, &repo.root, &parsed)?;
    let mut cnf_text = repo.cnf_text.clone();
    let lines: Vec<usize> = repo.cnf.alt_names.iter().filter(|a| a.kind == "DNS" && a.value == name).map(|a| a.line).collect();
    if !lines.is_empty() {
        cnf_text = edit::cnf::remove_lines(&cnf_text, &lines);
        t.write(cnf::FILE, cnf_text.clone())?;
    }
    t.delete(&nginx::location_file(name))?;
    certs::remove_service(&mut t, name)?;
    let mut report = vec![];
    if !lines.is_empty() && repo.root.join(certs::CA_CERT).exists() {
        let https: Vec<String> = repo.wanted_alt_names().into_iter().filter(|n| n != name).collect();
        report = certs::plan(&mut t, &Cnf::parse(&cnf_text)?, &https, false)?;
    }
    if !keep_files {
        // The folder is found by name: only a DNS label, joined by the one
        // function that refuses paths leaving the repository.
        crate::model::names::service(name).map_err(|e| Diagnostic::error(e).fix(format!("name a service of {}", compose::FILE)))?;
        let dir = crate::model::names::join(&repo.root, &format!("{SERVICES_DIR}/{name}")).map_err(|e| Diagnostic::error(e).fix(format!("name a service of {}", compose::FILE)))?;
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                // A link (even to a folder) is deleted as a link, never followed.
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(p);
                } else {
                    t.delete(&p.strip_prefix(&repo.root).unwrap().to_string_lossy())?;
                }
            }
        }
    }
    super::finish(t, dry_run, &format!("removed service `{name}`"), &report)
}
