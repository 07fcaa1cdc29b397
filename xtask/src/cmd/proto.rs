//! `proto [--check]`: src/common/gen as `scripts/gen_proto.py` makes it
//! from src/proto. Writing takes the repository lock and lands every
//! generated file through one `Txn` (all or none, even across a kill);
//! `--check` reads under the shared lock and lists the stale files.

use std::path::Path;

use crate::diag::{Diagnostic, Error};
use crate::plan::proto::{self, Staleness, GEN_DIR};
use crate::plan::txn::{self, Txn};

/// `proto`: returns true when src/common/gen was already current.
pub fn run(root: &Path, check: bool) -> Result<bool, Error> {
    if check {
        let _lock = txn::lock_shared(root)?;
        return match proto::check(root) {
            Staleness::Current => {
                println!("proto: {GEN_DIR} is up to date");
                Ok(true)
            }
            Staleness::Stale(files) => {
                for (p, why) in &files {
                    println!("{p}: {why}");
                }
                println!(
                    "proto --check: {} stale file(s); run `cargo xtask proto`",
                    files.len()
                );
                Ok(false)
            }
            Staleness::Unknown(why) => Err(Diagnostic::error(format!(
                "cannot check the generated code: {why}"
            ))
            .at(GEN_DIR, 0)
            .fix(proto::fix_for(&why))),
        };
    }
    let _lock = txn::lock(root)?;
    let mut t = Txn::new(root);
    // The whole set as it is on disk: nothing planned under src/proto.
    proto::plan(&mut t, root, &[])?;
    if t.is_empty() {
        println!("proto: {GEN_DIR} is up to date");
        return Ok(true);
    }
    let mut removed = vec![];
    for p in t.paths() {
        if t.content(&p)?.is_none() {
            removed.push(p);
        }
    }
    for p in t.commit()? {
        if removed.contains(&p) {
            println!("removed {p}");
        } else {
            println!("wrote {p}");
        }
    }
    Ok(false)
}
