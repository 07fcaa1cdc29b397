//! `export k8s`: `deploy/k8s/`, one object per file (`kubectl apply -f
//! deploy/k8s/`): the namespace, a Deployment and a Service per compose
//! service, PersistentVolumeClaims for named volumes, the NGINX ConfigMaps,
//! and the NetworkPolicies (a default deny for ingress, then per compose
//! network and member: the network's pods may reach that member's ports).
//!
//! Egress is not restricted: every connection has an ingress end at the
//! target, so ingress policies alone make the matrix exact, and leaving
//! egress open keeps DNS (kube-dns) and external calls working without
//! policies that would only restate the ingress ones.
//!
//! TLS keys are never written here: the Deployments mount Secrets that
//! `create-secrets.sh` makes from `certs/` at deploy time (kubectl
//! `--from-file`), so no private key lands in a committed manifest, and the
//! manifests do not change when certificates are renewed. The data layer
//! likewise: committed files under datalayer/ become ConfigMaps (a mounted
//! folder one map, a key per file), per-checkout files under secrets/ become
//! Secrets the script makes (`--from-file`, `--from-env-file` for an
//! `env_file`, which the container gets through `envFrom`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{
    cert_dir, emit, header, host_mount, host_name, image, runtime, HostMount, Opts, Runtime, MARKER,
};
use crate::diag::{Diagnostic, Error};
use crate::model::compose::{Compose, Service};
use crate::model::nginx;
use crate::model::reach::{self as matrix, Kind};
use crate::model::repo::Repo;
use crate::plan::txn::Txn;

pub const DIR: &str = "deploy/k8s";
pub const NAMESPACE: &str = "monorepo";
pub const SECRETS_SCRIPT: &str = "deploy/k8s/create-secrets.sh";
/// The label every pod of a compose network carries: `net.monorepo/<network>: "true"`.
pub const NET_LABEL: &str = "net.monorepo/";
const NAME_LABEL: &str = "app.kubernetes.io/name";
const PART_OF: &str = "app.kubernetes.io/part-of";

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": NAMESPACE, "labels": {NAME_LABEL: name, PART_OF: "monorepo"}})
}

/// Every file of the export, by path, as text.
pub fn render(repo: &Repo, o: &Opts) -> Result<BTreeMap<String, String>, Error> {
    let compose = super::compose(repo)?;
    let mut files: BTreeMap<String, Value> = BTreeMap::new();
    files.insert(
        "00-namespace.yaml".into(),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": {PART_OF: "monorepo"}}}),
    );
    for s in &compose.services {
        for (net, line) in &s.networks {
            if !label_name_ok(net) {
                return Err(Diagnostic::error(format!(
                    "network `{net}` cannot be part of a Kubernetes label name"
                ))
                .at(crate::model::compose::FILE, *line)
                .fix("name networks with letters, digits, `-`, `_` and `.` (at most 63)"));
            }
        }
        files.insert(
            format!("{}.deployment.yaml", s.name),
            deployment(repo, s, o)?,
        );
        let ports = matrix::container_ports(s);
        if !ports.is_empty() {
            let p: Vec<Value> = ports.iter().map(|p| json!({"name": port_name(*p), "port": p, "targetPort": port_name(*p), "protocol": "TCP"})).collect();
            files.insert(
                format!("{}.service.yaml", s.name),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(&s.name), "spec": {"selector": {NAME_LABEL: s.name}, "ports": p}}),
            );
        }
        for m in s
            .volumes
            .iter()
            .filter(|m| !m.named && cert_dir(m).is_none())
        {
            if let HostMount::Committed { src, files: cf, .. } = host_mount(repo, s, m)? {
                let data: ConfigData = cf.into_iter().map(|f| (f.name, f.text)).collect();
                let name = host_name(&src);
                files_insert_configmap(&mut files, &name, data);
            }
        }
        for m in s.volumes.iter().filter(|m| m.named) {
            files.insert(
                format!("{}.pvc.yaml", m.source),
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta(&m.source),
                       "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
            );
        }
    }
    if compose.service("nginx").is_some() {
        for (name, data) in nginx_configmaps(repo)? {
            files_insert_configmap(&mut files, &name, data);
        }
    }
    files.insert(
        "default-deny-ingress.networkpolicy.yaml".into(),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("default-deny-ingress"),
               "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
    );
    for (net, _) in &compose.networks {
        for member in compose.services.iter().filter(|s| s.on_network(net)) {
            let ports: Vec<Value> = matrix::container_ports(member)
                .iter()
                .map(|p| json!({"protocol": "TCP", "port": p}))
                .collect();
            if ports.is_empty() {
                continue;
            }
            let name = format!("{net}-to-{}", member.name);
            files.insert(
                format!("{net}.{}.networkpolicy.yaml", member.name),
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(&name),
                       "spec": {"podSelector": {"matchLabels": {NAME_LABEL: member.name}}, "policyTypes": ["Ingress"],
                                "ingress": [{"from": [{"podSelector": {"matchLabels": {format!("{NET_LABEL}{net}"): "true"}}}], "ports": ports}]}}),
            );
        }
    }
    let mut out: BTreeMap<String, String> = files
        .into_iter()
        .map(|(f, v)| {
            (
                format!("{DIR}/{f}"),
                format!("{}{}", header("k8s"), emit::to_yaml(&v)),
            )
        })
        .collect();
    out.insert(SECRETS_SCRIPT.into(), secrets_script(repo, &compose)?);
    Ok(out)
}

fn files_insert_configmap(files: &mut BTreeMap<String, Value>, name: &str, data: ConfigData) {
    files.insert(
        format!("{name}.configmap.yaml"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name), "data": data}),
    );
}

/// An env_file made per checkout (`secrets/<x>.env`): a Secret, not values.
fn checkout_env(f: &str) -> Option<String> {
    let f = f.trim_start_matches("./");
    f.strip_prefix(&format!("{}/", crate::plan::datalayer::SECRETS))
        .filter(|r| !r.contains(".."))
        .map(|_| f.to_string())
}

/// The plan: every file of the export, and the deletion of generated files
/// that are no longer wanted (a removed service).
pub fn plan(repo: &Repo, o: &Opts) -> Result<Txn, Error> {
    let files = render(repo, o)?;
    let mut t = Txn::new(&repo.root);
    for (f, text) in &files {
        t.write_mode(
            f,
            text.as_bytes(),
            if f == SECRETS_SCRIPT { 0o755 } else { 0o644 },
        )?;
    }
    for f in existing(repo) {
        if !files.contains_key(&f)
            && std::fs::read_to_string(repo.root.join(&f)).is_ok_and(|t| t.contains(MARKER))
        {
            t.delete(&f)?;
        }
    }
    Ok(t)
}

/// The `.yaml` files in deploy/k8s now (what `--check` evaluates).
pub fn existing(repo: &Repo) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(repo.root.join(DIR))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_file())
                .map(|e| format!("{DIR}/{}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    out.retain(|f| f.ends_with(".yaml") || f.ends_with(".sh"));
    out.sort();
    out
}

fn label_name_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

fn port_name(p: u16) -> String {
    format!("tcp-{p}")
}

/// Checks a gRPC health endpoint over TLS: the kubelet's own `grpc:` probe
/// speaks no TLS. SERVING is field 1 = 1 (`08 01`).
const GRPC_TLS_CHECK: &str = "import sys, grpc
name, port, ca = sys.argv[1:4]
creds = grpc.ssl_channel_credentials(open(ca, 'rb').read())
ch = grpc.secure_channel('127.0.0.1:' + port, creds, options=[('grpc.ssl_target_name_override', name)])
sys.exit(0 if ch.unary_unary('/grpc.health.v1.Health/Check')(b'', timeout=3) == b'\\x08\\x01' else 1)
";

/// Readiness: the service answers its own protocol (as `verify` checks it).
fn readiness(repo: &Repo, s: &Service, env: &[(String, String)]) -> Option<Value> {
    let t = matrix::target(repo, s)?;
    let get = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let p = t.port;
    let probe = match t.kind {
        Kind::Pg => {
            json!({"exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-p", p.to_string(), "-U", get("POSTGRES_USER").unwrap_or("postgres".into())]}})
        }
        Kind::Redis => json!({"exec": {"command": ["redis-cli", "-p", p.to_string(), "ping"]}}),
        Kind::Http => {
            json!({"httpGet": {"path": t.path, "port": p, "scheme": if t.tls { "HTTPS" } else { "HTTP" }}})
        }
        Kind::Grpc if !t.tls => json!({"grpc": {"port": p}}),
        Kind::Grpc => {
            let ca = get("TLS_CA").unwrap_or("/run/trust/ca.pem".into());
            json!({"exec": {"command": ["python3", "-c", GRPC_TLS_CHECK, s.name, p.to_string(), ca]}})
        }
    };
    let mut probe = probe;
    let m = probe.as_object_mut().unwrap();
    m.insert("periodSeconds".into(), json!(5));
    m.insert("timeoutSeconds".into(), json!(4));
    m.insert("failureThreshold".into(), json!(3));
    Some(probe)
}

fn deployment(repo: &Repo, s: &Service, o: &Opts) -> Result<Value, Error> {
    let rt = runtime(s);
    let ports = matrix::container_ports(s);
    // Committed env files are inlined; per-checkout ones (secrets/) are
    // never read: the container gets them from a Secret (`envFrom`). Where a
    // variable is in both, `env` wins in Kubernetes while the later file
    // wins in Compose; the data layer keeps them apart (service.env names
    // users, secrets/<svc>.env holds passwords; MR019).
    let mut committed = s.clone();
    committed
        .env_file
        .retain(|(f, _)| checkout_env(f).is_none());
    let env_from: Vec<Value> = s
        .env_file
        .iter()
        .filter_map(|(f, _)| checkout_env(f))
        .map(|f| json!({"secretRef": {"name": host_name(&f)}}))
        .collect();
    let mut env: Vec<(String, String)> = vec![];
    for (k, v) in repo.service_env(&committed) {
        env.retain(|(n, _)| *n != k);
        env.push((k, v));
    }
    if rt == Runtime::Postgres {
        // A fresh volume has lost+found at its root; initdb wants an empty folder.
        env.push(("PGDATA".into(), "/var/lib/postgresql/data/pgdata".into()));
    }
    let mut mounts: Vec<Value> = vec![];
    let mut volumes: Vec<Value> = vec![];
    for m in &s.volumes {
        let vname = format!("v{}", volumes.len());
        if m.named {
            volumes.push(json!({"name": vname, "persistentVolumeClaim": {"claimName": m.source}}));
        } else if let Some(dir) = cert_dir(m) {
            // 0440 and the pod's fsGroup: the key is readable by its user only.
            volumes.push(json!({"name": vname, "secret": {"secretName": super::cert_name(&dir), "defaultMode": 0o440}}));
        } else {
            let (src, dir, files, exec, secret) = match host_mount(repo, s, m)? {
                HostMount::Committed { src, dir, files } => {
                    let exec: Vec<bool> = files.iter().map(|f| f.exec).collect();
                    (
                        src,
                        dir,
                        files.into_iter().map(|f| f.name).collect::<Vec<_>>(),
                        exec,
                        false,
                    )
                }
                HostMount::Checkout { src, dir, files } => (src, dir, files, vec![], true),
            };
            let name = host_name(&src);
            if secret {
                // Like the keys: 0440 and the pod's fsGroup.
                volumes.push(
                    json!({"name": vname, "secret": {"secretName": name, "defaultMode": 0o440}}),
                );
            } else {
                // Read-only for everyone, executable where the committed file
                // is (the postgres image runs an executable init script).
                let mut cm = json!({"name": name, "defaultMode": if exec.iter().all(|x| *x) { 0o555 } else { 0o444 }});
                if exec.iter().any(|x| *x) && !exec.iter().all(|x| *x) {
                    let items: Vec<Value> = files.iter().zip(&exec).map(|(f, x)| json!({"key": f, "path": f, "mode": if *x { 0o555 } else { 0o444 }})).collect();
                    cm.as_object_mut()
                        .unwrap()
                        .insert("items".into(), json!(items));
                }
                volumes.push(json!({"name": vname, "configMap": cm}));
            }
            let mut mount = json!({"name": vname, "mountPath": m.target, "readOnly": true});
            if !dir {
                // One file at its own path, the rest of the folder the image's.
                mount
                    .as_object_mut()
                    .unwrap()
                    .insert("subPath".into(), json!(files[0]));
            }
            mounts.push(mount);
            continue;
        }
        mounts.push(json!({"name": vname, "mountPath": m.target, "readOnly": !m.named}));
    }
    // What each image writes besides its volumes, so the root filesystem can be read-only.
    let scratch: &[&str] = match rt {
        Runtime::Ours => &["/tmp"],
        Runtime::Redis => &["/data"],
        Runtime::Nginx => &["/tmp", "/var/cache/nginx"],
        Runtime::Postgres => &["/tmp", "/var/run/postgresql"],
        Runtime::Other => &[],
    };
    for path in scratch {
        let vname = format!("v{}", volumes.len());
        volumes.push(json!({"name": vname, "emptyDir": {}}));
        mounts.push(json!({"name": vname, "mountPath": path}));
    }
    if rt == Runtime::Nginx {
        for (name, data) in nginx_configmaps(repo)? {
            let vname = format!("v{}", volumes.len());
            volumes.push(json!({"name": vname, "configMap": {"name": name}}));
            if name == "nginx-conf" {
                mounts.push(json!({"name": vname, "mountPath": "/etc/nginx/nginx.conf", "subPath": "nginx.conf", "readOnly": true}));
            } else if !data.is_empty() {
                mounts.push(
                    json!({"name": vname, "mountPath": "/etc/nginx/locations", "readOnly": true}),
                );
            }
        }
    }
    let mut container = json!({
        "name": s.name,
        "image": image(s, o),
        "imagePullPolicy": "IfNotPresent",
        "ports": ports.iter().map(|p| json!({"name": port_name(*p), "containerPort": p, "protocol": "TCP"})).collect::<Vec<_>>(),
        "env": env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        // Requests for scheduling; a memory limit against leaks; no CPU
        // limit (throttling hurts latency more than sharing does).
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": if rt == Runtime::Postgres { "512Mi" } else { "256Mi" }}},
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": rt != Runtime::Other,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    });
    let c = container.as_object_mut().unwrap();
    if !s.command.is_empty() {
        // Compose's `command` replaces the image's CMD and keeps its
        // ENTRYPOINT: that is Kubernetes' `args`.
        c.insert("args".into(), json!(s.command));
    }
    if !env_from.is_empty() {
        c.insert("envFrom".into(), json!(env_from));
    }
    if let Some(r) = readiness(repo, s, &env) {
        c.insert("readinessProbe".into(), r);
    }
    if let Some(p) = ports.first() {
        // Liveness asks only "is the process there": a gRPC service reports
        // NOT_SERVING while its database is down, and restarting it then
        // would not help.
        c.insert("livenessProbe".into(), json!({"tcpSocket": {"port": p}, "initialDelaySeconds": 10, "periodSeconds": 10, "failureThreshold": 6}));
    }
    let mut pod_sc = json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
    if let Some(uid) = rt.uid() {
        let m = pod_sc.as_object_mut().unwrap();
        m.insert("runAsUser".into(), json!(uid));
        m.insert("runAsGroup".into(), json!(uid));
        m.insert("fsGroup".into(), json!(uid));
    }
    if rt == Runtime::Nginx {
        // NGINX listens on 443 without root or capabilities (a safe sysctl).
        pod_sc.as_object_mut().unwrap().insert(
            "sysctls".into(),
            json!([{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]),
        );
    }
    let mut labels = json!({NAME_LABEL: s.name, PART_OF: "monorepo"});
    for (net, _) in &s.networks {
        labels
            .as_object_mut()
            .unwrap()
            .insert(format!("{NET_LABEL}{net}"), json!("true"));
    }
    let stateful = s.volumes.iter().any(|m| m.named);
    Ok(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(&s.name),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {NAME_LABEL: s.name}},
            // A ReadWriteOnce volume cannot be mounted by the old and new pod at once.
            "strategy": {"type": if stateful { "Recreate" } else { "RollingUpdate" }},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": false,
                    "securityContext": pod_sc,
                    "containers": [container],
                    "volumes": volumes,
                }
            }
        }
    }))
}

/// A ConfigMap's `data`: file name -> text.
type ConfigData = BTreeMap<String, String>;

/// `nginx-conf` (nginx.conf) and `nginx-locations` (locations/*.conf):
/// ConfigMap keys cannot hold a `/`, so one map per folder.
fn nginx_configmaps(repo: &Repo) -> Result<Vec<(String, ConfigData)>, Error> {
    let mut conf = BTreeMap::new();
    let mut locations = BTreeMap::new();
    for f in nginx::conf_files(&repo.root) {
        let text = crate::model::repo::read_text(&repo.root, &f)?;
        match f.strip_prefix(&format!("{}/", nginx::LOCATIONS)) {
            Some(name) if !name.contains('/') => {
                locations.insert(name.to_string(), text);
            }
            _ if f == format!("{}/nginx.conf", nginx::DIR) => {
                conf.insert("nginx.conf".to_string(), text);
            }
            _ => {}
        }
    }
    if conf.is_empty() {
        return Ok(vec![]);
    }
    Ok(vec![
        ("nginx-conf".into(), conf),
        ("nginx-locations".into(), locations),
    ])
}

fn secrets_script(repo: &Repo, compose: &Compose) -> Result<String, Error> {
    // (secret name, kubectl source option), each once.
    let mut made: BTreeMap<String, String> = BTreeMap::new();
    for s in &compose.services {
        let mut add = |name: String, from: String, line: usize| -> Result<(), Error> {
            // Both go into a shell script and a Kubernetes name: keep them to characters that mean nothing to sh.
            let path = from.split_once('=').map(|(_, p)| p).unwrap_or("");
            if !super::object_name_ok(&name)
                || !path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
            {
                return Err(Diagnostic::error(format!(
                    "service `{}`: `{path}` cannot name a Kubernetes Secret",
                    s.name
                ))
                .at(crate::model::compose::FILE, line)
                .fix("use lowercase letters, digits, `-`, `.` and `/` in the path"));
            }
            made.insert(name, from);
            Ok(())
        };
        for m in s.volumes.iter().filter(|m| !m.named) {
            if let Some(d) = cert_dir(m) {
                add(super::cert_name(&d), format!("--from-file={d}/"), m.line)?;
            } else if let HostMount::Checkout { src, dir, .. } = host_mount(repo, s, m)? {
                add(
                    host_name(&src),
                    format!("--from-file={src}{}", if dir { "/" } else { "" }),
                    m.line,
                )?;
            }
        }
        for (f, line) in &s.env_file {
            if let Some(f) = checkout_env(f) {
                add(host_name(&f), format!("--from-env-file={f}"), *line)?;
            }
        }
    }
    let mut out = String::from("#!/bin/sh\n");
    out += &header("k8s");
    out += "# Makes the Secrets the Deployments use from the files `cargo xtask certs`\n\
            # wrote (certs/, and the data layer's secrets/), so no key or password is\n\
            # ever committed. Run it from the repository root after\n\
            # `kubectl apply -f deploy/k8s/00-namespace.yaml`; again after renewing them.\n\
            set -eu\n";
    for (name, from) in made {
        let path = from.split_once('=').map(|(_, p)| p).unwrap_or("");
        out += &format!(
            "[ -e {path} ] || {{ echo \"create-secrets.sh: {path} is missing: run \\`cargo xtask certs\\` first\" >&2; exit 2; }}\n\
             kubectl -n {NAMESPACE} create secret generic {name} {from} --dry-run=client -o yaml | kubectl apply -f -\n"
        );
    }
    Ok(out)
}
