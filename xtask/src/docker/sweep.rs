//! Removing what verify runs left: everything labelled with a run id (or
//! with the id of a run whose process is gone).

use std::collections::HashMap;

use bollard::query_parameters as q;
use bollard::Docker;

use super::{PID_LABEL, RUN_LABEL};

/// Removes every container, network and volume labelled with `run`
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
    let vols = d.list_volumes(Some(q::ListVolumesOptions { filters: Some(filters) })).await.ok();
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
    removed
}
