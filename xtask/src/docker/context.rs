//! Build contexts as tars: a minimal ustar writer, `.dockerignore`, and the
//! content hash that names cached images. No daemon needed.

use std::path::Path;

use crate::diag::{Diagnostic, Error};

/// A minimal ustar writer: regular files, directories and symlinks, with
/// the owner and mode we choose (uploads give keys to the container's user).
#[derive(Default)]
pub struct Tar {
    pub buf: Vec<u8>,
}

impl Tar {
    /// ustar's split of `path` into its prefix (155 bytes) and name (100)
    /// fields; `None` when no `/` allows it (the caller must refuse: a
    /// cut name would put the file somewhere else).
    pub fn split(path: &str) -> Option<(&str, &str)> {
        if path.len() <= 100 {
            return Some(("", path));
        }
        let cut = path
            .match_indices('/')
            .map(|(i, _)| i)
            .rfind(|&i| i <= 155 && path.len() - i - 1 <= 100)?;
        Some((&path[..cut], &path[cut + 1..]))
    }

    fn header(&mut self, path: &str, size: usize, mode: u32, uid: u32, kind: u8) {
        self.header_link(path, size, mode, (uid, uid), kind, "");
    }

    fn header_link(
        &mut self,
        path: &str,
        size: usize,
        mode: u32,
        (uid, gid): (u32, u32),
        kind: u8,
        link: &str,
    ) {
        let mut h = [0u8; 512];
        // Paths this writer is given fit (`split`; callers check what they
        // read from disk); ours are short.
        let (prefix, name) = Tar::split(path).unwrap_or(("", path));
        let name = &name.as_bytes()[..name.len().min(100)];
        let prefix = &prefix.as_bytes()[..prefix.len().min(155)];
        h[..name.len()].copy_from_slice(name);
        let oct = |h: &mut [u8], off: usize, len: usize, v: u64| {
            let s = format!("{:0w$o}", v, w = len - 1);
            h[off..off + len - 1].copy_from_slice(s.as_bytes());
        };
        oct(&mut h, 100, 8, mode as u64);
        oct(&mut h, 108, 8, uid as u64);
        oct(&mut h, 116, 8, gid as u64);
        oct(&mut h, 124, 12, size as u64);
        oct(&mut h, 136, 12, 0);
        h[156] = kind;
        let link = &link.as_bytes()[..link.len().min(100)];
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[345..345 + prefix.len()].copy_from_slice(prefix);
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.buf.extend_from_slice(&h);
    }

    pub fn dir(&mut self, path: &str, mode: u32, uid: u32) {
        self.header(
            &format!("{}/", path.trim_end_matches('/')),
            0,
            mode,
            uid,
            b'5',
        );
    }

    /// A folder owned by `uid` and `gid` (`dir` gives the group the uid).
    pub fn dir_owned(&mut self, path: &str, mode: u32, uid: u32, gid: u32) {
        let path = format!("{}/", path.trim_end_matches('/'));
        self.header_link(&path, 0, mode, (uid, gid), b'5', "");
    }

    pub fn file(&mut self, path: &str, data: &[u8], mode: u32, uid: u32) {
        self.header(path, data.len(), mode, uid, b'0');
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0, pad));
    }

    /// A symlink entry (`target` at most 100 bytes: ustar's linkname field).
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.header_link(path, 0, 0o777, (0, 0), b'2', target);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend([0u8; 1024]);
        self.buf
    }
}

/// `.dockerignore` patterns: `*`, `**`, `?`, leading `!` to re-include.
pub struct Ignore(Vec<(bool, String)>);

impl Ignore {
    pub fn load(ctx: &Path) -> Ignore {
        let text = std::fs::read_to_string(ctx.join(".dockerignore")).unwrap_or_default();
        Ignore(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| match l.strip_prefix('!') {
                    Some(p) => (false, p.trim_start_matches('/').to_string()),
                    None => (true, l.trim_start_matches('/').to_string()),
                })
                .collect(),
        )
    }

    pub fn ignored(&self, rel: &str) -> bool {
        let mut out = false;
        for (excl, pat) in &self.0 {
            // A pattern matching a parent folder covers everything below it.
            let mut p = rel;
            loop {
                if glob(pat, p) {
                    out = *excl;
                    break;
                }
                match p.rfind('/') {
                    Some(i) => p = &p[..i],
                    None => break,
                }
            }
        }
        out
    }
}

fn glob(pat: &str, s: &str) -> bool {
    if let Some(rest) = pat.strip_prefix("**/") {
        return glob(rest, s) || s.match_indices('/').any(|(i, _)| glob(rest, &s[i + 1..]));
    }
    let (p, t): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    fn m(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => m(&p[1..], t) || (!t.is_empty() && t[0] != '/' && m(p, &t[1..])),
            (Some('?'), Some(c)) if *c != '/' => m(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &t[1..]),
            _ => false,
        }
    }
    m(&p, &t)
}

/// The build context as a tar (sorted, mtime 0, so equal input gives equal
/// bytes and the hash below is stable).
pub fn context_tar(ctx: &Path, dockerfile: &str) -> Result<Vec<u8>, Error> {
    let ig = Ignore::load(ctx);
    let mut files = vec![];
    let mut stack = vec![ctx.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| {
            Diagnostic::error(format!("cannot read build context: {e}"))
                .at_path(&d)
                .fix("make it readable, or list it in the context's .dockerignore")
        })?;
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(ctx).unwrap().to_string_lossy().into_owned();
            // Like the docker CLI: the Dockerfile and .dockerignore are sent
            // even when ignored (the builder needs the one, and COPY skips both).
            if ig.ignored(&rel) && rel != dockerfile && rel != ".dockerignore" {
                continue;
            }
            // The entry itself, not what a link names (as the docker CLI
            // sends it): a link to `..` cannot loop the walk.
            let Ok(ft) = e.file_type() else { continue };
            if Tar::split(&rel).is_none() {
                return Err(Diagnostic::error("the path is too long for the build context's tar (ustar: 100-byte names under 155-byte folders)").at_path(&p).fix("shorten it, or list it in the context's .dockerignore"));
            }
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_symlink() || ft.is_file() {
                files.push((rel, p, ft.is_symlink()));
            }
            // FIFOs, sockets and devices are left out: reading a FIFO would
            // block verify, and no COPY gets content from them.
        }
    }
    files.sort();
    let mut tar = Tar::default();
    for (rel, p, link) in files {
        if link {
            let to = std::fs::read_link(&p).map_err(|e| {
                Diagnostic::error(e.to_string())
                    .at_path(&p)
                    .fix("list it in the context's .dockerignore")
            })?;
            let to = to.to_string_lossy();
            if to.len() > 100 {
                return Err(Diagnostic::error(
                    "the link's target is longer than ustar's 100 bytes",
                )
                .at_path(&p)
                .fix("shorten it, or list it in the context's .dockerignore"));
            }
            tar.symlink(&rel, &to);
            continue;
        }
        let data = crate::model::files::read_bounded_max(&p, CONTEXT_FILE_MAX).map_err(|e| {
            Diagnostic::error(e.to_string())
                .at_path(&p)
                .fix("list it in the build context's .dockerignore")
        })?;
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0o644);
        tar.file(&rel, &data, mode, 0);
    }
    Ok(tar.finish())
}

/// The largest file a build context may hold: the context is built in
/// memory, and anything larger belongs in .dockerignore or an image.
pub const CONTEXT_FILE_MAX: u64 = 512 << 20;

/// A file as a stream of 1 MiB pieces, for a request body (image imports,
/// archive uploads): the engine gets tens or hundreds of MiB while our
/// memory stays small. A read error ends the stream with that error, so
/// the request fails instead of sending a cut body.
pub fn file_chunks(
    file: std::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(file), |f| async move {
        use std::io::Read;
        let mut f = f?;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_globs() {
        let ig = Ignore(vec![
            (true, "**/__pycache__".into()),
            (true, "*.log".into()),
            (false, "keep.log".into()),
        ]);
        assert!(ig.ignored("a/b/__pycache__/x.pyc"));
        assert!(ig.ignored("x.log"));
        assert!(!ig.ignored("keep.log"));
        assert!(!ig.ignored("a/x.py"));
    }

    #[test]
    fn tar_headers_have_valid_checksums() {
        let mut t = Tar::default();
        t.file("a/b.txt", b"hello", 0o600, 10001);
        let buf = t.finish();
        let mut h = buf[..512].to_vec();
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        h[148..156].copy_from_slice(b"        ");
        assert_eq!(h.iter().map(|b| *b as u32).sum::<u32>(), stored);
        assert_eq!(buf.len(), 512 + 512 + 1024);
    }
}
#[cfg(test)]
mod ctx_tests {
    #[test]
    fn the_service_context_leaves_env_files_out() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("src");
        let tar = super::context_tar(&src, "backend_services/accounts/Dockerfile").unwrap();
        let text = String::from_utf8_lossy(&tar);
        assert!(text.contains("backend_services/accounts/server.py"));
        let names: Vec<&str> = text
            .match_indices("service.env\0")
            .map(|(i, _)| &text[i.saturating_sub(40)..i + 11])
            .collect();
        assert!(
            names.is_empty(),
            "env files must not enter the build context: {names:?}"
        );
    }
}

#[cfg(test)]
mod special_file_tests {
    use std::os::unix::fs::symlink;

    fn ctx(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-ctx-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("Dockerfile"), "FROM scratch\n").unwrap();
        d
    }

    /// What `tar tvf` (GNU tar, the oracle) lists.
    fn listing(tar: &[u8], d: &std::path::Path) -> String {
        let f = d.with_extension("tar");
        std::fs::write(&f, tar).unwrap();
        let o = std::process::Command::new("tar")
            .arg("tvf")
            .arg(&f)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let _ = std::fs::remove_file(&f);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    #[test]
    fn links_are_sent_as_links_and_fifos_are_left_out() {
        let d = ctx("special");
        // A link back up would loop a walk that followed it; a link out of
        // the context must not bring what it names in.
        symlink("..", d.join("sub/up")).unwrap();
        symlink("/etc/hostname", d.join("outside")).unwrap();
        let fifo = std::ffi::CString::new(d.join("pipe").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let tar = super::context_tar(&d, "Dockerfile").unwrap();
        let l = listing(&tar, &d);
        assert!(l.contains("sub/up -> .."), "{l}");
        assert!(l.contains("outside -> /etc/hostname"), "{l}");
        assert!(!l.contains("pipe"), "{l}");
        assert_eq!(l.lines().count(), 3, "{l}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_path_ustar_cannot_hold_is_refused_not_cut() {
        let d = ctx("long");
        std::fs::write(d.join(format!("sub/{}", "n".repeat(120))), "x").unwrap();
        let e = super::context_tar(&d, "Dockerfile")
            .unwrap_err()
            .to_string();
        assert!(e.contains("too long") && e.contains(".dockerignore"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
