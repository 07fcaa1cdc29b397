//! The one model of the repository that every command reads: the compose
//! file, openssl.cnf, the NGINX routes, the workspace members and the
//! service folders, each with the text it was read from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::model::cargo_toml::{self, Members};
use crate::model::cnf::{self, Cnf};
use crate::model::compose::{self, Compose};
use crate::model::nginx::{self, Route};
use crate::diag::{Diagnostic, Error};

pub const SERVICES_DIR: &str = "src/backend_services";
/// Names a service may not take: folders of `src/`, the infrastructure
/// services and the networks.
pub const RESERVED: &[&str] = &[
    "common", "proto", "postgres", "redis", "nginx", "grpc-network", "pg-network", "redis-network", "web-network",
    "xtask", "probe", "certs",
];
/// Larger inputs are refused: nothing this tool edits is legitimately that big.
const MAX_FILE: u64 = 4 << 20;
/// The compose file has its own limit: 120k services written out in full
/// are about 15 MB, and parsing is linear, so 64 MiB is still quick.
const MAX_COMPOSE_FILE: u64 = 64 << 20;

pub struct Repo {
    pub root: PathBuf,
    /// The compose file used (`compose::FILES`, first found) and its text.
    pub compose_file: String,
    pub compose_text: String,
    /// The override file beside it, if any (read by `check`).
    pub override_file: Option<(String, Compose)>,
    pub compose: Compose,
    pub cnf_text: String,
    pub cnf: Cnf,
    pub cargo_text: String,
    pub members: Members,
    pub routes: Vec<Route>,
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
    let meta = std::fs::symlink_metadata(&p).map_err(|e| Diagnostic::error(format!("{rel}: cannot read: {e}")))?;
    if meta.file_type().is_symlink() {
        let real = std::fs::canonicalize(&p).map_err(|e| Diagnostic::error(format!("{rel}:1: broken symlink: {e}")))?;
        let root_real = std::fs::canonicalize(root).unwrap_or(root.to_path_buf());
        if !real.starts_with(&root_real) {
            return Err(Diagnostic::error(format!("{rel}:1: is a symlink to {}, outside the repository",
                real.display()
            )).fix("replace the link with the file itself"));
        }
    }
    let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    if len > max {
        return Err(Diagnostic::error(format!("{rel}:1: is {len} bytes, over the {max}-byte limit")).fix("this file should be small; check that the right file is in place"));
    }
    let bytes = std::fs::read(&p).map_err(|e| Diagnostic::error(format!("{rel}: cannot read: {e}")))?;
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

/// Walks up from `start` to the folder with `docker-compose.yml` and `openssl.cnf`.
pub fn find_root(start: &Path) -> Result<PathBuf, Error> {
    let mut d = start.to_path_buf();
    loop {
        if compose::FILES.iter().any(|f| d.join(f).exists()) && d.join(cnf::FILE).exists() {
            return Ok(d);
        }
        if !d.pop() {
            return Err(Diagnostic::error(format!("no {} and {} in {} or above",
                compose::FILE,
                cnf::FILE,
                start.display()
            )).fix("run inside the monorepo, or pass --root <dir>"));
        }
    }
}

impl Repo {
    pub fn load(root: &Path) -> Result<Repo, Error> {
        let dotenv = match std::fs::read_to_string(root.join(".env")) {
            Ok(t) => parse_dotenv(&t),
            Err(_) => BTreeMap::new(),
        };
        let compose_file = compose::FILES.iter().find(|f| root.join(f).exists()).copied().unwrap_or(compose::FILE).to_string();
        let compose_text = read_text_max(root, &compose_file, MAX_COMPOSE_FILE)?;
        let env = |k: &str| std::env::var(k).ok().or_else(|| dotenv.get(k).cloned());
        let compose = Compose::parse_file(&compose_text, &compose_file, &env)?;
        let override_file = match compose::OVERRIDES.iter().find(|f| root.join(f).exists()) {
            Some(f) => Some((f.to_string(), Compose::parse_file(&read_text_max(root, f, MAX_COMPOSE_FILE)?, f, &env)?)),
            None => None,
        };
        let cnf_text = read_text(root, cnf::FILE)?;
        let cnf = Cnf::parse(&cnf_text)?;
        let cargo_text = read_text(root, cargo_toml::FILE)?;
        let members = cargo_toml::parse(&cargo_text)?;
        let mut routes = vec![];
        for f in nginx::conf_files(root) {
            routes.extend(nginx::parse_routes(&read_text(root, &f)?, &f)?);
        }
        let mut service_dirs = vec![];
        if let Ok(rd) = std::fs::read_dir(root.join(SERVICES_DIR)) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    service_dirs.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        service_dirs.sort();
        Ok(Repo { root: root.to_path_buf(), compose_file, compose_text, override_file, compose, cnf_text, cnf, cargo_text, members, routes, service_dirs, dotenv })
    }

    pub fn env(&self, k: &str) -> Option<String> {
        std::env::var(k).ok().or_else(|| self.dotenv.get(k).cloned())
    }

    /// The backend services (built from `src/backend_services/`).
    pub fn backend(&self) -> impl Iterator<Item = &compose::Service> {
        self.compose.services.iter().filter(|s| s.is_backend())
    }

    /// What `[alt_names]` must contain: every https service, in file order.
    pub fn wanted_alt_names(&self) -> Vec<String> {
        self.backend().filter(|s| s.https()).map(|s| s.name.clone()).collect()
    }

    /// What `[workspace] members` must be: the xtask, the probe, and every
    /// service written in Rust.
    pub fn wanted_members(&self) -> Vec<String> {
        let mut out: Vec<String> = vec!["xtask".into(), "probe".into()];
        out.retain(|m| self.root.join(m).join("Cargo.toml").exists());
        for d in &self.service_dirs {
            if self.root.join(SERVICES_DIR).join(d).join("Cargo.toml").exists() {
                out.push(format!("{SERVICES_DIR}/{d}"));
            }
        }
        out
    }

    /// Environment values of a service: its `env_file`s, then `environment`.
    pub fn service_env(&self, s: &compose::Service) -> Vec<(String, String)> {
        let mut out = vec![];
        for (f, _) in &s.env_file {
            if let Ok(t) = std::fs::read_to_string(self.root.join(f)) {
                out.extend(parse_dotenv(&t));
            }
        }
        for (k, v, _) in &s.environment {
            out.push((k.clone(), v.clone()));
        }
        out
    }
}
