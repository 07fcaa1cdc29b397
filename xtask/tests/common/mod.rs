//! Helpers for the integration tests: a temporary copy of this repository,
//! the real xtask binary run against it, and snapshots of its files.
#![allow(dead_code)]

#[path = "snap.rs"]
pub mod snap;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Condvar, Mutex, PoisonError};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A copy of the repository's files (tracked and new, not ignored) in a
/// fresh temporary folder, removed when dropped.
pub struct Copy {
    pub root: PathBuf,
}

impl Drop for Copy {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_COPIES").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

pub fn copy(tag: &str) -> Copy {
    // The folder is named by the tag and the process: with every area's
    // tests in one binary, two tests using one tag would share (and remove)
    // each other's copy.
    static TAGS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let fresh = TAGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(tag.to_string());
    assert!(
        fresh,
        "copy tag {tag:?} is used by two tests of this binary: give each its own"
    );
    let ws = workspace();
    let root = std::env::temp_dir().join(format!("xtask-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let out = Command::new("git")
        .current_dir(&ws)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .expect("git");
    for f in out.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let rel = String::from_utf8_lossy(f).into_owned();
        let src = ws.join(&rel);
        if !src.is_file() || rel.starts_with("xtask/tests/") {
            continue;
        }
        let dst = root.join(&rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dst).unwrap();
    }
    // Image overrides (air-gapped machines) come along.
    if ws.join(".env").exists() {
        std::fs::copy(ws.join(".env"), root.join(".env")).unwrap();
    }
    Copy { root }
}

/// Makes `root` a set-up checkout, as `scripts/setup.sh` leaves one: the
/// per-checkout derived files `certs/` and `secrets/` (which the compose file
/// names as env files and bind mounts) exist, as `cargo xtask certs` makes them.
pub fn set_up(root: &Path) {
    let o = xtask(root, &["certs"]);
    assert!(
        o.status.success(),
        "certs on {}:\n{}",
        root.display(),
        text(&o)
    );
}

pub fn xtask(root: &Path, args: &[&str]) -> Output {
    xtask_env(root, args, &[])
}

pub fn xtask_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.arg("--root").arg(root).args(args).env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run xtask")
}

/// Asserts that a command succeeded, showing its output when not.
pub fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}:\n{}",
        o.status.code(),
        text(o)
    );
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file under `root` except the generated certificates and lock.
pub fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == "certs" || rel == ".xtask.lock" || rel == "target" {
                continue;
            }
            let ft = std::fs::symlink_metadata(&p).unwrap().file_type();
            if ft.is_dir() {
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

pub fn assert_same(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>, what: &str) {
    let ka: Vec<&String> = a.keys().collect();
    let kb: Vec<&String> = b.keys().collect();
    assert_eq!(ka, kb, "{what}: the set of files changed");
    for (k, v) in a {
        assert!(
            v == &b[k],
            "{what}: {k} changed:\n{}",
            String::from_utf8_lossy(&b[k])
        );
    }
}

pub fn docker_available() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The image overrides in the workspace's .env (written by `images bootstrap`).
pub fn env_image(key: &str, default: &str) -> String {
    std::fs::read_to_string(workspace().join(".env"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
        })
        .unwrap_or_else(|| default.to_string())
}

/// One filesystem entry as the attack tests compare it: kind, bytes (or
/// link target), mode, owner.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Entry {
    pub kind: &'static str,
    pub data: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Every entry under `root` (directories, files, symlinks; `certs/`
/// included), except the lock and `target/`. Symlinks are not followed.
pub fn snapshot_meta(root: &Path) -> BTreeMap<String, Entry> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == ".xtask.lock" || rel == "target" {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let (kind, data) = if ft.is_symlink() {
                (
                    "symlink",
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else if ft.is_dir() {
                stack.push(p.clone());
                ("dir", vec![])
            } else if ft.is_file() {
                ("file", std::fs::read(&p).unwrap_or_default())
            } else {
                ("special", vec![])
            };
            out.insert(
                rel,
                Entry {
                    kind,
                    data,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                },
            );
        }
    }
    out
}

/// What differs between two `snapshot_meta`s, or None.
pub fn diff_meta(a: &BTreeMap<String, Entry>, b: &BTreeMap<String, Entry>) -> Option<String> {
    let added: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    let gone: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    if !added.is_empty() || !gone.is_empty() {
        return Some(format!("entries added {added:?}, removed {gone:?}"));
    }
    for (k, v) in a {
        let w = &b[k];
        if v.kind != w.kind || v.data != w.data {
            return Some(format!("{k} changed ({} -> {})", v.kind, w.kind));
        }
        if v.mode != w.mode || v.uid != w.uid || v.gid != w.gid {
            return Some(format!(
                "{k} mode/owner changed: {:o} {}:{} -> {:o} {}:{}",
                v.mode, v.uid, v.gid, w.mode, w.uid, w.gid
            ));
        }
    }
    None
}

pub fn assert_same_meta(a: &BTreeMap<String, Entry>, b: &BTreeMap<String, Entry>, what: &str) {
    if let Some(d) = diff_meta(a, b) {
        panic!("{what}: {d}");
    }
}

/// Runs the xtask, killing it after `secs`: a hang fails the test instead
/// of stalling the suite. Returns (exit code, output); None if it hung.
pub fn xtask_timeout(root: &Path, args: &[&str], secs: u64) -> (Option<i32>, String) {
    use std::io::Read;
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run xtask");
    let t = std::time::Instant::now();
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            let (mut o, mut e) = (String::new(), String::new());
            c.stdout.take().unwrap().read_to_string(&mut o).ok();
            c.stderr.take().unwrap().read_to_string(&mut e).ok();
            return (st.code(), format!("{o}{e}"));
        }
        if t.elapsed() > std::time::Duration::from_secs(secs) {
            let _ = c.kill();
            let _ = c.wait();
            return (None, format!("{args:?} hung for {secs} s and was killed"));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The probe, built once per test binary as verify builds it (the host's
/// triple, wherever cargo puts it), then handed to each verify run.
pub fn probe_bin() -> String {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        xtask::verify::probe_build::build(&workspace())
            .expect("building the probe")
            .display()
            .to_string()
    })
    .clone()
}

/// A copy of the repository with its certificates made, for verify.
pub fn prepared(tag: &str) -> Copy {
    assert!(
        docker_available(),
        "these tests need the Docker daemon (see README: setup)"
    );
    let c = copy(tag);
    let o = xtask(&c.root, &["certs"]);
    assert!(o.status.success(), "{}", text(&o));
    c
}

/// `verify <args>` on `root` with the prebuilt probe.
pub fn verify(root: &Path, args: &[&str]) -> Output {
    verify_env(root, args, &[])
}

/// `verify <args>` on `root` with the prebuilt probe and more environment.
pub fn verify_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let bin = probe_bin();
    let mut all = vec!["verify"];
    all.extend(args);
    let mut env = env.to_vec();
    env.push(("XTASK_PROBE_BIN", &bin));
    xtask_env(root, &all, &env)
}

/// The stack a `verify --keep` run left up, removed with the command that
/// run printed for it (so the printed command is what is tested); on drop.
pub struct Kept {
    pub run: String,
    removal: String,
}

impl Kept {
    /// From verify's output: the run's id and the line after "Remove it
    /// with:" (or "Remove them with:").
    pub fn from_output(out: &str) -> Kept {
        let run = out
            .split(" of run ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no kept run in:\n{out}"))
            .to_string();
        let removal = out
            .lines()
            .skip_while(|l| !l.contains(" with:"))
            .nth(1)
            .unwrap_or_else(|| panic!("no removal command in:\n{out}"))
            .trim()
            .to_string();
        Kept { run, removal }
    }

    /// Runs the printed removal; what of the run is left after it.
    pub fn remove(&self) -> Vec<String> {
        let o = Command::new("sh").arg("-c").arg(&self.removal).output();
        let mut left = run_objects(&self.run);
        if !left.is_empty() {
            if let Ok(o) = o {
                left.push(format!("`{}`: {}", self.removal, text(&o)));
            }
        }
        left
    }
}

/// The containers, networks and volumes labelled with verify's run `run`,
/// as `kind id`.
pub fn run_objects(run: &str) -> Vec<String> {
    let f = format!("label=monorepo.verify.run={run}");
    let mut found = vec![];
    for what in ["container", "network", "volume"] {
        let mut c = Command::new("docker");
        match what {
            "container" => c.args(["ps", "-aq"]),
            w => c.args([w, "ls", "-q"]),
        };
        let out = c.args(["--filter", &f]).output().unwrap();
        found.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| format!("{what} {l}")),
        );
    }
    found
}

impl Drop for Kept {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// `verify <args>` on `root` started in the background (to be signalled),
/// stdout discarded, stderr as given.
pub fn spawn_verify(
    root: &Path,
    args: &[&str],
    stderr: std::process::Stdio,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--root")
        .arg(root)
        .arg("verify")
        .args(args)
        .env("XTASK_PROBE_BIN", probe_bin())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("run xtask verify")
}

/// A turn on the Docker daemon for one area of the `docker` binary. The
/// areas were binaries of their own, which cargo runs one after another, so
/// none saw another's containers, networks or swarm: tests of one area may
/// run together (as they did), tests of two areas never do. Held for the
/// test's length: `let _area = area("verify");`.
pub fn area(name: &'static str) -> Area {
    let mut s = AREA.lock().unwrap_or_else(PoisonError::into_inner);
    while s.0.is_some_and(|held| held != name) {
        s = AREA_FREE.wait(s).unwrap_or_else(PoisonError::into_inner);
    }
    s.0 = Some(name);
    s.1 += 1;
    Area
}

/// The area that has the daemon and how many of its tests run.
static AREA: Mutex<(Option<&'static str>, usize)> = Mutex::new((None, 0));
static AREA_FREE: Condvar = Condvar::new();

pub struct Area;

impl Drop for Area {
    fn drop(&mut self) {
        let mut s = AREA.lock().unwrap_or_else(PoisonError::into_inner);
        s.1 -= 1;
        if s.1 == 0 {
            s.0 = None;
            AREA_FREE.notify_all();
        }
    }
}
