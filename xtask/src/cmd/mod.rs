//! The commands that need no running stack: add-service, remove-service,
//! sync, proto, certs, list, export and images (bootstrap). Each loads the
//! repository model; those that write plan every file into one `Txn`, then
//! print the plan (`--dry-run`) or commit it under the repository lock.

pub mod add;
pub mod certs;
/// `cluster up|down|status|push`: the machinery is `docker::cluster`.
pub use crate::docker::cluster;
pub mod export;
pub mod images;
pub mod list;
pub mod proto;
pub mod remove;
pub mod sync;

use crate::plan::certs as cert_plan;
use crate::plan::txn::Txn;
use crate::Error;

/// Hides the values of secret-looking variables (`is_secret_name`, as
/// verify hides them in its logs) in a diff: `--dry-run` output lands in
/// terminals and CI logs. Certificates are already named only.
pub fn mask_secrets(diff: &str) -> String {
    let mut out = String::with_capacity(diff.len());
    for line in diff.split_inclusive('\n') {
        let header = line.starts_with("+++") || line.starts_with("---");
        let (mark, body) = line.split_at(
            line.chars()
                .next()
                .filter(|c| "+- ".contains(*c))
                .map_or(0, |_| 1),
        );
        match body.split_once('=') {
            Some((k, v))
                if !header
                    && crate::model::secrets::is_secret_name(k.trim())
                    && !v.trim().is_empty() =>
            {
                out.push_str(&format!(
                    "{mark}{k}=****{}",
                    if line.ends_with('\n') { "\n" } else { "" }
                ));
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// Prints the plan (`--dry-run`) or commits it and says what was written.
fn finish(t: Txn, dry_run: bool, what: &str, report: &[String]) -> Result<(), Error> {
    if dry_run {
        print!("{}", mask_secrets(&t.diff()));
        println!(
            "dry run: {} file(s) would change; nothing was written",
            t.paths().len()
        );
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
