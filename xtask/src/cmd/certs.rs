//! `certs`: the local CA (once) and every stale certificate.

use std::path::Path;

use crate::plan::certs;
use crate::model::repo::Repo;
use crate::plan::txn::{self, Txn};
use crate::diag::Error;


pub fn run(root: &Path, force: bool) -> Result<(), Error> {
    let _lock = txn::lock(root)?;
    let repo = Repo::load(root)?;
    let mut t = Txn::new(&repo.root);
    let report = certs::plan(&mut t, &repo.cnf, &repo.wanted_alt_names(), force)?;
    t.commit()?;
    if report.is_empty() {
        println!("certs: all certificates are current");
    }
    for r in report {
        println!("  {r}");
    }
    Ok(())
}
