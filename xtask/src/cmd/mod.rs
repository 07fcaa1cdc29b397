//! The static commands: add-service, remove-service, sync, certs, list.
//! Each loads the repository model, plans every file into one `Txn`, then
//! prints the plan (`--dry-run`) or commits it under the repository lock.

pub mod add;
pub mod certs;
pub mod images;
pub mod list;
pub mod remove;
pub mod sync;

use crate::plan::certs as cert_plan;
use crate::plan::txn::Txn;
use crate::Error;

/// Prints the plan (`--dry-run`) or commits it and says what was written.
fn finish(t: Txn, dry_run: bool, what: &str, report: &[String]) -> Result<(), Error> {
    if dry_run {
        print!("{}", t.diff());
        println!("dry run: {} file(s) would change; nothing was written", t.paths().len());
        return Ok(());
    }
    let written = t.commit()?;
    println!("{what}");
    for p in &written {
        if !p.starts_with(cert_plan::DIR) {
            println!("  wrote {p}");
        }
    }
    for r in report {
        println!("  cert  {r}");
    }
    Ok(())
}
