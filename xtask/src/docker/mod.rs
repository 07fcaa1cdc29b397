//! The Docker Engine API (bollard) as `verify` and `images` use it: the
//! connection, build contexts as tars (honouring `.dockerignore`), image
//! builds with a content-addressed cache, container logs and cleanup.

use std::collections::HashMap;
use std::path::Path;

use bollard::query_parameters as q;
use bollard::Docker;
use futures_util::StreamExt;

use crate::diag::{Diagnostic, Error};

/// Every object a verify run creates carries this label (value: run id),
/// and `monorepo.verify.pid` names the process that owns it.
pub const RUN_LABEL: &str = "monorepo.verify.run";
pub const PID_LABEL: &str = "monorepo.verify.pid";
/// Images built by this tool: the hash of what they were built from.
pub const HASH_LABEL: &str = "monorepo.build.hash";

pub async fn connect() -> Result<Docker, Error> {
    let sock = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    if let Some(path) = sock.strip_prefix("unix://") {
        if !Path::new(path).exists() {
            return Err(Diagnostic::error(format!("the Docker daemon socket {path} does not exist")).fix("start the Docker daemon (e.g. `systemctl start docker`) or set DOCKER_HOST"));
        }
    }
    let d = Docker::connect_with_local_defaults().map_err(|e| Diagnostic::error(format!("cannot connect to Docker: {e}")))?;
    d.negotiate_version().await.map_err(|e| {
        Diagnostic::error(format!("the Docker daemon at {sock} does not answer: {e}")).fix("start the daemon, or check that you may use its socket")
    })
}

// --- tar ------------------------------------------------------------------

/// A minimal ustar writer: regular files and directories, with the owner
/// and mode we choose (uploads give keys to the container's user).
#[derive(Default)]
pub struct Tar {
    pub buf: Vec<u8>,
}

impl Tar {
    fn header(&mut self, path: &str, size: usize, mode: u32, uid: u32, kind: u8) {
        let mut h = [0u8; 512];
        // Long paths split into ustar's prefix (155) and name (100) fields.
        let (prefix, name) = if path.len() <= 100 {
            ("", path)
        } else {
            let cut = path.match_indices('/').map(|(i, _)| i).rfind(|&i| i <= 155 && path.len() - i - 1 <= 100);
            match cut {
                Some(i) => (&path[..i], &path[i + 1..]),
                None => ("", &path[..100]),
            }
        };
        h[..name.len()].copy_from_slice(name.as_bytes());
        let oct = |h: &mut [u8], off: usize, len: usize, v: u64| {
            let s = format!("{:0w$o}", v, w = len - 1);
            h[off..off + len - 1].copy_from_slice(s.as_bytes());
        };
        oct(&mut h, 100, 8, mode as u64);
        oct(&mut h, 108, 8, uid as u64);
        oct(&mut h, 116, 8, uid as u64);
        oct(&mut h, 124, 12, size as u64);
        oct(&mut h, 136, 12, 0);
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.buf.extend_from_slice(&h);
    }

    pub fn dir(&mut self, path: &str, mode: u32, uid: u32) {
        self.header(&format!("{}/", path.trim_end_matches('/')), 0, mode, uid, b'5');
    }

    pub fn file(&mut self, path: &str, data: &[u8], mode: u32, uid: u32) {
        self.header(path, data.len(), mode, uid, b'0');
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0, pad));
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
        let rd = std::fs::read_dir(&d).map_err(|e| Diagnostic::error(format!("{}: cannot read build context: {e}", d.display())))?;
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(ctx).unwrap().to_string_lossy().into_owned();
            // Like the docker CLI: the Dockerfile and .dockerignore are sent
            // even when ignored (the builder needs the one, and COPY skips both).
            if ig.ignored(&rel) && rel != dockerfile && rel != ".dockerignore" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push((rel, p));
            }
        }
    }
    files.sort();
    let mut tar = Tar::default();
    for (rel, p) in files {
        let data = std::fs::read(&p).map_err(|e| Diagnostic::error(format!("{}: {e}", p.display())))?;
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).map(|m| m.permissions().mode() & 0o777).unwrap_or(0o644);
        tar.file(&rel, &data, mode, 0);
    }
    Ok(tar.finish())
}

pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn image_exists(d: &Docker, tag: &str) -> bool {
    d.inspect_image(tag).await.is_ok()
}

pub async fn image_id(d: &Docker, tag: &str) -> Option<String> {
    d.inspect_image(tag).await.ok().and_then(|i| i.id)
}

/// Builds `tag` from a context tar unless an image of the same inputs is
/// there already. Returns whether it built. A failed build returns its output.
pub async fn build(
    d: &Docker,
    tag: &str,
    context: Vec<u8>,
    dockerfile: &str,
    args: &HashMap<String, String>,
    labels: HashMap<String, String>,
) -> Result<(), String> {
    let opts = q::BuildImageOptions {
        dockerfile: dockerfile.to_string(),
        t: Some(tag.to_string()),
        rm: true,
        forcerm: true,
        buildargs: Some(args.clone()),
        labels: Some(labels),
        ..Default::default()
    };
    let mut s = d.build_image(opts, None, Some(bollard::body_full(context.into())));
    let mut log = String::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(info) => {
                if let Some(t) = info.stream {
                    log.push_str(&t);
                }
                if let Some(e) = info.error_detail.and_then(|e| e.message) {
                    log.push_str(&e);
                    return Err(log);
                }
            }
            Err(e) => {
                log.push_str(&format!("\n{e}"));
                return Err(log);
            }
        }
    }
    Ok(())
}

/// Removes the other tags of `repo:tag`'s repository (earlier builds of the
/// same service), so the cache does not grow with every change. Images
/// still in use are left alone.
pub async fn remove_older_tags(d: &Docker, current: &str) {
    let Some((repo, _)) = current.split_once(':') else { return };
    let mut filters = HashMap::new();
    filters.insert("reference".to_string(), vec![format!("{repo}:*")]);
    let images = d.list_images(Some(q::ListImagesOptions { filters: Some(filters), ..Default::default() })).await.unwrap_or_default();
    for img in images {
        for t in img.repo_tags.iter().filter(|t| t.as_str() != current) {
            let _ = d.remove_image(t, None::<q::RemoveImageOptions>, None).await;
        }
    }
}

/// The last `n` lines a container printed (stdout and stderr).
pub async fn logs(d: &Docker, id: &str, n: usize) -> String {
    let opts = q::LogsOptions { stdout: true, stderr: true, tail: n.to_string(), ..Default::default() };
    let mut s = d.logs(id, Some(opts));
    let mut out = String::new();
    while let Some(Ok(chunk)) = s.next().await {
        out.push_str(&chunk.to_string());
    }
    out
}

/// Removes every container, network and volume labelled with `run`
/// (or, with `run = None`, those of runs whose process is gone).
pub async fn sweep(d: &Docker, run: Option<&str>) -> usize {
    let alive = |pid: Option<&String>| -> bool {
        pid.and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| unsafe { libc::kill(p, 0) } == 0 && p != std::process::id() as i32)
    };
    let filter = match run {
        Some(r) => format!("{RUN_LABEL}={r}"),
        None => RUN_LABEL.to_string(),
    };
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![filter]);
    let mut removed = 0;
    let cs = d
        .list_containers(Some(q::ListContainersOptions { all: true, filters: Some(filters.clone()), ..Default::default() }))
        .await
        .unwrap_or_default();
    // Containers first (all at once), then what they were using.
    let ids: Vec<String> = cs
        .into_iter()
        .filter(|c| run.is_some() || !alive(c.labels.as_ref().and_then(|l| l.get(PID_LABEL))))
        .filter_map(|c| c.id)
        .collect();
    removed += ids.len();
    futures_util::future::join_all(
        ids.iter().map(|id| d.remove_container(id, Some(q::RemoveContainerOptions { force: true, v: true, ..Default::default() }))),
    )
    .await;
    let nets = d.list_networks(Some(q::ListNetworksOptions { filters: Some(filters.clone()) })).await.unwrap_or_default();
    let ids: Vec<String> = nets
        .into_iter()
        .filter(|n| run.is_some() || !alive(n.labels.as_ref().and_then(|l| l.get(PID_LABEL))))
        .filter_map(|n| n.id)
        .collect();
    removed += futures_util::future::join_all(ids.iter().map(|id| d.remove_network(id))).await.iter().filter(|r| r.is_ok()).count();
    let vols = d.list_volumes(Some(q::ListVolumesOptions { filters: Some(filters) })).await.ok();
    let names: Vec<String> = vols
        .and_then(|v| v.volumes)
        .unwrap_or_default()
        .into_iter()
        .filter(|v| run.is_some() || !alive(v.labels.get(PID_LABEL)))
        .map(|v| v.name)
        .collect();
    removed += futures_util::future::join_all(names.iter().map(|n| d.remove_volume(n, None::<q::RemoveVolumeOptions>)))
        .await
        .iter()
        .filter(|r| r.is_ok())
        .count();
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_globs() {
        let ig = Ignore(vec![(true, "**/__pycache__".into()), (true, "*.log".into()), (false, "keep.log".into())]);
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
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("src");
        let tar = super::context_tar(&src, "backend_services/accounts/Dockerfile").unwrap();
        let text = String::from_utf8_lossy(&tar);
        assert!(text.contains("backend_services/accounts/server.py"));
        let names: Vec<&str> = text.match_indices("service.env\0").map(|(i, _)| &text[i.saturating_sub(40)..i + 11]).collect();
        assert!(names.is_empty(), "env files must not enter the build context: {names:?}");
    }
}
