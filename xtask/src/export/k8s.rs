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
//! manifests do not change when certificates are renewed.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{cert_dir, emit, header, image, runtime, unsupported_mount, Opts, Runtime, MARKER};
use crate::diag::{Diagnostic, Error};
use crate::model::compose::{Compose, Service};
use crate::model::nginx;
use crate::model::repo::Repo;
use crate::plan::txn::Txn;
use crate::verify::matrix::{self, Kind};

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
                return Err(Diagnostic::error(format!("network `{net}` cannot be part of a Kubernetes label name"))
                    .at(crate::model::compose::FILE, *line)
                    .fix("name networks with letters, digits, `-`, `_` and `.` (at most 63)"));
            }
        }
        files.insert(format!("{}.deployment.yaml", s.name), deployment(repo, s, o)?);
        let ports = matrix::container_ports(s);
        if !ports.is_empty() {
            let p: Vec<Value> = ports.iter().map(|p| json!({"name": port_name(*p), "port": p, "targetPort": port_name(*p), "protocol": "TCP"})).collect();
            files.insert(
                format!("{}.service.yaml", s.name),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(&s.name), "spec": {"selector": {NAME_LABEL: s.name}, "ports": p}}),
            );
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
            files.insert(format!("{name}.configmap.yaml"), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(&name), "data": data}));
        }
    }
    files.insert(
        "default-deny-ingress.networkpolicy.yaml".into(),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("default-deny-ingress"),
               "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
    );
    for (net, _) in &compose.networks {
        for member in compose.services.iter().filter(|s| s.on_network(net)) {
            let ports: Vec<Value> = matrix::container_ports(member).iter().map(|p| json!({"protocol": "TCP", "port": p})).collect();
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
    let mut out: BTreeMap<String, String> =
        files.into_iter().map(|(f, v)| (format!("{DIR}/{f}"), format!("{}{}", header("k8s"), emit::to_yaml(&v)))).collect();
    out.insert(SECRETS_SCRIPT.into(), secrets_script(&compose));
    Ok(out)
}

/// The plan: every file of the export, and the deletion of generated files
/// that are no longer wanted (a removed service).
pub fn plan(repo: &Repo, o: &Opts) -> Result<Txn, Error> {
    let files = render(repo, o)?;
    let mut t = Txn::new(&repo.root);
    for (f, text) in &files {
        t.write_mode(f, text.as_bytes(), if f == SECRETS_SCRIPT { 0o755 } else { 0o644 })?;
    }
    for f in existing(repo) {
        if !files.contains_key(&f) && std::fs::read_to_string(repo.root.join(&f)).is_ok_and(|t| t.contains(MARKER)) {
            t.delete(&f)?;
        }
    }
    Ok(t)
}

/// The `.yaml` files in deploy/k8s now (what `--check` evaluates).
pub fn existing(repo: &Repo) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(repo.root.join(DIR))
        .map(|rd| rd.flatten().filter(|e| e.path().is_file()).map(|e| format!("{DIR}/{}", e.file_name().to_string_lossy())).collect())
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
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
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
    let get = |k: &str| env.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let p = t.port;
    let probe = match t.kind {
        Kind::Pg => json!({"exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-p", p.to_string(), "-U", get("POSTGRES_USER").unwrap_or("postgres".into())]}}),
        Kind::Redis => json!({"exec": {"command": ["redis-cli", "-p", p.to_string(), "ping"]}}),
        Kind::Http => json!({"httpGet": {"path": t.path, "port": p, "scheme": if t.tls { "HTTPS" } else { "HTTP" }}}),
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
    let mut env: Vec<(String, String)> = vec![];
    for (k, v) in repo.service_env(s) {
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
            return Err(unsupported_mount(s, m));
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
                mounts.push(json!({"name": vname, "mountPath": "/etc/nginx/locations", "readOnly": true}));
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
        pod_sc.as_object_mut().unwrap().insert("sysctls".into(), json!([{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]));
    }
    let mut labels = json!({NAME_LABEL: s.name, PART_OF: "monorepo"});
    for (net, _) in &s.networks {
        labels.as_object_mut().unwrap().insert(format!("{NET_LABEL}{net}"), json!("true"));
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
    Ok(vec![("nginx-conf".into(), conf), ("nginx-locations".into(), locations)])
}

fn secrets_script(compose: &Compose) -> String {
    let mut dirs: Vec<String> = compose.services.iter().flat_map(|s| s.volumes.iter().filter_map(cert_dir)).collect();
    dirs.sort();
    dirs.dedup();
    let mut out = String::from("#!/bin/sh\n");
    out += &header("k8s");
    out += "# Makes the Secrets the Deployments mount from the files `cargo xtask certs`\n\
            # wrote, so no key is ever committed. Run it from the repository root after\n\
            # `kubectl apply -f deploy/k8s/00-namespace.yaml`; again after renewing certificates.\n\
            set -eu\n";
    for d in dirs {
        out += &format!(
            "kubectl -n {NAMESPACE} create secret generic {} --from-file={d}/ --dry-run=client -o yaml | kubectl apply -f -\n",
            super::cert_name(&d)
        );
    }
    out
}
