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
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bollard::models::{
    ConfigSpec, ContainerCreateBody, EndpointPortConfig, EndpointPortConfigProtocolEnum,
    EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, HostConfig,
    LocalNodeState, Mount, MountType, MountVolumeOptions, NetworkAttachmentConfig,
    NetworkCreateRequest, SecretSpec, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    SwarmInitRequest, SwarmSpec, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecConfigs,
    TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets,
    TaskSpecPlacement, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
    VolumeCreateRequest,
};
use bollard::query_parameters as q;
use bollard::Docker;

use super::matrix::{self, Cell, Kind, Target};
use super::report::{self, indent};
use super::run::{Phases, Run, Signals};
use super::{datalayer, images, probe, stack, Opts};
use crate::cli::Format;
use crate::diag::{Diagnostic, Error, Exit};
use crate::docker::buildkit::{self, Choice};
use crate::docker::{self, PID_LABEL, RUN_LABEL};
use crate::model::compose::Service;
use crate::model::repo::Repo;

mod mode;
mod multinode;
mod objects;
mod reporting;
mod state;

use mode::*;
use objects::*;
use reporting::*;
use state::*;

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
    if let Some(c) = o.cluster.clone() {
        return multinode::verify(repo, o, phases, t_all, &c).await;
    }
    // The stack Compose resolves, read before anything changes: the matrix
    // rows follow its namespaces and every path to a task (its addresses on
    // other overlays, the node's address at a port published in `mode:
    // host`) is tried.
    let stack = super::load::load_allowing(&repo, &["deploy"])?;
    let d = docker::connect().await?;
    // One swarm per engine: runs on the same engine take turns.
    let _lock = lock_engine()?;
    // Listening from here on: a signal during the swarm init is kept and
    // ends the run right after it, with the cleanup (and the leave).
    let mut signals = super::run::Signals::listen()?;
    // The run's id names what take_swarm makes, so the run comes first.
    let mut run = Run::new(&repo, d.clone());
    run.stack = stack;
    let made = take_swarm(&d, &run.id, o.init_swarm).await?;
    let swept = docker::sweep(&d, None).await;
    if swept > 0 {
        eprintln!("verify: removed {swept} object(s) left by an earlier interrupted run");
    }
    eprintln!(
        "verify: run {} on swarm ({} services)",
        run.id,
        repo.compose.services.len()
    );
    let result = tokio::select! {
        r = body(&repo, &mut run, &o, &mut phases) => r,
        e = signals.recv() => Err(e),
    };
    let t = Instant::now();
    let keep = o.keep && result.is_ok();
    if keep {
        let f = format!("--filter label={RUN_LABEL}={}", run.id);
        eprintln!(
            "verify: --keep: the services of run {} are still up. Remove them with:",
            run.id
        );
        eprintln!("  docker service rm $(docker service ls -q {f}) && sleep 5 && docker network prune -f {f} && docker volume ls -q {f} | xargs -r docker volume rm && docker secret ls -q {f} | xargs -r docker secret rm && docker config ls -q {f} | xargs -r docker config rm");
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
    phases.finish(result, t_all)
}

async fn body(repo: &Repo, run: &mut Run, o: &Opts, phases: &mut Phases) -> Result<Exit, Error> {
    let order = super::services_to_run(repo, o);
    // 1-2. Networks, volumes, images; the endpoint mode is found meanwhile.
    let t = Instant::now();
    let volumes = create_networks_and_volumes(repo, run).await?;
    let (builder, why) = buildkit::choose(&run.d, o.builder).await;
    eprintln!("verify: {why}");
    let fallback = o.builder == Choice::Auto;
    let build = probe::ProbeBuild::start(&repo.root);
    let (probe_image, probe_bin) = probe::ensure_image(&run.d, &repo.root, build, builder).await?;
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
    let creates = order.iter().map(|s| {
        create_service(
            repo,
            run,
            s,
            &images[&s.name],
            &volumes,
            detected.mode,
            None,
        )
    });
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
