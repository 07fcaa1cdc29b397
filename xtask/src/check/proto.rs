//! The rule on the generated gRPC code.

use crate::diag::{Diagnostic, Error, Rule};
use crate::model::repo::Repo;
use crate::plan::proto::{self, Staleness};

/// The MR017 finding that says the generator could not run (no protoc).
pub fn unknown(f: &Diagnostic) -> bool {
    f.rule == Some(Rule::ProtoGenerated) && f.file == proto::GEN_DIR
}

/// MR017: src/common/gen is what `cargo xtask proto` makes from src/proto.
/// The generator's own `--check` decides (the same bytes CI makes); a
/// machine that cannot run it gets a finding that says what to install.
pub fn generated(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    match proto::check(&repo.root) {
        Staleness::Current => {}
        Staleness::Stale(files) => {
            for (p, why) in files {
                out.push(Diagnostic::finding(
                    Rule::ProtoGenerated,
                    &p,
                    0,
                    format!("generated code is stale: {why}"),
                    "run `cargo xtask proto`",
                ));
            }
        }
        Staleness::Unknown(why) => {
            let fix = proto::fix_for(&why);
            out.push(Diagnostic::finding(
                Rule::ProtoGenerated,
                proto::GEN_DIR,
                0,
                format!("cannot check the generated code: {why}"),
                fix,
            ));
        }
    }
    Ok(())
}
