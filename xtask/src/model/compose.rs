//! `docker-compose.yml`: the typed view every command reads, and the
//! line-splicing edits that add and remove a service without touching any
//! other byte of the file.

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

fn err(line: usize, msg: impl std::fmt::Display, fix: &str) -> Error {
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

fn parse_port(s: &str, line: usize, env: &dyn Fn(&str) -> Option<String>) -> Result<Port, Error> {
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

    fn read_service(name: &str, line: usize, n: &Node, env: &dyn Fn(&str) -> Option<String>) -> Result<Service, Error> {
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
        if let Some(b) = n.get("build") {
            s.build = Some(match &b.value {
                Value::Scalar(c) => Build { context: c.clone(), dockerfile: "Dockerfile".into(), args: vec![], line: b.line },
                Value::Map(_) => {
                    let mut args = vec![];
                    if let Some(a) = b.get("args") {
                        for (k, l) in a.keys() {
                            let v = a.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                            let _ = l;
                            args.push((k.to_string(), interpolate(&v, env)));
                        }
                    }
                    Build {
                        context: b.get("context").map(|c| scalar(c, "build.context")).transpose()?.unwrap_or(".".into()),
                        dockerfile: b
                            .get("dockerfile")
                            .map(|c| scalar(c, "build.dockerfile"))
                            .transpose()?
                            .unwrap_or("Dockerfile".into()),
                        args,
                        line: b.line,
                    }
                }
                Value::Seq(_) => return Err(err(b.line, "build must be a path or a mapping", "use `context:` and `dockerfile:`")),
            });
        }
        if let Some(p) = n.get("ports") {
            for item in p.as_seq().ok_or_else(|| err(p.line, "ports must be a list", "write `- \"HOST:CONTAINER\"`"))? {
                let port = match &item.value {
                    Value::Scalar(v) => parse_port(v, item.line, env)?,
                    Value::Map(_) => {
                        let t = item.get("target").and_then(|t| t.as_str()).unwrap_or("");
                        let mut port = parse_port(t, item.line, env)?;
                        if let Some(h) = item.get("published").and_then(|t| t.as_str()) {
                            port.host = parse_port(h, item.line, env)?.host.or(Some(parse_port(h, item.line, env)?.container));
                        }
                        port
                    }
                    Value::Seq(_) => return Err(err(item.line, "a port must be a string", "write `- \"HOST:CONTAINER\"`")),
                };
                s.ports.push(port);
            }
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
            for item in v.as_seq().ok_or_else(|| err(v.line, "volumes must be a list", "write `- name:/path`"))? {
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
                s.volumes.push(Mount { source, target, named, line: item.line });
            }
        }
        if let Some(v) = n.get("environment") {
            match &v.value {
                Value::Map(_) => {
                    for (k, l) in v.keys() {
                        let val = v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
                        s.environment.push((k.to_string(), val, l));
                    }
                }
                Value::Seq(items) => {
                    for i in items {
                        let kv = scalar(i, "an environment entry")?;
                        let (k, val) = kv.split_once('=').unwrap_or((&kv, ""));
                        s.environment.push((k.to_string(), val.to_string(), i.line));
                    }
                }
                _ => {}
            }
        }
        if let Some(v) = n.get("labels") {
            match &v.value {
                Value::Map(_) => {
                    for (k, _) in v.keys() {
                        let val = v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
                        s.labels.insert(k.to_string(), val);
                    }
                }
                Value::Seq(items) => {
                    for i in items {
                        let kv = scalar(i, "a label")?;
                        let (k, val) = kv.split_once('=').unwrap_or((&kv, ""));
                        s.labels.insert(k.to_string(), val.to_string());
                    }
                }
                _ => {}
            }
        }
        s.has_healthcheck = n.get("healthcheck").is_some();
        Ok(s)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

// ---------------------------------------------------------------------------
// Text edits. Each works on the text and finds its place from a fresh parse.

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// Index (0-based) of the last line of the block that starts at `start`:
/// everything indented deeper than the key, comments included, up to the
/// last content line.
fn block_end(lines: &[&str], start: usize) -> usize {
    let key_indent = indent_of(lines[start]);
    let mut end = start;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        if !is_content(l) {
            if !l.trim().is_empty() && indent_of(l) > key_indent {
                end = i;
            }
            continue;
        }
        if indent_of(l) <= key_indent {
            break;
        }
        end = i;
    }
    // Trailing comment lines belong to what follows unless deeper-indented
    // content came after them; trim back to the last content line.
    while end > start && !is_content(lines[end]) {
        end -= 1;
    }
    end
}

fn split_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// Finds a top-level key's line index, e.g. `services:`.
fn top_key(lines: &[&str], key: &str) -> Option<usize> {
    lines.iter().position(|l| {
        l.starts_with(key) && l[key.len()..].trim_start().starts_with(':') && !l.starts_with(' ')
    })
}

/// Indentation of the children of the block that begins at `idx`, or
/// `default` when the block has none.
fn child_indent(lines: &[&str], idx: usize, default: usize) -> usize {
    lines[idx + 1..]
        .iter()
        .find(|l| is_content(l))
        .map(|l| indent_of(l))
        .filter(|i| *i > indent_of(lines[idx]))
        .unwrap_or(default)
}

/// The indentation step used in the file (2 unless the file says otherwise).
pub fn indent_unit(text: &str) -> usize {
    let lines = split_lines(text);
    top_key(&lines, "services").map(|i| child_indent(&lines, i, 2)).unwrap_or(2).max(1)
}

fn ensure_newline(s: &mut String) {
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
}

/// Inserts `block` (already indented) as the last entry of a top-level
/// mapping `section`, creating the section at the end of the file if absent.
/// Keeps the file's habit of blank lines between entries.
pub fn insert_entry(text: &str, section: &str, block: &str) -> Result<String, Error> {
    let lines = split_lines(text);
    let Some(sec) = top_key(&lines, section) else {
        let mut out = text.to_string();
        ensure_newline(&mut out);
        let blank = if out.is_empty() || out.ends_with("\n\n") { "" } else { "\n" };
        return Ok(format!("{out}{blank}{section}:\n{block}"));
    };
    let rest = lines[sec].trim_start_matches(section).trim_start().trim_start_matches(':').trim();
    if !(rest.is_empty() || rest.starts_with('#')) {
        return Err(err(
            sec + 1,
            format!("top-level `{section}:` is written inline (`{}`)", lines[sec].trim_end()),
            &format!("write `{section}:` on its own line with one entry per line below it"),
        ));
    }
    let entry_indent = child_indent(&lines, sec, 0);
    let entries: Vec<usize> = (sec + 1..lines.len())
        .take_while(|&i| !is_content(lines[i]) || indent_of(lines[i]) > 0)
        .filter(|&i| is_content(lines[i]) && indent_of(lines[i]) == entry_indent)
        .collect();
    let mut out = String::new();
    match entries.last() {
        None => {
            for l in &lines[..=sec] {
                out.push_str(l);
            }
            ensure_newline(&mut out);
            out.push_str(block);
            for l in &lines[sec + 1..] {
                out.push_str(l);
            }
        }
        Some(&last) => {
            let end = block_end(&lines, last);
            // Entries separated by blank lines get a blank line before the new one.
            let spaced = entries.len() >= 2 && lines[entries[entries.len() - 1] - 1].trim().is_empty();
            for l in &lines[..=end] {
                out.push_str(l);
            }
            ensure_newline(&mut out);
            if spaced {
                out.push('\n');
            }
            out.push_str(block);
            for l in &lines[end + 1..] {
                out.push_str(l);
            }
        }
    }
    Ok(out)
}

/// Removes the entry `name` from the top-level mapping `section`, with the
/// blank line that `insert_entry` put before it. With `drop_empty`, a
/// section left empty goes too (as `insert_entry` creates missing ones);
/// `services:` always stays.
pub fn remove_entry(text: &str, section: &str, name: &str, drop_empty: bool) -> Option<String> {
    let lines = split_lines(text);
    let sec = top_key(&lines, section)?;
    let entry_indent = child_indent(&lines, sec, 0);
    let mut entries = vec![];
    for i in sec + 1..lines.len() {
        if is_content(lines[i]) && indent_of(lines[i]) == 0 {
            break;
        }
        if is_content(lines[i]) && indent_of(lines[i]) == entry_indent {
            entries.push(i);
        }
    }
    let key_matches = |l: &str| {
        let t = l.trim_start();
        let t = t.strip_prefix('"').and_then(|t| t.strip_prefix(name)).and_then(|t| t.strip_prefix('"'))
            .or_else(|| t.strip_prefix('\'').and_then(|t| t.strip_prefix(name)).and_then(|t| t.strip_prefix('\'')))
            .or_else(|| t.strip_prefix(name));
        t.is_some_and(|t| t.trim_start().starts_with(':'))
    };
    let start = *entries.iter().find(|&&i| key_matches(lines[i]))?;
    let end = block_end(&lines, start);
    let (mut from, to) = (start, end);
    if entries.len() == 1 && drop_empty {
        // Last entry: drop the section header as well, and the blank line
        // that `insert_entry` put before a section it created.
        from = sec;
        let after_is_end = lines[to + 1..].iter().all(|l| l.trim().is_empty());
        if from > 0 && lines[from - 1].trim().is_empty() && after_is_end {
            from -= 1;
        }
    } else if from > 0 && lines[from - 1].trim().is_empty() {
        let next_is_sibling = lines
            .get(to + 1)
            .is_some_and(|l| is_content(l) && indent_of(l) == entry_indent);
        if !next_is_sibling {
            from -= 1;
        }
    }
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i < from || i > to {
            out.push_str(l);
        }
    }
    // A block that was the last thing in the file leaves no dangling text.
    if !text.ends_with('\n') && out.ends_with('\n') && to + 1 >= lines.len() {
        out.pop();
    }
    Some(out)
}

/// What `add-service` writes for one service. Rendered with the file's own
/// indentation step.
pub struct ServiceSpec {
    pub name: String,
    pub port: u16,
    pub networks: Vec<String>,
    pub volumes: Vec<(String, String)>,
    pub depends_on: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub env_file: String,
    pub dockerfile: String,
}

pub fn render_service(spec: &ServiceSpec, unit: usize) -> String {
    let i1 = " ".repeat(unit);
    let i2 = " ".repeat(unit * 2);
    let i3 = " ".repeat(unit * 3);
    let i4 = " ".repeat(unit * 4);
    let mut s = format!("{i1}{}:\n", spec.name);
    s += &format!("{i2}build:\n{i3}context: ./src\n{i3}dockerfile: {}\n", spec.dockerfile);
    s += &format!("{i3}args:\n{i4}PYTHON_IMAGE: ${{PYTHON_IMAGE:-python:3.12-slim}}\n");
    s += &format!("{i2}container_name: {}\n", spec.name);
    s += &format!("{i2}ports:\n{i3}- \"{p}:{p}\"\n", p = spec.port);
    s += &format!("{i2}networks:\n");
    for n in &spec.networks {
        s += &format!("{i3}- {n}\n");
    }
    if spec.volumes.is_empty() {
        s += &format!("{i2}volumes: []\n");
    } else {
        s += &format!("{i2}volumes:\n");
        for (v, p) in &spec.volumes {
            s += &format!("{i3}- {v}:{p}\n");
        }
    }
    if spec.depends_on.is_empty() {
        s += &format!("{i2}depends_on: []\n");
    } else {
        s += &format!("{i2}depends_on:\n");
        for d in &spec.depends_on {
            s += &format!("{i3}- {d}\n");
        }
    }
    s += &format!("{i2}env_file:\n{i3}- {}\n", spec.env_file);
    if !spec.labels.is_empty() {
        s += &format!("{i2}labels:\n");
        for (k, v) in &spec.labels {
            s += &format!("{i3}{k}: \"{v}\"\n");
        }
    }
    s
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
    fn insert_then_remove_is_identity() {
        let block = "  new:\n    image: x\n";
        let added = insert_entry(SAMPLE, "services", block).unwrap();
        assert!(added.contains("        condition: service_started\n\n  new:\n    image: x\n# trailing"), "{added}");
        Compose::parse(&added, &none).unwrap().service("new").unwrap();
        assert_eq!(remove_entry(&added, "services", "new", false).unwrap(), SAMPLE);

        let vols = insert_entry(SAMPLE, "volumes", "  data:\n").unwrap();
        assert!(vols.ends_with("  pg-network: {}\n\nvolumes:\n  data:\n"), "{vols}");
        assert_eq!(remove_entry(&vols, "volumes", "data", true).unwrap(), SAMPLE);
    }

    #[test]
    fn removes_a_middle_entry() {
        let removed = remove_entry(SAMPLE, "services", "postgres", false).unwrap();
        assert!(removed.contains("services:\n\n  api:\n"), "{removed}");
        assert!(!removed.contains("POSTGRES_IMAGE"));
    }

    #[test]
    fn interpolation() {
        let env = |k: &str| if k == "SET" { Some("v".to_string()) } else { None };
        assert_eq!(interpolate("${SET:-d}/${UNSET:-d}/${UNSET}", &env), "v/d/");
    }
}
