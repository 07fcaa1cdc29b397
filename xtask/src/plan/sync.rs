//! `sync`: derives `[alt_names]`, the NGINX endpoint files and the workspace
//! members from the services' compose entries, and plans the rewrite.

use crate::model::cargo_toml;
use crate::model::cnf;
use crate::model::nginx;
use crate::model::repo::Repo;
use crate::plan::txn::Txn;
use crate::edit;
use crate::Error;

/// Marks endpoint files that `sync` owns (and may rewrite or delete).
pub const GENERATED: &str = "Written by `cargo xtask add-service`";

pub fn plan(repo: &Repo) -> Result<Txn, Error> {
    let mut txn = Txn::new(&repo.root);
    let cnf_new = edit::cnf::sync_alt_names(&repo.cnf_text, &repo.cnf, &repo.wanted_alt_names());
    txn.write(cnf::FILE, cnf_new)?;
    txn.write(cargo_toml::FILE, edit::cargo_toml::sync(&repo.cargo_text, &repo.members, &repo.wanted_members()))?;

    let mut wanted_files = vec![];
    for s in repo.backend() {
        let (Some(path), Some(port)) = (s.public_path(), s.port()) else { continue };
        let file = nginx::location_file(&s.name);
        // A path routed in a hand-written config is the user's; leave it.
        if repo.routes.iter().any(|r| r.path == path && r.file != file) {
            continue;
        }
        txn.write(&file, edit::nginx::render_location(&s.name, path, port, s.https(), s.protocol() == "grpc"))?;
        wanted_files.push(file);
    }
    for f in nginx::conf_files(&repo.root) {
        if f.starts_with(nginx::LOCATIONS) && !wanted_files.contains(&f) {
            let text = std::fs::read_to_string(repo.root.join(&f)).unwrap_or_default();
            if text.contains(GENERATED) {
                txn.delete(&f)?;
            }
        }
    }
    Ok(txn)
}
