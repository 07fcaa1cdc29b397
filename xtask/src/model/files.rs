//! Reading the repository's files safely: regular files only, bounded in
//! size, links that leave the repository refused, UTF-8 checked. Every
//! model reader (repo, cnf, nginx, names) and the build context go through
//! here.

use std::path::Path;

use crate::diag::{Diagnostic, Error};

/// Larger inputs are refused: nothing this tool edits or reads (compose,
/// openssl.cnf, NGINX configs, `.env` and env files, Cargo.toml) is
/// legitimately that big.
pub const MAX_FILE: u64 = 4 << 20;
/// The compose file has its own limit: 120k services written out in full
/// are about 15 MB, and parsing is linear, so 64 MiB is still quick.
pub const MAX_COMPOSE_FILE: u64 = 64 << 20;

/// Why `path` must not be read: not a regular file (a FIFO would block
/// the reader forever, a device could be endless) or over `MAX_FILE`.
/// Follows symlinks (read_text has already refused those that leave).
pub fn check_file(path: &Path) -> Result<(), String> {
    let m = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    check_meta(&m, MAX_FILE)
}

fn check_meta(m: &std::fs::Metadata, max: u64) -> Result<(), String> {
    if !m.is_file() {
        return Err(
            "is not a regular file (a FIFO, socket, device or folder); refusing to read it".into(),
        );
    }
    if m.len() > max {
        return Err(format!(
            "is {} bytes, over the {max}-byte ({} MiB) limit",
            m.len(),
            max >> 20
        ));
    }
    Ok(())
}

/// Reads a file that must be regular and at most `MAX_FILE` bytes. Opened
/// with O_NONBLOCK so that a FIFO put in place after a stat cannot block
/// the open; checked again on the open descriptor; read through `take` so
/// a file that grows is still bounded.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    read_bounded_max(path, MAX_FILE)
}

/// `read_bounded` with another limit (the compose file's).
pub fn read_bounded_max(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    check_meta(&f.metadata().map_err(|e| format!("cannot read: {e}"))?, max)?;
    let mut bytes = vec![];
    f.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("grew over the {max}-byte limit while being read"));
    }
    Ok(bytes)
}

/// Reads a repository file as UTF-8 text, refusing what we must not edit:
/// links that leave the repository, huge files, non-UTF-8 bytes.
pub fn read_text(root: &Path, rel: &str) -> Result<String, Error> {
    read_text_max(root, rel, MAX_FILE)
}

/// `read_text` with a size limit of its own (the compose files).
pub fn read_text_max(root: &Path, rel: &str, max: u64) -> Result<String, Error> {
    let p = root.join(rel);
    let meta = std::fs::symlink_metadata(&p)
        .map_err(|e| Diagnostic::error(format!("cannot read: {e}")).at(rel, 0))?;
    if meta.file_type().is_symlink() {
        let real = std::fs::canonicalize(&p)
            .map_err(|e| Diagnostic::error(format!("broken symlink: {e}")).at(rel, 1))?;
        let root_real = std::fs::canonicalize(root).unwrap_or(root.to_path_buf());
        if !real.starts_with(&root_real) {
            return Err(Diagnostic::error(format!(
                "is a symlink to {}, outside the repository",
                real.display()
            ))
            .at(rel, 1)
            .fix("replace the link with the file itself"));
        }
    }
    let bytes = read_bounded_max(&p, max).map_err(|e| {
        Diagnostic::error(e).at(rel, 1).fix(
            "this file should be a small regular text file; check that the right file is in place",
        )
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let upto = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..upto].iter().filter(|b| **b == b'\n').count() + 1;
        Diagnostic::error("is not UTF-8 text")
            .at(rel, line)
            .fix("save the file as UTF-8")
    })
}
