//! `sync`: derives `[alt_names]`, the NGINX endpoint files, the workspace
//! members and the data layer (`plan::datalayer`) from the services'
//! compose entries, and plans the rewrite.

use crate::edit;
use crate::model::cargo_toml;
use crate::model::cnf;
use crate::model::nginx;
use crate::model::repo::Repo;
use crate::plan::txn::Txn;
use crate::Error;

pub fn plan(repo: &Repo) -> Result<Txn, Error> {
    let mut txn = Txn::new(&repo.root);
    let cnf_new = edit::cnf::sync_alt_names(&repo.cnf_text, &repo.cnf, &repo.wanted_alt_names())?;
    txn.write(cnf::FILE, cnf_new)?;
    txn.write(
        cargo_toml::FILE,
        edit::cargo_toml::sync(&repo.cargo_text, &repo.members, &repo.wanted_members())?,
    )?;

    let mut wanted_files = vec![];
    for s in repo.backend() {
        let (Some(path), Some(port)) = (s.public_path(), s.port()) else {
            continue;
        };
        // Only names and paths the gate accepts reach an NGINX file
        // (Repo::refuse_untrusted has already refused the repository).
        if crate::model::names::service(&s.name).is_err()
            || crate::model::names::public_path(path).is_err()
        {
            continue;
        }
        let file = nginx::location_file(&s.name);
        wanted_files.push(file.clone());
        let current = crate::model::repo::read_bounded(&repo.root.join(&file))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        // A file the user wrote (no marker on its first line) is theirs.
        if current
            .as_deref()
            .is_some_and(|t| !edit::nginx::is_generated(&s.name, t))
        {
            continue;
        }
        // So is a hand-written location for the same path in the server
        // that includes the endpoint files: another one would clash.
        // (A route in another server, e.g. another port, does not.)
        if repo.nginx.conflict(path, &file).is_some() {
            continue;
        }
        let conf = if s.frontend().is_some() && path != "/" {
            edit::nginx::render_frontend(&s.name, path, port, s.https())
        } else {
            edit::nginx::render_location(&s.name, path, port, s.https(), s.protocol() == "grpc")
        };
        txn.write(&file, conf)?;
    }
    // Delete only endpoint files we generated, for services that no longer
    // want one.
    for f in nginx::conf_files(&repo.root) {
        let Some(service) = f
            .strip_prefix(nginx::LOCATIONS)
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_suffix(".conf"))
        else {
            continue;
        };
        if service.contains('/') || wanted_files.contains(&f) {
            continue;
        }
        let text = crate::model::repo::read_bounded(&repo.root.join(&f))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if edit::nginx::is_generated(service, &text) {
            txn.delete(&f)?;
        }
    }
    crate::plan::datalayer::plan(&mut txn, &repo.root, &repo.compose)?;
    Ok(txn)
}
