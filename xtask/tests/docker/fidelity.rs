//! verify proves the stack Compose runs, with Compose itself as the oracle:
//! - every key verify does not model is refused (exit 2, file:line, the
//!   key) before anything is created;
//! - the same project brought up by `docker compose up` (v2) and kept by
//!   `verify --keep` gives containers that `docker inspect` shows equal,
//!   field by field (names, ids, run labels and ephemeral ports normalised);
//! - ground truth: from every container of the Compose stack, every path
//!   (the target's name, its address on each network, the host at each
//!   published port through every gateway) is tried with a plain TCP
//!   connection, and the set of paths that connect must equal verify's.
//!
//! Needs the Docker daemon, Compose v2 and the base images (see README).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::common::*;
use serde_json::Value;

fn sh(args: &[&str]) -> (bool, String) {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn edit(root: &Path, file: &str, from: &str, to: &str) {
    let p = root.join(file);
    let t = std::fs::read_to_string(&p).unwrap();
    assert!(t.contains(from), "{file} has no {from:?}");
    std::fs::write(&p, t.replacen(from, to, 1)).unwrap();
}

/// Each key verify does not model, added to the example, is refused with
/// its line before anything exists; so is what Compose itself refuses.
#[test]
fn keys_verify_does_not_model_are_refused_at_their_line() {
    let _area = area("fidelity");
    if !docker_available() {
        eprintln!("skipped: no Docker daemon");
        return;
    }
    let c = copy("fid-refuse");
    set_up(&c.root);
    let anchor = "    container_name: gateway\n";
    let cases: &[(&str, &str)] = &[
        ("    links: [accounts]\n", "`links` of `gateway`"),
        ("    ipc: host\n", "`ipc` of `gateway`"),
        ("    pid: host\n", "`pid` of `gateway`"),
        (
            "    devices: [\"/dev/null:/dev/xnull\"]\n",
            "`devices` of `gateway`",
        ),
        (
            "    volumes_from: [accounts]\n",
            "`volumes_from` of `gateway`",
        ),
        ("    mem_limit: 64m\n", "`mem_limit` of `gateway`"),
        ("    userns_mode: host\n", "`userns_mode` of `gateway`"),
        ("    cgroup_parent: x\n", "`cgroup_parent` of `gateway`"),
    ];
    let compose = std::fs::read_to_string(c.root.join("docker-compose.yml")).unwrap();
    let line = compose
        .lines()
        .position(|l| format!("{l}\n") == anchor)
        .unwrap()
        + 2;
    for (key, want) in cases {
        std::fs::write(c.root.join("docker-compose.yml"), &compose).unwrap();
        edit(
            &c.root,
            "docker-compose.yml",
            anchor,
            &format!("{anchor}{key}"),
        );
        let o = xtask(&c.root, &["verify"]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{key}: {t}");
        assert!(t.contains(want), "{key}: {want:?} not in {t}");
        assert!(
            t.contains(&format!("docker-compose.yml:{line}")),
            "{key}: no line {line}: {t}"
        );
        assert!(!t.contains("verify: run "), "{key}: a run started: {t}");
    }
    // An external network (shared with the world outside the run).
    std::fs::write(c.root.join("docker-compose.yml"), &compose).unwrap();
    edit(
        &c.root,
        "docker-compose.yml",
        "  web-network:",
        "  outside:\n    external: true\n  web-network:",
    );
    edit(&c.root, "docker-compose.yml", "      - web-network\n    volumes:\n      - ./certs/trust:/run/trust:ro\n    depends_on:\n      - accounts", "      - web-network\n      - outside\n    volumes:\n      - ./certs/trust:/run/trust:ro\n    depends_on:\n      - accounts");
    let o = xtask(&c.root, &["verify"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("`external` of `networks.outside`"),
        "{}",
        text(&o)
    );
    // What Compose refuses, verify refuses with Compose's reason.
    std::fs::write(c.root.join("docker-compose.yml"), &compose).unwrap();
    edit(
        &c.root,
        "docker-compose.yml",
        anchor,
        &format!("{anchor}    frobnicate: 1\n"),
    );
    let o = xtask(&c.root, &["verify"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("Compose refuses this project"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("frobnicate"), "{}", text(&o));
}

/// `docker inspect` of one container, reduced to what Compose decides and
/// normalised: names of the project or run, ids, ephemeral host ports and
/// the labels each tool adds are taken out.
fn normal(i: &Value, project: &str, services: &BTreeMap<String, String>) -> Value {
    let strip = |s: &str| -> String {
        let mut s = s.to_string();
        for (svc, id) in services {
            s = s.replace(id.as_str(), &format!("<{svc}>"));
        }
        let re_run = |s: &str| -> String {
            // mr-<run>-<key> and <project>_<key>: the key alone.
            if let Some(rest) = s.strip_prefix("mr-") {
                if let Some((_, key)) = rest.split_once('-') {
                    return key.to_string();
                }
            }
            s.strip_prefix(&format!("{project}_"))
                .unwrap_or(s)
                .to_string()
        };
        re_run(&s)
    };
    let cfg = &i["Config"];
    let hc = &i["HostConfig"];
    let mut env: Vec<String> = cfg["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    env.sort();
    let labels: BTreeMap<String, Value> = cfg["Labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| {
            !k.starts_with("com.docker.compose")
                && !k.starts_with("monorepo.verify")
                && !k.starts_with("monorepo.build")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut ports: Vec<String> = hc["PortBindings"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(p, bs)| {
            bs.as_array()
                .into_iter()
                .flatten()
                .map(move |b| format!("{p} on {}", b["HostIp"].as_str().unwrap_or("")))
        })
        .collect();
    ports.sort();
    let mounts = mounts_of(i, &strip);
    let nets = nets_of(i, &strip);
    let mode = hc["NetworkMode"].as_str().unwrap_or("").to_string();
    let mode = match mode.strip_prefix("container:") {
        Some(id) => format!(
            "container:{}",
            services
                .iter()
                .find(|(_, v)| id.starts_with(v.as_str()) || v.starts_with(id))
                .map(|(k, _)| k.clone())
                .unwrap_or(id.into())
        ),
        None => strip(&mode),
    };
    serde_json::json!({
        "User": cfg["User"], "Entrypoint": cfg["Entrypoint"], "Cmd": cfg["Cmd"],
        "WorkingDir": cfg["WorkingDir"], "Env": env, "Labels": labels,
        "Healthcheck": cfg["Healthcheck"], "StopSignal": cfg["StopSignal"],
        "Domainname": cfg["Domainname"],
        "ExposedPorts": cfg["ExposedPorts"],
        "CapAdd": hc["CapAdd"], "CapDrop": hc["CapDrop"], "Privileged": hc["Privileged"],
        "ReadonlyRootfs": hc["ReadonlyRootfs"], "Init": hc["Init"], "Sysctls": hc["Sysctls"],
        "Tmpfs": hc["Tmpfs"], "RestartPolicy": hc["RestartPolicy"], "ExtraHosts": hc["ExtraHosts"],
        "Dns": hc["Dns"], "DnsSearch": hc["DnsSearch"], "SecurityOpt": hc["SecurityOpt"],
        "ShmSize": hc["ShmSize"], "NetworkMode": mode, "Ports": ports, "Mounts": mounts,
        "Networks": nets,
    })
}

/// The mounts as Compose decides them (named volumes by their key).
fn mounts_of(i: &Value, strip: &dyn Fn(&str) -> String) -> Vec<String> {
    let mut mounts: Vec<String> = i["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let src = match m["Type"].as_str() {
                Some("bind") => m["Source"].as_str().unwrap_or("").to_string(),
                Some("volume") => strip(m["Name"].as_str().unwrap_or("")),
                _ => String::new(),
            };
            format!(
                "{} {} -> {} rw={}",
                m["Type"], src, m["Destination"], m["RW"]
            )
        })
        .collect();
    mounts.sort();
    mounts
}

/// The networks (by key) with their aliases and fixed address.
fn nets_of(i: &Value, strip: &dyn Fn(&str) -> String) -> Vec<String> {
    let mut nets: Vec<String> = i["NetworkSettings"]["Networks"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(n, ep)| {
            let mut aliases: Vec<String> = ep["Aliases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
                // Docker adds the short container id, Compose its container name.
                .filter(|a| !(a.len() == 12 && a.chars().all(|c| c.is_ascii_hexdigit())))
                .map(str::to_string)
                .collect();
            aliases.sort();
            aliases.dedup();
            format!(
                "{} aliases={aliases:?} ip={}",
                strip(n),
                ep["IPAMConfig"]["IPv4Address"]
            )
        })
        .collect();
    nets.sort();
    nets
}

fn inspect(id: &str) -> Value {
    let (ok, out) = sh(&["docker", "inspect", id]);
    assert!(ok, "{out}");
    serde_json::from_str::<Value>(&out).unwrap()[0].clone()
}

/// service -> container id of a Compose project, or of a verify run.
fn containers(filter: &str, label: &str) -> BTreeMap<String, String> {
    let fmt = format!("{{{{.ID}}}} {{{{.Label \"{label}\"}}}}");
    sh(&[
        "docker",
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        filter,
        "--format",
        &fmt,
    ])
    .1
    .lines()
    .filter_map(|l| l.split_once(' '))
    .filter(|(_, s)| !s.is_empty())
    .map(|(id, s)| (s.to_string(), id.to_string()))
    .collect()
}

/// The project's override used by both tools: every modeled key on the
/// example's gateway, a sidecar in its namespace, a service on the
/// implicit default network with only `expose:`, unique container names
/// and ephemeral host ports (so nothing clashes with another stack).
fn fidelity_override(root: &Path, tag: &str, python: &str) -> String {
    // Every service of the project as Compose reads it (the example grows):
    // a unique container name, and each port with its host IP kept and an
    // ephemeral host port.
    let o = Command::new("docker")
        .args(["compose", "config", "--format", "json"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut s = String::from("services:\n");
    for (svc, def) in cfg["services"].as_object().unwrap() {
        if svc == "gateway" {
            continue;
        }
        let ports: Vec<String> = def["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let ip = p["host_ip"].as_str().unwrap_or("");
                format!(
                    "\"{ip}{}:{}\"",
                    if ip.is_empty() { "" } else { ":" },
                    p["target"]
                )
            })
            .collect();
        s += &format!(
            "  {svc}:\n    container_name: {tag}-{svc}\n    ports: !override [{}]\n",
            ports.join(", ")
        );
    }
    // gateway: its port twice, on loopback and on every interface (the
    // leak the ground truth must see and verify must report).
    s += &format!(
        r#"  gateway:
    container_name: {tag}-gateway
    ports: !override ["127.0.0.1::8080", "8080"]
    working_dir: /app
    environment:
      EXTRA_WITH_SPACE: "a b  c"
    extra_hosts: ["example.invalid:127.0.0.9"]
    dns_search: [svc.invalid]
    cap_drop: [NET_RAW]
    security_opt: ["no-new-privileges:true"]
    init: true
    tmpfs: [/scratch]
    sysctls: {{net.ipv4.ip_unprivileged_port_start: "1024"}}
    healthcheck: {{test: ["CMD", "true"], interval: 2s, timeout: 1s, retries: 2, start_period: 1s}}
    restart: on-failure:2
    stop_signal: SIGINT
    labels: {{fidelity.extra: "yes"}}
  sidecar:
    image: {python}
    container_name: {tag}-sidecar
    network_mode: "service:gateway"
    user: "65534:65534"
    entrypoint: ["python3"]
    command: -c "import time; time.sleep(3600)"
    read_only: true
    depends_on:
      gateway: {{condition: service_healthy}}
  quiet:
    image: {python}
    container_name: {tag}-quiet
    user: "65534:65534"
    command: ["python3", "/quiet.py"]
    volumes: ["./quiet.py:/quiet.py:ro"]
    expose: ["9000"]
    labels: {{monorepo.protocol: http}}
"#
    );
    s
}

/// A service that answers verify's HTTP probe (`/healthz` naming itself).
const QUIET: &str = r#"import http.server


class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"service": "quiet"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.HTTPServer(("", 9000), H).serve_forever()
"#;

/// The host IP a verify path names (`bound to X`), as `all` or the address.
fn bound(via: &str) -> String {
    let ip = via.split("bound to ").nth(1).unwrap_or("");
    norm_ip(ip)
}

fn norm_ip(ip: &str) -> String {
    match ip {
        "" | "0.0.0.0" | "all interfaces" => "all".into(),
        x => x.into(),
    }
}

/// The abstract path a cell or a ground-truth try took.
fn key_of(src: &str, dst: &str, via: &str) -> String {
    if via == "name" || via.is_empty() {
        return format!("{src} -> {dst} by name");
    }
    if let Some(rest) = via.strip_prefix("address ") {
        let net = rest.split(" on ").nth(1).unwrap_or("");
        return format!("{src} -> {dst} by address on {net}");
    }
    if via.contains("(the default bridge)") {
        let port = via
            .split("published ")
            .nth(1)
            .and_then(|p| p.split(' ').next())
            .unwrap_or("");
        return format!(
            "{src} -> {dst}:{port} on {} through the default bridge",
            bound(via)
        );
    }
    let net = via
        .split("(gateway of ")
        .nth(1)
        .and_then(|p| p.split(')').next())
        .unwrap_or("");
    let port = via
        .split("published ")
        .nth(1)
        .and_then(|p| p.split(' ').next())
        .unwrap_or("");
    format!(
        "{src} -> {dst}:{port} on {} through the gateway of {net}",
        bound(via)
    )
}

#[test]
fn verify_runs_and_proves_the_stack_compose_runs() {
    let _area = area("fidelity");
    if !docker_available() {
        eprintln!("skipped: no Docker daemon");
        return;
    }
    let c = copy("fid");
    set_up(&c.root);
    let tag = format!("fid{}", std::process::id());
    let python = env_image("PYTHON_IMAGE", "python:3.12-slim");
    std::fs::write(
        c.root.join("fidelity.override.yml"),
        fidelity_override(&c.root, &tag, &python),
    )
    .unwrap();
    std::fs::write(c.root.join("quiet.py"), QUIET).unwrap();
    let files = "docker-compose.yml:fidelity.override.yml";
    let compose = |args: &[&str]| -> (bool, String) {
        let o = Command::new("docker")
            .arg("compose")
            .args(["-p", &tag])
            .args(args)
            .current_dir(&c.root)
            .env("COMPOSE_FILE", files)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    struct Down<'a>(&'a dyn Fn(&[&str]) -> (bool, String));
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            (self.0)(&["down", "-v", "-t", "1"]);
        }
    }
    let _down = Down(&compose);
    let (ok, out) = compose(&["up", "-d", "--build", "--wait", "--wait-timeout", "180"]);
    assert!(ok, "docker compose up: {out}");

    // verify, on the same files, keeping its stack.
    let o = xtask_env(
        &c.root,
        &["verify", "--keep", "--format", "json"],
        &[("COMPOSE_FILE", files)],
    );
    let report: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let run = report["run"].as_str().unwrap().to_string();
    let kept = Kept::from_output(&text(&o));
    assert_eq!(kept.run, run);
    // The one leak of this stack, and nothing else, fails verify: gateway's
    // port on every interface, through each host address.
    let failing: Vec<String> = report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| format!("{} -> {} via {}", c["source"], c["target"], c["via"]))
        .collect();
    assert_eq!(o.status.code(), Some(1), "verify: {}", text(&o));
    assert!(
        !failing.is_empty()
            && failing
                .iter()
                .all(|f| f.contains("-> \"gateway\" via \"host") && f.contains("bound to 0.0.0.0")),
        "{failing:#?}"
    );
    assert!(text(&o).contains("--keep"), "{}", text(&o));
    // A later run's sweep of dead runs leaves a kept stack alone.
    let objects = run_objects(&run);
    assert!(!objects.is_empty());

    // 1. docker inspect, field by field.
    let theirs = same_containers(&tag, &run);
    // 2. Ground truth: every path from every container of Compose's stack.
    let truth = ground_truth(&tag, &theirs);
    compare_paths(&truth, &report);
    // The removal verify printed leaves nothing of the run.
    let left = kept.remove();
    assert!(left.is_empty(), "{left:#?}");
}

/// Compose's containers (service -> id), once asserted equal to the run's
/// in every field `normal` keeps.
fn same_containers(tag: &str, run: &str) -> BTreeMap<String, String> {
    let theirs = containers(
        &format!("label=com.docker.compose.project={tag}"),
        "com.docker.compose.service",
    );
    let ours = containers(
        &format!("label=monorepo.verify.run={run}"),
        "monorepo.verify.service",
    );
    let ours: BTreeMap<String, String> = ours.into_iter().filter(|(k, _)| !k.is_empty()).collect();
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "the same services"
    );
    let mut diffs = vec![];
    for (svc, id) in &theirs {
        let a = normal(&inspect(id), tag, &theirs);
        let b = normal(&inspect(&ours[svc]), tag, &ours);
        for (k, va) in a.as_object().unwrap() {
            let vb = &b[k];
            // Compose sends an empty list where verify sends none: the same.
            let empty = |v: &Value| v.is_null() || v.as_array().is_some_and(|a| a.is_empty());
            if va != vb && !(empty(va) && empty(vb)) {
                diffs.push(format!("{svc}.{k}: compose {va} / verify {vb}"));
            }
        }
    }
    assert!(diffs.is_empty(), "containers differ:\n{}", diffs.join("\n"));

    theirs
}

/// Every path verify tried against the ground truth: the same paths, the
/// same answers.
fn compare_paths(truth: &BTreeMap<String, bool>, report: &Value) {
    let mut claimed: BTreeMap<String, bool> = BTreeMap::new();
    for cell in report["cells"].as_array().unwrap() {
        let (s, t) = (
            cell["source"].as_str().unwrap(),
            cell["target"].as_str().unwrap(),
        );
        if s == "host" {
            continue;
        }
        let via = cell["via"].as_str().unwrap_or("name");
        let connected = matches!(cell["outcome"].as_str(), Some("ok") | Some("failed"));
        claimed.insert(key_of(s, t, via), connected);
    }
    let mut disagree = vec![];
    for (k, v) in truth {
        match claimed.get(k) {
            Some(c) if c == v => {}
            other => disagree.push(format!(
                "{k}: compose stack {} / verify {other:?}",
                if *v { "connects" } else { "blocked" }
            )),
        }
    }
    for k in claimed.keys().filter(|k| !truth.contains_key(*k)) {
        disagree.push(format!("{k}: verify tried a path the ground truth has not"));
    }
    // Before this change verify tried names only and called every other
    // path blocked: the disagreements that would have been.
    let before = truth
        .iter()
        .filter(|(k, v)| !k.contains(" by name") && **v)
        .count();
    eprintln!("ground truth: {} paths compared, {} disagree; a names-only verify would disagree on {before}", truth.len(), disagree.len());
    assert!(
        disagree.is_empty(),
        "verify and the Compose stack disagree:\n{}",
        disagree.join("\n")
    );
    assert!(truth.len() > 40, "too few paths: {}", truth.len());
}

/// Compose's running stack as `docker inspect` shows it.
struct World<'a> {
    tag: &'a str,
    svcs: &'a BTreeMap<String, String>,
    info: BTreeMap<String, Value>,
    bridge: Option<String>,
}

impl World<'_> {
    /// The gateway the network's IPAM config names, else the first
    /// address of its IPv4 subnet (what the daemon gives a bridge without
    /// one; the default bridge named none on a daemon as it booted here).
    fn gw(&self, n: &str) -> Option<String> {
        let (_, out) = sh(&[
            "docker",
            "network",
            "inspect",
            n,
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}}|{{.Subnet}};{{end}}",
        ]);
        // `|`, not a space: an empty gateway leads the line, and a trim
        // would take the space with it (the default bridge then had none).
        let configs: Vec<(&str, &str)> = out
            .trim()
            .split(';')
            .filter_map(|c| c.split_once('|'))
            .collect();
        if let Some((g, _)) = configs.iter().find(|(g, _)| !g.is_empty()) {
            return Some(g.to_string());
        }
        configs.iter().find_map(|(_, subnet)| {
            let (addr, len) = subnet.split_once('/')?;
            let addr: std::net::Ipv4Addr = addr.parse().ok()?;
            let len: u32 = len.parse().ok()?;
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            (len < 31).then(|| std::net::Ipv4Addr::from((u32::from(addr) & mask) + 1).to_string())
        })
    }
    /// A bridge network that is not internal: the host routes its subnet.
    fn routed(&self, n: &str) -> bool {
        let (_, out) = sh(&[
            "docker",
            "network",
            "inspect",
            n,
            "--format",
            "{{.Driver}} {{.Internal}}",
        ]);
        out.trim() == "bridge false"
    }
    /// The service whose namespace `s` is in (following `container:`).
    fn ns_of(&self, s: &str) -> String {
        let mode = self.info[s]["HostConfig"]["NetworkMode"]
            .as_str()
            .unwrap_or("");
        match mode.strip_prefix("container:") {
            Some(id) => self
                .svcs
                .iter()
                .find(|(_, v)| v.starts_with(id) || id.starts_with(v.as_str()))
                .map(|(k, _)| k.clone())
                .unwrap(),
            None => s.to_string(),
        }
    }
    /// (engine network, compose key, address) of `s`'s namespace.
    fn nets(&self, s: &str) -> Vec<(String, String, String)> {
        let key = |n: &str| {
            n.strip_prefix(&format!("{}_", self.tag))
                .unwrap_or(n)
                .to_string()
        };
        self.info[&self.ns_of(s)]["NetworkSettings"]["Networks"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(n, ep)| {
                (
                    n.clone(),
                    key(n),
                    ep["IPAddress"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
    /// The service's own port: the first declared published one, else exposed.
    fn port_of(&self, s: &str) -> Option<u16> {
        let ports = |v: &Value| -> Vec<u16> {
            v.as_object()
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.trim_end_matches("/tcp").parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let declared = ports(&self.info[s]["HostConfig"]["PortBindings"]);
        let exposed = ports(&self.info[s]["Config"]["ExposedPorts"]);
        declared.into_iter().min().or(exposed.into_iter().min())
    }
    /// Every path from `src` to every other service: (key, host, port).
    fn paths_from(&self, src: &str) -> Vec<(String, String, u16)> {
        let src_nets = self.nets(src);
        let mut out = vec![];
        for dst in self
            .svcs
            .keys()
            .filter(|d| *d != src && self.ns_of(d) != self.ns_of(src))
        {
            let mode = self.info[dst]["HostConfig"]["NetworkMode"]
                .as_str()
                .unwrap_or("");
            // A service in another's namespace has no port of its own.
            let Some(port) = self
                .port_of(dst)
                .filter(|_| !mode.starts_with("container:"))
            else {
                continue;
            };
            out.push((key_of(src, dst, "name"), dst.clone(), port));
            for (n, key, ip) in self.nets(dst) {
                // Only addresses this machine routes to a local bridge: any
                // other would leave it by the default route.
                if !src_nets.iter().any(|(_, k, _)| *k == key) && self.routed(&n) {
                    out.push((format!("{src} -> {dst} by address on {key}"), ip, port));
                }
            }
            let published = self.info[dst]["NetworkSettings"]["Ports"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (p, bs) in published {
                let Some(cport) = p.strip_suffix("/tcp") else {
                    continue;
                };
                for b in bs.as_array().into_iter().flatten() {
                    let ip = b["HostIp"].as_str().unwrap_or("");
                    if ip.contains(':') {
                        continue;
                    }
                    let hp: u16 = b["HostPort"].as_str().unwrap_or("0").parse().unwrap();
                    let on = norm_ip(ip);
                    for (n, key, _) in &src_nets {
                        if let Some(g) = self.gw(n) {
                            out.push((
                                format!(
                                    "{src} -> {dst}:{cport} on {on} through the gateway of {key}"
                                ),
                                g,
                                hp,
                            ));
                        }
                    }
                    if let Some(br) = &self.bridge {
                        out.push((
                            format!("{src} -> {dst}:{cport} on {on} through the default bridge"),
                            br.clone(),
                            hp,
                        ));
                    }
                }
            }
        }
        out
    }
}

/// From each Compose container, a TCP connection along every path to every
/// other service's port (the first published or exposed one), by name, by
/// address, through the host. Returns path -> connected.
fn ground_truth(tag: &str, svcs: &BTreeMap<String, String>) -> BTreeMap<String, bool> {
    let probe = sh(&[
        "docker",
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "monorepo-local/probe",
    ])
    .1;
    let probe = probe
        .lines()
        .next()
        .expect("the probe image (verify builds it)")
        .to_string();
    let info = svcs
        .iter()
        .map(|(s, id)| (s.clone(), inspect(id)))
        .collect();
    let mut w = World {
        tag,
        svcs,
        info,
        bridge: None,
    };
    w.bridge = w.gw("bridge");
    let mut out = BTreeMap::new();
    for src in svcs.keys() {
        let paths = w.paths_from(src);
        if paths.is_empty() {
            continue;
        }
        let mut args: Vec<String> = ["docker", "run", "--rm", "--network"]
            .map(String::from)
            .to_vec();
        args.extend([
            format!("container:{}", svcs[src]),
            probe.clone(),
            "check".into(),
        ]);
        args.extend(
            paths
                .iter()
                .enumerate()
                .map(|(i, (_, host, p))| format!("id={i}&kind=tcp&host={host}&port={p}")),
        );
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        for l in sh(&a).1.lines() {
            let Ok(v) = serde_json::from_str::<Value>(l) else {
                continue;
            };
            let i: usize = v["id"].as_str().unwrap().parse().unwrap();
            out.insert(paths[i].0.clone(), v["outcome"] == "ok");
        }
    }
    out
}
