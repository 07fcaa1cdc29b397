//! The generated gRPC code (`src/common/gen`, made by `scripts/gen_proto.py`
//! from `src/proto`): running the generator, reading its `--check` report,
//! and planning a regeneration into a `Txn`, so a new service's `.proto`
//! and its generated code land together or not at all. The script is
//! incremental (protoc runs only for the `.proto` files whose inputs or
//! generated files changed; see its docstring), so a check or an added
//! service costs about the same at 500 services as at 5.
//!
//! `check` skips the script while the files it read last time are
//! unchanged (`proto_stamp`), and an added service's plan compares only its
//! own files when that stamp proves the rest current.
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

/// The command that starts the generator: `$XTASK_PYTHON` when set, else
/// the `python3` on PATH. A pyenv shim there is resolved as pyenv itself
/// would resolve it (`pyenv_python`): the shim is a chain of bash scripts
/// that costs 70-100 ms per start, more than the generator's own work.
fn python() -> Command {
    let mut c = interpreter();
    // The script is stdlib only: without `site` (site-packages, their
    // .pth hooks) Python starts in a third of the time (about 8 ms instead
    // of 35 here), and the script is on the critical path of add-service.
    c.arg("-S");
    c
}

fn interpreter() -> Command {
    if let Some(p) = std::env::var_os("XTASK_PYTHON").filter(|p| !p.is_empty()) {
        return Command::new(p);
    }
    let version = std::env::var("PYENV_VERSION")
        .ok()
        .filter(|v| !v.is_empty());
    let cwd = std::env::current_dir().unwrap_or_default();
    let pyenv_dir = std::env::var_os("PYENV_DIR").is_some();
    match proto_stamp::which("python3")
        .and_then(|shim| pyenv_python(&shim, version, pyenv_dir, &cwd))
    {
        Some((exe, bin)) => {
            let mut c = Command::new(exe);
            // As `pyenv exec` does: the version's bin folder first on PATH.
            let path = std::env::var_os("PATH").unwrap_or_default();
            c.env(
                "PATH",
                std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path)))
                    .unwrap_or(path),
            );
            c
        }
        None => Command::new("python3"),
    }
}

/// The interpreter a pyenv shim would exec, and its bin folder, for the
/// plain case only: `<root>/shims/python3` with `<root>/libexec/pyenv`, one
/// version named by $PYENV_VERSION, else the nearest `.python-version` up
/// from the current folder, else `<root>/version`, installed as
/// `<root>/versions/<v>/bin/python3`. Anything else (PYENV_DIR set,
/// several versions, `system`, a prefix like `3.11`) keeps the shim, which
/// stays right whatever pyenv does.
fn pyenv_python(
    shim: &Path,
    version: Option<String>,
    pyenv_dir: bool,
    cwd: &Path,
) -> Option<(PathBuf, PathBuf)> {
    let shims = shim.parent()?;
    let root = shims.parent()?;
    if shims.file_name()? != "shims" || !root.join("libexec/pyenv").is_file() || pyenv_dir {
        return None;
    }
    let named = match version {
        Some(v) => v,
        None => {
            let file = cwd
                .ancestors()
                .map(|d| d.join(".python-version"))
                .find(|f| f.is_file())
                .unwrap_or_else(|| root.join("version"));
            // pyenv-version-file-read: the first word of each line, empty
            // lines and `#` comments skipped; several words name several versions.
            let text = std::fs::read_to_string(file).ok()?;
            let words: Vec<&str> = text
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|w| !w.starts_with('#'))
                .collect();
            let [v] = words[..] else { return None };
            v.to_string()
        }
    };
    if named == "system" || named.contains([':', '/']) || named.starts_with('.') {
        return None;
    }
    let bin = root.join("versions").join(&named).join("bin");
    let exe = bin.join("python3");
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(&exe)
        .ok()
        .filter(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)?;
    Some((exe, bin))
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
    let mut adds_only = true;
    for rel in planned {
        let Some(under) = rel.strip_prefix(&format!("{PROTO_DIR}/")) else {
            return Err(Diagnostic::error(format!("not under {PROTO_DIR}"))
                .at(rel, 0)
                .fix("this is a bug in the plan; report it"));
        };
        match t.content(rel)? {
            Some(b) => {
                adds_only &= !root.join(rel).exists();
                let p = overlay.join(under);
                std::fs::create_dir_all(p.parent().unwrap())
                    .and_then(|_| std::fs::write(&p, b))
                    .map_err(|e| io(&p, e))?;
            }
            None => {
                adds_only = false;
                cmd.arg("--drop").arg(rel);
            }
        }
    }
    // New .proto files on top of code proved current: the script compares
    // only their files (it checks that they cannot change the others').
    if adds_only && proto_stamp::trusted(root) {
        cmd.arg("--base-current");
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
                    .fix(format!("{INSTALL}; nothing was written")),
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
    fn a_pyenv_shim_is_resolved_as_pyenv_would_or_kept() {
        let root = std::env::temp_dir().join(format!("xtask-pyenv-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let exe = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let (shim, project) = (root.join("pyenv/shims/python3"), root.join("project/sub"));
        for p in [
            &shim,
            &root.join("pyenv/libexec/pyenv"),
            &root.join("pyenv/versions/3.11.7/bin/python3"),
            &root.join("pyenv/versions/3.12.1/bin/python3"),
        ] {
            exe(p);
        }
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(root.join("pyenv/version"), "3.11.7\n").unwrap();
        let got = |v: Option<&str>, dir: bool| {
            pyenv_python(&shim, v.map(String::from), dir, &project).map(|(e, _)| e)
        };
        let v = |n: &str| Some(root.join(format!("pyenv/versions/{n}/bin/python3")));
        assert_eq!(got(None, false), v("3.11.7"), "the global version file");
        std::fs::write(
            root.join("project/.python-version"),
            "# pinned for the CI\n\n3.12.1 # comment\n",
        )
        .unwrap();
        assert_eq!(
            got(None, false),
            v("3.12.1"),
            "the nearest .python-version wins"
        );
        assert_eq!(
            got(Some("3.11.7"), false),
            v("3.11.7"),
            "PYENV_VERSION wins"
        );
        // Whatever pyenv would decide by rules not copied here: the shim.
        for (ver, dir) in [
            (Some("3.11.7:3.12.1"), false),
            (Some("system"), false),
            (Some("3.11"), false),
            (Some("../../x"), false),
            (None, true),
        ] {
            assert_eq!(got(ver, dir), None, "{ver:?} {dir}");
        }
        std::fs::write(root.join("project/.python-version"), "3.12.1\n3.11.7\n").unwrap();
        assert_eq!(got(None, false), None, "two versions");
        assert_eq!(
            pyenv_python(&root.join("project/python3"), None, false, &project),
            None,
            "not a shim"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

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
