//! The one model of the repository that every command reads: the compose
//! file, openssl.cnf, the NGINX routes, the workspace members and the
//! service folders, each with the text it was read from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Error};
use crate::model::cargo_toml::{self, Members};
use crate::model::cnf::{self, Cnf};
use crate::model::compose::{self, Compose};
use crate::model::nginx;
use crate::model::yaml;

pub const SERVICES_DIR: &str = "src/backend_services";
/// Names a service may not take: folders of `src/`, the infrastructure
/// services and the networks.
pub const RESERVED: &[&str] = &[
    "common",
    "proto",
    "postgres",
    "redis",
    "nginx",
    "grpc-network",
    "pg-network",
    "redis-network",
    "web-network",
    "xtask",
    "probe",
    "certs",
];
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

pub struct Repo {
    pub root: PathBuf,
    /// The compose file used (`compose::FILES`, first found) and its text.
    pub compose_file: String,
    pub compose_text: String,
    /// The YAML tree of `compose_text` (`compose` is read from it).
    pub compose_tree: Option<yaml::Node>,
    /// The override file beside it, if any (read by `check`).
    pub override_file: Option<(String, Compose)>,
    pub compose: Compose,
    pub cnf_text: String,
    pub cnf: Cnf,
    pub cargo_text: String,
    pub members: Members,
    pub nginx: nginx::Config,
    /// Folders under `src/backend_services/`.
    pub service_dirs: Vec<String>,
    /// Variables from `.env`, where image overrides live.
    pub dotenv: BTreeMap<String, String>,
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
        .map_err(|e| Diagnostic::error(format!("{rel}: cannot read: {e}")))?;
    if meta.file_type().is_symlink() {
        let real = std::fs::canonicalize(&p)
            .map_err(|e| Diagnostic::error(format!("{rel}:1: broken symlink: {e}")))?;
        let root_real = std::fs::canonicalize(root).unwrap_or(root.to_path_buf());
        if !real.starts_with(&root_real) {
            return Err(Diagnostic::error(format!(
                "{rel}:1: is a symlink to {}, outside the repository",
                real.display()
            ))
            .fix("replace the link with the file itself"));
        }
    }
    let bytes = read_bounded_max(&p, max).map_err(|e| {
        Diagnostic::error(format!("{rel}:1: {e}")).fix(
            "this file should be a small regular text file; check that the right file is in place",
        )
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let upto = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..upto].iter().filter(|b| **b == b'\n').count() + 1;
        Diagnostic::error(format!("{rel}:{line}: is not UTF-8 text")).fix("save the file as UTF-8")
    })
}

pub fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

/// What makes a folder the monorepo's root. All must be there: a compose
/// file and openssl.cnf alone (an example, a test fixture) are not enough.
const MARKERS: &str =
    "`Cargo.toml` with `[workspace]`, `xtask/`, a compose file and `src/backend_services/`";

/// The markers `dir` lacks (empty: it is a root).
fn missing_markers(dir: &Path) -> Vec<&'static str> {
    let mut out = vec![];
    // Only the head of Cargo.toml: a root's is small, and a huge or odd
    // file must not stall discovery.
    let cargo = std::fs::File::open(dir.join(cargo_toml::FILE))
        .ok()
        .and_then(|f| {
            use std::io::Read;
            let mut s = String::new();
            f.take(1 << 16).read_to_string(&mut s).ok().map(|_| s)
        });
    if !cargo.is_some_and(|t| t.lines().any(|l| l.trim() == "[workspace]")) {
        out.push("`Cargo.toml` with `[workspace]`");
    }
    if !dir.join("xtask").is_dir() {
        out.push("`xtask/`");
    }
    if !compose::FILES.iter().any(|f| dir.join(f).is_file()) {
        out.push("a compose file (`compose.yaml`, `compose.yml`, `docker-compose.yaml` or `docker-compose.yml`)");
    }
    if !dir.join(SERVICES_DIR).is_dir() {
        out.push("`src/backend_services/`");
    }
    out
}

/// The root a command acts in: `--root` if given (it must have every
/// marker), otherwise the nearest folder from `start` upwards that has them
/// all, so a checkout nested in another one is found before the outer one.
pub fn find_root(given: Option<&Path>, start: &Path) -> Result<PathBuf, Error> {
    if let Some(r) = given {
        let missing = missing_markers(r);
        if !missing.is_empty() {
            return Err(Diagnostic::error(format!(
                "{}: is not the monorepo's root: it has no {}",
                r.display(),
                missing.join(", no ")
            ))
            .fix(format!("pass --root the folder that has {MARKERS}")));
        }
        return Ok(std::fs::canonicalize(r).unwrap_or_else(|_| r.to_path_buf()));
    }
    let start = std::fs::canonicalize(start).unwrap_or_else(|_| start.to_path_buf());
    let mut d = start.clone();
    loop {
        if missing_markers(&d).is_empty() {
            return Ok(d);
        }
        if !d.pop() {
            return Err(Diagnostic::error(format!(
                "{}: no monorepo root here or above (a root has {MARKERS})",
                start.display()
            ))
            .fix("run inside the monorepo, or pass --root <dir>"));
        }
    }
}

impl Repo {
    pub fn load(root: &Path) -> Result<Repo, Error> {
        let dotenv = match std::fs::symlink_metadata(root.join(".env")) {
            Ok(_) => parse_dotenv(&read_text(root, ".env")?),
            Err(_) => BTreeMap::new(),
        };
        let compose_file = compose::FILES
            .iter()
            .find(|f| root.join(f).exists())
            .copied()
            .unwrap_or(compose::FILE)
            .to_string();
        let compose_text = read_text_max(root, &compose_file, MAX_COMPOSE_FILE)?;
        let env = |k: &str| std::env::var(k).ok().or_else(|| dotenv.get(k).cloned());
        // The tree stays in the model: an edit compares it with the edited
        // text's instead of parsing this text again.
        let compose_tree =
            Compose::tree(&compose_text).map_err(|e| Compose::naming(e, &compose_file))?;
        let compose = Compose::from_tree(compose_tree.as_ref(), &env)
            .map_err(|e| Compose::naming(e, &compose_file))?;
        let override_file = match compose::OVERRIDES.iter().find(|f| root.join(f).exists()) {
            Some(f) => Some((
                f.to_string(),
                Compose::parse_file(&read_text_max(root, f, MAX_COMPOSE_FILE)?, f, &env)?,
            )),
            None => None,
        };
        let cnf_text = read_text(root, cnf::FILE)?;
        let cnf = Cnf::load(&cnf_text, Some(root))?.usable()?;
        let cargo_text = read_text(root, cargo_toml::FILE)?;
        let members = cargo_toml::parse(&cargo_text)?;
        let nginx = nginx::Config::load(root)?;
        let mut service_dirs = vec![];
        if let Ok(rd) = std::fs::read_dir(root.join(SERVICES_DIR)) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    service_dirs.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        service_dirs.sort();
        Ok(Repo {
            root: root.to_path_buf(),
            compose_file,
            compose_text,
            compose_tree,
            override_file,
            compose,
            cnf_text,
            cnf,
            cargo_text,
            members,
            nginx,
            service_dirs,
            dotenv,
        })
    }

    pub fn env(&self, k: &str) -> Option<String> {
        std::env::var(k)
            .ok()
            .or_else(|| self.dotenv.get(k).cloned())
    }

    /// The backend services (built from `src/backend_services/`).
    pub fn backend(&self) -> impl Iterator<Item = &compose::Service> {
        self.compose.services.iter().filter(|s| s.is_backend())
    }

    /// What `[alt_names]` must contain: every https service, in file order.
    pub fn wanted_alt_names(&self) -> Vec<String> {
        self.backend()
            .filter(|s| s.https())
            .map(|s| s.name.clone())
            .collect()
    }

    /// What `[workspace] members` must be: the xtask, the probe, and every
    /// service written in Rust.
    pub fn wanted_members(&self) -> Vec<String> {
        let mut out: Vec<String> = vec!["xtask".into(), "probe".into()];
        out.retain(|m| self.root.join(m).join("Cargo.toml").exists());
        for d in &self.service_dirs {
            if self
                .root
                .join(SERVICES_DIR)
                .join(d)
                .join("Cargo.toml")
                .exists()
            {
                out.push(format!("{SERVICES_DIR}/{d}"));
            }
        }
        out
    }

    /// Environment values of a service: its `env_file`s, then `environment`.
    pub fn service_env(&self, s: &compose::Service) -> Vec<(String, String)> {
        let mut out = vec![];
        for (f, _) in &s.env_file {
            // The gate (names::Repo::name_problems) reports bad env files;
            // here they only contribute nothing.
            let Ok(p) = crate::model::names::join(&self.root, f) else {
                continue;
            };
            if let Ok(t) = read_bounded(&p).map(|b| String::from_utf8_lossy(&b).into_owned()) {
                out.extend(parse_dotenv(&t));
            }
        }
        for (k, v, _) in &s.environment {
            out.push((k.clone(), v.clone()));
        }
        out
    }
}
