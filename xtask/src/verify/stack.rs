//! The stack of a verify run: its networks and volumes, and the containers
//! created, and started after what they depend on.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HealthConfig, HostConfig, Ipam,
    IpamConfig, Mount, MountType, NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters as q;
use bollard::Docker;

use super::load::at_key;
use super::pgseed::{self, Seeding};
use super::run::Run;
use crate::diag::{Diagnostic, Error};
use crate::docker::engine_error;
use crate::model::compose::Service;
use crate::model::repo::Repo;
use crate::model::stack::{Attach, MountKind, Svc};

/// The run's networks and volumes (named and labelled with its id), all
/// created at once. Returns compose volume -> docker volume.
pub(super) async fn create_networks_and_volumes(
    repo: &Repo,
    run: &mut Run,
) -> Result<BTreeMap<String, String>, Error> {
    let d = run.d.clone();
    // The networks some service joins (Compose creates only those), with
    // `internal:` and the declared subnets (fixed addresses need them).
    let used: Vec<(String, crate::model::stack::Net)> = run
        .stack
        .networks
        .iter()
        .filter(|(n, _)| {
            run.stack
                .services
                .iter()
                .any(|s| s.networks.contains_key(*n))
        })
        .map(|(n, net)| (n.clone(), net.clone()))
        .collect();
    let nets = used.iter().map(|(n, net)| {
        let (d, name, labels) = (&d, run.name(n), run.labels());
        async move {
            d.create_network(NetworkCreateRequest {
                name: name.clone(),
                labels: Some(labels),
                internal: net.internal.then_some(true),
                ipam: (!net.subnets.is_empty()).then(|| Ipam {
                    config: Some(
                        net.subnets
                            .iter()
                            .map(|sn| IpamConfig {
                                subnet: Some(sn.clone()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map_err(|e| engine_error(format!("creating network {name}"), e))?;
            Ok::<_, Error>((n.clone(), name))
        }
    });
    let vols = repo.compose.volumes.iter().map(|(v, _)| {
        let (d, name, labels) = (&d, run.name(v), run.labels());
        async move {
            d.create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(|e| engine_error(format!("creating volume {name}"), e))?;
            Ok::<_, Error>((v.clone(), name))
        }
    });
    let (nets, vols) = tokio::join!(
        futures_util::future::join_all(nets),
        futures_util::future::join_all(vols)
    );
    for r in nets {
        let (n, name) = r?;
        run.networks.insert(n, name);
    }
    vols.into_iter().collect()
}

/// The host port NGINX's 443 was published on, once it runs.
pub(super) async fn nginx_port(run: &Run) -> Option<u16> {
    let cid = run.containers.get("nginx")?;
    let info = run
        .d
        .inspect_container(cid, None::<q::InspectContainerOptions>)
        .await
        .ok();
    info.and_then(|i| i.network_settings?.ports?.get("443/tcp").cloned().flatten())
        // The IPv4 binding: Docker gives `::` its own ephemeral port.
        .and_then(|b| {
            b.iter()
                .find(|b| !b.host_ip.as_deref().unwrap_or("").contains(':'))?
                .host_port
                .clone()
        })
        .and_then(|p| p.parse::<u16>().ok())
}

/// Services in depends_on order (dependencies first).
pub(super) fn start_order<'a>(services: &'a [Service], wanted: &[String]) -> Vec<&'a Service> {
    let mut out: Vec<&Service> = vec![];
    fn visit<'a>(n: &str, all: &'a [Service], out: &mut Vec<&'a Service>) {
        if out.iter().any(|s| s.name == n) {
            return;
        }
        if let Some(s) = all.iter().find(|s| s.name == n) {
            for (dep, _) in &s.depends_on {
                visit(dep, all, out);
            }
            out.push(s);
        }
    }
    for w in wanted {
        visit(w, services, &mut out);
    }
    out
}

/// Waits for what `depends_on` asks of `dep` (container `cid`) before `s`
/// starts, as Compose does: `service_healthy` (its healthcheck passes) or
/// `service_completed_successfully` (it exited 0); `service_started` is
/// the start order itself. Its errors are at `s`'s `depends_on`.
pub(super) async fn wait_condition(
    repo: &Repo,
    run: &Run,
    s: &str,
    dep: &str,
    cid: &str,
    cond: &str,
    timeout: u64,
) -> Result<(), Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        let st = run
            .d
            .inspect_container(cid, None::<q::InspectContainerOptions>)
            .await
            .ok()
            .and_then(|i| i.state);
        let health = st
            .as_ref()
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status)
            .map(|h| h.to_string());
        let running = st.as_ref().and_then(|s| s.running).unwrap_or(false);
        let code = st.as_ref().and_then(|s| s.exit_code);
        match cond {
            "service_healthy" if health.as_deref() == Some("healthy") => return Ok(()),
            "service_healthy" if health.is_none() => {
                return Err(at_key(
                    repo,
                    s,
                    "depends_on",
                    Diagnostic::error(format!(
                        "`{s}` waits for `{dep}` to be healthy, but `{dep}` has no healthcheck"
                    ))
                    .fix(format!(
                        "give `{dep}` a healthcheck, or depend on it with `condition: service_started`"
                    )),
                ))
            }
            "service_completed_successfully"
                if !running
                    && code == Some(0)
                    && st
                        .as_ref()
                        .and_then(|s| s.finished_at.as_ref())
                        .is_some_and(|f| !f.starts_with("0001")) =>
            {
                return Ok(())
            }
            "service_completed_successfully" if !running && code.is_some_and(|c| c != 0) => {
                return Err(at_key(
                    repo,
                    s,
                    "depends_on",
                    Diagnostic::error(format!(
                        "`{s}` waits for `{dep}` to complete successfully; it exited with code {}",
                        code.unwrap_or(-1)
                    ))
                    .fix(format!(
                        "`verify --keep` keeps the stack: `docker logs` of `{dep}`'s container says why it failed"
                    )),
                ))
            }
            "service_healthy" | "service_completed_successfully" => {}
            _ => return Ok(()),
        }
        if std::time::Instant::now() > deadline {
            return Err(at_key(
                repo,
                s,
                "depends_on",
                Diagnostic::error(format!(
                    "`{s}` waited {timeout}s for `{dep}` ({cond}) in vain"
                ))
                .fix("raise --timeout, or look at the dependency's logs with `verify --keep`"),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(1));
    }
}

/// Starts the container `cid` of `s`.
pub(super) async fn start(run: &Run, s: &Service, cid: &str) -> Result<(), Error> {
    run.d
        .start_container(cid, None::<q::StartContainerOptions>)
        .await
        .map_err(|e| engine_error(format!("starting `{}`", s.name), e))
}

/// The user a container runs as, for the owner of uploaded keys.
pub(super) async fn image_uid(d: &Docker, image: &str) -> u32 {
    let user = d
        .inspect_image(image)
        .await
        .ok()
        .and_then(|i| i.config?.user)
        .unwrap_or_default();
    user.split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or(0)
}

/// A mount as Compose creates it: binds keep their host path, owner and
/// mode (certificates included: a key the container's user cannot read
/// fails here as under `docker compose up`), `:ro` is kept, named volumes
/// are the run's, tmpfs mounts are tmpfs.
fn mounts(s: &Svc, volumes: &BTreeMap<String, String>) -> Result<(Vec<String>, Vec<Mount>), Error> {
    let mut binds = vec![];
    let mut other = vec![];
    for m in &s.volumes {
        match m.kind {
            MountKind::Bind => binds.push(format!(
                "{}:{}{}",
                m.source,
                m.target,
                if m.read_only { ":ro" } else { "" }
            )),
            MountKind::Volume if m.source.is_empty() => other.push(Mount {
                target: Some(m.target.clone()),
                typ: Some(MountType::VOLUME),
                read_only: Some(m.read_only),
                ..Default::default()
            }),
            MountKind::Volume => {
                let vol = volumes.get(&m.source).ok_or_else(|| {
                    Diagnostic::error(format!(
                        "service `{}`: volume `{}` is not declared",
                        s.name, m.source
                    ))
                    .fix(format!(
                        "declare `{}` under the top-level `volumes:`",
                        m.source
                    ))
                })?;
                binds.push(format!(
                    "{vol}:{}{}",
                    m.target,
                    if m.read_only { ":ro" } else { "" }
                ));
            }
            MountKind::Tmpfs => other.push(Mount {
                target: Some(m.target.clone()),
                typ: Some(MountType::TMPFS),
                read_only: Some(m.read_only),
                ..Default::default()
            }),
        }
    }
    Ok((binds, other))
}

/// Capabilities as Compose sends them: `CAP_` prefixed, `ALL` as is.
fn caps(v: &[String]) -> Vec<String> {
    v.iter()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if c == "ALL" || c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            }
        })
        .collect()
}

/// `extra_hosts` as the Engine API takes them (`name:ip`).
fn extra_hosts(s: &Svc) -> Vec<String> {
    s.extra_hosts
        .iter()
        .map(|h| match h.split_once('=') {
            Some((n, ip)) => format!("{n}:{ip}"),
            None => h.clone(),
        })
        .collect()
}

/// The run's name of `s`'s network `n`.
pub(super) fn net_name(run: &Run, n: &str) -> Result<String, Error> {
    run.networks
        .get(n)
        .cloned()
        .ok_or_else(|| Diagnostic::error(format!("network `{n}` is used but was not created")))
}

/// What `create_container` sends for `s`, as Compose would create it for
/// every key the stack models (model/stack.rs), plus the run's labels and
/// name. Ports are published with their host IP and an ephemeral host
/// port, so a running dev stack never clashes. `ns` is the container of
/// the service whose namespace `s` shares (`network_mode: service:x`).
pub(super) fn container_body(
    run: &Run,
    s: &Svc,
    image: &str,
    volumes: &BTreeMap<String, String>,
    ns: Option<&str>,
) -> Result<ContainerCreateBody, Error> {
    let env: Vec<String> = s
        .environment
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect();
    let (binds, mounts) = mounts(s, volumes)?;
    let mut labels = run.labels();
    labels.extend(s.labels.clone());
    labels.insert("monorepo.verify.service".into(), s.name.clone());
    let mode = match (s.shares_namespace_of(), s.network_mode.as_deref()) {
        (Some(_), _) => Some(format!(
            "container:{}",
            ns.ok_or_else(|| Diagnostic::error(format!(
                "`{}` shares a namespace that has no container",
                s.name
            )))?
        )),
        (None, Some(m @ ("host" | "none"))) => Some(m.to_string()),
        _ => None,
    };
    let own_net = mode.is_none();
    let first_net = match s.networks.keys().next() {
        Some(n) if own_net => Some(net_name(run, n)?),
        _ => None,
    };
    let (port_bindings, exposed) =
        published(s, own_net || s.network_mode.as_deref() == Some("host"));
    let restart = restart_policy(s);
    let healthcheck = health_config(s);
    let tmpfs = tmpfs_map(s);
    let opt_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        hostname: s.hostname.clone(),
        domainname: s.domainname.clone(),
        user: s.user.clone(),
        working_dir: s.working_dir.clone(),
        entrypoint: s.entrypoint.clone(),
        env: Some(env),
        cmd: s.command.clone(),
        labels: Some(labels),
        healthcheck,
        stop_signal: s.stop_signal.clone(),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(HostConfig {
            binds: Some(binds),
            mounts: (!mounts.is_empty()).then_some(mounts),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            network_mode: mode.or(first_net.clone()),
            extra_hosts: opt_vec(&extra_hosts(s)),
            dns: opt_vec(&s.dns),
            dns_search: opt_vec(&s.dns_search),
            cap_add: opt_vec(&caps(&s.cap_add)),
            cap_drop: opt_vec(&caps(&s.cap_drop)),
            security_opt: opt_vec(&s.security_opt),
            privileged: s.privileged.then_some(true),
            readonly_rootfs: s.read_only.then_some(true),
            init: s.init,
            shm_size: s.shm_size,
            sysctls: (!s.sysctls.is_empty()).then(|| s.sysctls.clone().into_iter().collect()),
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            restart_policy: restart,
            ..Default::default()
        }),
        networking_config: match (&first_net, s.networks.iter().next()) {
            (Some(n), Some((key, a))) => Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(n.clone(), endpoint(s, key, a))])),
            }),
            _ => None,
        },
        ..Default::default()
    };
    Ok(body)
}

type Bindings = HashMap<String, Option<Vec<PortBinding>>>;

/// The port bindings (when the container has ports of its own: `publish`)
/// and the exposed ports, as Compose sets them; host ports ephemeral.
fn published(s: &Svc, publish: bool) -> (Bindings, Vec<String>) {
    let mut port_bindings: Bindings = HashMap::new();
    let mut exposed: Vec<String> = vec![];
    if publish {
        for p in &s.ports {
            let key = format!("{}/{}", p.target, p.protocol);
            port_bindings
                .entry(key.clone())
                .or_insert_with(|| Some(vec![]))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(p.host_ip.trim_matches(['[', ']']).to_string()),
                    host_port: Some(String::new()),
                });
            if !exposed.contains(&key) {
                exposed.push(key);
            }
        }
    }
    // As Compose passes them: written as is (the engine reads `9000` as tcp).
    for e in &s.expose {
        if !exposed.contains(e) && !exposed.contains(&format!("{e}/tcp")) {
            exposed.push(e.clone());
        }
    }
    (port_bindings, exposed)
}

fn restart_policy(s: &Svc) -> Option<RestartPolicy> {
    s.restart.as_deref().map(|r| {
        let (name, n) = r.split_once(':').unwrap_or((r, ""));
        RestartPolicy {
            name: Some(match name {
                "always" => RestartPolicyNameEnum::ALWAYS,
                "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                _ => RestartPolicyNameEnum::NO,
            }),
            maximum_retry_count: n.parse().ok(),
        }
    })
}

fn health_config(s: &Svc) -> Option<HealthConfig> {
    s.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(if h.disable {
            vec!["NONE".into()]
        } else {
            h.test.clone()
        }),
        interval: h.interval_ns,
        timeout: h.timeout_ns,
        start_period: h.start_period_ns,
        retries: h.retries,
        ..Default::default()
    })
}

fn tmpfs_map(s: &Svc) -> HashMap<String, String> {
    s.tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((p, o)) => (p.to_string(), o.to_string()),
            None => (t.clone(), String::new()),
        })
        .collect()
}

/// The endpoint of `s` on network `key`: the names Compose gives it there
/// (service name, container name, aliases) and a fixed address if declared.
fn endpoint(s: &Svc, key: &str, a: &Attach) -> EndpointSettings {
    let ipam = (a.ipv4_address.is_some() || a.ipv6_address.is_some()).then(|| EndpointIpamConfig {
        ipv4_address: a.ipv4_address.clone(),
        ipv6_address: a.ipv6_address.clone(),
        ..Default::default()
    });
    EndpointSettings {
        aliases: Some(s.names_on(key)),
        ipam_config: ipam,
        ..Default::default()
    }
}

/// Creates the container of `s` (not started): its networks connected and
/// Postgres's data directory from the cache. `ns`: see `container_body`.
pub(super) async fn create(
    repo: &Repo,
    run: &Run,
    s: &Service,
    image: &str,
    volumes: &BTreeMap<String, String>,
    seeding: Option<&Seeding<'_>>,
    ns: Option<&str>,
) -> Result<String, Error> {
    let d = &run.d;
    let svc = run.stack.service(&s.name).ok_or_else(|| {
        at_key(
            repo,
            &s.name,
            "",
            Diagnostic::error(format!("`{}` is not in the stack", s.name)),
        )
    })?;
    // What the body cannot make is a key of the service.
    let body =
        container_body(run, svc, image, volumes, ns).map_err(|e| at_key(repo, &s.name, "", e))?;
    // Postgres from a cached data directory (made first if there is none).
    let seed = match seeding.filter(|_| s.name == pgseed::SERVICE) {
        Some(seeding) => pgseed::prepare(repo, run, s, &body, &[], seeding).await?,
        None => None,
    };
    let name = run.name(&s.name);
    let created = d
        .create_container(
            Some(q::CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(|e| {
            at_key(
                repo,
                &s.name,
                "",
                engine_error(format!("creating container for `{}`", s.name), e),
            )
        })?;
    // API 1.41 attaches one network at create; the others are connected before start.
    if svc.network_mode.is_none() {
        for (n, a) in svc.networks.iter().skip(1) {
            d.connect_network(
                &net_name(run, n).map_err(|e| at_key(repo, &s.name, "networks", e))?,
                NetworkConnectRequest {
                    container: created.id.clone(),
                    endpoint_config: Some(endpoint(svc, n, a)),
                },
            )
            .await
            .map_err(|e| engine_error(format!("connecting `{}` to {n}", s.name), e))?;
        }
    }
    if let Some(seed) = seed {
        seed.upload(d, &created.id).await?;
    }
    Ok(created.id)
}
