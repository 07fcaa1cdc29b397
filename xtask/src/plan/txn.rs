//! All-or-nothing writes. A command plans every file it will create, change
//! or delete into a `Txn`; `commit` hands the plan to `journal`, which makes
//! it crash-safe (see there). `--dry-run` prints the same plan as a unified
//! diff. Also the repository lock: writers exclusive, readers shared, and
//! whoever takes it first recovers an interrupted change.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::diag::{Diagnostic, Error};
use crate::plan::journal::{self, Planned};

#[derive(Debug)]
struct Change {
    rel: String,
    old: Option<Vec<u8>>,
    new: Option<Vec<u8>>,
    /// The mode asked for; None keeps the existing file's (0644 if new).
    mode: Option<u32>,
}

#[derive(Debug)]
pub struct Txn {
    /// The root with every link resolved: all paths are checked against it.
    root: PathBuf,
    changes: Vec<Change>,
    /// Where each path is in `changes`: a plan may hold a file per service
    /// (the data layer's), and a search per write would be quadratic.
    index: HashMap<String, usize>,
    /// Files to give to another owner (uid), root only.
    owners: Vec<(String, u32)>,
}

impl Txn {
    pub fn new(root: &Path) -> Txn {
        let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        Txn {
            root,
            changes: vec![],
            index: HashMap::new(),
            owners: vec![],
        }
    }

    /// The real path of `rel` inside the root: links on the way (and the
    /// final one when `follow`) are followed if they stay inside, refused
    /// (exit 2, naming the link) when they leave it or dangle. This is the
    /// transaction's own minimal path-join gate: relative, plain components.
    fn resolve(&self, rel: &str, follow: bool) -> Result<String, Error> {
        let comps: Vec<Component> = Path::new(rel).components().collect();
        if comps.is_empty() || comps.iter().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Diagnostic::error("not a path inside the repository")
                .at(rel, 0)
                .fix("this is a bug in the plan; report it"));
        }
        let mut cur = self.root.clone();
        for (i, c) in comps.iter().enumerate() {
            let next = cur.join(c);
            let last = i + 1 == comps.len();
            match fs::symlink_metadata(&next) {
                Ok(m) if m.file_type().is_symlink() && (follow || !last) => {
                    let shown = next
                        .strip_prefix(&self.root)
                        .unwrap_or(&next)
                        .display()
                        .to_string();
                    let to = fs::read_link(&next)
                        .map(|t| t.display().to_string())
                        .unwrap_or_default();
                    let real = fs::canonicalize(&next).map_err(|_| {
                        Diagnostic::error(format!("is a symlink to {to}, which does not exist")).at(&shown, 0).fix("remove the link (or make it point to a file inside the repository)")
                    })?;
                    if !real.starts_with(&self.root) {
                        return Err(Diagnostic::error(format!("is a symlink to {to}, outside the repository; the xtask writes only inside it"))
                            .at(&shown, 0)
                            .fix("replace the link with the file itself"));
                    }
                    cur = real;
                }
                _ => cur = next,
            }
        }
        let out = cur
            .strip_prefix(&self.root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if out.is_empty() || out == journal::DIR || out.starts_with(&format!("{}/", journal::DIR)) {
            return Err(Diagnostic::error(format!(
                "{rel}: resolves to {out:?}, which the xtask must not write"
            ))
            .fix("remove the link"));
        }
        Ok(out)
    }

    fn planned_mut(&mut self, rel: &str) -> Option<&mut Change> {
        self.index.get(rel).map(|&i| &mut self.changes[i])
    }

    fn push(&mut self, c: Change) {
        self.index.insert(c.rel.clone(), self.changes.len());
        self.changes.push(c);
    }

    fn old(&self, rel: &str) -> Result<Option<Vec<u8>>, Error> {
        match fs::read(self.root.join(rel)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Diagnostic::error(format!("cannot read: {e}")).at(rel, 0)),
        }
    }

    /// Plans `rel` to hold `content` (keeping its mode). A later write of
    /// the same path wins.
    pub fn write(&mut self, rel: &str, content: impl Into<Vec<u8>>) -> Result<(), Error> {
        self.plan_write(rel, content.into(), None)
    }

    pub fn write_mode(
        &mut self,
        rel: &str,
        content: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Result<(), Error> {
        self.plan_write(rel, content.into(), Some(mode))
    }

    fn plan_write(&mut self, rel: &str, content: Vec<u8>, mode: Option<u32>) -> Result<(), Error> {
        let rel = self.resolve(rel, true)?;
        if let Some(c) = self.planned_mut(&rel) {
            c.new = Some(content);
            c.mode = mode.or(c.mode);
            return Ok(());
        }
        let old = self.old(&rel)?;
        self.push(Change {
            rel,
            old,
            new: Some(content),
            mode,
        });
        Ok(())
    }

    /// Plans the deletion of `rel`; a link is deleted, not its target.
    pub fn delete(&mut self, rel: &str) -> Result<(), Error> {
        let rel = self.resolve(rel, false)?;
        if let Some(c) = self.planned_mut(&rel) {
            c.new = None;
            return Ok(());
        }
        let p = self.root.join(&rel);
        let old = match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => Some(
                fs::read_link(&p)
                    .map(|t| t.to_string_lossy().into_owned().into_bytes())
                    .unwrap_or_default(),
            ),
            Ok(_) => self.old(&rel)?,
            Err(_) => None,
        };
        if old.is_some() {
            self.push(Change {
                rel,
                old,
                new: None,
                mode: None,
            });
        }
        Ok(())
    }

    /// Makes `uid` the owner of `rel` when we run as root (a 0600 key a
    /// non-root container user must read). Set on the staged file before
    /// its content is written.
    pub fn chown(&mut self, rel: &str, uid: u32) {
        let rel = self.resolve(rel, true).unwrap_or_else(|_| rel.to_string());
        self.owners.push((rel, uid));
    }

    /// The planned content of `rel` (or what is on disk now).
    pub fn content(&self, rel: &str) -> Result<Option<Vec<u8>>, Error> {
        let rel = self.resolve(rel, true)?;
        match self.index.get(&rel).map(|&i| &self.changes[i]) {
            Some(c) => Ok(c.new.clone()),
            None => self.old(&rel),
        }
    }

    fn effective(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(|c| c.old != c.new || (c.new.is_some() && self.mode_changes(c)))
    }

    /// A rewrite with the same bytes still counts when the mode or owner must change.
    fn mode_changes(&self, c: &Change) -> bool {
        let Ok(m) = fs::metadata(self.root.join(&c.rel)) else {
            return false;
        };
        c.mode.is_some_and(|want| m.mode() & 0o7777 != want)
            || self
                .owners
                .iter()
                .any(|(r, u)| *r == c.rel && journal::is_root_user() && m.uid() != *u)
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
            let text = |b: &Option<Vec<u8>>| {
                b.as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            };
            if c.rel.starts_with("certs/") {
                // Key material is noise in a diff; name the file only.
                let what = if c.new.is_none() {
                    "deleted"
                } else if c.old.is_none() {
                    "created"
                } else {
                    "regenerated"
                };
                out.push_str(&format!("certificate file {} would be {what}\n", c.rel));
                continue;
            }
            let (o, n) = (text(&c.old), text(&c.new));
            let a = if c.old.is_some() {
                format!("a/{}", c.rel)
            } else {
                "/dev/null".into()
            };
            let b = if c.new.is_some() {
                format!("b/{}", c.rel)
            } else {
                "/dev/null".into()
            };
            let d = similar::TextDiff::from_lines(&o, &n);
            out.push_str(
                &d.unified_diff()
                    .context_radius(3)
                    .header(&a, &b)
                    .to_string(),
            );
        }
        out
    }

    /// Writes the plan, crash-safe. On any failure every file is as it was.
    pub fn commit(self) -> Result<Vec<String>, Error> {
        let mut planned = vec![];
        for c in self.effective() {
            let meta = fs::metadata(self.root.join(&c.rel)).ok();
            let mode = c
                .mode
                .or(meta.as_ref().map(|m| m.mode() & 0o7777))
                .unwrap_or(0o644);
            let owner = match self.owners.iter().rev().find(|(r, _)| *r == c.rel) {
                Some((_, uid)) => Some((*uid, *uid)),
                // A rewritten file keeps its owner.
                None => meta.as_ref().map(|m| (m.uid(), m.gid())),
            };
            planned.push(Planned {
                rel: c.rel.clone(),
                new: c.new.clone(),
                mode,
                owner,
            });
        }
        if planned.is_empty() {
            return Ok(vec![]);
        }
        eprintln!("xtask: writing in {}", self.root.display());
        journal::commit(&self.root, &planned)?;
        Ok(planned.into_iter().map(|p| p.rel).collect())
    }
}

/// A lock on the repository (`.xtask.lock`, flock): exclusive for commands
/// that write, shared for readers (`check`, `list`, dry runs), so a reader
/// never sees half a change. Released on drop.
pub struct Lock(#[allow(dead_code)] Option<fs::File>);

fn flock(f: &fs::File, op: libc::c_int, path: &Path) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    let start = std::time::Instant::now();
    loop {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        if start.elapsed() > std::time::Duration::from_secs(60) {
            return Err(Diagnostic::error(format!(
                "another xtask command has held {} for 60 s",
                path.display()
            ))
            .fix("wait for it to finish, then run the command again"));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn open_lock(root: &Path) -> Result<(fs::File, PathBuf), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = root.join(".xtask.lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o644)
        .open(&path)
        .map_err(|e| {
            Diagnostic::error(format!("{}: cannot open lock file: {e}", path.display()))
                .fix("remove it if it is a link, or make the folder writable")
        })?;
    Ok((f, path))
}

/// The exclusive lock, after recovering any interrupted change.
pub fn lock(root: &Path) -> Result<Lock, Error> {
    let (f, path) = open_lock(root)?;
    flock(&f, libc::LOCK_EX, &path)?;
    journal::recover(root)?;
    Ok(Lock(Some(f)))
}

/// The shared lock for readers. A reader that finds an interrupted change
/// takes the exclusive lock to recover it first, then shares.
pub fn lock_shared(root: &Path) -> Result<Lock, Error> {
    let path = root.join(".xtask.lock");
    let f = match open_lock(root) {
        Ok((f, _)) => f,
        // A read-only checkout: an existing lock file can still be shared.
        Err(e) => match fs::File::open(&path) {
            Ok(f) => f,
            Err(_) if !journal::pending(root) => return Ok(Lock(None)),
            Err(_) => return Err(e),
        },
    };
    flock(&f, libc::LOCK_SH, &path)?;
    if journal::pending(root) {
        flock(&f, libc::LOCK_EX, &path)?;
        journal::recover(root)?;
        flock(&f, libc::LOCK_SH, &path)?;
    }
    Ok(Lock(Some(f)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
        let leftovers: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
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
        let mode = fs::metadata(d.join("k/key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!d.join("svc").exists());
    }
}
