//! `export swarm`: `deploy/swarm/stack.yml` for `docker stack deploy`.
//! Images instead of builds, overlay networks named after the compose
//! networks, `deploy:` (replicas, update and restart policies), the TLS
//! material as secrets and the NGINX config as configs instead of bind
//! mounts. The data layer likewise: committed files under datalayer/ become
//! configs, per-checkout files under secrets/ become secrets (one per file:
//! a mounted folder becomes its files at the same paths). Paths are relative
//! to the stack file's folder, as Docker reads them at deploy time, so
//! nothing per-checkout is written into the stack file.

use serde_json::{json, Map, Value};

use super::{
    cert_dir, cert_files, cert_name, emit, header, host_mount, host_name, image, runtime,
    HostMount, Opts,
};
use crate::diag::Error;
use crate::model::nginx;
use crate::model::repo::Repo;
use crate::plan::txn::Txn;

pub const FILE: &str = "deploy/swarm/stack.yml";
/// From deploy/swarm/ back to the repository root.
const UP: &str = "../..";

pub fn render(repo: &Repo, o: &Opts) -> Result<String, Error> {
    let compose = super::compose(repo)?;
    let mut services = Map::new();
    let mut secrets = Map::new();
    let mut configs = Map::new();
    for s in &compose.services {
        let uid = runtime(s)
            .uid()
            .map(|u| u.to_string())
            .unwrap_or("0".into());
        let mut svc_secrets = vec![];
        let mut svc_configs = vec![];
        let mut volumes = vec![];
        for m in &s.volumes {
            if m.named {
                volumes.push(json!(format!("{}:{}", m.source, m.target)));
            } else if let Some(dir) = cert_dir(m) {
                for f in cert_files(&dir) {
                    let name = format!("{}-{f}", cert_name(&dir));
                    secrets.insert(name.clone(), json!({"file": format!("{UP}/{dir}/{f}")}));
                    svc_secrets.push(json!({"source": name, "target": format!("{}/{f}", m.target.trim_end_matches('/')), "uid": uid, "gid": uid, "mode": 0o440}));
                }
            } else {
                let target = m.target.trim_end_matches('/');
                match host_mount(repo, s, m)? {
                    HostMount::Committed { src, dir, files } => {
                        for f in files {
                            let (name, file, to) = if dir {
                                (
                                    format!("{}-{}", host_name(&src), f.name),
                                    format!("{src}/{}", f.name),
                                    format!("{target}/{}", f.name),
                                )
                            } else {
                                (host_name(&src), src.clone(), target.to_string())
                            };
                            configs.insert(name.clone(), json!({"file": format!("{UP}/{file}")}));
                            svc_configs.push(json!({"source": name, "target": to, "mode": if f.exec { 0o555 } else { 0o444 }}));
                        }
                    }
                    HostMount::Checkout { src, dir, files } => {
                        for f in files {
                            let (name, file, to) = if dir {
                                (
                                    format!("{}-{f}", host_name(&src)),
                                    format!("{src}/{f}"),
                                    format!("{target}/{f}"),
                                )
                            } else {
                                (host_name(&src), src.clone(), target.to_string())
                            };
                            secrets.insert(name.clone(), json!({"file": format!("{UP}/{file}")}));
                            svc_secrets.push(json!({"source": name, "target": to, "uid": uid, "gid": uid, "mode": 0o440}));
                        }
                    }
                }
            }
        }
        if s.name == "nginx" {
            for f in nginx::conf_files(&repo.root) {
                let name = f.replace('/', "-");
                configs.insert(name.clone(), json!({"file": format!("{UP}/{f}")}));
                let target = format!(
                    "/etc/nginx/{}",
                    f.strip_prefix(&format!("{}/", nginx::DIR)).unwrap_or(&f)
                );
                svc_configs.push(json!({"source": name, "target": target, "mode": 0o444}));
            }
        }
        // A service with a volume stops before its successor starts (the data
        // has one writer); the others start the new task first.
        let order = if s.volumes.iter().any(|m| m.named) {
            "stop-first"
        } else {
            "start-first"
        };
        let mut svc = json!({
            "image": image(s, o),
            "networks": s.networks.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            "deploy": {
                "replicas": 1,
                "update_config": {"parallelism": 1, "delay": "10s", "order": order, "failure_action": "rollback"},
                "rollback_config": {"parallelism": 1, "order": order},
                "restart_policy": {"condition": "any", "delay": "5s", "window": "30s"},
            },
        });
        let m = svc.as_object_mut().unwrap();
        // The ingress mesh publishes on every interface of every node, and a
        // host IP cannot narrow it: only services meant for the network
        // (nginx, `monorepo.reach: "network"`) publish; the others are
        // reached over their overlays only.
        if s.network_reach() {
            let ports: Vec<Value> = s.ports.iter().filter_map(|p| Some(json!({"target": p.container, "published": p.host?, "protocol": "tcp", "mode": "ingress"}))).collect();
            if !ports.is_empty() {
                m.insert("ports".into(), json!(ports));
            }
        }
        if !s.command.is_empty() {
            m.insert("command".into(), json!(s.command));
        }
        // env_file stays, per-checkout ones (secrets/<x>.env) too: `docker
        // stack deploy` reads them on the deploying machine, so their values
        // never enter this file. Swarm secrets would be files, and the
        // services, the postgres init script and the images read these
        // values from the environment (PGPASSWORD, PG_PASSWORD_<ROLE>, ...).
        if !s.env_file.is_empty() {
            m.insert(
                "env_file".into(),
                json!(s
                    .env_file
                    .iter()
                    .map(|(f, _)| format!("{UP}/{}", f.trim_start_matches("./")))
                    .collect::<Vec<_>>()),
            );
        }
        if !s.environment.is_empty() {
            m.insert(
                "environment".into(),
                Value::Object(
                    s.environment
                        .iter()
                        .map(|(k, v, _)| (k.clone(), json!(v)))
                        .collect(),
                ),
            );
        }
        for (k, v) in [
            ("volumes", volumes),
            ("secrets", svc_secrets),
            ("configs", svc_configs),
        ] {
            if !v.is_empty() {
                m.insert(k.into(), json!(v));
            }
        }
        services.insert(s.name.clone(), svc);
    }
    let networks: Map<String, Value> = compose
        .networks
        .iter()
        .map(|(n, _)| (n.clone(), json!({"driver": "overlay", "attachable": true})))
        .collect();
    let volumes: Map<String, Value> = compose
        .volumes
        .iter()
        .map(|(n, _)| (n.clone(), json!({})))
        .collect();
    let mut top =
        json!({"version": "3.8", "services": services, "networks": networks, "volumes": volumes});
    for (k, v) in [("secrets", secrets), ("configs", configs)] {
        if !v.is_empty() {
            top.as_object_mut()
                .unwrap()
                .insert(k.into(), Value::Object(v));
        }
    }
    Ok(format!("{}{}", header("swarm"), emit::to_yaml(&top)))
}

pub fn plan(repo: &Repo, o: &Opts) -> Result<Txn, Error> {
    let mut t = Txn::new(&repo.root);
    t.write(FILE, render(repo, o)?)?;
    Ok(t)
}
