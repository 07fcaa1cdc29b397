//! Rules on the compose entries, each read from the typed compose model.

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Error, Label, Rule};
use crate::model::compose::{all_interfaces, Port, Service, LABEL_REACH, REACH_NETWORK};
use crate::model::repo::Repo;

/// A finding in the compose file Compose uses (`repo.compose_file`).
fn finding_in(
    file: &str,
    rule: Rule,
    line: usize,
    msg: String,
    fix: impl Into<String>,
) -> Diagnostic {
    Diagnostic::finding(rule, file, line, msg, fix)
}

/// MR003: every compose build context and Dockerfile exists.
pub fn build_context(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    for s in &repo.compose.services {
        let Some(b) = &s.build else { continue };
        let ctx = repo.root.join(&b.context);
        if !ctx.is_dir() {
            out.push(finding_in(
                &repo.compose_file,
                Rule::BuildContext,
                b.line,
                format!(
                    "service `{}`: build context `{}` does not exist",
                    s.name, b.context
                ),
                "point `context:` at an existing folder",
            ));
        } else if !ctx.join(&b.dockerfile).is_file() {
            out.push(finding_in(
                &repo.compose_file,
                Rule::BuildContext,
                b.line,
                format!(
                    "service `{}`: Dockerfile `{}` not found in `{}`",
                    s.name, b.dockerfile, b.context
                ),
                "fix `dockerfile:` (it is relative to the context)",
            ));
        }
    }
    Ok(())
}

/// MR004: container_name equals the service key.
pub fn container_name(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    for s in &repo.compose.services {
        match &s.container_name {
            Some((n, l)) if n != &s.name => out.push(finding_in(
                &repo.compose_file,
                Rule::ContainerName,
                *l,
                format!("service `{}` has container_name `{n}`", s.name),
                format!(
                    "set `container_name: {}`: other services reach it by that name",
                    s.name
                ),
            )),
            None => out.push(finding_in(
                &repo.compose_file,
                Rule::ContainerName,
                s.line,
                format!("service `{}` has no container_name", s.name),
                format!("add `container_name: {}`", s.name),
            )),
            _ => {}
        }
    }
    Ok(())
}

/// MR005: host ports are published once, and every port is in 1-65535.
pub fn ports(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    let cf = repo.compose_file.as_str();
    let mut host_ports: HostPorts = BTreeMap::new();
    for s in &repo.compose.services {
        for p in &s.ports {
            for v in [Some(p.container), Some(p.container_end), p.host, p.host_end]
                .into_iter()
                .flatten()
            {
                if !(1..=65535).contains(&v) {
                    out.push(finding_in(
                        cf,
                        Rule::Ports,
                        p.line,
                        format!("service `{}`: port {v} is out of range", s.name),
                        "use a port from 1 to 65535",
                    ));
                }
            }
            publish(&mut host_ports, out, cf, &s.name, p);
        }
    }
    // The override file, which Compose merges (ports append).
    if let Some((of, oc)) = &repo.override_file {
        for s in &oc.services {
            for p in &s.ports {
                publish(&mut host_ports, out, of, &s.name, p);
            }
        }
    }
    Ok(())
}

/// MR020: a port published on all interfaces is reachable through the host
/// from every container of every network (and from the network), which
/// voids the isolation the compose networks give. Only nginx and a service
/// labelled `monorepo.reach: "network"` may do that; the others bind to
/// loopback. The override file's ports count too (Compose appends them);
/// the label may be set in either file (Compose merges labels).
pub fn port_on_all_interfaces(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    let reach = |name: &str| {
        let files = std::iter::once(&repo.compose).chain(repo.override_file.iter().map(|(_, c)| c));
        files
            .filter_map(|c| c.service(name))
            .any(|s| s.network_reach())
    };
    let files = std::iter::once((repo.compose_file.as_str(), &repo.compose))
        .chain(repo.override_file.iter().map(|(f, c)| (f.as_str(), c)));
    for (file, compose) in files {
        for s in &compose.services {
            if s.ports.iter().all(|p| !all_interfaces(&p.host_ip)) || reach(&s.name) {
                continue;
            }
            for p in s.ports.iter().filter(|p| all_interfaces(&p.host_ip)) {
                out.push(finding_in(
                    file,
                    Rule::PortOnAllInterfaces,
                    p.line,
                    format!(
                        "service `{}`: port {} is published on all interfaces, so every container (through the host) and the network can reach it",
                        s.name,
                        spec(p)
                    ),
                    format!(
                        "bind it to loopback: `127.0.0.1:{}`, or remove it; or label the service `{LABEL_REACH}: \"{REACH_NETWORK}\"` if it must be reachable from the network",
                        host_and_container(p)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `A` or `A-B`.
fn range(a: u32, b: u32) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

/// `HOST:CONTAINER` (`:CONTAINER` when Docker picks the host port), with
/// the protocol when it is not tcp.
fn host_and_container(p: &Port) -> String {
    let host = p
        .host
        .map(|h| range(h, p.host_end.unwrap_or(h)))
        .unwrap_or_default();
    let proto = if p.protocol == "tcp" {
        String::new()
    } else {
        format!("/{}", p.protocol)
    };
    format!("{host}:{}{proto}", range(p.container, p.container_end))
}

/// The port as written, with its host address when one is.
fn spec(p: &Port) -> String {
    let hc = host_and_container(p);
    match p.host_ip.as_str() {
        "" => hc.trim_start_matches(':').to_string(),
        ip if ip.contains(':') => format!("[{ip}]:{hc}"),
        ip => format!("{ip}:{hc}"),
    }
}

/// (host port, protocol) -> each publisher: (host IP, service, file, line).
type HostPorts<'a> = BTreeMap<(u32, String), Vec<(String, &'a str, &'a str, usize)>>;

/// Records the host ports `p` publishes, reporting a clash. A host port is
/// taken per protocol (53/tcp and 53/udp are two) and per address
/// (127.0.0.1:80 and 127.0.0.2:80 are two; an unbound one takes every
/// address). A host range mapped onto a single container port lets Docker
/// pick one: nothing fixed.
fn publish<'a>(
    host_ports: &mut HostPorts<'a>,
    out: &mut Vec<Diagnostic>,
    file: &'a str,
    svc: &'a str,
    p: &Port,
) {
    for (_, published) in p.expand() {
        let Some(h) = published.and_then(|h| h.parse::<u32>().ok()) else {
            continue;
        };
        let key = (h, p.protocol.clone());
        let clash = host_ports
            .get(&key)
            .into_iter()
            .flatten()
            .find(|(ip, ..)| all_interfaces(ip) || all_interfaces(&p.host_ip) || *ip == p.host_ip)
            .cloned();
        if let Some((_, other, of, l)) = clash {
            out.push(
                finding_in(
                    file,
                    Rule::Ports,
                    p.line,
                    format!(
                        "host port {h}/{} of `{svc}` is already published by `{other}`",
                        p.protocol
                    ),
                    "pick a free port",
                )
                .label(Label::at(
                    of,
                    l,
                    format!("`{other}` publishes {h}/{} here", p.protocol),
                )),
            );
        }
        host_ports
            .entry(key)
            .or_default()
            .push((p.host_ip.clone(), svc, file, p.line));
    }
}

/// MR006: every network a service joins is declared at the top level.
pub fn networks_declared(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    let c = &repo.compose;
    for s in &c.services {
        // `default` is the network Compose makes for every project.
        for (n, l) in s
            .networks
            .iter()
            .filter(|(n, _)| n != "default" && !c.networks.iter().any(|(d, _)| d == n))
        {
            out.push(finding_in(
                &repo.compose_file,
                Rule::NetworksDeclared,
                *l,
                format!("service `{}` joins undeclared network `{n}`", s.name),
                format!("declare `{n}:` under the top-level `networks:`"),
            ));
        }
    }
    Ok(())
}

/// MR007: every named volume a service mounts is declared at the top level.
pub fn volumes_declared(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    let c = &repo.compose;
    for s in &c.services {
        for m in s
            .volumes
            .iter()
            .filter(|m| m.named && !c.volumes.iter().any(|(d, _)| d == &m.source))
        {
            out.push(finding_in(
                &repo.compose_file,
                Rule::VolumesDeclared,
                m.line,
                format!(
                    "service `{}` mounts undeclared volume `{}`",
                    s.name, m.source
                ),
                format!("declare `{}:` under the top-level `volumes:`", m.source),
            ));
        }
    }
    Ok(())
}

/// MR008: depends_on names existing services, with no cycle.
pub fn depends_on(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    let c = &repo.compose;
    for s in &c.services {
        for (d, l) in s.depends_on.iter().filter(|(d, _)| c.service(d).is_none()) {
            out.push(finding_in(
                &repo.compose_file,
                Rule::DependsOn,
                *l,
                format!("service `{}` depends on unknown service `{d}`", s.name),
                "name an existing service",
            ));
        }
    }
    if let Some(cycle) = find_cycle(&c.services) {
        let line = c.service(&cycle[0]).map(|s| s.line).unwrap_or(0);
        out.push(finding_in(
            &repo.compose_file,
            Rule::DependsOn,
            line,
            format!("depends_on cycle: {}", cycle.join(" -> ")),
            "remove one of the dependencies",
        ));
    }
    Ok(())
}

/// A depends_on cycle, if any. Services are found through a map and the
/// path through a set: linear in services and edges (a scan per step made
/// `check` quadratic: 40k services took 21 s).
fn find_cycle(services: &[Service]) -> Option<Vec<String>> {
    use std::collections::{HashMap, HashSet};
    fn visit<'a>(
        n: &'a str,
        by_name: &HashMap<&'a str, &'a Service>,
        stack: &mut Vec<&'a str>,
        on_stack: &mut HashSet<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> Option<Vec<String>> {
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
    services.iter().find_map(|s| {
        visit(
            &s.name,
            &by_name,
            &mut vec![],
            &mut HashSet::new(),
            &mut done,
        )
    })
}

/// MR009: every env_file exists.
pub fn env_file(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    for s in &repo.compose.services {
        // An env_file marked `required: false` may be missing.
        for (e, l) in s
            .env_file
            .iter()
            .filter(|(e, _)| !s.env_file_optional.contains(e) && !repo.root.join(e).is_file())
        {
            out.push(finding_in(
                &repo.compose_file,
                Rule::EnvFile,
                *l,
                format!("service `{}`: env_file `{e}` does not exist", s.name),
                format!("create {e}"),
            ));
        }
    }
    Ok(())
}

/// MR010: a service that depends on postgres or redis is on its network.
pub fn data_networks(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    for s in &repo.compose.services {
        for (dep, net) in [("postgres", "pg-network"), ("redis", "redis-network")] {
            if let Some((_, l)) = s.depends_on.iter().find(|(d, _)| d == dep) {
                if !s.on_network(net) {
                    out.push(finding_in(
                        &repo.compose_file,
                        Rule::DataNetworks,
                        *l,
                        format!("service `{}` depends on {dep} but is not on {net}", s.name),
                        format!("add `- {net}` to its networks"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// MR011: a service whose environment names another service's gRPC
/// address shares grpc-network with it.
pub fn grpc_network(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    let c = &repo.compose;
    for s in &c.services {
        for (k, v) in repo.service_env(s) {
            let host = v
                .trim_start_matches("grpcs://")
                .trim_start_matches("grpc://")
                .split(':')
                .next()
                .unwrap_or("")
                .to_string();
            let Some(peer) = c.service(&host) else {
                continue;
            };
            let is_grpc_addr = k.ends_with("_GRPC_ADDR") || k.ends_with("_GRPC_TARGET");
            if is_grpc_addr
                && peer.name != s.name
                && !(s.on_network("grpc-network") && peer.on_network("grpc-network"))
            {
                out.push(finding_in(&repo.compose_file, Rule::GrpcNetwork, s.line, format!("service `{}` calls `{}` over gRPC ({k}) but they do not share grpc-network", s.name, peer.name), "add `- grpc-network` to both services' networks"));
            }
        }
    }
    Ok(())
}
