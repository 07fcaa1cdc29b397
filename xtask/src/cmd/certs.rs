//! `certs`: the local CA (once) and every stale certificate.

use std::path::Path;

use crate::diag::Error;
use crate::model::repo::Repo;
use crate::plan::certs;
use crate::plan::txn::{self, Txn};

pub fn run(root: &Path, force: bool) -> Result<(), Error> {
    let report = make(root, force)?;
    if report.is_empty() {
        println!("certs: all certificates are current");
    }
    for r in report {
        println!("  {r}");
    }
    Ok(())
}

/// Makes what is missing or stale (all leaves with `force`), under the
/// repository lock; returns one line per certificate made.
pub fn make(root: &Path, force: bool) -> Result<Vec<String>, Error> {
    make_with(root, force, false)
}

/// `make`; with `data_if_missing`, the data-layer files are written only
/// when one of them is missing (a fresh clone): a hand edit of an existing
/// one (an ACL widened to `~*`) is drift for `check` (MR015) to report, not
/// something a command that merely needs the files may quietly undo.
fn make_with(root: &Path, force: bool, data_if_missing: bool) -> Result<Vec<String>, Error> {
    let _lock = txn::lock(root)?;
    let repo = Repo::load(root)?;
    repo.refuse_untrusted()?;
    let mut t = Txn::new(&repo.root);
    let report = certs::plan(&mut t, &repo.cnf, &repo.wanted_alt_names(), force)?;
    // The data-layer credentials are made per checkout like the keys.
    let mut data = Txn::new(&repo.root);
    crate::plan::datalayer::plan(&mut data, &repo.root, &repo.compose)?;
    if !data_if_missing || data.paths().iter().any(|p| !repo.root.join(p).exists()) {
        crate::plan::datalayer::plan(&mut t, &repo.root, &repo.compose)?;
    }
    t.commit()?;
    Ok(report)
}

/// For commands that use the certificates (verify): they are derived
/// files, so make the missing or stale ones as `certs` would, and say so on
/// stderr (stdout may be a JSON report).
pub fn ensure(root: &Path, who: &str) -> Result<(), Error> {
    let report = make_with(root, false, true)?;
    if !report.is_empty() {
        eprintln!("{who}: made the missing or stale certificates (as `cargo xtask certs` does):");
        for r in report {
            eprintln!("  cert  {r}");
        }
    }
    Ok(())
}
