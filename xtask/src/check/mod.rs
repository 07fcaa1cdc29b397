//! `check`: the static house rules, each with a stable ID.

use std::collections::{BTreeMap, BTreeSet};

use crate::plan::certs;
use crate::model::cnf;
use crate::model::compose::{self, Service};
use crate::model::der;
use crate::model::repo::{Repo, SERVICES_DIR};
use crate::plan::sync;
use crate::Error;

#[derive(Debug, Clone)]
pub struct Finding {
    pub id: &'static str,
    pub file: String,
    pub line: usize,
    pub msg: String,
    pub fix: String,
}

/// Every rule: ID, short name, what it checks. The README's table is made from this.
pub const RULES: &[(&str, &str, &str)] = &[
    ("MR001", "service-folder", "a service folder has server.py or main.py, and a Dockerfile"),
    ("MR002", "folder-in-compose", "every folder under src/backend_services/ has a compose entry"),
    ("MR003", "build-context", "every compose build context and Dockerfile exists"),
    ("MR004", "container-name", "container_name equals the service key"),
    ("MR005", "ports", "host ports are published once, and every port is in 1-65535"),
    ("MR006", "networks-declared", "every network a service joins is declared at the top level"),
    ("MR007", "volumes-declared", "every named volume a service mounts is declared at the top level"),
    ("MR008", "depends-on", "depends_on names existing services, with no cycle"),
    ("MR009", "env-file", "every env_file exists"),
    ("MR010", "data-networks", "a service that depends on postgres or redis is on pg-network or redis-network"),
    ("MR011", "grpc-network", "a service whose environment names another service's gRPC address shares grpc-network with it"),
    ("MR012", "alt-names", "every https service has a DNS.N in openssl.cnf, and the N are unique"),
    ("MR013", "certificates", "the certificates exist, cover [alt_names], and do not expire within 30 days"),
    ("MR014", "nginx-endpoint", "every public path has an NGINX endpoint that proxies to the service's container name and port"),
    ("MR015", "sync", "`cargo xtask sync --check` is clean"),
];

fn f(id: &'static str, file: &str, line: usize, msg: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding { id, file: file.to_string(), line, msg: msg.into(), fix: fix.into() }
}

pub fn run(repo: &Repo) -> Result<Vec<Finding>, Error> {
    let mut out = vec![];
    let cf = repo.compose_file.as_str();
    let c = &repo.compose;
    let names: BTreeSet<&str> = c.services.iter().map(|s| s.name.as_str()).collect();

    // MR001 / MR002: folders.
    for d in &repo.service_dirs {
        let dir = repo.root.join(SERVICES_DIR).join(d);
        let rel = format!("{SERVICES_DIR}/{d}");
        if !dir.join("server.py").exists() && !dir.join("main.py").exists() {
            out.push(f("MR001", &rel, 0, format!("service `{d}` has no server.py or main.py"), format!("add {rel}/server.py")));
        }
        if !dir.join("Dockerfile").exists() {
            out.push(f("MR001", &rel, 0, format!("service `{d}` has no Dockerfile"), format!("add {rel}/Dockerfile")));
        }
        if !names.contains(d.as_str()) {
            out.push(f("MR002", &rel, 0, format!("folder `{d}` has no entry in {cf}"), format!("delete {rel}/ if it is left over, or add its compose entry (as `cargo xtask add-service` writes it)")));
        }
    }

    let mut host_ports: HostPorts = BTreeMap::new();
    for s in &c.services {
        // MR003
        if let Some(b) = &s.build {
            let ctx = repo.root.join(&b.context);
            if !ctx.is_dir() {
                out.push(f("MR003", cf, b.line, format!("service `{}`: build context `{}` does not exist", s.name, b.context), "point `context:` at an existing folder"));
            } else if !ctx.join(&b.dockerfile).is_file() {
                out.push(f("MR003", cf, b.line, format!("service `{}`: Dockerfile `{}` not found in `{}`", s.name, b.dockerfile, b.context), "fix `dockerfile:` (it is relative to the context)"));
            }
        }
        // MR004
        match &s.container_name {
            Some((n, l)) if n != &s.name => out.push(f("MR004", cf, *l, format!("service `{}` has container_name `{n}`", s.name), format!("set `container_name: {}`: other services reach it by that name", s.name))),
            None => out.push(f("MR004", cf, s.line, format!("service `{}` has no container_name", s.name), format!("add `container_name: {}`", s.name))),
            _ => {}
        }
        // MR005
        for p in &s.ports {
            for v in [Some(p.container), Some(p.container_end), p.host, p.host_end].into_iter().flatten() {
                if !(1..=65535).contains(&v) {
                    out.push(f("MR005", cf, p.line, format!("service `{}`: port {v} is out of range", s.name), "use a port from 1 to 65535"));
                }
            }
            publish(&mut host_ports, &mut out, cf, &s.name, p);
        }
        // MR006 / MR007
        for (n, l) in &s.networks {
            // `default` is the network Compose makes for every project.
            if n != "default" && !c.networks.iter().any(|(d, _)| d == n) {
                out.push(f("MR006", cf, *l, format!("service `{}` joins undeclared network `{n}`", s.name), format!("declare `{n}:` under the top-level `networks:`")));
            }
        }
        for m in s.volumes.iter().filter(|m| m.named) {
            if !c.volumes.iter().any(|(d, _)| d == &m.source) {
                out.push(f("MR007", cf, m.line, format!("service `{}` mounts undeclared volume `{}`", s.name, m.source), format!("declare `{}:` under the top-level `volumes:`", m.source)));
            }
        }
        // MR008
        for (d, l) in &s.depends_on {
            if !names.contains(d.as_str()) {
                out.push(f("MR008", cf, *l, format!("service `{}` depends on unknown service `{d}`", s.name), "name an existing service"));
            }
        }
        // MR009
        // An env_file marked `required: false` may be missing.
        for (e, l) in s.env_file.iter().filter(|(e, _)| !s.env_file_optional.contains(e)) {
            if !repo.root.join(e).is_file() {
                out.push(f("MR009", cf, *l, format!("service `{}`: env_file `{e}` does not exist", s.name), format!("create {e}")));
            }
        }
        // MR010
        for (dep, net) in [("postgres", "pg-network"), ("redis", "redis-network")] {
            if let Some((_, l)) = s.depends_on.iter().find(|(d, _)| d == dep) {
                if !s.on_network(net) {
                    out.push(f("MR010", cf, *l, format!("service `{}` depends on {dep} but is not on {net}", s.name), format!("add `- {net}` to its networks")));
                }
            }
        }
        // MR011
        for (k, v) in repo.service_env(s) {
            let host = v.trim_start_matches("grpcs://").trim_start_matches("grpc://").split(':').next().unwrap_or("").to_string();
            let Some(peer) = c.service(&host) else { continue };
            let is_grpc_addr = k.ends_with("_GRPC_ADDR") || k.ends_with("_GRPC_TARGET");
            if is_grpc_addr && peer.name != s.name && !(s.on_network("grpc-network") && peer.on_network("grpc-network")) {
                out.push(f("MR011", cf, s.line, format!("service `{}` calls `{}` over gRPC ({k}) but they do not share grpc-network", s.name, peer.name), "add `- grpc-network` to both services' networks"));
            }
        }
    }
    // MR005 across the override file, which Compose merges (ports append).
    if let Some((of, oc)) = &repo.override_file {
        for s in &oc.services {
            for p in &s.ports {
                publish(&mut host_ports, &mut out, of, &s.name, p);
            }
        }
    }
    // MR008: cycles.
    if let Some(cycle) = find_cycle(&c.services) {
        let line = c.service(&cycle[0]).map(|s| s.line).unwrap_or(0);
        out.push(f("MR008", cf, line, format!("depends_on cycle: {}", cycle.join(" -> ")), "remove one of the dependencies"));
    }

    // MR012
    let cn = cnf::FILE;
    for s in repo.backend().filter(|s| s.https()) {
        if repo.cnf.dns(&s.name).is_none() {
            let after = repo.cnf.alt_names.last().map(|a| a.line).unwrap_or(repo.cnf.section_line);
            out.push(f("MR012", cn, after, format!("https service `{}` has no DNS entry", s.name), format!("add `DNS.{} = {}` under [alt_names] (or run `cargo xtask sync`)", repo.cnf.next_dns_index(), s.name)));
        }
    }
    let mut seen: BTreeMap<(String, u32), usize> = BTreeMap::new();
    for a in &repo.cnf.alt_names {
        if let Some(l) = seen.insert((a.kind.clone(), a.index), a.line) {
            out.push(f("MR012", cn, a.line, format!("{}.{} is also used on line {l}", a.kind, a.index), "renumber it (`cargo xtask sync` does)"));
        }
    }

    // MR013
    let https: Vec<String> = repo.wanted_alt_names();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ca = std::fs::read_to_string(repo.root.join(certs::CA_CERT)).ok().and_then(|p| der::parse(&der::pem_to_der(&p)?));
    for leaf in certs::wanted(&repo.cnf, &https) {
        let rel = format!("{}/cert.pem", leaf.dir);
        let info = std::fs::read_to_string(repo.root.join(&rel)).ok().and_then(|p| der::parse(&der::pem_to_der(&p)?));
        if let Some(why) = certs::stale_reason(&leaf, info.as_ref(), ca.as_ref().and_then(|c| c.subject_key_id.as_deref()), now) {
            out.push(f("MR013", &rel, 0, format!("certificate is stale: {why}"), "run `cargo xtask certs`"));
        }
    }

    // MR014
    for s in repo.backend() {
        let Some(path) = s.public_path() else { continue };
        let line = s.line;
        match repo.routes.iter().find(|r| r.path == path) {
            None => out.push(f("MR014", cf, line, format!("public path `{path}` of `{}` has no NGINX location", s.name), "run `cargo xtask sync`")),
            Some(r) => {
                let port = s.port().unwrap_or(0);
                if r.host != s.name || r.port != port {
                    out.push(f("MR014", &r.file, r.line, format!("location `{path}` proxies to {}:{}, but `{}` is reached at {}:{port}", r.host, r.port, s.name, s.name), "point it at the service's container name and port (`cargo xtask sync` rewrites generated endpoints)"));
                }
            }
        }
    }

    // MR015
    let plan = sync::plan(repo)?;
    for p in plan.paths() {
        out.push(f("MR015", &p, 0, "out of date with the compose file", "run `cargo xtask sync` (see `cargo xtask sync --check` for the diff)"));
    }
    Ok(out)
}

type HostPorts<'a> = BTreeMap<(u32, String), Vec<(String, &'a str, usize)>>;

/// MR005: records the host ports `p` publishes, reporting a clash.
/// A host port is taken per protocol (53/tcp and 53/udp are two) and per
/// address (127.0.0.1:80 and 127.0.0.2:80 are two; an unbound one takes
/// every address). A host range mapped onto a single container port lets
/// Docker pick one: nothing fixed.
fn publish<'a>(host_ports: &mut HostPorts<'a>, out: &mut Vec<Finding>, file: &str, svc: &'a str, p: &compose::Port) {
    for (_, published) in p.expand() {
        let Some(h) = published.and_then(|h| h.parse::<u32>().ok()) else { continue };
        let key = (h, p.protocol.clone());
        let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        let clash = host_ports.get(&key).into_iter().flatten().find(|(ip, ..)| any(ip) || any(&p.host_ip) || *ip == p.host_ip).cloned();
        if let Some((_, other, l)) = clash {
            out.push(f("MR005", file, p.line, format!("host port {h}/{} of `{svc}` is already published by `{other}` (line {l})", p.protocol), "pick a free port"));
        }
        host_ports.entry(key).or_default().push((p.host_ip.clone(), svc, p.line));
    }
}

/// A depends_on cycle, if any. Services are found through a map and the
/// path through a set: linear in services and edges (a scan per step made
/// `check` quadratic: 40k services took 21 s).
fn find_cycle(services: &[Service]) -> Option<Vec<String>> {
    use std::collections::{HashMap, HashSet};
    fn visit<'a>(n: &'a str, by_name: &HashMap<&'a str, &'a Service>, stack: &mut Vec<&'a str>, on_stack: &mut HashSet<&'a str>, done: &mut HashSet<&'a str>) -> Option<Vec<String>> {
        if on_stack.contains(n) {
            let i = stack.iter().position(|s| *s == n).unwrap_or(0);
            let mut c: Vec<String> = stack[i..].iter().map(|s| s.to_string()).collect();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n);
        on_stack.insert(n);
        if let Some(s) = by_name.get(n) {
            for (d, _) in &s.depends_on {
                if let Some(c) = visit(d, by_name, stack, on_stack, done) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        on_stack.remove(n);
        done.insert(n);
        None
    }
    let by_name: HashMap<&str, &Service> = services.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut done = HashSet::new();
    services.iter().find_map(|s| visit(&s.name, &by_name, &mut vec![], &mut HashSet::new(), &mut done))
}

/// The rules as a Markdown table (the README embeds it; a test keeps it current).
pub fn rules_table() -> String {
    let mut s = String::from("| ID | rule | checks |\n|---|---|---|\n");
    for (id, name, what) in RULES {
        s += &format!("| {id} | {name} | {what} |\n");
    }
    s
}

pub fn render_human(findings: &[Finding]) -> String {
    let mut s = String::new();
    for x in findings {
        let loc = if x.line > 0 { format!("{}:{}", x.file, x.line) } else { x.file.clone() };
        s += &format!("{} {loc}: {}\n  fix: {}\n", x.id, x.msg, x.fix);
    }
    s += &if findings.is_empty() { "check: clean\n".to_string() } else { format!("check: {} finding(s)\n", findings.len()) };
    s
}

pub fn render_json(findings: &[Finding]) -> String {
    let v: Vec<serde_json::Value> = findings
        .iter()
        .map(|x| serde_json::json!({"id": x.id, "file": x.file, "line": x.line, "message": x.msg, "fix": x.fix}))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({"findings": v, "clean": findings.is_empty()})).unwrap() + "\n"
}
