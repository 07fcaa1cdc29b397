//! `docker-compose.yml`: the typed view every command reads, with the line
//! of every key. The text edits are in `edit::compose`.

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Error};
use crate::model::yaml::{self, Node, Value};

pub const FILE: &str = "docker-compose.yml";
/// The names Compose looks for, in its order; the first that exists is used.
pub const FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];
/// The override files Compose merges over the first found, same order.
pub const OVERRIDES: &[&str] = &[
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
];
pub const LABEL_HTTPS: &str = "monorepo.https";
pub const LABEL_PUBLIC: &str = "monorepo.public-path";
pub const LABEL_PROTOCOL: &str = "monorepo.protocol";
/// A public service with a web page: the folder (under the service's) that
/// NGINX serves at its public path, `Frontend` as `add-service --frontend`
/// writes it; its API is at `<public path>api/` (docs/frontend.md).
pub const LABEL_FRONTEND: &str = "monorepo.frontend";
/// The opt-in for a service whose published ports are meant for the
/// network: `monorepo.reach: "network"`. A port on all interfaces is
/// reachable from every container (through the host) and from outside; the
/// house rules allow that only for NGINX, the public entry point, and for a
/// service that says so with this label (verify then expects the wider
/// reach and shows it in the report).
pub const LABEL_REACH: &str = "monorepo.reach";
pub const REACH_NETWORK: &str = "network";

#[derive(Debug, Clone)]
pub struct Compose {
    pub services: Vec<Service>,
    /// Top-level `networks:` and `volumes:` keys with their lines.
    pub networks: Vec<(String, usize)>,
    pub volumes: Vec<(String, usize)>,
}

#[derive(Debug, Clone, Default)]
pub struct Service {
    pub name: String,
    pub line: usize,
    pub container_name: Option<(String, usize)>,
    pub build: Option<Build>,
    pub image: Option<String>,
    pub ports: Vec<Port>,
    pub networks: Vec<(String, usize)>,
    pub volumes: Vec<Mount>,
    pub depends_on: Vec<(String, usize)>,
    pub env_file: Vec<(String, usize)>,
    /// env_file entries marked `required: false` (they may be missing).
    pub env_file_optional: Vec<String>,
    /// Other services this one names (links, volumes_from, network_mode,
    /// ipc, pid `service:x`, extends), with the key and line.
    pub refs: Vec<(String, &'static str, usize)>,
    pub environment: Vec<(String, String, usize)>,
    pub labels: BTreeMap<String, String>,
    pub has_healthcheck: bool,
    /// `command:` as a list (a string is split on whitespace, as Compose does
    /// for plain words); empty when the image's own CMD runs.
    pub command: Vec<String>,
    /// `extends:` as (file, service); no file means this file.
    pub extends: Option<(Option<String>, String)>,
    /// `profiles:`: the service runs only when one of them is enabled.
    pub profiles: Vec<String>,
    /// `expose:` ports (reachable on its networks, published nowhere); the
    /// stack view fills it (verify/load.rs).
    pub expose: Vec<u16>,
}

#[derive(Debug, Clone)]
pub struct Build {
    pub context: String,
    pub dockerfile: String,
    pub args: Vec<(String, String)>,
    pub line: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Port {
    /// Kept as written (not clamped) so `check` can report out-of-range
    /// ports. A range `A-B` is `host`/`container` A with `*_end` B.
    pub host: Option<u32>,
    pub host_end: Option<u32>,
    pub container: u32,
    pub container_end: u32,
    /// `tcp` unless written otherwise.
    pub protocol: String,
    pub host_ip: String,
    pub line: usize,
}

impl Port {
    /// The entries `docker compose config` makes of this one: a range
    /// mapped onto a range of the same length becomes one entry per port.
    pub fn expand(&self) -> Vec<(u32, Option<String>)> {
        let n = self.container_end - self.container;
        let host_n = self.host.map(|h| self.host_end.unwrap_or(h) - h);
        match self.host {
            Some(h) if host_n == Some(n) => (0..=n)
                .map(|i| (self.container + i, Some((h + i).to_string())))
                .collect(),
            Some(h) => (0..=n)
                .map(|i| {
                    (
                        self.container + i,
                        Some(match self.host_end {
                            Some(e) if e != h => format!("{h}-{e}"),
                            _ => h.to_string(),
                        }),
                    )
                })
                .collect(),
            None => (0..=n).map(|i| (self.container + i, None)).collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Mount {
    pub source: String,
    pub target: String,
    /// A named volume (not a bind mount of a host path).
    pub named: bool,
    pub line: usize,
}

impl Service {
    pub fn https(&self) -> bool {
        self.labels.get(LABEL_HTTPS).is_some_and(|v| v == "true")
    }
    pub fn public_path(&self) -> Option<&str> {
        self.labels.get(LABEL_PUBLIC).map(|s| s.as_str())
    }
    /// The folder of its web page (`monorepo.frontend`), for a public service.
    pub fn frontend(&self) -> Option<&str> {
        self.public_path()
            .and(self.labels.get(LABEL_FRONTEND))
            .map(|s| s.as_str())
    }
    /// `grpc` or `http`: what the service's own port speaks.
    pub fn protocol(&self) -> &str {
        self.labels
            .get(LABEL_PROTOCOL)
            .map(|s| s.as_str())
            .unwrap_or("grpc")
    }
    pub fn on_network(&self, net: &str) -> bool {
        self.networks.iter().any(|(n, _)| n == net)
    }
    pub fn depends(&self, other: &str) -> bool {
        self.depends_on.iter().any(|(n, _)| n == other)
    }
    /// The port the service listens on inside its container.
    pub fn port(&self) -> Option<u16> {
        self.ports
            .first()
            .and_then(|p| u16::try_from(p.container).ok())
            .or_else(|| self.expose.first().copied())
    }
    /// May this service publish a port on all interfaces (see `LABEL_REACH`)?
    pub fn network_reach(&self) -> bool {
        self.name == "nginx"
            || self
                .labels
                .get(LABEL_REACH)
                .is_some_and(|v| v == REACH_NETWORK)
    }
    /// A service of this repository (built from `src/backend_services/`).
    pub fn is_backend(&self) -> bool {
        self.build
            .as_ref()
            .is_some_and(|b| b.dockerfile.contains("backend_services/"))
    }
}

/// A published port's host IP that means every interface of the host
/// (none written, `0.0.0.0`, `::`, `[::]`).
pub fn all_interfaces(host_ip: &str) -> bool {
    matches!(host_ip, "" | "0.0.0.0" | "::" | "[::]")
}

pub(crate) fn err(line: usize, msg: impl std::fmt::Display, fix: &str) -> Error {
    Diagnostic::error(msg.to_string()).at(FILE, line).fix(fix)
}

/// Expands variables as Compose does: `$VAR`, `${VAR}`, `${VAR:-d}`,
/// `${VAR-d}`, `${VAR:+x}`, `${VAR+x}`, `${VAR:?err}`, `${VAR?err}` (an
/// unset required variable expands to nothing: Compose is the judge of
/// that), defaults that nest further variables, and `$$` for a `$`.
pub fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let name_len = |from: usize| {
        b[from..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count()
    };
    while i < b.len() {
        let Some(off) = s[i..].find('$') else {
            out.push_str(&s[i..]);
            break;
        };
        out.push_str(&s[i..i + off]);
        i += off;
        match b.get(i + 1) {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(b'{') => {
                // Find the matching brace: defaults may hold `${...}` too.
                let mut depth = 0;
                let mut end = None;
                for (j, c) in b.iter().enumerate().skip(i + 1) {
                    match c {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let Some(end) = end else {
                    out.push_str(&s[i..]);
                    break;
                };
                let inner = &s[i + 2..end];
                let n = name_len(i + 2);
                let (name, op) = inner.split_at(n);
                let val = env(name);
                let set = val.is_some();
                let nonempty = val.as_deref().is_some_and(|v| !v.is_empty());
                let pick = |cond: bool, alt: &str| {
                    if cond {
                        interpolate(alt, env)
                    } else {
                        val.clone().unwrap_or_default()
                    }
                };
                out += &match op {
                    "" => val.clone().unwrap_or_default(),
                    _ if op.starts_with(":-") => pick(!nonempty, &op[2..]),
                    _ if op.starts_with('-') => pick(!set, &op[1..]),
                    _ if op.starts_with(":+") => {
                        if nonempty {
                            interpolate(&op[2..], env)
                        } else {
                            String::new()
                        }
                    }
                    _ if op.starts_with('+') => {
                        if set {
                            interpolate(&op[1..], env)
                        } else {
                            String::new()
                        }
                    }
                    _ if op.starts_with(":?") || op.starts_with('?') => {
                        val.clone().unwrap_or_default()
                    }
                    _ => s[i..=end].to_string(),
                };
                i = end + 1;
            }
            _ => {
                let n = name_len(i + 1);
                if n == 0 {
                    out.push('$');
                    i += 1;
                } else {
                    out += &env(&s[i + 1..i + 1 + n]).unwrap_or_default();
                    i += 1 + n;
                }
            }
        }
    }
    out
}

fn scalar(n: &Node, what: &str) -> Result<String, Error> {
    match &n.value {
        Value::Scalar(s) => Ok(s.clone()),
        _ => Err(err(
            n.line,
            format!("{what} must be a string, found {}", n.kind()),
            "write it as a plain value",
        )),
    }
}

/// A list of names written either as a sequence or as a mapping's keys
/// (Compose accepts both for `networks:` and `depends_on:`).
fn names(n: &Node, what: &str) -> Result<Vec<(String, usize)>, Error> {
    match &n.value {
        Value::Seq(items) => items
            .iter()
            .map(|i| match i.get("path") {
                // env_file's long form: `- path: ./x.env` (`required: false`).
                Some(p) if what == "env_file" => Ok((scalar(p, what)?, i.line)),
                _ => Ok((scalar(i, what)?, i.line)),
            })
            .collect(),
        Value::Map(_) => Ok(n
            .keys()
            .into_iter()
            .map(|(k, l)| (k.to_string(), l))
            .collect()),
        Value::Scalar(_) if n.is_null() => Ok(vec![]),
        Value::Scalar(s) if what == "env_file" => Ok(vec![(s.clone(), n.line)]),
        Value::Scalar(_) => Err(err(
            n.line,
            format!("{what} must be a list"),
            "write one `- item` per line",
        )),
    }
}

/// A short-syntax port: `[[IP:]HOST:]CONTAINER[/PROTO]`, where HOST and
/// CONTAINER may be ranges `A-B`, HOST may be empty (`127.0.0.1::80`) and
/// IP may be `[v6]`.
fn parse_port(s: &str, line: usize, env: Env) -> Result<Port, Error> {
    let s = interpolate(s, env);
    let (spec, proto) = s.split_once('/').unwrap_or((&s, "tcp"));
    let bad = |p: &str| {
        err(
            line,
            format!("port `{p}` is not a number or a range"),
            "write `- \"HOST:CONTAINER\"` with numbers (or ranges like `9000-9001`)",
        )
    };
    let range = |p: &str| -> Result<(u32, u32), Error> {
        let (a, b) = p.split_once('-').unwrap_or((p, p));
        let a = a.trim().parse::<u32>().map_err(|_| bad(p))?;
        let b = b.trim().parse::<u32>().map_err(|_| bad(p))?;
        if b < a {
            return Err(bad(p));
        }
        Ok((a, b))
    };
    // An IPv6 host address is bracketed; take it off before splitting on ':'.
    let (ip, rest) = match spec.strip_prefix('[') {
        Some(r) => {
            let (ip, rest) = r.split_once(']').ok_or_else(|| bad(spec))?;
            (ip.to_string(), rest.strip_prefix(':').unwrap_or(rest))
        }
        None => (String::new(), spec),
    };
    let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
    let (c, h, ip) = match parts.as_slice() {
        [c] if ip.is_empty() => (*c, None, String::new()),
        [c, h] if ip.is_empty() => (*c, Some(*h), String::new()),
        [c, h, i] if ip.is_empty() => (*c, Some(*h), i.to_string()),
        [c, h] => (*c, Some(*h), ip),
        [c] => (*c, None, ip),
        _ => return Err(bad(spec)),
    };
    let (container, container_end) = range(c)?;
    let (host, host_end) = match h.filter(|h| !h.is_empty()) {
        Some(h) => {
            let (a, b) = range(h)?;
            (Some(a), Some(b))
        }
        None => (None, None),
    };
    Ok(Port {
        host,
        host_end,
        container,
        container_end,
        protocol: proto.to_string(),
        host_ip: ip,
        line,
    })
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// `build:` as a context path or a mapping with context, dockerfile and args.
fn read_build(b: &Node, env: Env) -> Result<Build, Error> {
    match &b.value {
        Value::Scalar(c) => Ok(Build {
            context: c.clone(),
            dockerfile: "Dockerfile".into(),
            args: vec![],
            line: b.line,
        }),
        Value::Map(_) => {
            let args = match b.get("args") {
                Some(a) => a
                    .keys()
                    .into_iter()
                    .map(|(k, _)| {
                        (
                            k.to_string(),
                            interpolate(a.get(k).and_then(|v| v.as_str()).unwrap_or(""), env),
                        )
                    })
                    .collect(),
                None => vec![],
            };
            let field = |key: &str, what: &str, default: &str| -> Result<String, Error> {
                Ok(b.get(key)
                    .map(|c| scalar(c, what))
                    .transpose()?
                    .unwrap_or(default.into()))
            };
            Ok(Build {
                context: field("context", "build.context", ".")?,
                dockerfile: field("dockerfile", "build.dockerfile", "Dockerfile")?,
                args,
                line: b.line,
            })
        }
        Value::Seq(_) => Err(err(
            b.line,
            "build must be a path or a mapping",
            "use `context:` and `dockerfile:`",
        )),
    }
}

/// `ports:` in the short (`"HOST:CONTAINER"`) or long (`target:`, `published:`) form.
fn read_ports(p: &Node, env: Env) -> Result<Vec<Port>, Error> {
    let items = p.as_seq().ok_or_else(|| {
        err(
            p.line,
            "ports must be a list",
            "write `- \"HOST:CONTAINER\"`",
        )
    })?;
    items
        .iter()
        .map(|item| match &item.value {
            Value::Scalar(v) => parse_port(v, item.line, env),
            Value::Map(_) => {
                let t = item.get("target").and_then(|t| t.as_str()).unwrap_or("");
                let mut port = parse_port(t, item.line, env)?;
                if let Some(h) = item
                    .get("published")
                    .and_then(|t| t.as_str())
                    .filter(|h| !h.is_empty())
                {
                    let published = parse_port(h, item.line, env)?;
                    port.host = Some(published.container);
                    port.host_end = Some(published.container_end);
                }
                if let Some(p) = item.get("protocol").and_then(|t| t.as_str()) {
                    port.protocol = interpolate(p, env);
                }
                if let Some(i) = item.get("host_ip").and_then(|t| t.as_str()) {
                    port.host_ip = interpolate(i, env);
                }
                Ok(port)
            }
            Value::Seq(_) => Err(err(
                item.line,
                "a port must be a string",
                "write `- \"HOST:CONTAINER\"`",
            )),
        })
        .collect()
}

/// Every other service `n` names outside depends_on.
fn read_refs(n: &Node) -> Vec<(String, &'static str, usize)> {
    let mut out = vec![];
    if let Some(v) = n.get("links") {
        for i in v.as_seq().unwrap_or_default() {
            if let Some(x) = i.as_str() {
                out.push((
                    x.split(':').next().unwrap_or("").to_string(),
                    "links",
                    i.line,
                ));
            }
        }
    }
    if let Some(v) = n.get("volumes_from") {
        for i in v.as_seq().unwrap_or_default() {
            if let Some(x) = i.as_str().filter(|x| !x.starts_with("container:")) {
                out.push((
                    x.split(':').next().unwrap_or("").to_string(),
                    "volumes_from",
                    i.line,
                ));
            }
        }
    }
    for key in ["network_mode", "ipc", "pid"] {
        if let Some(x) = n.get(key).and_then(|v| {
            v.as_str()
                .and_then(|x| x.strip_prefix("service:"))
                .map(|x| (x, v.line))
        }) {
            out.push((x.0.to_string(), key, x.1));
        }
    }
    if let Some(e) = n.get("extends") {
        // Only an extends within this file names one of its services.
        let svc = match e.as_str() {
            Some(x) => Some(x),
            None if e.get("file").is_none() => e.get("service").and_then(|s| s.as_str()),
            None => None,
        };
        if let Some(x) = svc {
            out.push((x.to_string(), "extends", e.line));
        }
    }
    out
}

/// `volumes:` of a service, short (`source:target[:mode]`) or long form.
fn read_mounts(v: &Node) -> Result<Vec<Mount>, Error> {
    let items = v
        .as_seq()
        .ok_or_else(|| err(v.line, "volumes must be a list", "write `- name:/path`"))?;
    let mut out = vec![];
    for item in items {
        let spec = match &item.value {
            Value::Scalar(x) => x.clone(),
            Value::Map(_) => format!(
                "{}:{}",
                item.get("source").and_then(|x| x.as_str()).unwrap_or(""),
                item.get("target").and_then(|x| x.as_str()).unwrap_or("")
            ),
            Value::Seq(_) => {
                return Err(err(
                    item.line,
                    "a volume must be a string",
                    "write `- name:/path`",
                ))
            }
        };
        let mut parts = spec.splitn(3, ':');
        let source = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let named = !source.is_empty() && !source.starts_with(['.', '/', '~', '$']);
        out.push(Mount {
            source,
            target,
            named,
            line: item.line,
        });
    }
    Ok(out)
}

/// `environment:` and `labels:`: a mapping, or a list of `KEY=value`.
fn key_values(v: &Node, what: &str) -> Result<Vec<(String, String, usize)>, Error> {
    match &v.value {
        Value::Map(_) => Ok(v
            .keys()
            .into_iter()
            .map(|(k, l)| {
                (
                    k.to_string(),
                    v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string(),
                    l,
                )
            })
            .collect()),
        Value::Seq(items) => items
            .iter()
            .map(|i| {
                let kv = scalar(i, what)?;
                let (k, val) = kv.split_once('=').unwrap_or((&kv, ""));
                Ok((k.to_string(), val.to_string(), i.line))
            })
            .collect(),
        _ => Ok(vec![]),
    }
}

impl Compose {
    /// `parse`, with messages naming `file` (the file Compose would use).
    pub fn parse_file(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Compose, Error> {
        Compose::parse(text, env).map_err(|e| Compose::naming(e, file))
    }

    /// A message of `parse` or `from_tree` about the compose file, naming
    /// `file` instead of the default name.
    pub fn naming(mut e: Error, file: &str) -> Error {
        if e.file == FILE {
            e.file = file.to_string();
        }
        e
    }

    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Compose, Error> {
        Compose::from_tree(Compose::tree(text)?.as_ref(), env)
    }

    /// The YAML tree of a compose file (None: no document), with Compose's
    /// messages for bad YAML. `from_tree` reads the services from it.
    pub fn tree(text: &str) -> Result<Option<Node>, Error> {
        yaml::parse(text).map_err(|e| {
            let fix = if e.msg.contains("duplicate key") {
                "remove or rename one of the two"
            } else if e.msg.contains("tab character") {
                "indent with spaces"
            } else {
                "correct the YAML syntax (`docker-compose config` shows the same error)"
            };
            Diagnostic::error(e.msg)
                .at(FILE, e.line)
                .col(e.col)
                .fix(fix)
        })
    }

    /// The typed view of a tree from `tree` (or `edit::compose::verify_edit`).
    pub fn from_tree(
        root: Option<&Node>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Compose, Error> {
        let root = root.ok_or_else(|| err(1, "the file is empty", "add a `services:` mapping"))?;
        if root.as_map().is_none() {
            return Err(err(
                root.line,
                format!("the top level is {}, not a mapping", root.kind()),
                "start the file with `services:`",
            ));
        }
        // A file without `services:` is valid Compose (one that only
        // `include`s others, say): it has no services of its own.
        let null = yaml::Node {
            value: yaml::Value::Scalar(String::new()),
            line: 1,
            col: 1,
            flow: false,
        };
        let services_node = root.get("services").unwrap_or(&null);
        let mut services = Vec::new();
        if !services_node.is_null() {
            let Some(entries) = services_node.as_map() else {
                return Err(err(
                    services_node.line,
                    format!("`services:` is {}, not a mapping", services_node.kind()),
                    "write each service as `name:` indented under `services:`",
                ));
            };
            for (k, v) in entries {
                services.push(Self::read_service(
                    &scalar(k, "a service name")?,
                    k.line,
                    v,
                    env,
                )?);
            }
        }
        let top = |key: &str| -> Result<Vec<(String, usize)>, Error> {
            match root.get(key) {
                None => Ok(vec![]),
                Some(n) if n.is_null() => Ok(vec![]),
                Some(n) if n.as_map().is_some() => Ok(n
                    .keys()
                    .into_iter()
                    .map(|(k, l)| (k.to_string(), l))
                    .collect()),
                Some(n) => Err(err(
                    n.line,
                    format!("top-level `{key}:` must be a mapping"),
                    "declare one `name:` per line",
                )),
            }
        };
        Ok(Compose {
            services,
            networks: top("networks")?,
            volumes: top("volumes")?,
        })
    }

    fn read_service(name: &str, line: usize, n: &Node, env: Env) -> Result<Service, Error> {
        let mut s = Service {
            name: name.to_string(),
            line,
            ..Default::default()
        };
        if n.is_null() {
            return Ok(s);
        }
        if n.as_map().is_none() {
            return Err(err(
                n.line,
                format!("service `{name}` is {}, not a mapping", n.kind()),
                "indent its keys under the name",
            ));
        }
        if let Some(c) = n.get("container_name") {
            s.container_name = Some((scalar(c, "container_name")?, c.line));
        }
        if let Some(i) = n.get("image") {
            s.image = Some(interpolate(&scalar(i, "image")?, env));
        }
        s.build = n.get("build").map(|b| read_build(b, env)).transpose()?;
        if let Some(p) = n.get("ports") {
            s.ports = read_ports(p, env)?;
        }
        if let Some(v) = n.get("networks") {
            s.networks = names(v, "networks")?;
        }
        if let Some(v) = n.get("depends_on") {
            s.depends_on = names(v, "depends_on")?;
        }
        if let Some(v) = n.get("env_file") {
            s.env_file = names(v, "env_file")?;
            for i in v.as_seq().unwrap_or_default() {
                if let (Some(p), Some("false")) = (
                    i.get("path").and_then(|p| p.as_str()),
                    i.get("required").and_then(|r| r.as_str()),
                ) {
                    s.env_file_optional.push(p.to_string());
                }
            }
        }
        s.refs = read_refs(n);
        if let Some(v) = n.get("volumes") {
            s.volumes = read_mounts(v)?;
        }
        if let Some(v) = n.get("environment") {
            s.environment = key_values(v, "an environment entry")?;
        }
        if let Some(v) = n.get("labels") {
            s.labels = key_values(v, "a label")?
                .into_iter()
                .map(|(k, v, _)| (k, v))
                .collect();
        }
        s.has_healthcheck = n.get("healthcheck").is_some();
        if let Some(c) = n.get("command") {
            s.command = match &c.value {
                Value::Scalar(x) => interpolate(x, env)
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
                _ => names(c, "command")?
                    .into_iter()
                    .map(|(x, _)| interpolate(&x, env))
                    .collect(),
            };
        }
        if let Some(e) = n.get("extends") {
            s.extends = match e.as_str() {
                Some(x) => Some((None, x.to_string())),
                None => e.get("service").and_then(|x| x.as_str()).map(|x| {
                    (
                        e.get("file").and_then(|f| f.as_str()).map(str::to_string),
                        x.to_string(),
                    )
                }),
            };
        }
        if let Some(v) = n.get("profiles") {
            s.profiles = v
                .as_seq()
                .unwrap_or_default()
                .iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect();
        }
        Ok(s)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A compose file with an anchor, a merge key, flow and block forms and
    /// comments; the editors' tests use it too.
    pub(crate) const SAMPLE: &str = "\
# Our stack.
x-common: &common
  restart: unless-stopped   # keep this comment

services:
  postgres:
    <<: *common
    image: ${POSTGRES_IMAGE:-postgres:16}
    networks: [pg-network]

  api:
    build: {context: ./src, dockerfile: backend_services/api/Dockerfile}
    container_name: 'api'
    ports:
      - \"8000:8000\"   # public
    networks:
      - pg-network
    depends_on:
      postgres:
        condition: service_started
# trailing comment about networks
networks:
  pg-network: {}
";

    pub(crate) fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn reads_services() {
        let c = Compose::parse(SAMPLE, &none).unwrap();
        let api = c.service("api").unwrap();
        assert_eq!(api.line, 11);
        assert_eq!(api.container_name.as_ref().unwrap().0, "api");
        assert_eq!(api.ports[0].host, Some(8000));
        assert_eq!(api.depends_on[0].0, "postgres");
        assert_eq!(
            c.service("postgres").unwrap().image.as_deref(),
            Some("postgres:16")
        );
        assert_eq!(c.networks, vec![("pg-network".to_string(), 23)]);
    }

    #[test]
    fn interpolation() {
        let env = |k: &str| {
            if k == "SET" {
                Some("v".to_string())
            } else {
                None
            }
        };
        assert_eq!(interpolate("${SET:-d}/${UNSET:-d}/${UNSET}", &env), "v/d/");
    }
}
