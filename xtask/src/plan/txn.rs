//! All-or-nothing writes. A command plans every file it will create, change
//! or delete into a `Txn`; `commit` stages each new content beside its
//! target, then renames them into place, and puts every original back if
//! any step fails. `--dry-run` prints the same plan as a unified diff.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Error};

#[derive(Debug)]
struct Change {
    rel: String,
    old: Option<Vec<u8>>,
    new: Option<Vec<u8>>,
    mode: u32,
}

#[derive(Debug)]
pub struct Txn {
    root: PathBuf,
    changes: Vec<Change>,
    /// Files to give to another owner after the commit (uid), root only.
    owners: Vec<(String, u32)>,
}

impl Txn {
    pub fn new(root: &Path) -> Txn {
        Txn { root: root.to_path_buf(), changes: vec![], owners: vec![] }
    }

    fn old(&self, rel: &str) -> Result<Option<Vec<u8>>, Error> {
        match fs::read(self.root.join(rel)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Diagnostic::error(format!("{rel}: cannot read: {e}"))),
        }
    }

    /// Plans `rel` to hold `content`. A later write of the same path wins.
    pub fn write(&mut self, rel: &str, content: impl Into<Vec<u8>>) -> Result<(), Error> {
        self.write_mode(rel, content, 0o644)
    }

    pub fn write_mode(&mut self, rel: &str, content: impl Into<Vec<u8>>, mode: u32) -> Result<(), Error> {
        let new = Some(content.into());
        if let Some(c) = self.changes.iter_mut().find(|c| c.rel == rel) {
            c.new = new;
            c.mode = mode;
            return Ok(());
        }
        let old = self.old(rel)?;
        self.changes.push(Change { rel: rel.to_string(), old, new, mode });
        Ok(())
    }

    pub fn delete(&mut self, rel: &str) -> Result<(), Error> {
        if let Some(c) = self.changes.iter_mut().find(|c| c.rel == rel) {
            c.new = None;
            return Ok(());
        }
        let old = self.old(rel)?;
        if old.is_some() {
            self.changes.push(Change { rel: rel.to_string(), old, new: None, mode: 0 });
        }
        Ok(())
    }

    /// After the commit, make `uid` the owner of `rel` when we run as root
    /// (a 0600 key a non-root container user must read). Best effort.
    pub fn chown(&mut self, rel: &str, uid: u32) {
        self.owners.push((rel.to_string(), uid));
    }

    /// The planned content of `rel` (or what is on disk now).
    pub fn content(&self, rel: &str) -> Result<Option<Vec<u8>>, Error> {
        match self.changes.iter().find(|c| c.rel == rel) {
            Some(c) => Ok(c.new.clone()),
            None => self.old(rel),
        }
    }

    fn effective(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.old != c.new)
    }

    pub fn is_empty(&self) -> bool {
        self.effective().next().is_none()
    }

    pub fn paths(&self) -> Vec<String> {
        self.effective().map(|c| c.rel.clone()).collect()
    }

    /// A unified diff of the whole plan, `git diff` style.
    pub fn diff(&self) -> String {
        let mut out = String::new();
        for c in self.effective() {
            let text = |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            if c.rel.starts_with("certs/") {
                // Key material is noise in a diff; name the file only.
                let what = if c.new.is_none() { "deleted" } else if c.old.is_none() { "created" } else { "regenerated" };
                out.push_str(&format!("certificate file {} would be {what}\n", c.rel));
                continue;
            }
            let (o, n) = (text(&c.old), text(&c.new));
            let a = if c.old.is_some() { format!("a/{}", c.rel) } else { "/dev/null".into() };
            let b = if c.new.is_some() { format!("b/{}", c.rel) } else { "/dev/null".into() };
            let d = similar::TextDiff::from_lines(&o, &n);
            out.push_str(&d.unified_diff().context_radius(3).header(&a, &b).to_string());
        }
        out
    }

    /// Writes the plan. On any failure every file is as it was before.
    pub fn commit(self) -> Result<Vec<String>, Error> {
        let changes: Vec<&Change> = self.effective().collect();
        let mut created_dirs: Vec<PathBuf> = vec![];
        let mut staged: Vec<(PathBuf, PathBuf)> = vec![];
        let cleanup = |staged: &[(PathBuf, PathBuf)], dirs: &[PathBuf]| {
            for (tmp, _) in staged {
                let _ = fs::remove_file(tmp);
            }
            for d in dirs.iter().rev() {
                let _ = fs::remove_dir(d);
            }
        };
        // 1. Stage every new content next to its target.
        for c in &changes {
            let target = self.root.join(&c.rel);
            let Some(new) = &c.new else { continue };
            let res = (|| -> std::io::Result<PathBuf> {
                let dir = target.parent().unwrap();
                let mut missing = vec![];
                let mut d = dir.to_path_buf();
                while !d.exists() {
                    missing.push(d.clone());
                    if !d.pop() {
                        break;
                    }
                }
                for m in missing.iter().rev() {
                    fs::create_dir(m)?;
                    created_dirs.push(m.clone());
                }
                fault_point(&c.rel)?;
                let tmp = dir.join(format!(".{}.xtask-tmp", target.file_name().unwrap().to_string_lossy()));
                let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(c.mode).open(&tmp)?;
                f.write_all(new)?;
                f.sync_all()?;
                fs::set_permissions(&tmp, fs::Permissions::from_mode(c.mode))?;
                Ok(tmp)
            })();
            match res {
                Ok(tmp) => staged.push((tmp, target)),
                Err(e) => {
                    cleanup(&staged, &created_dirs);
                    return Err(Diagnostic::error(format!(
                        "{}: cannot write: {e}\n  nothing was changed; fix the permissions or free space and run the command again",
                        c.rel
                    )));
                }
            }
        }
        // 2. Rename into place and delete; undo on the first failure.
        let mut done: Vec<&Change> = vec![];
        let mut next_staged = 0;
        for c in &changes {
            let target = self.root.join(&c.rel);
            let res = match &c.new {
                Some(_) => {
                    let (tmp, _) = &staged[next_staged];
                    let r = fault_point(&format!("rename:{}", c.rel)).and_then(|_| fs::rename(tmp, &target));
                    if r.is_ok() {
                        next_staged += 1;
                    }
                    r
                }
                None => fs::remove_file(&target),
            };
            if let Err(e) = res {
                for d in done.iter().rev() {
                    let t = self.root.join(&d.rel);
                    match &d.old {
                        Some(old) => {
                            let _ = fs::write(&t, old);
                        }
                        None => {
                            let _ = fs::remove_file(&t);
                        }
                    }
                }
                cleanup(&staged[next_staged..], &created_dirs);
                return Err(Diagnostic::error(format!(
                    "{}: cannot write: {e}\n  every file was put back as it was; fix the cause and run the command again",
                    c.rel
                )));
            }
            done.push(c);
        }
        // Folders left empty by deletions (a removed service) go too.
        for c in changes.iter().filter(|c| c.new.is_none()) {
            let mut d = self.root.join(&c.rel);
            while d.pop() && d != self.root {
                if fs::remove_dir(&d).is_err() {
                    break;
                }
            }
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            for (rel, uid) in &self.owners {
                use std::os::unix::ffi::OsStrExt;
                if let Ok(p) = std::ffi::CString::new(self.root.join(rel).as_os_str().as_bytes()) {
                    // SAFETY: a valid NUL-terminated path.
                    unsafe { libc::chown(p.as_ptr(), *uid, *uid) };
                }
            }
        }
        Ok(changes.iter().map(|c| c.rel.clone()).collect())
    }
}

/// Test hook: `XTASK_FAIL_AT=<path>` makes staging of that file fail, and
/// `XTASK_FAIL_AT=rename:<path>` its rename, to prove rollback.
fn fault_point(what: &str) -> std::io::Result<()> {
    match std::env::var("XTASK_FAIL_AT") {
        Ok(v) if v == what => Err(std::io::Error::other("injected failure (XTASK_FAIL_AT)")),
        _ => Ok(()),
    }
}

/// An exclusive lock on the repository for commands that write: a second
/// `add-service` waits for the first instead of losing its update.
pub struct Lock(#[allow(dead_code)] fs::File);

pub fn lock(root: &Path) -> Result<Lock, Error> {
    use std::os::fd::AsRawFd;
    let path = root.join(".xtask.lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Diagnostic::error(format!("{}: cannot open lock file: {e}", path.display())))?;
    let start = std::time::Instant::now();
    loop {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Lock(f));
        }
        if start.elapsed() > std::time::Duration::from_secs(60) {
            return Err(Diagnostic::error(
                "another xtask command has held .xtask.lock for 60 s\n  fix: wait for it to finish, then run the command again".to_string(),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-txn-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn failure_in_second_write_leaves_all_as_was() {
        let d = tmpdir("fail");
        fs::write(d.join("a"), "old a").unwrap();
        let mut t = Txn::new(&d);
        t.write("a", "new a").unwrap();
        t.write("new/dir/c", "c").unwrap();
        t.write("txn-test-b", "b").unwrap();
        // The rename of the last file fails, after `a` was already replaced.
        std::env::set_var("XTASK_FAIL_AT", "rename:txn-test-b");
        let e = t.commit().unwrap_err().to_string();
        std::env::remove_var("XTASK_FAIL_AT");
        assert!(e.contains("txn-test-b: cannot write"), "{e}");
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "old a");
        assert!(!d.join("new").exists());
        let leftovers: Vec<_> = fs::read_dir(&d).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn writes_modes_and_deletes() {
        let d = tmpdir("ok");
        fs::create_dir_all(d.join("svc")).unwrap();
        fs::write(d.join("svc/old"), "x").unwrap();
        let mut t = Txn::new(&d);
        t.write_mode("k/key.pem", "secret", 0o600).unwrap();
        t.delete("svc/old").unwrap();
        assert!(t.diff().contains("+++ b/k/key.pem"));
        t.commit().unwrap();
        let mode = fs::metadata(d.join("k/key.pem")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!d.join("svc").exists());
    }
}
