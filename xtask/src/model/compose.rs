//! `docker-compose.yml`: the typed view every command reads, with the line
//! of every key. The text edits are in `edit::compose`.

use std::collections::BTreeMap;

use crate::model::yaml::{self, Node, Value};
use crate::Error;

pub const FILE: &str = "docker-compose.yml";
pub const LABEL_HTTPS: &str = "monorepo.https";
pub const LABEL_PUBLIC: &str = "monorepo.public-path";
pub const LABEL_PROTOCOL: &str = "monorepo.protocol";

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
    pub environment: Vec<(String, String, usize)>,
    pub labels: BTreeMap<String, String>,
    pub has_healthcheck: bool,
}

#[derive(Debug, Clone)]
pub struct Build {
    pub context: String,
    pub dockerfile: String,
    pub args: Vec<(String, String)>,
    pub line: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Port {
    /// Kept as written (not clamped) so `check` can report out-of-range ports.
    pub host: Option<u32>,
    pub container: u32,
    pub line: usize,
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
    /// `grpc` or `http`: what the service's own port speaks.
    pub fn protocol(&self) -> &str {
        self.labels.get(LABEL_PROTOCOL).map(|s| s.as_str()).unwrap_or("grpc")
    }
    pub fn on_network(&self, net: &str) -> bool {
        self.networks.iter().any(|(n, _)| n == net)
    }
    pub fn depends(&self, other: &str) -> bool {
        self.depends_on.iter().any(|(n, _)| n == other)
    }
    /// The port the service listens on inside its container.
    pub fn port(&self) -> Option<u16> {
        self.ports.first().and_then(|p| u16::try_from(p.container).ok())
    }
    /// A service of this repository (built from `src/backend_services/`).
    pub fn is_backend(&self) -> bool {
        self.build.as_ref().is_some_and(|b| b.dockerfile.contains("backend_services/"))
    }
}

pub(crate) fn err(line: usize, msg: impl std::fmt::Display, fix: &str) -> Error {
    Error::input(format!("{FILE}:{line}: {msg}\n  fix: {fix}"))
}

/// Expands `${VAR}`, `${VAR:-default}` and `${VAR-default}` as Compose does.
pub fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let inner = &rest[i + 2..i + end];
        let (name, default, if_empty) = if let Some(p) = inner.find(":-") {
            (&inner[..p], Some(&inner[p + 2..]), true)
        } else if let Some(p) = inner.find('-') {
            (&inner[..p], Some(&inner[p + 1..]), false)
        } else {
            (inner, None, false)
        };
        let val = env(name);
        let use_default = match &val {
            None => true,
            Some(v) => if_empty && v.is_empty(),
        };
        if use_default {
            out.push_str(default.unwrap_or(""));
        } else {
            out.push_str(&val.unwrap());
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    out
}

fn scalar(n: &Node, what: &str) -> Result<String, Error> {
    match &n.value {
        Value::Scalar(s) => Ok(s.clone()),
        _ => Err(err(n.line, format!("{what} must be a string, found {}", n.kind()), "write it as a plain value")),
    }
}

/// A list of names written either as a sequence or as a mapping's keys
/// (Compose accepts both for `networks:` and `depends_on:`).
fn names(n: &Node, what: &str) -> Result<Vec<(String, usize)>, Error> {
    match &n.value {
        Value::Seq(items) => items.iter().map(|i| Ok((scalar(i, what)?, i.line))).collect(),
        Value::Map(_) => Ok(n.keys().into_iter().map(|(k, l)| (k.to_string(), l)).collect()),
        Value::Scalar(_) if n.is_null() => Ok(vec![]),
        Value::Scalar(s) if what == "env_file" => Ok(vec![(s.clone(), n.line)]),
        Value::Scalar(_) => Err(err(n.line, format!("{what} must be a list"), "write one `- item` per line")),
    }
}

fn parse_port(s: &str, line: usize, env: Env) -> Result<Port, Error> {
    let s = interpolate(s, env);
    let s = s.split('/').next().unwrap_or("");
    let parts: Vec<&str> = s.rsplitn(3, ':').collect();
    let num = |p: &str| -> Result<u32, Error> {
        p.parse::<u32>().map_err(|_| err(line, format!("port `{p}` is not a number"), "write `- \"HOST:CONTAINER\"` with numbers"))
    };
    match parts.as_slice() {
        [c] => Ok(Port { host: None, container: num(c)?, line }),
        [c, h, ..] => Ok(Port { host: Some(num(h)?), container: num(c)?, line }),
        [] => Err(err(line, "empty port", "write `HOST:CONTAINER`")),
    }
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// `build:` as a context path or a mapping with context, dockerfile and args.
fn read_build(b: &Node, env: Env) -> Result<Build, Error> {
    match &b.value {
        Value::Scalar(c) => Ok(Build { context: c.clone(), dockerfile: "Dockerfile".into(), args: vec![], line: b.line }),
        Value::Map(_) => {
            let args = match b.get("args") {
                Some(a) => a
                    .keys()
                    .into_iter()
                    .map(|(k, _)| (k.to_string(), interpolate(a.get(k).and_then(|v| v.as_str()).unwrap_or(""), env)))
                    .collect(),
                None => vec![],
            };
            let field = |key: &str, what: &str, default: &str| -> Result<String, Error> {
                Ok(b.get(key).map(|c| scalar(c, what)).transpose()?.unwrap_or(default.into()))
            };
            Ok(Build {
                context: field("context", "build.context", ".")?,
                dockerfile: field("dockerfile", "build.dockerfile", "Dockerfile")?,
                args,
                line: b.line,
            })
        }
        Value::Seq(_) => Err(err(b.line, "build must be a path or a mapping", "use `context:` and `dockerfile:`")),
    }
}

/// `ports:` in the short (`"HOST:CONTAINER"`) or long (`target:`, `published:`) form.
fn read_ports(p: &Node, env: Env) -> Result<Vec<Port>, Error> {
    let items = p.as_seq().ok_or_else(|| err(p.line, "ports must be a list", "write `- \"HOST:CONTAINER\"`"))?;
    items
        .iter()
        .map(|item| match &item.value {
            Value::Scalar(v) => parse_port(v, item.line, env),
            Value::Map(_) => {
                let t = item.get("target").and_then(|t| t.as_str()).unwrap_or("");
                let mut port = parse_port(t, item.line, env)?;
                if let Some(h) = item.get("published").and_then(|t| t.as_str()) {
                    let published = parse_port(h, item.line, env)?;
                    port.host = published.host.or(Some(published.container));
                }
                Ok(port)
            }
            Value::Seq(_) => Err(err(item.line, "a port must be a string", "write `- \"HOST:CONTAINER\"`")),
        })
        .collect()
}

/// `volumes:` of a service, short (`source:target[:mode]`) or long form.
fn read_mounts(v: &Node) -> Result<Vec<Mount>, Error> {
    let items = v.as_seq().ok_or_else(|| err(v.line, "volumes must be a list", "write `- name:/path`"))?;
    let mut out = vec![];
    for item in items {
        let spec = match &item.value {
            Value::Scalar(x) => x.clone(),
            Value::Map(_) => format!(
                "{}:{}",
                item.get("source").and_then(|x| x.as_str()).unwrap_or(""),
                item.get("target").and_then(|x| x.as_str()).unwrap_or("")
            ),
            Value::Seq(_) => return Err(err(item.line, "a volume must be a string", "write `- name:/path`")),
        };
        let mut parts = spec.splitn(3, ':');
        let source = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let named = !source.is_empty() && !source.starts_with(['.', '/', '~', '$']);
        out.push(Mount { source, target, named, line: item.line });
    }
    Ok(out)
}

/// `environment:` and `labels:`: a mapping, or a list of `KEY=value`.
fn key_values(v: &Node, what: &str) -> Result<Vec<(String, String, usize)>, Error> {
    match &v.value {
        Value::Map(_) => Ok(v
            .keys()
            .into_iter()
            .map(|(k, l)| (k.to_string(), v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string(), l))
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
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Compose, Error> {
        let root = yaml::parse(text)
            .map_err(|e| {
                let fix = if e.msg.contains("duplicate key") {
                    "remove or rename one of the two"
                } else if e.msg.contains("tab character") {
                    "indent with spaces"
                } else {
                    "correct the YAML syntax (`docker-compose config` shows the same error)"
                };
                Error::input(format!("{FILE}:{}:{}: {}\n  fix: {fix}", e.line, e.col, e.msg))
            })?
            .ok_or_else(|| err(1, "the file is empty", "add a `services:` mapping"))?;
        if root.as_map().is_none() {
            return Err(err(root.line, format!("the top level is {}, not a mapping", root.kind()), "start the file with `services:`"));
        }
        let services_node = root
            .get("services")
            .ok_or_else(|| err(1, "no `services:` key", "add a top-level `services:` mapping"))?;
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
                services.push(Self::read_service(&scalar(k, "a service name")?, k.line, v, env)?);
            }
        }
        let top = |key: &str| -> Result<Vec<(String, usize)>, Error> {
            match root.get(key) {
                None => Ok(vec![]),
                Some(n) if n.is_null() => Ok(vec![]),
                Some(n) if n.as_map().is_some() => Ok(n.keys().into_iter().map(|(k, l)| (k.to_string(), l)).collect()),
                Some(n) => Err(err(n.line, format!("top-level `{key}:` must be a mapping"), "declare one `name:` per line")),
            }
        };
        Ok(Compose { services, networks: top("networks")?, volumes: top("volumes")? })
    }

    fn read_service(name: &str, line: usize, n: &Node, env: Env) -> Result<Service, Error> {
        let mut s = Service { name: name.to_string(), line, ..Default::default() };
        if n.is_null() {
            return Ok(s);
        }
        if n.as_map().is_none() {
            return Err(err(n.line, format!("service `{name}` is {}, not a mapping", n.kind()), "indent its keys under the name"));
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
        }
        if let Some(v) = n.get("volumes") {
            s.volumes = read_mounts(v)?;
        }
        if let Some(v) = n.get("environment") {
            s.environment = key_values(v, "an environment entry")?;
        }
        if let Some(v) = n.get("labels") {
            s.labels = key_values(v, "a label")?.into_iter().map(|(k, v, _)| (k, v)).collect();
        }
        s.has_healthcheck = n.get("healthcheck").is_some();
        Ok(s)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
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

    fn none(_: &str) -> Option<String> {
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
        assert_eq!(c.service("postgres").unwrap().image.as_deref(), Some("postgres:16"));
        assert_eq!(c.networks, vec![("pg-network".to_string(), 23)]);
    }

    #[test]
    fn interpolation() {
        let env = |k: &str| if k == "SET" { Some("v".to_string()) } else { None };
        assert_eq!(interpolate("${SET:-d}/${UNSET:-d}/${UNSET}", &env), "v/d/");
    }
}
