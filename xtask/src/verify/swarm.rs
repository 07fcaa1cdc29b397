//! `verify --engine swarm`: the same verify on Docker Swarm. The run's
//! world is swarm objects (overlay networks, one service per compose
//! service, secrets for keys, configs for certificates and the NGINX
//! configuration) named `mr-<run>-*` and labelled with the run id; the
//! matrix, the probes and the report are the compose engine's, run against
//! each service's task container on this node.
//!
//! Leaves the engine as it was found: it refuses an engine in no swarm
//! unless `--init-swarm`, which makes a one-node swarm and leaves it again.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bollard::models::{
    ConfigSpec, ContainerCreateBody, EndpointPortConfig, EndpointPortConfigProtocolEnum,
    EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, HostConfig,
    LocalNodeState, Mount, MountType, NetworkAttachmentConfig, NetworkCreateRequest, SecretSpec,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, SwarmInitRequest, SwarmSpec, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState, VolumeCreateRequest,
};
use bollard::query_parameters as q;
use bollard::Docker;

use super::matrix::{self, Cell, Kind, Target};
use super::report::{self, indent};
use super::run::{Phases, Run};
use super::{datalayer, images, probe, stack, Opts};
use crate::cli::Format;
use crate::diag::{Diagnostic, Error, Exit};
use crate::docker::buildkit::{self, Choice};
use crate::docker::{self, PID_LABEL, RUN_LABEL};
use crate::model::compose::Service;
use crate::model::repo::Repo;
use crate::model::secrets::is_secret_name;

/// Set on a swarm that `--init-swarm` made: whether `docker_gwbridge`
/// existed before, so a later run can undo a swarm whose maker was killed.
const GWBRIDGE_LABEL: &str = "monorepo.verify.gwbridge-existed";
/// The command that makes a one-node swarm, for the refusal message.
pub const INIT_COMMAND: &str =
    "docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377";

/// How services are reached by name: a virtual IP balanced by the kernel
/// (IPVS), or DNS round robin over the task addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Vip,
    Dnsrr,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Vip => "vip",
            Mode::Dnsrr => "dnsrr",
        }
    }
}

/// The endpoint mode of the run and why it was chosen.
pub struct Detected {
    pub mode: Mode,
    pub why: String,
}

impl Detected {
    pub fn line(&self) -> String {
        format!(
            "engine: swarm, endpoint mode {} ({})",
            self.mode.as_str(),
            self.why
        )
    }
}

/// A swarm this run made (`--init-swarm`), to leave afterwards.
struct Made {
    gwbridge_existed: bool,
    ingress_existed: bool,
}

pub(super) async fn verify(
    repo: Repo,
    o: Opts,
    mut phases: Phases,
    t_all: Instant,
) -> Result<Exit, Error> {
    let d = docker::connect().await?;
    // One swarm per engine: runs on the same engine take turns.
    let _lock = lock_engine()?;
    // Listening from here on: a signal during the swarm init is kept and
    // ends the run right after it, with the cleanup (and the leave).
    let signal = |k| {
        tokio::signal::unix::signal(k)
            .map_err(|e| Diagnostic::error(format!("cannot install a signal handler: {e}")))
    };
    let (mut int, mut term) = (
        signal(tokio::signal::unix::SignalKind::interrupt())?,
        signal(tokio::signal::unix::SignalKind::terminate())?,
    );
    let id = format!(
        "{:x}{:04x}",
        std::process::id(),
        (time::OffsetDateTime::now_utc().unix_timestamp() & 0xffff) as u16
    );
    let made = take_swarm(&d, &id, o.init_swarm).await?;
    let swept = docker::sweep(&d, None).await;
    if swept > 0 {
        eprintln!("verify: removed {swept} object(s) left by an earlier interrupted run");
    }
    let secrets = repo
        .compose
        .services
        .iter()
        .flat_map(|s| repo.service_env(s))
        .filter(|(k, v)| is_secret_name(k) && v.len() >= 4)
        .map(|(_, v)| v)
        .collect();
    let mut run = Run {
        id,
        root: repo.root.clone(),
        d: d.clone(),
        containers: BTreeMap::new(),
        networks: BTreeMap::new(),
        secrets,
        reaping: Default::default(),
        row_probes: Default::default(),
        stack: Default::default(),
        keep: false,
    };
    eprintln!(
        "verify: run {} on swarm ({} services)",
        run.id,
        repo.compose.services.len()
    );
    let result = tokio::select! {
        r = body(&repo, &mut run, &o, &mut phases) => r,
        _ = int.recv() => Err(Diagnostic::error("interrupted (SIGINT)")),
        _ = term.recv() => Err(Diagnostic::error("interrupted (SIGTERM)")),
    };
    let t = Instant::now();
    let keep = o.keep && result.is_ok();
    if keep {
        let f = format!("--filter label={RUN_LABEL}={}", run.id);
        eprintln!(
            "verify: --keep: the services of run {} are still up. Remove them with:",
            run.id
        );
        eprintln!("  docker service rm $(docker service ls -q {f}) && sleep 5 && docker network prune -f {f} && docker volume prune -f {f} && docker secret rm $(docker secret ls -q {f}) && docker config rm $(docker config ls -q {f})");
        if made.is_some() {
            eprintln!("  and leave the one-node swarm this run made: docker swarm leave --force && docker network rm docker_gwbridge");
        }
    } else {
        clean(&d, &run.id).await;
        if let Some(m) = &made {
            leave(&d, m).await;
        }
    }
    phases.add("cleanup", t);
    let code = result?;
    let breakdown: Vec<String> = phases
        .0
        .iter()
        .map(|(n, s)| format!("{n} {s:.1}s"))
        .collect();
    eprintln!(
        "verify: {:.1}s ({})",
        t_all.elapsed().as_secs_f64(),
        breakdown.join(", ")
    );
    Ok(code)
}

async fn body(repo: &Repo, run: &mut Run, o: &Opts, phases: &mut Phases) -> Result<Exit, Error> {
    let order = super::services_to_run(repo, o);
    // 1-2. Networks, volumes, images; the endpoint mode is found meanwhile.
    let t = Instant::now();
    let volumes = create_networks_and_volumes(repo, run).await?;
    let (builder, why) = buildkit::choose(&run.d, o.builder).await;
    eprintln!("verify: {why}");
    let fallback = o.builder == Choice::Auto;
    let (probe_image, probe_bin) = probe::ensure_image(&run.d, &repo.root, builder).await?;
    let mut images = images::pulled_images(&run.d, &order).await?;
    let d = run.d.clone();
    let (built, detected) = tokio::join!(
        images::build_images(&d, repo, &order, builder, fallback),
        detect_mode(repo, run, &order, &images, &probe_image)
    );
    images.extend(built?);
    eprintln!("verify: {}", detected.line());
    phases.add("images", t);
    // 3. One service per compose service, all at once (a swarm has no
    // depends_on); then each one's task container on this node.
    let t = Instant::now();
    let creates = order
        .iter()
        .map(|s| create_service(repo, run, s, &images[&s.name], &volumes, detected.mode));
    let mut ids = HashMap::new();
    for (s, r) in order
        .iter()
        .zip(futures_util::future::join_all(creates).await)
    {
        ids.insert(r?, s.name.clone());
    }
    let started = wait_tasks(run, &ids, o.timeout).await;
    let mut not_started = vec![];
    for (name, r) in started {
        match r {
            Ok(cid) => {
                run.containers.insert(name, cid);
            }
            Err(why) => not_started.push(format!("{name} never started: {why}")),
        }
    }
    let nginx_port = stack::nginx_port(run).await;
    phases.add("start", t);
    for n in &not_started {
        eprintln!("verify: {}", run.mask(n));
    }
    if !not_started.is_empty() {
        return Ok(Exit::Findings);
    }
    // 4. Readiness, from inside each task's namespace.
    let t = Instant::now();
    let targets: Vec<Target> = order
        .iter()
        .filter_map(|s| matrix::target(repo, s))
        .collect();
    let waits = targets.iter().map(|tg| {
        let cid = run.containers[&tg.service].clone();
        let (run, probe_image) = (&*run, &probe_image);
        async move {
            (
                tg.service.clone(),
                probe::wait_ready(&run.d, run, probe_image, tg, &cid, o.timeout).await,
            )
        }
    });
    let ready = futures_util::future::join_all(waits).await;
    let all_ready = super::report_ready(run, &targets, ready).await;
    phases.add("ready", t);
    if !all_ready {
        return Ok(Exit::Findings);
    }
    // 5-7. The matrix from each source's task, the routes from the host,
    // the data layer: the compose engine's phase, unchanged.
    let (cells, data) = super::probe_phase(
        run,
        repo,
        o,
        &order,
        &targets,
        &probe_image,
        &probe_bin,
        nginx_port,
        phases,
    )
    .await?;
    run.reaped().await;
    write_report(run, o, &cells, &data, &detected)
}

// ---- the engine's swarm state ----

/// An exclusive lock per engine, held for the whole run: two runs would
/// otherwise init and leave the same swarm under each other.
fn lock_engine() -> Result<std::fs::File, Error> {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let path = std::env::temp_dir().join(format!(
        "xtask-swarm-{}.lock",
        &docker::sha256_hex(&[host.as_bytes()])[..12]
    ));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Diagnostic::error(format!("{}: {e}", path.display())))?;
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!(
            "verify: waiting for another `verify --engine swarm` on this Docker engine ({})",
            path.display()
        );
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Diagnostic::error(format!(
                "cannot lock {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(f)
}

async fn node_state(d: &Docker) -> Result<(LocalNodeState, bool), Error> {
    let info = d
        .info()
        .await
        .map_err(|e| Diagnostic::error(format!("asking the Docker engine about its swarm: {e}")))?;
    let sw = info.swarm.unwrap_or_default();
    Ok((
        sw.local_node_state.unwrap_or(LocalNodeState::INACTIVE),
        sw.control_available.unwrap_or(false),
    ))
}

async fn network_exists(d: &Docker, name: &str) -> bool {
    d.inspect_network(name, None::<q::InspectNetworkOptions>)
        .await
        .is_ok()
}

/// Checks that services can be created here; with `init`, makes a one-node
/// swarm when there is none. Returns what to undo afterwards.
async fn take_swarm(d: &Docker, id: &str, init: bool) -> Result<Option<Made>, Error> {
    let (mut state, mut manager) = node_state(d).await?;
    if state == LocalNodeState::ACTIVE {
        // A one-node swarm an earlier `--init-swarm` made and was killed
        // before leaving: leave it now, as that run would have.
        let labels = d
            .inspect_swarm()
            .await
            .ok()
            .and_then(|s| s.spec?.labels)
            .unwrap_or_default();
        let pid = labels.get(PID_LABEL).and_then(|p| p.parse::<i32>().ok());
        if let Some(pid) = pid.filter(|p| !docker::pid_alive(*p)) {
            docker::sweep(d, None).await;
            let m = Made {
                gwbridge_existed: labels.get(GWBRIDGE_LABEL).is_some_and(|v| v == "true"),
                ingress_existed: false,
            };
            leave(d, &m).await;
            eprintln!("verify: left the one-node swarm that an interrupted `verify --init-swarm` (pid {pid}) made");
            (state, manager) = node_state(d).await?;
        }
    }
    match state {
        LocalNodeState::ACTIVE if manager => Ok(None),
        LocalNodeState::ACTIVE => Err(Diagnostic::error("this Docker engine is a swarm worker; services can only be created on a manager")
            .fix("run verify against a manager node (DOCKER_HOST), or promote this node with `docker node promote`")),
        LocalNodeState::INACTIVE | LocalNodeState::EMPTY if init => {
            let gwbridge_existed = network_exists(d, "docker_gwbridge").await;
            let ingress_existed = network_exists(d, "ingress").await;
            let labels = HashMap::from([
                (RUN_LABEL.to_string(), id.to_string()),
                (PID_LABEL.to_string(), std::process::id().to_string()),
                (GWBRIDGE_LABEL.to_string(), gwbridge_existed.to_string()),
            ]);
            let req = SwarmInitRequest {
                // Loopback only: this swarm is for this run, not for other machines to join.
                listen_addr: Some("127.0.0.1:2377".into()),
                advertise_addr: Some("127.0.0.1".into()),
                spec: Some(SwarmSpec { labels: Some(labels), ..Default::default() }),
                ..Default::default()
            };
            d.init_swarm(req).await.map_err(|e| Diagnostic::error(format!("making a one-node swarm: {e}")))?;
            eprintln!("verify: --init-swarm: made a one-node swarm (advertise 127.0.0.1); it is left again at the end");
            Ok(Some(Made { gwbridge_existed, ingress_existed }))
        }
        LocalNodeState::INACTIVE | LocalNodeState::EMPTY => Err(Diagnostic::error("--engine swarm: this Docker engine is not in a swarm").fix(format!(
            "make a one-node swarm with `{INIT_COMMAND}` (and `docker swarm leave --force` afterwards), or pass --init-swarm to make one for this run only"
        ))),
        other => Err(Diagnostic::error(format!("--engine swarm: this engine's swarm is `{other}`, not active")).fix("see `docker info`; `docker swarm leave --force` resets it")),
    }
}

/// Leaves the swarm this run made and removes what leaving leaves behind.
async fn leave(d: &Docker, m: &Made) {
    if let Err(e) = d
        .leave_swarm(Some(q::LeaveSwarmOptions { force: true }))
        .await
    {
        eprintln!(
            "verify: leaving the one-node swarm failed: {e}; run `docker swarm leave --force`"
        );
        return;
    }
    for (name, existed) in [
        ("docker_gwbridge", m.gwbridge_existed),
        ("ingress", m.ingress_existed),
    ] {
        if existed {
            continue;
        }
        // The swarm's endpoints on docker_gwbridge may take a moment to go.
        for _ in 0..20 {
            if !network_exists(d, name).await || d.remove_network(name).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if network_exists(d, name).await {
            eprintln!("verify: could not remove the `{name}` network that the swarm left; run `docker network rm {name}`");
        }
    }
}

/// Removes everything of the run, until a second look finds nothing, for
/// up to 18 s (an overlay network is in use until its service's tasks are
/// gone).
async fn clean(d: &Docker, id: &str) {
    let left = docker::sweep_until_gone(d, id, Duration::from_secs(18), 2).await;
    if !left.is_empty() {
        eprintln!("verify: some objects of run {id} are still there: {}; `docker service|network|secret|config ls --filter label={RUN_LABEL}={id}` lists them", left.join(", "));
    }
}

// ---- the run's swarm objects ----

async fn create_networks_and_volumes(
    repo: &Repo,
    run: &mut Run,
) -> Result<BTreeMap<String, String>, Error> {
    for (n, _) in &repo.compose.networks {
        let name = run.name(n);
        create_overlay(&run.d, &name, run.labels()).await?;
        run.networks.insert(n.clone(), name);
    }
    let mut volumes = BTreeMap::new();
    for (v, _) in &repo.compose.volumes {
        let name = run.name(v);
        run.d
            .create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(run.labels()),
                ..Default::default()
            })
            .await
            .map_err(|e| Diagnostic::error(format!("creating volume {name}: {e}")))?;
        volumes.insert(v.clone(), name);
    }
    Ok(volumes)
}

/// Attachable, so probe containers can join it too.
async fn create_overlay(
    d: &Docker,
    name: &str,
    labels: HashMap<String, String>,
) -> Result<(), Error> {
    let req = NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("overlay".into()),
        attachable: Some(true),
        labels: Some(labels),
        ..Default::default()
    };
    d.create_network(req)
        .await
        .map_err(|e| Diagnostic::error(format!("creating overlay network {name}: {e}")))?;
    Ok(())
}

/// A secret or config name: `[a-zA-Z0-9-_.]`, at most 64 characters.
fn object_name(run: &Run, service: &str, target: &str) -> String {
    let clean: String = format!("{service}{target}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = run.name(clean.trim_matches('-'));
    if name.len() <= 64 {
        return name;
    }
    let h = docker::sha256_hex(&[name.as_bytes()]);
    format!("{}-{}", &name[..50], &h[..12])
}

/// One file of a service's mounts, as a secret (keys) or a config.
struct FileRef {
    target: String,
    data: Vec<u8>,
    uid: u32,
    secret: bool,
}

async fn create_file_object(
    run: &Run,
    service: &str,
    f: &FileRef,
) -> Result<
    (
        Option<TaskSpecContainerSpecSecrets>,
        Option<TaskSpecContainerSpecConfigs>,
    ),
    Error,
> {
    let name = object_name(run, service, &f.target);
    let mut labels = run.labels();
    labels.insert("monorepo.verify.service".into(), service.to_string());
    let data = Some(base64::engine::general_purpose::STANDARD.encode(&f.data));
    let (uid, gid) = (Some(f.uid.to_string()), Some(f.uid.to_string()));
    if f.secret {
        let r = run
            .d
            .create_secret(SecretSpec {
                name: Some(name.clone()),
                labels: Some(labels),
                data,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Diagnostic::error(format!("creating the secret {name} for `{service}`: {e}"))
            })?;
        let file = TaskSpecContainerSpecFile {
            name: Some(f.target.clone()),
            uid,
            gid,
            mode: Some(0o400),
        };
        Ok((
            Some(TaskSpecContainerSpecSecrets {
                file: Some(file),
                secret_id: Some(r.id),
                secret_name: Some(name),
            }),
            None,
        ))
    } else {
        let r = run
            .d
            .create_config(ConfigSpec {
                name: Some(name.clone()),
                labels: Some(labels),
                data,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Diagnostic::error(format!("creating the config {name} for `{service}`: {e}"))
            })?;
        let file = TaskSpecContainerSpecFile1 {
            name: Some(f.target.clone()),
            uid,
            gid,
            mode: Some(0o444),
        };
        Ok((
            None,
            Some(TaskSpecContainerSpecConfigs {
                file: Some(file),
                config_id: Some(r.id),
                config_name: Some(name),
                runtime: None,
            }),
        ))
    }
}

/// The files of a `./certs/...` mount (a folder or one file), owned by the
/// service's user; keys become secrets (0400), the rest configs.
fn cert_files(
    repo: &Repo,
    s: &Service,
    source: &str,
    target: &str,
    uid: u32,
) -> Result<Vec<FileRef>, Error> {
    let src = repo.root.join(source);
    let missing = || {
        Diagnostic::error(format!(
            "service `{}` mounts {} which does not exist",
            s.name,
            src.display()
        ))
        .fix("run `cargo xtask certs`")
    };
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| Diagnostic::error(format!("{}: {e}", p.display())));
    let key = |n: &str| n.contains("key");
    if src.is_file() {
        let n = src
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        return Ok(vec![FileRef {
            target: target.to_string(),
            data: read(&src)?,
            uid,
            secret: key(&n),
        }]);
    }
    let rd = std::fs::read_dir(&src).map_err(|_| missing())?;
    let mut out = vec![];
    for e in rd.flatten().filter(|e| e.path().is_file()) {
        let n = e.file_name().to_string_lossy().into_owned();
        out.push(FileRef {
            target: format!("{}/{n}", target.trim_end_matches('/')),
            data: read(&e.path())?,
            uid,
            secret: key(&n),
        });
    }
    Ok(out)
}

/// NGINX's configuration as configs over the files its image carries
/// (nginx/Dockerfile copies the folder to /etc/nginx), so the swarm serves
/// the repository's current nginx.conf and locations.
fn nginx_files(repo: &Repo, s: &Service) -> Vec<FileRef> {
    let Some(b) = s.build.as_ref().filter(|_| s.name == "nginx") else {
        return vec![];
    };
    let ctx = repo.root.join(&b.context);
    let mut out = vec![];
    if let Ok(data) = std::fs::read(ctx.join("nginx.conf")) {
        out.push(FileRef {
            target: "/etc/nginx/nginx.conf".into(),
            data,
            uid: 0,
            secret: false,
        });
    }
    let mut locs: Vec<_> = std::fs::read_dir(ctx.join("locations"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    locs.sort();
    for p in locs
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
    {
        if let Ok(data) = std::fs::read(&p) {
            out.push(FileRef {
                target: format!(
                    "/etc/nginx/locations/{}",
                    p.file_name().unwrap().to_string_lossy()
                ),
                data,
                uid: 0,
                secret: false,
            });
        }
    }
    out
}

fn env_vars(repo: &Repo, s: &Service) -> Vec<String> {
    repo.service_env(s)
        .into_iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                crate::model::compose::interpolate(&v, &|x| repo.env(x))
            )
        })
        .collect()
}

/// The image by id: a one-node swarm then never asks a registry for it
/// (a tag makes every task try a pull first, which fails without one).
async fn local_image_id(d: &Docker, image: &str, service: &str) -> Result<String, Error> {
    docker::image_id(d, image).await.ok_or_else(|| {
        Diagnostic::error(format!(
            "image `{image}` of `{service}` is not on this machine"
        ))
    })
}

fn task_spec(
    run: &Run,
    s: &Service,
    image_id: String,
    env: Vec<String>,
    networks: Vec<NetworkAttachmentConfig>,
) -> TaskSpec {
    let mut labels = run.labels();
    labels.insert("monorepo.verify.service".into(), s.name.clone());
    TaskSpec {
        container_spec: Some(TaskSpecContainerSpec {
            image: Some(image_id),
            labels: Some(labels),
            hostname: Some(s.name.clone()),
            env: Some(env),
            // `command:` replaces the image's CMD, as on the compose engine.
            args: (!s.command.is_empty()).then(|| s.command.clone()),
            ..Default::default()
        }),
        // Like the compose engine's containers: one that exits stays
        // exited, and readiness reports it with its logs.
        restart_policy: Some(TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
            ..Default::default()
        }),
        networks: Some(networks),
        ..Default::default()
    }
}

fn service_spec(
    run: &Run,
    name: String,
    service: &str,
    task: TaskSpec,
    endpoint: EndpointSpec,
) -> ServiceSpec {
    let mut labels = run.labels();
    labels.insert("monorepo.verify.service".into(), service.to_string());
    ServiceSpec {
        name: Some(name),
        labels: Some(labels),
        task_template: Some(task),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        endpoint_spec: Some(endpoint),
        ..Default::default()
    }
}

/// The endpoint: the mode, and for NGINX its https port published on this
/// node (`mode: host`; the ingress routing mesh needs IPVS like VIPs do,
/// and dnsrr services cannot use it). No published port: the engine
/// picks a free one, found afterwards like the compose engine's.
fn endpoint(s: &Service, mode: Mode) -> EndpointSpec {
    let ports = (s.name == "nginx").then(|| {
        vec![EndpointPortConfig {
            protocol: Some(EndpointPortConfigProtocolEnum::TCP),
            target_port: Some(443),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            ..Default::default()
        }]
    });
    let mode = match mode {
        Mode::Vip => EndpointSpecModeEnum::VIP,
        Mode::Dnsrr => EndpointSpecModeEnum::DNSRR,
    };
    EndpointSpec {
        mode: Some(mode),
        ports,
    }
}

/// Creates the service of `s` (its secrets and configs first). Returns its id.
async fn create_service(
    repo: &Repo,
    run: &Run,
    s: &Service,
    image: &str,
    volumes: &BTreeMap<String, String>,
    mode: Mode,
) -> Result<String, Error> {
    let d = &run.d;
    let image_id = local_image_id(d, image, &s.name).await?;
    let uid = stack::image_uid(d, image).await;
    let mut mounts = vec![];
    let mut files = nginx_files(repo, s);
    for m in &s.volumes {
        let (target, read_only) = match m.target.rsplit_once(':') {
            Some((t, "ro")) => (t.to_string(), true),
            Some((t, "rw")) => (t.to_string(), false),
            _ => (m.target.clone(), false),
        };
        if m.named {
            let vol = volumes.get(&m.source).ok_or_else(|| {
                Diagnostic::error(format!(
                    "service `{}`: volume `{}` is not declared",
                    s.name, m.source
                ))
            })?;
            mounts.push(Mount {
                target: Some(target),
                source: Some(vol.clone()),
                typ: Some(MountType::VOLUME),
                read_only: Some(read_only),
                ..Default::default()
            });
        } else if m.source.starts_with("./certs/") {
            files.extend(cert_files(repo, s, &m.source, &target, uid)?);
        } else {
            let src = if m.source.starts_with('/') {
                m.source.clone()
            } else {
                repo.root.join(&m.source).display().to_string()
            };
            mounts.push(Mount {
                target: Some(target),
                source: Some(src),
                typ: Some(MountType::BIND),
                read_only: Some(read_only),
                ..Default::default()
            });
        }
    }
    let (mut secrets, mut configs) = (vec![], vec![]);
    for f in &files {
        let (sec, conf) = create_file_object(run, &s.name, f).await?;
        secrets.extend(sec);
        configs.extend(conf);
    }
    let networks = s
        .networks
        .iter()
        .map(|(n, _)| NetworkAttachmentConfig {
            target: Some(run.networks[n].clone()),
            aliases: Some(vec![s.name.clone()]),
            ..Default::default()
        })
        .collect();
    let mut task = task_spec(run, s, image_id, env_vars(repo, s), networks);
    if let Some(c) = task.container_spec.as_mut() {
        c.mounts = Some(mounts);
        c.secrets = Some(secrets);
        c.configs = Some(configs);
    }
    let spec = service_spec(run, run.name(&s.name), &s.name, task, endpoint(s, mode));
    let r = d.create_service(spec, None).await.map_err(|e| {
        Diagnostic::error(format!("creating the swarm service of `{}`: {e}", s.name))
    })?;
    r.id.ok_or_else(|| {
        Diagnostic::error(format!(
            "the engine gave no id for the service of `{}`",
            s.name
        ))
    })
}

/// Waits for each service's task to run on this node. Returns compose name
/// -> its task's container id, or why it never ran (with its logs).
async fn wait_tasks(
    run: &Run,
    ids: &HashMap<String, String>,
    timeout: u64,
) -> BTreeMap<String, Result<String, String>> {
    let mut done: BTreeMap<String, Result<String, String>> = BTreeMap::new();
    let mut last: HashMap<String, String> = HashMap::new();
    let start = Instant::now();
    while done.len() < ids.len() {
        let services: Vec<String> = ids.keys().cloned().collect();
        let tasks = run
            .d
            .list_tasks(Some(q::ListTasksOptions {
                filters: Some(HashMap::from([("service".to_string(), services)])),
            }))
            .await
            .unwrap_or_default();
        for t in tasks {
            let Some(name) = t.service_id.as_ref().and_then(|i| ids.get(i)) else {
                continue;
            };
            if done.contains_key(name) {
                continue;
            }
            let st = t.status.unwrap_or_default();
            let state = st.state.unwrap_or(TaskState::NEW);
            let cid = st
                .container_status
                .and_then(|c| c.container_id)
                .filter(|c| !c.is_empty());
            let msg = st
                .err
                .filter(|e| !e.is_empty())
                .or(st.message)
                .unwrap_or_default();
            match (state, cid) {
                (TaskState::RUNNING, Some(cid)) => {
                    done.insert(name.clone(), Ok(cid));
                }
                (
                    TaskState::FAILED
                    | TaskState::REJECTED
                    | TaskState::SHUTDOWN
                    | TaskState::COMPLETE
                    | TaskState::ORPHANED,
                    cid,
                ) => {
                    let logs = match cid {
                        Some(c) => format!(
                            "\n    last log lines of {name}:\n{}",
                            indent(&docker::logs(&run.d, &c, 15).await)
                        ),
                        None => String::new(),
                    };
                    done.insert(
                        name.clone(),
                        Err(format!("its task is {state}: {msg}{logs}")),
                    );
                }
                _ => {
                    last.insert(name.clone(), format!("{state}: {msg}"));
                }
            }
        }
        if start.elapsed() > Duration::from_secs(timeout) {
            for name in ids.values() {
                if !done.contains_key(name) {
                    let st = last
                        .get(name)
                        .cloned()
                        .unwrap_or_else(|| "no task yet".into());
                    done.insert(
                        name.clone(),
                        Err(format!("no task running after {timeout}s ({st})")),
                    );
                }
            }
        }
        if done.len() < ids.len() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    done
}

// ---- endpoint mode detection ----

/// Tries a virtual IP on a throwaway service (an image that needs no build,
/// so this overlaps the builds): the probe, on the same overlay, first waits
/// for the task address (`tasks.<service>`) to answer, then connects once
/// through the service name, which resolves to the VIP. VIP if that answers,
/// dnsrr otherwise. A stack without such an image uses dnsrr, which works
/// on every swarm.
async fn detect_mode(
    repo: &Repo,
    run: &Run,
    order: &[&Service],
    images: &HashMap<String, String>,
    probe_image: &str,
) -> Detected {
    let t = Instant::now();
    let prebuilt: Vec<(&Service, Target)> = order
        .iter()
        .filter(|s| s.build.is_none())
        .filter_map(|s| Some((*s, matrix::target(repo, s)?)))
        .collect();
    let Some((s, target)) = prebuilt
        .iter()
        .find(|(_, t)| t.kind == Kind::Redis)
        .or(prebuilt.first())
    else {
        return Detected {
            mode: Mode::Dnsrr,
            why: "no service without a build to test a virtual IP with; dnsrr works on every swarm"
                .into(),
        };
    };
    let r = try_vip(repo, run, s, target, &images[&s.name], probe_image).await;
    let secs = t.elapsed().as_secs_f64();
    match r {
        Ok(()) => Detected { mode: Mode::Vip, why: format!("detected in {secs:.1}s: a test service answered on its virtual IP") },
        Err((true, detail)) => Detected {
            mode: Mode::Dnsrr,
            why: format!("detected in {secs:.1}s: a test service answered on its task address but not on its virtual IP ({detail}); this node has no service load balancer (IPVS)"),
        },
        Err((false, detail)) => Detected { mode: Mode::Dnsrr, why: format!("the VIP test did not get as far as its task ({detail}); dnsrr works on every swarm") },
    }
}

/// Ok when the VIP answered; Err((task answered, detail)) otherwise.
async fn try_vip(
    repo: &Repo,
    run: &Run,
    s: &Service,
    target: &Target,
    image: &str,
    probe_image: &str,
) -> Result<(), (bool, String)> {
    let d = &run.d;
    let (net, name) = (run.name("vipcheck"), run.name("vipcheck"));
    create_overlay(d, &net, run.labels())
        .await
        .map_err(|e| (false, e.message.clone()))?;
    let image_id = local_image_id(d, image, &s.name)
        .await
        .map_err(|e| (false, e.message.clone()))?;
    let attach = vec![NetworkAttachmentConfig {
        target: Some(net.clone()),
        aliases: Some(vec!["vipcheck".into()]),
        ..Default::default()
    }];
    let task = task_spec(run, s, image_id, env_vars(repo, s), attach);
    let spec = service_spec(
        run,
        name.clone(),
        "vipcheck",
        task,
        EndpointSpec {
            mode: Some(EndpointSpecModeEnum::VIP),
            ports: None,
        },
    );
    let sid = d
        .create_service(spec, None)
        .await
        .map_err(|e| (false, format!("creating the test service: {e}")))?
        .id
        .unwrap_or_default();
    let result = async {
        let ids = HashMap::from([(sid.clone(), "vipcheck".to_string())]);
        if let Some((_, Err(e))) = wait_tasks(run, &ids, 60).await.into_iter().next() {
            return Err((false, e));
        }
        let tasks = target.spec("tasks", &format!("tasks.{name}"), &HashMap::new());
        let (code, out) = probe_on(
            run,
            probe_image,
            &net,
            vec!["wait".into(), "60".into(), tasks],
        )
        .await
        .map_err(|e| (false, e))?;
        if code != 0 {
            return Err((
                false,
                format!("its task address did not answer: {}", out.trim()),
            ));
        }
        let vip = target.spec("vip", "vipcheck", &HashMap::new());
        let (code, out) = probe_on(run, probe_image, &net, vec!["check".into(), vip])
            .await
            .map_err(|e| (true, e))?;
        let line: serde_json::Value =
            serde_json::from_str(out.lines().next().unwrap_or("").trim()).unwrap_or_default();
        if code == 0 && line["outcome"] == "ok" {
            Ok(())
        } else {
            Err((
                true,
                format!(
                    "{}: {}",
                    line["outcome"].as_str().unwrap_or("no answer"),
                    line["detail"].as_str().unwrap_or(out.trim())
                ),
            ))
        }
    }
    .await;
    // The network goes with the run's final sweep (it is in use until the task is gone).
    let _ = d.delete_service(&sid).await;
    result
}

/// Runs the probe in a container of its own on `network`; returns its exit
/// code and output. Same confinement as the probes in service namespaces.
async fn probe_on(
    run: &Run,
    image: &str,
    network: &str,
    cmd: Vec<String>,
) -> Result<(i64, String), String> {
    let d = &run.d;
    let mut labels = run.labels();
    labels.insert("monorepo.verify.probe".into(), "1".into());
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_string()),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let c = d
        .create_container(None::<q::CreateContainerOptions>, body)
        .await
        .map_err(|e| format!("creating the probe: {e}"))?;
    let rm = || {
        d.remove_container(
            &c.id,
            Some(q::RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
    };
    if let Err(e) = d
        .start_container(&c.id, None::<q::StartContainerOptions>)
        .await
    {
        let _ = rm().await;
        return Err(format!("starting the probe: {e}"));
    }
    let start = Instant::now();
    let code = loop {
        let st = d
            .inspect_container(&c.id, None::<q::InspectContainerOptions>)
            .await
            .ok()
            .and_then(|i| i.state)
            .unwrap_or_default();
        if !st.running.unwrap_or(false) {
            break st.exit_code.unwrap_or(-1);
        }
        if start.elapsed() > Duration::from_secs(90) {
            break -1;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    let out = docker::logs(d, &c.id, 100).await;
    let _ = rm().await;
    Ok((code, out))
}

// ---- the report ----

fn write_report(
    run: &Run,
    o: &Opts,
    cells: &[Cell],
    data: &[datalayer::DataCell],
    detected: &Detected,
) -> Result<Exit, Error> {
    let failed = cells.iter().filter(|c| !c.matches()).count()
        + data.iter().filter(|c| !c.matches()).count();
    if o.format == Format::Json {
        let mut v: serde_json::Value =
            serde_json::from_str(&report::render_json(&run.id, cells, data))
                .map_err(|e| Diagnostic::error(format!("the JSON report: {e}")))?;
        v["engine"] = serde_json::json!({"name": "swarm", "endpoint_mode": detected.mode.as_str(), "why": detected.why});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", report::render_matrix(cells));
        print!("{}", datalayer::render_text(data));
        println!("{}", detected.line());
    }
    if let Some(j) = &o.junit {
        std::fs::write(
            j,
            junit_with_engine(&report::render_junit(cells, data), detected),
        )
        .map_err(|e| Diagnostic::error(format!("{}: {e}", j.display())))?;
    }
    eprintln!(
        "verify: {} probe(s) ({} data-layer), {} mismatch(es)",
        cells.len() + data.len(),
        data.len(),
        failed
    );
    Ok(Exit::findings_unless(failed == 0))
}

/// The JUnit report with the engine and endpoint mode as suite properties.
fn junit_with_engine(xml: &str, detected: &Detected) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let props = format!(
        "  <properties>\n    <property name=\"engine\" value=\"swarm\"/>\n    <property name=\"endpoint_mode\" value=\"{}\"/>\n    <property name=\"endpoint_mode_why\" value=\"{}\"/>\n  </properties>\n",
        detected.mode.as_str(),
        esc(&detected.why)
    );
    match xml
        .find("<testsuite ")
        .and_then(|i| xml[i..].find('\n').map(|j| i + j + 1))
    {
        Some(at) => format!("{}{props}{}", &xml[..at], &xml[at..]),
        None => xml.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_carries_the_endpoint_mode() {
        let x = "<?xml version=\"1.0\"?>\n<testsuite name=\"verify\" tests=\"0\" failures=\"0\">\n</testsuite>\n";
        let out = junit_with_engine(
            x,
            &Detected {
                mode: Mode::Dnsrr,
                why: "a <b> & \"c\"".into(),
            },
        );
        assert!(
            out.contains("<testsuite name=\"verify\" tests=\"0\" failures=\"0\">\n  <properties>"),
            "{out}"
        );
        assert!(
            out.contains("value=\"dnsrr\"") && out.contains("a &lt;b&gt; &amp; &quot;c&quot;"),
            "{out}"
        );
        assert!(out.ends_with("</properties>\n</testsuite>\n"), "{out}");
    }

    #[test]
    fn nginx_publishes_on_the_node_and_others_publish_nothing() {
        let svc = |name: &str| Service {
            name: name.into(),
            ..Default::default()
        };
        let e = endpoint(&svc("nginx"), Mode::Dnsrr);
        assert_eq!(e.mode, Some(EndpointSpecModeEnum::DNSRR));
        let p = &e.ports.unwrap()[0];
        assert_eq!(
            (p.target_port, p.publish_mode, p.published_port),
            (
                Some(443),
                Some(EndpointPortConfigPublishModeEnum::HOST),
                None
            )
        );
        assert!(endpoint(&svc("accounts"), Mode::Vip).ports.is_none());
    }
}
