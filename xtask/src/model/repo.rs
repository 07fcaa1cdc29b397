//! The one model of the repository that every command reads: the compose
//! file, openssl.cnf, the NGINX routes, the workspace members and the
//! service folders, each with the text it was read from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Error, Rule, Severity};
use crate::model::cargo_toml::{self, Members};
use crate::model::cnf::{self, Cnf};
use crate::model::compose::{self, Compose, LABEL_PUBLIC};
use crate::model::files::{check_file, read_bounded, read_text, read_text_max, MAX_COMPOSE_FILE};
use crate::model::names::{container_path, host, join, plain_key, public_path, service, volume};
use crate::model::nginx;
use crate::model::yaml;

pub const SERVICES_DIR: &str = "src/backend_services";
/// A frontend's folder inside its service folder (the one `add-service
/// --frontend` writes and the label must name).
pub const FRONTEND_DIR: &str = "Frontend";
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
            // The gate (Repo::name_problems, below) reports bad env files;
            // here they only contribute nothing.
            let Ok(p) = join(&self.root, f) else {
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

// --- the input gate, applied to the whole repository (grammars: names.rs) ---

/// A frontend's folder, as its label names it: only `Frontend` (the one
/// `add-service --frontend` writes), and never a link that leaves the
/// repository (NGINX's bind mount and the exports would follow it).
/// None when it is fine (or missing: `check` reports that as MR021).
pub fn frontend_dir(root: &std::path::Path, service: &str, dir: &str) -> Option<String> {
    let want = FRONTEND_DIR;
    if dir != want {
        return Some(format!("`{}` is not `{want}`", dir.escape_debug()));
    }
    let rel = format!("{SERVICES_DIR}/{service}/{want}");
    let path = join(root, &rel).ok()?;
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if meta.file_type().is_symlink() {
        let inside = match (path.canonicalize(), root.canonicalize()) {
            (Ok(t), Ok(r)) => t.starts_with(r),
            _ => false,
        };
        if !inside {
            return Some(format!(
                "{rel} is a symlink that leaves the repository (or dangles)"
            ));
        }
    }
    None
}

/// The line of `key:` inside the block of a service that starts at `from`
/// (the typed view keeps no line per label).
fn key_line(text: &str, from: usize, key: &str) -> usize {
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| {
            l.trim_start()
                .trim_start_matches(['"', '\''])
                .starts_with(key)
        })
        .map(|(i, _)| i + 1)
        .unwrap_or(from)
}

impl Repo {
    /// Every name from the compose file and openssl.cnf that would become
    /// a path, a compose key, an NGINX directive or a certificate name,
    /// checked against the grammars above: each refused one is an MR016
    /// finding at its line. Writers refuse on the first
    /// (`refuse_untrusted`); `check` reports each one.
    pub fn name_problems(&self) -> Vec<Diagnostic> {
        let mut out = vec![];
        let cf = self.compose_file.as_str();
        let mut p = |file: &str, line: usize, msg: String, fix: &str| {
            out.push(Diagnostic::finding(Rule::Names, file, line, msg, fix))
        };
        for s in &self.compose.services {
            // A service this tool manages (built from src/backend_services/,
            // served over https or public) has its name turned into a folder,
            // certificate paths, a DNS entry and an NGINX upstream: a DNS
            // label. Any other service (the user's traefik, a `from_env`
            // helper) only needs a key that can never act as a path; its own
            // bind mounts are the user's business, as in Compose.
            let managed = s.is_backend() || s.https() || s.public_path().is_some();
            if let Err(e) = if managed {
                service(&s.name)
            } else {
                plain_key(&s.name)
            } {
                p(cf, s.line, format!("service key: {e}"), "rename the service to a DNS label such as `billing` (its folder, container_name and certificates follow the name)");
            }
            if let Some(pp) = s.public_path() {
                if let Err(e) = public_path(pp) {
                    p(
                        cf,
                        key_line(&self.compose_text, s.line, LABEL_PUBLIC),
                        format!(
                            "service `{}`: label {LABEL_PUBLIC}: {e}",
                            s.name.escape_debug()
                        ),
                        "write the public path as plain `/segment/` parts",
                    );
                }
            }
            if let Some(dir) = s.frontend() {
                let line = key_line(
                    &self.compose_text,
                    s.line,
                    crate::model::compose::LABEL_FRONTEND,
                );
                if let Some(e) = frontend_dir(&self.root, &s.name, dir) {
                    p(cf, line, format!("service `{}`: label {}: {e}", s.name.escape_debug(), crate::model::compose::LABEL_FRONTEND), "keep the page's files in a real folder src/backend_services/<name>/Frontend/ (label value `Frontend`)");
                }
            }
            for (f, l) in &s.env_file {
                match join(&self.root, f) {
                    Err(e) => p(cf, *l, format!("env_file: {e}"), "keep env files inside the repository, e.g. src/backend_services/<name>/service.env"),
                    Ok(path) => {
                        if let Err(e) = check_file(&path) {
                            p(cf, *l, format!("env_file `{f}`: {e}"), "make it a regular text file under the size limit");
                        }
                    }
                }
            }
            // Only a managed service's build context must be inside the
            // repository (its folder is ours); another's `../` is the
            // user's, as Compose accepts it.
            if let Some(b) = s.build.as_ref().filter(|_| managed) {
                let df = format!("{}/{}", b.context.trim_end_matches('/'), b.dockerfile);
                if let Err(e) = join(&self.root, &b.context).and_then(|_| join(&self.root, &df)) {
                    p(
                        cf,
                        b.line,
                        format!("service `{}`: build: {e}", s.name.escape_debug()),
                        "build from a folder inside the repository (`context: ./src`)",
                    );
                }
            }
            for m in s.volumes.iter().filter(|_| managed) {
                let r = if m.named {
                    volume(&m.source)
                } else if m.source.starts_with('.') {
                    join(&self.root, &m.source).map(|_| ())
                } else {
                    Err(format!(
                        "`{}` is neither a named volume nor a path inside the repository",
                        m.source
                    ))
                };
                if let Err(e) = r.and_then(|_| container_path(&m.target)) {
                    p(cf, m.line, format!("service `{}`: volume: {e}", s.name.escape_debug()), "mount a named volume (`data:/var/lib/x`) or a `./path` inside the repository");
                }
            }
        }
        out.extend(self.alt_name_problems());
        out
    }

    /// The `[alt_names]` values the gate refuses: DNS names that are not
    /// host names, IPs that do not parse, control characters in the rest.
    fn alt_name_problems(&self) -> Vec<Diagnostic> {
        let mut out = vec![];
        for a in &self.cnf.alt_names {
            let r = match a.kind.as_str() {
                "DNS" => host(&a.value),
                "IP" => a
                    .value
                    .parse::<std::net::IpAddr>()
                    .map(|_| ())
                    .map_err(|_| format!("{:?} is not an IP address", a.value)),
                // email, URI, RID, dirName, otherName are kept as written and
                // never become a name, path or directive: only control
                // characters are refused (they would reach a log line).
                _ if a.value.chars().any(char::is_control) => {
                    Err(format!("{:?} holds a control character", a.value))
                }
                _ => Ok(()),
            };
            if let Err(e) = r {
                out.push(Diagnostic::finding(
                    Rule::Names,
                    &a.file,
                    a.line,
                    format!("[alt_names] {}.{}: {e}", a.kind, a.index),
                    "write a host name or an IP address",
                ));
            }
        }
        out
    }

    /// Refuses (exit 2, file:line and the fix) a repository whose files
    /// name something the gate refuses. Every writing command calls it
    /// right after loading the model.
    pub fn refuse_untrusted(&self) -> Result<(), Error> {
        match self.name_problems().into_iter().next() {
            None => Ok(()),
            // The same diagnostic, as the error that stops the writer
            // (no rule ID: the output names what happened, as before).
            Some(p) => Err(Diagnostic {
                rule: None,
                severity: Severity::Error,
                message: format!("{} (nothing was written)", p.message),
                ..p
            }),
        }
    }
}

/// A repository in a fresh folder under the temporary directory: a minimal
/// `Cargo.toml`, `openssl.cnf` and `src/backend_services/`, then `files`
/// (path, text) over them; loaded. For unit tests that need a `Repo`.
#[cfg(test)]
pub(crate) fn scratch(tag: &str, files: &[(&str, &str)]) -> Repo {
    let root = std::env::temp_dir().join(format!("xtask-unit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join(SERVICES_DIR)).unwrap();
    let base = [
        (cargo_toml::FILE, "[workspace]\nmembers = [\"xtask\"]\n"),
        (
            cnf::FILE,
            "[ req ]\ndistinguished_name = dn\n\n[ dn ]\nCN = localhost\n\n[ alt_names ]\nDNS.1 = localhost\n",
        ),
    ];
    for (path, text) in base.iter().chain(files) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    Repo::load(&root).unwrap()
}
