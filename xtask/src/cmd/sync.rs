//! `sync`: rewrite what is derived from the compose entries.

use std::path::Path;

use crate::diag::Error;
use crate::model::repo::Repo;
use crate::plan::sync as sync_plan;
use crate::plan::txn::{self};

/// `sync`: returns true when everything was already in sync.
pub fn run(root: &Path, check: bool) -> Result<bool, Error> {
    let _lock = if check {
        txn::lock_shared(root)?
    } else {
        txn::lock(root)?
    };
    let repo = Repo::load(root)?;
    repo.refuse_untrusted()?;
    let t = sync_plan::plan(&repo)?;
    if t.is_empty() {
        println!("sync: everything is up to date");
        return Ok(true);
    }
    if check {
        print!("{}", super::mask_secrets(&t.diff()));
        println!(
            "sync --check: {} file(s) out of date; run `cargo xtask sync`",
            t.paths().len()
        );
        return Ok(false);
    }
    let written = t.commit()?;
    for p in written {
        println!("  wrote {p}");
    }
    Ok(false)
}
