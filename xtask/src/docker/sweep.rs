//! Removing what verify runs left: everything labelled with a run id (or
//! with the id of a run whose process is gone): swarm services, containers,
//! networks, volumes, swarm secrets and configs.

use std::collections::HashMap;

use bollard::query_parameters as q;
use bollard::Docker;

use super::{PID_LABEL, RUN_LABEL};

/// Removes every service, container, network, volume, secret and config labelled with `run`
/// (or, with `run = None`, those of runs whose process is gone).
pub async fn sweep(d: &Docker, run: Option<&str>) -> usize {
    let alive = |pid: Option<&String>| -> bool {
        pid.and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| unsafe { libc::kill(p, 0) } == 0 && p != std::process::id() as i32)
    };
    let filter = match run {
        Some(r) => format!("{RUN_LABEL}={r}"),
        None => RUN_LABEL.to_string(),
    };
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![filter]);
    let mut removed = 0;
    // Swarm services first (their tasks' containers go with them); on an
    // engine in no swarm these lists fail, and there is nothing to remove.
    let svcs = d.list_services(Some(q::ListServicesOptions { filters: Some(filters.clone()), ..Default::default() })).await.unwrap_or_default();
    let ids: Vec<String> = svcs
        .into_iter()
        .filter(|s| run.is_some() || !alive(s.spec.as_ref().and_then(|s| s.labels.as_ref()).and_then(|l| l.get(PID_LABEL))))
        .filter_map(|s| s.id)
        .collect();
    removed += futures_util::future::join_all(ids.iter().map(|id| d.delete_service(id))).await.iter().filter(|r| r.is_ok()).count();
    let cs = d
        .list_containers(Some(q::ListContainersOptions { all: true, filters: Some(filters.clone()), ..Default::default() }))
        .await
        .unwrap_or_default();
    // Containers first (all at once), then what they were using.
    let ids: Vec<String> = cs
        .into_iter()
        .filter(|c| run.is_some() || !alive(c.labels.as_ref().and_then(|l| l.get(PID_LABEL))))
        .filter_map(|c| c.id)
        .collect();
    removed += ids.len();
    futures_util::future::join_all(
        ids.iter().map(|id| d.remove_container(id, Some(q::RemoveContainerOptions { force: true, v: true, ..Default::default() }))),
    )
    .await;
    let nets = d.list_networks(Some(q::ListNetworksOptions { filters: Some(filters.clone()) })).await.unwrap_or_default();
    let ids: Vec<String> = nets
        .into_iter()
        .filter(|n| run.is_some() || !alive(n.labels.as_ref().and_then(|l| l.get(PID_LABEL))))
        .filter_map(|n| n.id)
        .collect();
    removed += futures_util::future::join_all(ids.iter().map(|id| d.remove_network(id))).await.iter().filter(|r| r.is_ok()).count();
    let vols = d.list_volumes(Some(q::ListVolumesOptions { filters: Some(filters.clone()) })).await.ok();
    let names: Vec<String> = vols
        .and_then(|v| v.volumes)
        .unwrap_or_default()
        .into_iter()
        .filter(|v| run.is_some() || !alive(v.labels.get(PID_LABEL)))
        .map(|v| v.name)
        .collect();
    removed += futures_util::future::join_all(names.iter().map(|n| d.remove_volume(n, None::<q::RemoveVolumeOptions>)))
        .await
        .iter()
        .filter(|r| r.is_ok())
        .count();
    // Secrets and configs can go once no service uses them.
    let secrets = d.list_secrets(Some(q::ListSecretsOptions { filters: Some(filters.clone()) })).await.unwrap_or_default();
    let ids: Vec<String> = secrets
        .into_iter()
        .filter(|s| run.is_some() || !alive(s.spec.as_ref().and_then(|s| s.labels.as_ref()).and_then(|l| l.get(PID_LABEL))))
        .filter_map(|s| s.id)
        .collect();
    removed += futures_util::future::join_all(ids.iter().map(|id| d.delete_secret(id))).await.iter().filter(|r| r.is_ok()).count();
    let configs = d.list_configs(Some(q::ListConfigsOptions { filters: Some(filters) })).await.unwrap_or_default();
    let ids: Vec<String> = configs
        .into_iter()
        .filter(|s| run.is_some() || !alive(s.spec.as_ref().and_then(|s| s.labels.as_ref()).and_then(|l| l.get(PID_LABEL))))
        .filter_map(|s| s.id)
        .collect();
    removed += futures_util::future::join_all(ids.iter().map(|id| d.delete_config(id))).await.iter().filter(|r| r.is_ok()).count();
    removed
}

/// How many objects labelled with `run` still exist: containers, networks,
/// volumes, and (on a swarm manager) services, secrets and configs.
pub async fn remaining(d: &Docker, run: &str) -> usize {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![format!("{RUN_LABEL}={run}")]);
    let f = || Some(filters.clone());
    let (cs, ns, vs) = tokio::join!(
        d.list_containers(Some(q::ListContainersOptions { all: true, filters: f(), ..Default::default() })),
        d.list_networks(Some(q::ListNetworksOptions { filters: f() })),
        d.list_volumes(Some(q::ListVolumesOptions { filters: f() })),
    );
    let (ss, sc, cf) = tokio::join!(
        d.list_services(Some(q::ListServicesOptions { filters: f(), ..Default::default() })),
        d.list_secrets(Some(q::ListSecretsOptions { filters: f() })),
        d.list_configs(Some(q::ListConfigsOptions { filters: f() })),
    );
    cs.map_or(0, |v| v.len())
        + ns.map_or(0, |v| v.len())
        + vs.ok().and_then(|v| v.volumes).map_or(0, |v| v.len())
        + ss.map_or(0, |v| v.len())
        + sc.map_or(0, |v| v.len())
        + cf.map_or(0, |v| v.len())
}
