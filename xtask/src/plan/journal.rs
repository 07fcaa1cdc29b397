//! Crash-safe application of a planned change, with a journal.
//!
//! Everything lives in `.xtask-txn/` at the root (git- and docker-ignored,
//! outside every build context, created 0700 and never followed if it is a
//! link):
//!
//! 1. stage: `new-<i>` holds each new content, created `O_EXCL|O_NOFOLLOW`
//!    with its final mode (0600 for keys) and owner before any byte; `old-<i>`
//!    is a hard link to each file that will be replaced or deleted (so its
//!    bytes, mode and owner survive exactly; a copy when linking is refused).
//! 2. journal: the list of changes, the folders to create and the folders
//!    that may be emptied, written, fsynced, renamed into place; the folder
//!    and the root are fsynced. Before this point nothing in the repository
//!    has changed.
//! 3. apply: mkdir, rename `new-<i>` over each target, unlink deletions,
//!    rmdir emptied folders, fsync every touched folder.
//! 4. `committed` marker, fsynced: from here the change is complete.
//! 5. clean up `.xtask-txn/`.
//!
//! Recovery (every command does it first, under the exclusive lock) rolls
//! back a journal without the marker, finishes the cleanup of one with it,
//! and removes a staging area without a journal. Every step of recovery is
//! idempotent, so a kill during recovery is recovered by the next command.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::diag::{Diagnostic, Error};

/// The staging area and journal, relative to the root.
pub const DIR: &str = ".xtask-txn";
const JOURNAL: &str = "journal";
const COMMITTED: &str = "committed";

/// One file of the change, with everything resolved: `rel` is the real
/// path inside the root (links already followed), `new` None deletes.
pub struct Planned {
    pub rel: String,
    pub new: Option<Vec<u8>>,
    pub mode: u32,
    /// (uid, gid) to give the new file; applied only when running as root.
    pub owner: Option<(u32, u32)>,
}

// ---- crash and fault points ------------------------------------------------

struct Hooks {
    list: bool,
    crash_at: Option<usize>,
}

fn hooks() -> &'static Hooks {
    static H: OnceLock<Hooks> = OnceLock::new();
    H.get_or_init(|| Hooks {
        list: std::env::var_os("XTASK_CRASH_LIST").is_some(),
        crash_at: std::env::var("XTASK_CRASH_AT")
            .ok()
            .and_then(|v| v.parse().ok()),
    })
}

/// Called before every write step. Test hooks: `XTASK_CRASH_LIST=1` prints
/// each step as `xtask: crash point <n>: <step>`; `XTASK_CRASH_AT=<n>` kills
/// the process with SIGKILL at step n (a real crash: no unwinding, no
/// cleanup); `XTASK_FAIL_AT=<step>` makes that step return an error.
pub fn step(name: &str) -> std::io::Result<()> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let h = hooks();
    // Read each time: unit tests set it between commits.
    if std::env::var("XTASK_FAIL_AT").ok().as_deref() == Some(name) {
        return Err(std::io::Error::other(format!(
            "injected failure at `{name}` (XTASK_FAIL_AT)"
        )));
    }
    if !h.list && h.crash_at.is_none() {
        return Ok(());
    }
    let n = N.fetch_add(1, Ordering::SeqCst) + 1;
    if h.list {
        eprintln!("xtask: crash point {n}: {name}");
    }
    if h.crash_at == Some(n) {
        // SAFETY: signalling our own process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        std::process::abort();
    }
    Ok(())
}

// ---- small file-system helpers ----------------------------------------------

/// Whether we run as root (then a file's owner can be given back).
pub(crate) fn is_root_user() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn fsync_dir(p: &Path) -> std::io::Result<()> {
    fs::File::open(p)?.sync_all()
}

fn fchown(f: &fs::File, uid: u32, gid: u32) -> std::io::Result<()> {
    // SAFETY: fchown on a descriptor we own.
    if unsafe { libc::fchown(f.as_raw_fd(), uid, gid) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn lchown(p: &Path, uid: u32, gid: u32) {
    use std::os::unix::ffi::OsStrExt;
    if let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) {
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::lchown(c.as_ptr(), uid, gid) };
    }
}

/// A new file that cannot already exist or be a link, with its final mode
/// and owner before its content.
fn create_new(
    p: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    rel: &str,
) -> std::io::Result<()> {
    step(&format!("create:{rel}"))?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o7777)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(p)?;
    if let (Some((u, g)), true) = (owner, is_root_user()) {
        fchown(&f, u, g)?;
    }
    // The umask may have taken bits the plan wants (it never adds any).
    f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
    step(&format!("write:{rel}"))?;
    f.write_all(bytes)?;
    step(&format!("fsync:{rel}"))?;
    f.sync_all()
}

fn exists(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

// ---- commit -------------------------------------------------------------------

/// Applies `changes` all or nothing. On an error every file is put back
/// before returning; on a crash the next command puts them back.
pub fn commit(root: &Path, changes: &[Planned]) -> Result<(), Error> {
    let st = root.join(DIR);
    let mut journal_written = false;
    let Err((e, rel)) = apply(root, &st, changes, &mut journal_written) else {
        return Ok(());
    };
    let what = rel.unwrap_or_else(|| DIR.to_string());
    if !journal_written {
        // Only the staging area exists; nothing in the repository changed.
        if fs::symlink_metadata(&st).is_ok_and(|m| m.is_dir()) {
            let _ = fs::remove_dir_all(&st);
        }
        return Err(
            Diagnostic::error(format!("cannot write: {e}; nothing was changed"))
                .at(&what, 0)
                .fix("fix the permissions or free space and run the command again"),
        );
    }
    match rollback(root, &st) {
        Ok(_) => Err(Diagnostic::error(format!(
            "cannot write: {e}; every file was put back as it was"
        ))
        .at(&what, 0)
        .fix("fix the cause and run the command again")),
        Err(r) => Err(Diagnostic::error(format!(
            "cannot write: {e}; and putting the files back failed too: {r}"
        ))
        .at(&what, 0)
        .fix(format!(
            "remove the cause, then run any xtask command: it finishes the rollback from {DIR}/"
        ))),
    }
}

type StepErr = (std::io::Error, Option<String>);

fn at(rel: &str) -> impl Fn(std::io::Error) -> StepErr + '_ {
    move |e| (e, Some(rel.to_string()))
}

/// The folders a change creates (outermost first) and those a deletion may
/// empty (with the metadata to remake them).
type Mkdirs = Vec<String>;
type Rmdirs = Vec<(String, fs::Metadata)>;

/// Step 1: stages every new content (`new-<i>`) and keeps every file a
/// change replaces or deletes (`old-<i>`); returns the journal's entries
/// and the folders to create and to try removing.
fn stage(
    root: &Path,
    st: &Path,
    changes: &[Planned],
) -> Result<(Vec<serde_json::Value>, Mkdirs, Rmdirs), StepErr> {
    let mut entries = vec![];
    let mut mkdirs: Vec<String> = vec![];
    let mut rmdirs: Vec<(String, fs::Metadata)> = vec![];
    for (i, c) in changes.iter().enumerate() {
        let target = root.join(&c.rel);
        let old = match fs::symlink_metadata(&target) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err((e, Some(c.rel.clone()))),
        };
        if let Some(new) = &c.new {
            create_new(&st.join(format!("new-{i}")), new, c.mode, c.owner, &c.rel)
                .map_err(at(&c.rel))?;
            // Folders to create, outermost first.
            let mut missing = vec![];
            let mut d = Path::new(&c.rel).parent();
            while let Some(p) = d.filter(|p| !p.as_os_str().is_empty()) {
                if exists(&root.join(p)) {
                    break;
                }
                missing.push(p.to_string_lossy().into_owned());
                d = p.parent();
            }
            for m in missing.into_iter().rev() {
                if !mkdirs.contains(&m) {
                    mkdirs.push(m);
                }
            }
        } else {
            // Folders a deletion may empty, with what it takes to remake them.
            let mut d = Path::new(&c.rel).parent();
            while let Some(p) = d.filter(|p| !p.as_os_str().is_empty()) {
                let s = p.to_string_lossy().into_owned();
                if !rmdirs.iter().any(|(r, _)| *r == s) {
                    if let Ok(m) = fs::symlink_metadata(root.join(p)) {
                        rmdirs.push((s, m));
                    }
                }
                d = p.parent();
            }
        }
        if let Some(m) = &old {
            step(&format!("backup:{}", c.rel)).map_err(at(&c.rel))?;
            let bak = st.join(format!("old-{i}"));
            if fs::hard_link(&target, &bak).is_err() {
                // Another file system or protected_hardlinks: keep a copy
                // with the same mode (and owner, as root).
                let bytes = fs::read(&target).map_err(at(&c.rel))?;
                create_new(&bak, &bytes, m.mode(), Some((m.uid(), m.gid())), &c.rel)
                    .map_err(at(&c.rel))?;
            }
        }
        entries.push(json!({ "rel": c.rel, "new": c.new.is_some(), "old": old.is_some() }));
    }
    Ok((entries, mkdirs, rmdirs))
}

/// Step 2: the journal, written to a temporary name, fsynced, renamed into
/// place, and both folders fsynced.
fn write_journal(
    root: &Path,
    st: &Path,
    journal: &serde_json::Value,
    journal_written: &mut bool,
) -> Result<(), StepErr> {
    let tmp = st.join("journal.tmp");
    step("journal").map_err(at(DIR))?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(at(DIR))?;
    f.write_all(journal.to_string().as_bytes())
        .map_err(at(DIR))?;
    step("journal-fsync").map_err(at(DIR))?;
    f.sync_all().map_err(at(DIR))?;
    step("journal-rename").map_err(at(DIR))?;
    fs::rename(&tmp, st.join(JOURNAL)).map_err(at(DIR))?;
    *journal_written = true;
    step("fsync-dir:.xtask-txn").map_err(at(DIR))?;
    fsync_dir(st).map_err(at(DIR))?;
    step("fsync-dir:.").map_err(at(DIR))?;
    fsync_dir(root).map_err(at(DIR))?;
    Ok(())
}

/// Step 3: the folders, the renames and unlinks, the emptied folders, then
/// an fsync of every folder touched.
fn apply_changes(
    root: &Path,
    st: &Path,
    changes: &[Planned],
    mkdirs: &[String],
    rmdirs: &[(String, fs::Metadata)],
) -> Result<(), StepErr> {
    let mut touched: Vec<PathBuf> = vec![];
    let mut touch = |p: &Path| {
        let d = p.parent().unwrap_or(root).to_path_buf();
        if !touched.contains(&d) {
            touched.push(d);
        }
    };
    for m in mkdirs {
        step(&format!("mkdir:{m}")).map_err(at(m))?;
        fs::create_dir(root.join(m)).map_err(at(m))?;
        touch(&root.join(m));
    }
    for (i, c) in changes.iter().enumerate() {
        let target = root.join(&c.rel);
        if c.new.is_some() {
            step(&format!("rename:{}", c.rel)).map_err(at(&c.rel))?;
            fs::rename(st.join(format!("new-{i}")), &target).map_err(at(&c.rel))?;
        } else {
            step(&format!("unlink:{}", c.rel)).map_err(at(&c.rel))?;
            match fs::remove_file(&target) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err((e, Some(c.rel.clone()))),
                _ => {}
            }
        }
        touch(&target);
    }
    for (r, _) in rmdirs {
        step(&format!("rmdir:{r}")).map_err(at(r))?;
        if fs::remove_dir(root.join(r)).is_ok() {
            touch(&root.join(r));
        }
    }
    for d in &touched {
        let rel = d
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        step(&format!("fsync-dir:{rel}")).map_err(at(&rel))?;
        if d.exists() {
            fsync_dir(d).map_err(at(&rel))?;
        }
    }
    Ok(())
}

fn apply(
    root: &Path,
    st: &Path,
    changes: &[Planned],
    journal_written: &mut bool,
) -> Result<(), StepErr> {
    step("mkdir:.xtask-txn").map_err(at(DIR))?;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(st)
        .map_err(at(DIR))?;

    // 1. Stage.
    let (entries, mkdirs, mut rmdirs) = stage(root, st, changes)?;
    // Deepest first, so that a parent is tried after its children.
    rmdirs.sort_by_key(|(r, _)| std::cmp::Reverse(r.matches('/').count()));
    let journal = json!({
        "version": 1,
        "changes": entries,
        "mkdirs": mkdirs,
        "rmdirs": rmdirs.iter().map(|(r, m)| json!({ "rel": r, "mode": m.mode() & 0o7777, "uid": m.uid(), "gid": m.gid() })).collect::<Vec<_>>(),
    });

    // 2. The journal, durable before the first change to the repository.
    write_journal(root, st, &journal, journal_written)?;

    // 3. Apply.
    apply_changes(root, st, changes, &mkdirs, &rmdirs)?;

    // 4. The commit marker: from here on, the change stands.
    step("commit").map_err(at(DIR))?;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(st.join(COMMITTED))
        .map_err(at(DIR))?;
    fsync_dir(st).map_err(at(DIR))?;

    // 5. Clean up; an error here is not the change's failure.
    if let Err(e) = cleanup(root, st) {
        crate::diag::warn(
            &Diagnostic::warning(format!(
                "the change is complete but the folder could not be removed ({e})"
            ))
            .at(DIR, 0)
            .fix("nothing to do: the next command removes it"),
        );
    }
    Ok(())
}

fn cleanup(root: &Path, st: &Path) -> std::io::Result<()> {
    step("cleanup")?;
    fs::remove_dir_all(st)?;
    step("fsync-dir:.")?;
    fsync_dir(root)
}

// ---- recovery -------------------------------------------------------------------

fn read_journal(st: &Path) -> std::io::Result<Option<Value>> {
    match fs::read(st.join(JOURNAL)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{DIR}/{JOURNAL}: unreadable: {e}"))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Puts back every file of the journalled change. Idempotent. Returns the
/// number of files it restored or removed.
fn rollback(root: &Path, st: &Path) -> std::io::Result<usize> {
    let Some(j) = read_journal(st)? else {
        return Ok(0);
    };
    let list = |k: &str| j[k].as_array().cloned().unwrap_or_default();
    let mut n = 0;
    // Folders the change emptied and removed come back first, outermost
    // first, with their mode and owner.
    for d in list("rmdirs").iter().rev() {
        let p = root.join(d["rel"].as_str().unwrap_or_default());
        if !exists(&p) {
            step(&format!(
                "recover:mkdir:{}",
                d["rel"].as_str().unwrap_or_default()
            ))?;
            let mode = d["mode"].as_u64().unwrap_or(0o755) as u32;
            fs::DirBuilder::new().mode(mode).create(&p)?;
            fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
            if is_root_user() {
                lchown(
                    &p,
                    d["uid"].as_u64().unwrap_or(0) as u32,
                    d["gid"].as_u64().unwrap_or(0) as u32,
                );
            }
        }
    }
    let changes = list("changes");
    for (i, c) in changes.iter().enumerate().rev() {
        let target = root.join(c["rel"].as_str().unwrap_or_default());
        let (new, old) = (st.join(format!("new-{i}")), st.join(format!("old-{i}")));
        if c["old"].as_bool() == Some(true) {
            // The backup is the original inode: bytes, mode and owner.
            if exists(&old) {
                step(&format!(
                    "recover:restore:{}",
                    c["rel"].as_str().unwrap_or_default()
                ))?;
                fs::rename(&old, &target)?;
                n += 1;
            }
        } else if c["new"].as_bool() == Some(true) && !exists(&new) && exists(&target) {
            // Created by the change (the lock kept everyone else out).
            step(&format!(
                "recover:unlink:{}",
                c["rel"].as_str().unwrap_or_default()
            ))?;
            fs::remove_file(&target)?;
            n += 1;
        }
        if exists(&new) {
            fs::remove_file(&new)?;
        }
        if let Some(d) = target.parent() {
            fsync_dir(d).ok();
        }
    }
    // Folders the change created go, innermost first.
    for d in list("mkdirs").iter().rev() {
        let p = root.join(d.as_str().unwrap_or_default());
        step(&format!("recover:rmdir:{}", d.as_str().unwrap_or_default()))?;
        if fs::remove_dir(&p).is_ok() {
            fsync_dir(p.parent().unwrap_or(root)).ok();
        }
    }
    step("recover:cleanup")?;
    fs::remove_dir_all(st)?;
    fsync_dir(root)?;
    Ok(n)
}

/// Finishes or undoes an interrupted change, saying so on stderr. Must run
/// under the exclusive lock.
pub fn recover(root: &Path) -> Result<(), Error> {
    let st = root.join(DIR);
    let meta = match fs::symlink_metadata(&st) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Diagnostic::error(format!("{DIR}: cannot read: {e}"))),
    };
    if !meta.file_type().is_dir() {
        return Err(Diagnostic::error(format!(
            "{DIR}: is not the xtask's journal folder (it is a link or a file)"
        ))
        .fix(format!(
            "look at what it is, remove it (`rm {}`), and run the command again",
            st.display()
        )));
    }
    let fail = |e: std::io::Error| {
        Diagnostic::error(format!(
            "{DIR}/: cannot recover the interrupted change: {e}"
        ))
        .fix(format!("make {} writable and run the command again (nothing else is done until it is recovered)", root.display()))
    };
    if exists(&st.join(COMMITTED)) {
        step("recover:cleanup").map_err(fail)?;
        fs::remove_dir_all(&st).map_err(fail)?;
        fsync_dir(root).map_err(fail)?;
        eprintln!("xtask: recovered an interrupted change in {}: it was committed; completed it (removed its journal)", root.display());
    } else if exists(&st.join(JOURNAL)) {
        let n = rollback(root, &st).map_err(fail)?;
        eprintln!("xtask: recovered an interrupted change in {}: rolled it back ({n} file(s) put back as they were)", root.display());
    } else {
        step("recover:cleanup").map_err(fail)?;
        fs::remove_dir_all(&st).map_err(fail)?;
        fsync_dir(root).map_err(fail)?;
        eprintln!("xtask: recovered an interrupted change in {}: it had not started; removed its staged files", root.display());
    }
    Ok(())
}

/// Whether an interrupted change waits for recovery.
pub fn pending(root: &Path) -> bool {
    exists(&root.join(DIR))
}
