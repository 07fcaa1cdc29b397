//! The stack Compose would run: what `docker compose config --format json`
//! (v2) prints, read into types. Compose's own loader has already applied
//! the override files, `COMPOSE_FILE`, `COMPOSE_PROFILES`, `.env`,
//! `extends`, `include`, interpolation, `env_file` and the implicit
//! `default` network, so nothing here re-implements them (a second loader
//! would drift from Compose's; this one cannot). Pure: the process is run
//! by `verify/load.rs`; this file turns its JSON into a `Stack`, or into the
//! list of keys the verify engines do not model.
//!
//! Every service key is in exactly one of three tables: modeled (the
//! container is created with it, as Compose would), inert (it changes
//! neither what a container reaches nor how it behaves while verify runs),
//! or refused (verify cannot prove the stack that Compose would run with
//! it). An unknown key is refused too: nothing is dropped silently.

use std::collections::BTreeMap;

use serde_json::Value;

/// Service keys that the engines create containers with.
pub const MODELED: &[&str] = &[
    "build",
    "cap_add",
    "cap_drop",
    "command",
    "container_name",
    "depends_on",
    "dns",
    "dns_search",
    "domainname",
    "entrypoint",
    "environment",
    "expose",
    "extra_hosts",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "labels",
    "network_mode",
    "networks",
    "ports",
    "privileged",
    "read_only",
    "restart",
    "security_opt",
    "shm_size",
    "stop_signal",
    "sysctls",
    "tmpfs",
    "user",
    "volumes",
    "working_dir",
];

/// Keys that change neither reachability nor behaviour during a verify
/// run: how Compose pulls, logs, stops or attaches, and what it already
/// applied (`profiles`).
pub const INERT: &[&str] = &[
    "logging",
    "profiles",
    "pull_policy",
    "stdin_open",
    "stop_grace_period",
    "tty",
    "platform",
    "develop",
];

/// Keys verify refuses, with why and what to do.
pub const REFUSED: &[(&str, &str)] = &[
    ("links", "legacy links add names outside the networks; use a shared network and the service name"),
    ("external_links", "it names containers outside the project; verify runs in a world of its own"),
    ("volumes_from", "it shares another container's mounts; declare the volumes on this service"),
    ("ipc", "a shared IPC namespace is a channel the matrix does not probe; remove it"),
    ("pid", "a shared PID namespace is a channel the matrix does not probe; remove it"),
    ("userns_mode", "a user namespace mode is not modeled; remove it"),
    ("cgroup_parent", "not modeled; remove it"),
    ("devices", "host devices are not modeled; remove them"),
    ("secrets", "Compose secrets are not modeled by the compose engine; mount the file with `volumes:` (read-only)"),
    ("configs", "Compose configs are not modeled by the compose engine; mount the file with `volumes:` (read-only)"),
    ("mac_address", "not modeled; remove it"),
    ("runtime", "another OCI runtime is not modeled; remove it"),
    ("isolation", "not modeled; remove it"),
    ("gpus", "not modeled; remove it"),
    ("deploy", "swarm settings; the compose engine does not model them (use `--engine swarm`) or remove them"),
    ("scale", "replicas are not modeled: each service is one container; remove it"),
    ("dns_opt", "not modeled; remove it"),
    ("ulimits", "not modeled; remove it"),
    ("mem_limit", "resource limits are not modeled; remove them"),
    ("memswap_limit", "resource limits are not modeled; remove them"),
    ("cpus", "resource limits are not modeled; remove them"),
    ("cpu_shares", "resource limits are not modeled; remove them"),
    ("pids_limit", "resource limits are not modeled; remove them"),
    ("oom_kill_disable", "not modeled; remove it"),
    ("oom_score_adj", "not modeled; remove it"),
    ("group_add", "supplementary groups are not modeled; remove them"),
    ("annotations", "not modeled; remove them"),
    ("attach", "not modeled; remove it"),
    ("post_start", "lifecycle hooks are not modeled; remove them"),
    ("pre_stop", "lifecycle hooks are not modeled; remove them"),
    ("provider", "a provider service is not a container; remove it"),
    ("models", "not modeled; remove it"),
    ("use_api_socket", "it mounts the Docker API socket; remove it"),
];

/// A key of the compose input that verify does not model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmodeled {
    /// The service, or `networks.<n>` / `volumes.<v>` for top-level entries.
    pub owner: String,
    pub key: String,
    pub why: String,
}

#[derive(Debug, Clone, Default)]
pub struct Stack {
    /// Compose's project name.
    pub project: String,
    /// In Compose's order (alphabetical; start order comes from depends_on).
    pub services: Vec<Svc>,
    pub networks: BTreeMap<String, Net>,
    pub volumes: BTreeMap<String, Vol>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Net {
    /// The engine name Compose gives it (`<project>_<key>` unless `name:`).
    pub name: String,
    pub internal: bool,
    pub external: bool,
    pub driver: Option<String>,
    pub subnets: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vol {
    pub name: String,
    pub external: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    pub target: u16,
    /// The host port (a number or a range) as written; none means ephemeral.
    pub published: Option<String>,
    /// As written; empty means every interface.
    pub host_ip: String,
    pub protocol: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attach {
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MountSpec {
    pub kind: MountKind,
    /// Absolute host path (bind), volume key (volume; empty: anonymous).
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    pub test: Vec<String>,
    pub interval_ns: Option<i64>,
    pub timeout_ns: Option<i64>,
    pub start_period_ns: Option<i64>,
    pub retries: Option<i64>,
    pub disable: bool,
}

/// `build:` as Compose resolved it: an absolute context, the Dockerfile
/// relative to it, the arguments interpolated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildSpec {
    pub context: String,
    pub dockerfile: String,
    pub args: Vec<(String, String)>,
}

/// One service as Compose would create its container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Svc {
    pub name: String,
    pub image: Option<String>,
    /// `build:` as Compose resolved it.
    pub build: Option<BuildSpec>,
    pub container_name: Option<String>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// Resolved by Compose (env_file folded in); `None`: unset, passed as `KEY`.
    pub environment: BTreeMap<String, Option<String>>,
    pub ports: Vec<Published>,
    pub expose: Vec<String>,
    /// Network key -> how the container is attached. Empty with a `network_mode`.
    pub networks: BTreeMap<String, Attach>,
    pub network_mode: Option<String>,
    pub volumes: Vec<MountSpec>,
    pub tmpfs: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub privileged: bool,
    pub read_only: bool,
    pub init: Option<bool>,
    pub shm_size: Option<i64>,
    pub stop_signal: Option<String>,
    pub sysctls: BTreeMap<String, String>,
    pub healthcheck: Option<Health>,
    /// (service, condition): `service_started`, `service_healthy`,
    /// `service_completed_successfully`.
    pub depends_on: Vec<(String, String)>,
    pub restart: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl Svc {
    /// The namespace this service shares instead of its own networks:
    /// `service:x` -> Some("x").
    pub fn shares_namespace_of(&self) -> Option<&str> {
        self.network_mode.as_deref()?.strip_prefix("service:")
    }
    /// The names other containers resolve it by on a network it is on:
    /// the service name, its container name and the network's aliases.
    pub fn names_on(&self, net: &str) -> Vec<String> {
        let mut v = vec![self.name.clone()];
        if let Some(c) = &self.container_name {
            if !v.contains(c) {
                v.push(c.clone());
            }
        }
        if let Some(a) = self.networks.get(net) {
            for x in &a.aliases {
                if !v.contains(x) {
                    v.push(x.clone());
                }
            }
        }
        v
    }
}

impl Stack {
    pub fn service(&self, name: &str) -> Option<&Svc> {
        self.services.iter().find(|s| s.name == name)
    }
    /// The networks whose namespace `s` is in (following `service:x`).
    pub fn networks_of(&self, s: &Svc) -> Vec<String> {
        let mut cur = s;
        for _ in 0..8 {
            match cur.shares_namespace_of().and_then(|x| self.service(x)) {
                Some(next) => cur = next,
                None => break,
            }
        }
        cur.networks.keys().cloned().collect()
    }
    /// The effective `network_mode` of `s`'s namespace (`host`, `none`, or
    /// None for bridge networks), following `service:x`.
    pub fn mode_of(&self, s: &Svc) -> Option<String> {
        let mut cur = s;
        for _ in 0..8 {
            match cur.shares_namespace_of().and_then(|x| self.service(x)) {
                Some(next) => cur = next,
                None => break,
            }
        }
        cur.network_mode
            .clone()
            .filter(|m| !m.starts_with("service:"))
    }
}

fn strs(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

fn opt_strs(v: Option<&Value>) -> Option<Vec<String>> {
    match v {
        None | Some(Value::Null) => None,
        x => Some(strs(x)),
    }
}

fn string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn map_of_strings(v: Option<&Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match v {
        Some(Value::Object(m)) => {
            for (k, x) in m {
                out.insert(k.clone(), string(Some(x)).unwrap_or_default());
            }
        }
        Some(Value::Array(a)) => {
            for x in a.iter().filter_map(|x| x.as_str()) {
                let (k, val) = x.split_once('=').unwrap_or((x, ""));
                out.insert(k.to_string(), val.to_string());
            }
        }
        _ => {}
    }
    out
}

/// A Go duration as Compose prints it (`1m30s`, `500ms`, `2s`) in ns.
pub fn duration_ns(s: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut num = String::new();
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let c = rest.chars().next()?;
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let (unit, mult) = [
            ("ns", 1.0),
            ("us", 1e3),
            ("µs", 1e3),
            ("ms", 1e6),
            ("s", 1e9),
            ("m", 60e9),
            ("h", 3600e9),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))?;
        total += num.parse::<f64>().ok()? * mult;
        num.clear();
        rest = &rest[unit.len()..];
    }
    if !num.is_empty() {
        return None;
    }
    Some(total as i64)
}

fn health(v: &Value) -> Health {
    let ns = |k: &str| string(v.get(k)).as_deref().and_then(duration_ns);
    Health {
        test: strs(v.get("test")),
        interval_ns: ns("interval"),
        timeout_ns: ns("timeout"),
        start_period_ns: ns("start_period"),
        retries: v.get("retries").and_then(|r| r.as_i64()),
        disable: v.get("disable").and_then(|d| d.as_bool()).unwrap_or(false),
    }
}

fn mount(v: &Value) -> Option<MountSpec> {
    let kind = match v.get("type")?.as_str()? {
        "bind" => MountKind::Bind,
        "volume" => MountKind::Volume,
        "tmpfs" => MountKind::Tmpfs,
        _ => return None,
    };
    Some(MountSpec {
        kind,
        source: string(v.get("source")).unwrap_or_default(),
        target: string(v.get("target"))?,
        read_only: v
            .get("read_only")
            .and_then(|b| b.as_bool())
            .unwrap_or(false),
    })
}

/// The sub-keys of a mount, a port, a network attachment or a healthcheck
/// that are modeled; any other is refused like a service key.
const MOUNT_KEYS: &[&str] = &["type", "source", "target", "read_only", "bind", "volume"];
const BIND_KEYS: &[&str] = &["create_host_path"];
const PORT_KEYS: &[&str] = &[
    "mode",
    "host_ip",
    "target",
    "published",
    "protocol",
    "app_protocol",
    "name",
];
const ATTACH_KEYS: &[&str] = &["aliases", "ipv4_address", "ipv6_address"];
const NETWORK_KEYS: &[&str] = &[
    "name",
    "external",
    "internal",
    "driver",
    "ipam",
    "labels",
    "attachable",
];
const VOLUME_KEYS: &[&str] = &["name", "external", "labels", "driver"];

fn extra_keys(owner: &str, what: &str, v: &Value, allowed: &[&str], out: &mut Vec<Unmodeled>) {
    if let Some(m) = v.as_object() {
        for k in m.keys().filter(|k| !allowed.contains(&k.as_str())) {
            out.push(Unmodeled {
                owner: owner.to_string(),
                key: format!("{what}.{k}"),
                why: format!("`{what}` with `{k}` is not modeled; remove `{k}`"),
            });
        }
    }
}

impl Stack {
    /// Reads Compose's JSON. `Err` lists every key verify does not model,
    /// in file order of services (Compose's), each with why.
    pub fn from_json(v: &Value) -> Result<Stack, Vec<Unmodeled>> {
        let mut bad = vec![];
        let mut st = Stack {
            project: string(v.get("name")).unwrap_or_default(),
            ..Default::default()
        };
        if let Some(nets) = v.get("networks").and_then(|n| n.as_object()) {
            for (k, n) in nets {
                let owner = format!("networks.{k}");
                extra_keys(&owner, "network", n, NETWORK_KEYS, &mut bad);
                let driver = string(n.get("driver"));
                if driver.as_deref().is_some_and(|d| d != "bridge") {
                    bad.push(Unmodeled {
                        owner: owner.clone(),
                        key: "driver".into(),
                        why: format!(
                            "driver `{}` is not modeled by the compose engine (bridge is); use `--engine swarm` for overlays",
                            driver.clone().unwrap_or_default()
                        ),
                    });
                }
                let external = n.get("external").and_then(|e| e.as_bool()).unwrap_or(false);
                if external {
                    bad.push(Unmodeled {
                        owner: owner.clone(),
                        key: "external".into(),
                        why: "an external network is shared with containers outside the project, which the matrix cannot see; declare it in this file".into(),
                    });
                }
                let subnets = n
                    .get("ipam")
                    .and_then(|i| i.get("config"))
                    .and_then(|c| c.as_array())
                    .map(|c| {
                        c.iter()
                            .filter_map(|x| string(x.get("subnet")))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                st.networks.insert(
                    k.clone(),
                    Net {
                        name: string(n.get("name")).unwrap_or_else(|| k.clone()),
                        internal: n.get("internal").and_then(|e| e.as_bool()).unwrap_or(false),
                        external,
                        driver,
                        subnets,
                    },
                );
            }
        }
        if let Some(vols) = v.get("volumes").and_then(|n| n.as_object()) {
            for (k, x) in vols {
                let owner = format!("volumes.{k}");
                extra_keys(&owner, "volume", x, VOLUME_KEYS, &mut bad);
                let external = x.get("external").and_then(|e| e.as_bool()).unwrap_or(false);
                if external {
                    bad.push(Unmodeled {
                        owner,
                        key: "external".into(),
                        why: "an external volume holds data from outside the run; declare a volume in this file".into(),
                    });
                }
                st.volumes.insert(
                    k.clone(),
                    Vol {
                        name: string(x.get("name")).unwrap_or_else(|| k.clone()),
                        external,
                    },
                );
            }
        }
        let services = v.get("services").and_then(|s| s.as_object());
        for (name, s) in services.into_iter().flatten() {
            st.services.push(service(name, s, &mut bad));
        }
        if bad.is_empty() {
            Ok(st)
        } else {
            Err(bad)
        }
    }
}

fn service(name: &str, s: &Value, bad: &mut Vec<Unmodeled>) -> Svc {
    let empty = serde_json::Map::new();
    let m = s.as_object().unwrap_or(&empty);
    refuse_keys(name, m, bad);
    let mut svc = Svc {
        name: name.to_string(),
        image: string(m.get("image")),
        build: m.get("build").filter(|b| !b.is_null()).map(|b| BuildSpec {
            context: string(b.get("context")).unwrap_or_else(|| ".".into()),
            dockerfile: string(b.get("dockerfile")).unwrap_or_else(|| "Dockerfile".into()),
            args: map_of_strings(b.get("args")).into_iter().collect(),
        }),
        container_name: string(m.get("container_name")),
        command: opt_strs(m.get("command")),
        entrypoint: opt_strs(m.get("entrypoint")),
        user: string(m.get("user")),
        working_dir: string(m.get("working_dir")),
        hostname: string(m.get("hostname")),
        domainname: string(m.get("domainname")),
        network_mode: string(m.get("network_mode")),
        extra_hosts: match m.get("extra_hosts") {
            Some(Value::Object(o)) => o
                .iter()
                .flat_map(|(h, ips)| {
                    let ips = strs(Some(ips));
                    ips.into_iter().map(move |ip| format!("{h}={ip}"))
                })
                .collect(),
            x => strs(x),
        },
        dns: strs(m.get("dns")),
        dns_search: strs(m.get("dns_search")),
        cap_add: strs(m.get("cap_add")),
        cap_drop: strs(m.get("cap_drop")),
        security_opt: strs(m.get("security_opt")),
        tmpfs: strs(m.get("tmpfs")),
        expose: strs(m.get("expose")),
        privileged: m
            .get("privileged")
            .and_then(|b| b.as_bool())
            .unwrap_or(false),
        read_only: m
            .get("read_only")
            .and_then(|b| b.as_bool())
            .unwrap_or(false),
        init: m.get("init").and_then(|b| b.as_bool()),
        shm_size: m.get("shm_size").and_then(|b| b.as_i64()),
        stop_signal: string(m.get("stop_signal")),
        sysctls: map_of_strings(m.get("sysctls")),
        labels: map_of_strings(m.get("labels")),
        restart: string(m.get("restart")),
        healthcheck: m.get("healthcheck").map(health),
        ..Default::default()
    };
    if let Some(Value::Object(env)) = m.get("environment") {
        for (k, v) in env {
            svc.environment.insert(k.clone(), string(Some(v)));
        }
    }
    svc.ports = ports(name, m.get("ports"), bad);
    svc.networks = attachments(name, m.get("networks"), bad);
    svc.volumes = mounts(name, m.get("volumes"), bad);
    if let Some(Value::Object(deps)) = m.get("depends_on") {
        for (d, c) in deps {
            let cond = string(c.get("condition")).unwrap_or_else(|| "service_started".into());
            svc.depends_on.push((d.clone(), cond));
        }
    }
    svc
}

/// Every key of service `name` that is neither modeled nor inert.
fn refuse_keys(name: &str, m: &serde_json::Map<String, Value>, bad: &mut Vec<Unmodeled>) {
    for k in m.keys() {
        let k = k.as_str();
        if MODELED.contains(&k) || INERT.contains(&k) || k.starts_with("x-") {
            continue;
        }
        let why = REFUSED
            .iter()
            .find(|(r, _)| *r == k)
            .map(|(_, w)| w.to_string())
            .unwrap_or_else(|| {
                "verify does not model this key, so it cannot prove the stack Compose would run with it; remove it".into()
            });
        bad.push(Unmodeled {
            owner: name.to_string(),
            key: k.to_string(),
            why,
        });
    }
}

fn ports(name: &str, v: Option<&Value>, bad: &mut Vec<Unmodeled>) -> Vec<Published> {
    let mut out = vec![];
    for p in v.and_then(|p| p.as_array()).into_iter().flatten() {
        extra_keys(name, "ports", p, PORT_KEYS, bad);
        out.push(Published {
            target: p
                .get("target")
                .and_then(|t| t.as_u64())
                .and_then(|t| u16::try_from(t).ok())
                .unwrap_or(0),
            published: string(p.get("published")).filter(|x| !x.is_empty()),
            host_ip: string(p.get("host_ip")).unwrap_or_default(),
            protocol: string(p.get("protocol")).unwrap_or_else(|| "tcp".into()),
        });
    }
    out
}

fn attachments(
    name: &str,
    v: Option<&Value>,
    bad: &mut Vec<Unmodeled>,
) -> BTreeMap<String, Attach> {
    let mut out = BTreeMap::new();
    match v {
        Some(Value::Object(nets)) => {
            for (n, a) in nets {
                extra_keys(name, &format!("networks.{n}"), a, ATTACH_KEYS, bad);
                out.insert(
                    n.clone(),
                    Attach {
                        aliases: strs(a.get("aliases")),
                        ipv4_address: string(a.get("ipv4_address")),
                        ipv6_address: string(a.get("ipv6_address")),
                    },
                );
            }
        }
        Some(Value::Array(nets)) => {
            for n in nets.iter().filter_map(|n| n.as_str()) {
                out.insert(n.to_string(), Attach::default());
            }
        }
        _ => {}
    }
    out
}

fn mounts(name: &str, vs: Option<&Value>, bad: &mut Vec<Unmodeled>) -> Vec<MountSpec> {
    let mut out = vec![];
    for v in vs.and_then(|p| p.as_array()).into_iter().flatten() {
        extra_keys(name, "volumes", v, MOUNT_KEYS, bad);
        if let Some(b) = v.get("bind") {
            extra_keys(name, "volumes.bind", b, BIND_KEYS, bad);
        }
        if let Some(x) = v.get("volume").and_then(|x| x.as_object()) {
            if !x.is_empty() {
                bad.push(Unmodeled {
                    owner: name.to_string(),
                    key: "volumes.volume".into(),
                    why: "volume options (nocopy, subpath) are not modeled; remove them".into(),
                });
            }
        }
        match mount(v) {
            Some(mnt) => out.push(mnt),
            None => bad.push(Unmodeled {
                owner: name.to_string(),
                key: "volumes".into(),
                why: format!(
                    "mount type `{}` is not modeled (bind, volume and tmpfs are)",
                    string(v.get("type")).unwrap_or_default()
                ),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_compose_prints_them() {
        assert_eq!(duration_ns("2s"), Some(2_000_000_000));
        assert_eq!(duration_ns("1m30s"), Some(90_000_000_000));
        assert_eq!(duration_ns("500ms"), Some(500_000_000));
        assert_eq!(duration_ns("1.5s"), Some(1_500_000_000));
        assert_eq!(duration_ns("5"), None);
        assert_eq!(duration_ns(""), None);
        assert_eq!(duration_ns("3x"), None);
    }

    #[test]
    fn every_unmodeled_key_is_named() {
        let v: Value = serde_json::json!({
            "name": "p",
            "services": {
                "a": {"image": "x", "links": ["b"], "frobnicate": 1,
                      "ports": [{"target": 80, "published": "80", "mode": "ingress", "protocol": "tcp", "weird": 1}],
                      "volumes": [{"type": "npipe", "source": "x", "target": "/y"}]},
                "b": {"image": "x", "logging": {"driver": "none"}, "x-mine": 1}
            },
            "networks": {"e": {"name": "e", "external": true}, "o": {"name": "p_o", "driver": "overlay"}}
        });
        let bad = Stack::from_json(&v).unwrap_err();
        let keys: Vec<(String, String)> = bad
            .iter()
            .map(|u| (u.owner.clone(), u.key.clone()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("networks.e".to_string(), "external".to_string()),
                ("networks.o".into(), "driver".into()),
                ("a".into(), "frobnicate".into()),
                ("a".into(), "links".into()),
                ("a".into(), "ports.weird".into()),
                ("a".into(), "volumes".into()),
            ]
        );
    }

    #[test]
    fn reads_what_compose_prints() {
        // Shapes taken from `docker compose config --format json` (v2.40).
        let v: Value = serde_json::json!({
            "name": "p",
            "services": {
                "a": {
                    "command": ["sh", "-c", "echo 'a b' c"], "entrypoint": null,
                    "environment": {"A": "1", "B": null},
                    "extra_hosts": ["host.docker.internal=host-gateway"],
                    "healthcheck": {"test": ["CMD", "true"], "interval": "5s", "retries": 3},
                    "image": "alpine",
                    "networks": {"default": {}, "n1": {"aliases": ["al1"], "ipv4_address": "10.99.0.5"}},
                    "ports": [{"mode": "ingress", "host_ip": "127.0.0.1", "target": 80, "published": "8080", "protocol": "tcp"},
                              {"mode": "ingress", "target": 9000, "protocol": "tcp"}],
                    "volumes": [{"type": "bind", "source": "/r/d", "target": "/d", "read_only": true, "bind": {"create_host_path": true}}],
                    "depends_on": {"b": {"condition": "service_healthy", "required": true}}
                },
                "b": {"image": "alpine", "network_mode": "service:a", "command": null}
            },
            "networks": {"default": {"name": "p_default", "ipam": {}}, "n1": {"name": "p_n1", "internal": true, "ipam": {"config": [{"subnet": "10.99.0.0/24"}]}}}
        });
        let st = Stack::from_json(&v).unwrap();
        let a = st.service("a").unwrap();
        assert_eq!(
            a.command.as_deref(),
            Some(&["sh".to_string(), "-c".into(), "echo 'a b' c".into()][..])
        );
        assert_eq!(a.entrypoint, None);
        assert_eq!(a.environment.get("B"), Some(&None));
        assert_eq!(a.ports[0].host_ip, "127.0.0.1");
        assert_eq!(a.ports[1].published, None);
        assert_eq!(a.networks["n1"].aliases, vec!["al1"]);
        assert!(a.volumes[0].read_only);
        assert_eq!(
            a.healthcheck.as_ref().unwrap().interval_ns,
            Some(5_000_000_000)
        );
        assert_eq!(
            a.depends_on,
            vec![("b".to_string(), "service_healthy".to_string())]
        );
        let b = st.service("b").unwrap();
        assert_eq!(st.networks_of(b), vec!["default".to_string(), "n1".into()]);
        assert!(st.networks["n1"].internal);
        assert_eq!(st.networks["n1"].subnets, vec!["10.99.0.0/24"]);
        assert_eq!(a.names_on("n1"), vec!["a", "al1"]);
    }
}
