//! `certs`: the local CA (once) and every stale certificate.

use std::path::Path;

use crate::diag::Error;
use crate::plan::certs::make;

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
