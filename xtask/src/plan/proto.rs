//! The generated gRPC code (`src/common/gen`, made by `scripts/gen_proto.py`
//! from `src/proto`): running the generator, reading its `--check` report,
//! and planning a regeneration into a `Txn`, so a new service's `.proto`
//! and its generated code land together or not at all. The script is
//! incremental (protoc runs only for the `.proto` files whose inputs or
//! generated files changed; see its docstring), so a check or an added
//! service costs about the same at 500 services as at 5.
//!
//! The generator stays one Python script (stdlib only, protoc 3.21 and the
//! grpc_python_plugin): CI, the Python tests and this tool all run the same
//! bytes-deterministic generation.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::diag::{Diagnostic, Error};
use crate::plan::txn::Txn;

pub const SCRIPT: &str = "scripts/gen_proto.py";
pub const PROTO_DIR: &str = "src/proto";
pub const GEN_DIR: &str = "src/common/gen";
/// The generator's reason for a generated file that must go.
const EXTRA: &str = "not generated from src/proto (remove it)";
pub const INSTALL: &str = "install protoc 3.21 and the gRPC Python plugin: `apt-get install protobuf-compiler protobuf-compiler-grpc` (Debian bookworm; `bash scripts/setup.sh` does it)";

/// `python3 scripts/gen_proto.py --root <root> <args>` with stdout captured.
fn script(root: &Path, args: &[&str], stdout: Stdio) -> Result<Output, Error> {
    Command::new("python3")
        .arg(root.join(SCRIPT))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Diagnostic::error(format!("cannot run `python3 {SCRIPT}`: {e}")).fix("install Python 3 (`apt-get install python3`)"))
}

/// `cargo xtask proto [--check]`: the script's own output and exit code
/// (0 written or current, 1 stale, 2 failure).
pub fn run(root: &Path, check: bool) -> Result<u8, Error> {
    let args: &[&str] = if check { &["--check"] } else { &[] };
    let o = script(root, args, Stdio::inherit())?;
    eprint!("{}", String::from_utf8_lossy(&o.stderr));
    Ok(match o.status.code() {
        Some(c @ 0..=2) => c as u8,
        _ => 2,
    })
}

/// What `gen_proto.py --check` found.
pub enum Staleness {
    Current,
    /// (repository-relative file, why)
    Stale(Vec<(String, String)>),
    /// The generator could not run (no protoc, the wrong version, an error).
    Unknown(String),
}

pub fn check(root: &Path) -> Staleness {
    if !root.join(SCRIPT).is_file() {
        return Staleness::Unknown(format!("{SCRIPT} is missing"));
    }
    let o = match script(root, &["--check"], Stdio::piped()) {
        Ok(o) => o,
        Err(e) => return Staleness::Unknown(e.to_string()),
    };
    match o.status.code() {
        Some(0) => Staleness::Current,
        Some(1) => Staleness::Stale(parse_stale(&String::from_utf8_lossy(&o.stdout))),
        _ => Staleness::Unknown(String::from_utf8_lossy(&o.stderr).trim().trim_start_matches("gen_proto: ").to_string()),
    }
}

/// The `path: why` lines of `--check`.
pub fn parse_stale(stdout: &str) -> Vec<(String, String)> {
    stdout.lines().filter_map(|l| l.split_once(": ")).map(|(p, w)| (p.to_string(), w.to_string())).collect()
}

/// Every file under `dir` (relative to it, sorted), skipping Python's caches.
pub fn walk(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if e.file_name() != "__pycache__" {
                    stack.push(p);
                }
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// A temporary folder removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Plans `src/common/gen` as the generator makes it from the `.proto` files
/// the transaction will leave: those on disk, with `planned` (paths under
/// `src/proto` that `t` writes or deletes) as `t` leaves them. The script
/// gets only the planned files (`--plan` with `--overlay`/`--drop`), runs
/// protoc for what changed and names the generated files to write or
/// delete; nothing in the repository is written outside `t`.
pub fn plan(t: &mut Txn, root: &Path, planned: &[String]) -> Result<(), Error> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = TempDir(std::env::temp_dir().join(format!("xtask-proto-{}-{nanos}", std::process::id())));
    let (overlay, out) = (tmp.0.join("overlay"), tmp.0.join("out"));
    let io = |p: &Path, e: std::io::Error| Diagnostic::error(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(&overlay).and_then(|_| std::fs::create_dir_all(&out)).map_err(|e| io(&tmp.0, e))?;
    let mut cmd = Command::new("python3");
    cmd.arg(root.join(SCRIPT)).arg("--root").arg(root).arg("--plan").arg(&out).arg("--overlay").arg(&overlay);
    for rel in planned {
        let Some(under) = rel.strip_prefix(&format!("{PROTO_DIR}/")) else {
            return Err(Diagnostic::error(format!("{rel}: not under {PROTO_DIR}")).fix("this is a bug in the plan; report it"));
        };
        match t.content(rel)? {
            Some(b) => {
                let p = overlay.join(under);
                std::fs::create_dir_all(p.parent().unwrap()).and_then(|_| std::fs::write(&p, b)).map_err(|e| io(&p, e))?;
            }
            None => {
                cmd.arg("--drop").arg(rel);
            }
        }
    }
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Diagnostic::error(format!("cannot run `python3 {SCRIPT}`: {e}")).fix("install Python 3 (`apt-get install python3`)"))?;
    if !o.status.success() {
        let why = String::from_utf8_lossy(&o.stderr).trim().trim_start_matches("gen_proto: ").to_string();
        return Err(Diagnostic::error(format!("generating the gRPC code failed: {why}")).fix(format!("{INSTALL}; nothing was written")));
    }
    for (path, why) in parse_stale(&String::from_utf8_lossy(&o.stdout)) {
        let Some(rel) = path.strip_prefix(&format!("{GEN_DIR}/")) else {
            return Err(Diagnostic::error(format!("{SCRIPT} --plan named {path}, outside {GEN_DIR}")).fix("this is a bug in the generator; report it"));
        };
        if why == EXTRA {
            t.delete(&path)?;
        } else {
            let b = std::fs::read(out.join(rel)).map_err(|e| io(&out.join(rel), e))?;
            t.write(&path, b)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_lines_become_path_and_reason() {
        let s = "src/common/gen/a/v1/a_pb2.py: differs\nsrc/common/gen/x.py: not generated from src/proto (remove it)\n";
        assert_eq!(
            parse_stale(s),
            vec![
                ("src/common/gen/a/v1/a_pb2.py".to_string(), "differs".to_string()),
                ("src/common/gen/x.py".to_string(), "not generated from src/proto (remove it)".to_string())
            ]
        );
    }
}
