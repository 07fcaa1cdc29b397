//! Full snapshots for the transaction tests: every file, directory and
//! symlink under a root with its bytes (or link target), type, mode, owner
//! and group, `certs/` and `.xtask-txn/` included. Only the lock file is left
//! out (it is created by the first command and holds no state).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub data: Vec<u8>,
}

impl Entry {
    pub fn meta(&self) -> (char, u32, u32, u32) {
        (self.kind, self.mode, self.uid, self.gid)
    }
}

pub type Snap = BTreeMap<String, Entry>;

pub fn snap(root: &Path) -> Snap {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == ".xtask.lock" {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let (kind, data) = if ft.is_symlink() {
                (
                    'l',
                    std::fs::read_link(&p)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                        .into_bytes(),
                )
            } else if ft.is_dir() {
                stack.push(p.clone());
                ('d', vec![])
            } else {
                ('f', std::fs::read(&p).unwrap())
            };
            out.insert(
                rel,
                Entry {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    data,
                },
            );
        }
    }
    out
}

/// A byte-, mode- and owner-preserving copy (`cp -a`), links kept as links.
pub fn clone_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// The first difference between two snapshots, for messages.
pub fn first_diff(a: &Snap, b: &Snap) -> Option<String> {
    for (k, v) in a {
        match b.get(k) {
            None => return Some(format!("{k}: gone")),
            Some(w) if w.meta() != v.meta() => {
                return Some(format!("{k}: {:?} became {:?}", v.meta(), w.meta()))
            }
            Some(w) if w.data != v.data => return Some(format!("{k}: content changed")),
            _ => {}
        }
    }
    b.keys()
        .find(|k| !a.contains_key(*k))
        .map(|k| format!("{k}: appeared"))
}

pub fn assert_snap_eq(a: &Snap, b: &Snap, what: &str) {
    if let Some(d) = first_diff(a, b) {
        panic!("{what}: {d}");
    }
}

/// Files that hold a private key and are readable or writable by group or others.
pub fn exposed_keys(root: &Path) -> Vec<String> {
    snap(root)
        .into_iter()
        .filter(|(_, e)| {
            e.kind == 'f' && e.mode & 0o077 != 0 && e.data.windows(11).any(|w| w == b"PRIVATE KEY")
        })
        .map(|(k, e)| format!("{k} mode {:o}", e.mode))
        .collect()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
