//! The engine's swarm state: the per-engine lock, taking a swarm (or
//! making a one-node one with `--init-swarm`), leaving it, and the sweep
//! of the run's objects.

use super::*;

/// An exclusive lock per engine, held for the whole run: two runs would
/// otherwise init and leave the same swarm under each other.
pub(super) fn lock_engine() -> Result<std::fs::File, Error> {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    lock_engine_at(&host)
}

/// The lock of the engine at `host` (a DOCKER_HOST value).
pub(super) fn lock_engine_at(host: &str) -> Result<std::fs::File, Error> {
    let path = std::env::temp_dir().join(format!(
        "xtask-swarm-{}.lock",
        &docker::sha256_hex(&[host.as_bytes()])[..12]
    ));
    docker::lock_exclusive(
        &path,
        "another `verify --engine swarm` on this Docker engine",
    )
}

pub(super) async fn node_state(d: &Docker) -> Result<(LocalNodeState, bool), Error> {
    let info = d
        .info()
        .await
        .map_err(|e| crate::docker::engine_error("asking the Docker engine about its swarm", e))?;
    let sw = info.swarm.unwrap_or_default();
    Ok((
        sw.local_node_state.unwrap_or(LocalNodeState::INACTIVE),
        sw.control_available.unwrap_or(false),
    ))
}

pub(super) async fn network_exists(d: &Docker, name: &str) -> bool {
    d.inspect_network(name, None::<q::InspectNetworkOptions>)
        .await
        .is_ok()
}

/// Checks that services can be created here; with `init`, makes a one-node
/// swarm when there is none. Returns what to undo afterwards.
pub(super) async fn take_swarm(d: &Docker, id: &str, init: bool) -> Result<Option<Made>, Error> {
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
            // That run's own objects until gone, as its cleanup would have:
            // its services' task containers go after the services, and
            // some only once the swarm is left.
            let dead = labels.get(RUN_LABEL);
            if let Some(id) = dead {
                docker::sweep_until_gone(d, id, Duration::from_secs(18), 2).await;
            }
            let m = Made {
                gwbridge_existed: labels.get(GWBRIDGE_LABEL).is_some_and(|v| v == "true"),
                ingress_existed: false,
            };
            leave(d, &m).await;
            if let Some(id) = dead {
                docker::sweep_until_gone(d, id, Duration::from_secs(5), 2).await;
            }
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
            d.init_swarm(req).await.map_err(|e| {
                Diagnostic::error(format!("making a one-node swarm: {e}"))
                    .fix(format!("make it yourself with `{INIT_COMMAND}` and run without --init-swarm; `docker info` shows the engine's swarm state"))
            })?;
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
pub(super) async fn leave(d: &Docker, m: &Made) {
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
pub(super) async fn clean(d: &Docker, id: &str) {
    let left = docker::sweep_until_gone(d, id, Duration::from_secs(18), 2).await;
    if !left.is_empty() {
        eprintln!("verify: some objects of run {id} are still there: {}; `docker service|network|secret|config ls --filter label={RUN_LABEL}={id}` lists them", left.join(", "));
    }
}
