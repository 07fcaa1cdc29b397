//! The generated gRPC code (`src/common/gen`, made by `scripts/gen_proto.py`
//! from `src/proto`): running the generator, reading its `--check` report,
//! and planning a regeneration into a `Txn`, so a new service's `.proto`
//! and its generated code land together or not at all. The script is
//! incremental (protoc runs only for the `.proto` files whose inputs or
//! generated files changed; see its docstring), and a plan that only adds
//! `.proto` files makes and compares only theirs, so a check or an added
//! service costs about the same at 500 services as at 5.
//!
//! `check` skips the script while the files it read last time are
//! unchanged (`proto_stamp`).
//!
//! The generator stays one Python script (stdlib only, protoc 3.21 and the
//! grpc_python_plugin): CI, the Python tests and this tool all run the same
//! bytes-deterministic generation.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::diag::{Diagnostic, Error};
use crate::plan::proto_stamp;
use crate::plan::txn::Txn;

pub use crate::plan::proto_stamp::{GEN_DIR, PROTO_DIR, SCRIPT};
/// The generator's reason for a generated file that must go.
const EXTRA: &str = "not generated from src/proto (remove it)";
pub const INSTALL: &str = "install protoc 3.21 and the gRPC Python plugin: `apt-get install protobuf-compiler protobuf-compiler-grpc` (Debian bookworm; `bash scripts/setup.sh` does it)";

/// The fix for a generator failure: its own text says whether protoc
/// rejected a `.proto` file or the tools are missing.
pub fn fix_for(why: &str) -> &'static str {
    if why.starts_with("protoc failed") || why.contains("still imported") {
        "fix the .proto file named above, then run `cargo xtask proto`"
    } else {
        INSTALL
    }
}

/// The command that starts the generator: `$XTASK_PYTHON` when set, else
/// the first `python3` on PATH that is not a version manager's shim (a
/// file in a folder named `shims`, as pyenv's and asdf's are), else
/// `python3` itself. A shim is a chain of shell scripts that picks an
/// interpreter by its own rules at 70-100 ms a start, more than the
/// generator's own work for an added service; the script is stdlib only
/// and makes the same bytes on any Python 3.10 or newer, so the choice
/// among interpreters does not matter, only the start does.
fn python() -> Command {
    let exe = std::env::var_os("XTASK_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .filter(|d| d.file_name().is_none_or(|n| n != "shims"))
                .map(|d| d.join("python3"))
                .find(|p| executable(p))
        })
        .unwrap_or_else(|| PathBuf::from("python3"));
    let mut c = Command::new(exe);
    // Without `site` (site-packages, their .pth hooks) Python starts in a
    // third of the time; the script needs only the standard library.
    c.arg("-S");
    c
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `python3 scripts/gen_proto.py --root <root> <args>` with stdout captured.
fn script(root: &Path, args: &[&str], stdout: Stdio) -> Result<Output, Error> {
    python()
        .arg(root.join(SCRIPT))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| {
            Diagnostic::error(format!("cannot run `python3 {SCRIPT}`: {e}"))
                .fix("install Python 3 (`apt-get install python3`)")
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

/// `gen_proto.py --check`, skipped while the stamp of its last "current"
/// holds (see `proto_stamp`); a "current" from the script renews the stamp.
pub fn check(root: &Path) -> Staleness {
    if !root.join(SCRIPT).is_file() {
        return Staleness::Unknown(format!("{SCRIPT} is missing"));
    }
    if proto_stamp::trusted(root) {
        return Staleness::Current;
    }
    // Without a cache folder or a temporary folder: no stamp, only slower.
    let tmp = proto_stamp::cache_dir().and_then(|_| TempDir::new("check").ok());
    let manifest = tmp
        .as_ref()
        .and_then(|t| t.0.join("manifest").to_str().map(String::from));
    let started = proto_stamp::now();
    let mut args = vec!["--check"];
    if let Some(m) = &manifest {
        args.extend(["--manifest", m]);
    }
    let o = match script(root, &args, Stdio::piped()) {
        Ok(o) => o,
        Err(e) => return Staleness::Unknown(e.to_string()),
    };
    match o.status.code() {
        Some(0) => {
            if let Some(m) = manifest.and_then(|m| std::fs::read_to_string(m).ok()) {
                proto_stamp::record(root, started, &m);
            }
            Staleness::Current
        }
        Some(1) => Staleness::Stale(parse_stale(&String::from_utf8_lossy(&o.stdout))),
        _ => Staleness::Unknown(
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .trim_start_matches("gen_proto: ")
                .to_string(),
        ),
    }
}

/// The `path: why` lines of `--check`.
pub fn parse_stale(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(p, w)| (p.to_string(), w.to_string()))
        .collect()
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

impl TempDir {
    /// A new folder of ours under the system's temporary folder: made here
    /// (not found: another user's could hold links), readable by us only.
    fn new(tag: &str) -> Result<TempDir, Error> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let d =
            std::env::temp_dir().join(format!("xtask-proto-{tag}-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&d)
            .map_err(|e| {
                Diagnostic::error(format!("{}: {e}", d.display()))
                    .fix("check the temporary folder ($TMPDIR)")
            })?;
        Ok(TempDir(d))
    }
}

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
    start(t, root, planned)?.finish(t)
}

/// The generator running for a plan (`start`); `finish` stages its files.
/// Dropped unfinished, it stops the process and removes its folder.
pub struct Pending {
    child: Option<std::process::Child>,
    out: PathBuf,
    _tmp: TempDir,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `plan`'s first half: starts the generator and returns at once, so the
/// caller can plan its other files while protoc runs.
pub fn start(t: &Txn, root: &Path, planned: &[String]) -> Result<Pending, Error> {
    let tmp = TempDir::new("plan")?;
    let (overlay, out) = (tmp.0.join("overlay"), tmp.0.join("out"));
    let io = |p: &Path, e: std::io::Error| Diagnostic::error(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(&overlay)
        .and_then(|_| std::fs::create_dir_all(&out))
        .map_err(|e| io(&tmp.0, e))?;
    let mut cmd = python();
    cmd.arg(root.join(SCRIPT))
        .arg("--root")
        .arg(root)
        .arg("--plan")
        .arg(&out)
        .arg("--overlay")
        .arg(&overlay);
    for rel in planned {
        let Some(under) = rel.strip_prefix(&format!("{PROTO_DIR}/")) else {
            return Err(Diagnostic::error(format!("not under {PROTO_DIR}"))
                .at(rel, 0)
                .fix("this is a bug in the plan; report it"));
        };
        match t.content(rel)? {
            Some(b) => {
                let p = overlay.join(under);
                std::fs::create_dir_all(p.parent().unwrap())
                    .and_then(|_| std::fs::write(&p, b))
                    .map_err(|e| io(&p, e))?;
            }
            None => {
                cmd.arg("--drop").arg(rel);
            }
        }
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Diagnostic::error(format!("cannot run `python3 {SCRIPT}`: {e}"))
                .fix("install Python 3 (`apt-get install python3`)")
        })?;
    Ok(Pending {
        child: Some(child),
        out,
        _tmp: tmp,
    })
}

impl Pending {
    /// Waits for the generator and stages the generated files it names
    /// (written or deleted) into `t`.
    pub fn finish(mut self, t: &mut Txn) -> Result<(), Error> {
        let child = self.child.take().expect("finished once");
        let o = child.wait_with_output().map_err(|e| {
            Diagnostic::error(format!("cannot run `python3 {SCRIPT}`: {e}"))
                .fix("install Python 3 (`apt-get install python3`)")
        })?;
        if !o.status.success() {
            let why = String::from_utf8_lossy(&o.stderr)
                .trim()
                .trim_start_matches("gen_proto: ")
                .to_string();
            return Err(
                Diagnostic::error(format!("generating the gRPC code failed: {why}"))
                    .fix(format!("{}; nothing was written", fix_for(&why))),
            );
        }
        for (path, why) in parse_stale(&String::from_utf8_lossy(&o.stdout)) {
            let Some(rel) = path.strip_prefix(&format!("{GEN_DIR}/")) else {
                return Err(Diagnostic::error(format!(
                    "{SCRIPT} --plan named {path}, outside {GEN_DIR}"
                ))
                .fix("this is a bug in the generator; report it"));
            };
            if why == EXTRA {
                t.delete(&path)?;
            } else {
                let p = self.out.join(rel);
                let b = std::fs::read(&p)
                    .map_err(|e| Diagnostic::error(format!("{}: {e}", p.display())))?;
                t.write(&path, b)?;
            }
        }
        Ok(())
    }
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
                (
                    "src/common/gen/a/v1/a_pb2.py".to_string(),
                    "differs".to_string()
                ),
                (
                    "src/common/gen/x.py".to_string(),
                    "not generated from src/proto (remove it)".to_string()
                )
            ]
        );
    }
}
