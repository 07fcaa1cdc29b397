//! The stack of a verify run: its networks and volumes, and the containers
//! created and started level by level of depends_on.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use bollard::models::{NetworkCreateRequest, VolumeCreateRequest, ContainerCreateBody, EndpointSettings, HostConfig, NetworkConnectRequest, NetworkingConfig, PortBinding};
use bollard::query_parameters as q;
use bollard::Docker;

use super::run::Run;
use crate::diag::{Diagnostic, Error};
use crate::docker::Tar;
use crate::model::compose::Service;
use crate::model::repo::Repo;

/// The run's networks and volumes (named and labelled with its id).
/// Returns compose volume -> docker volume.
pub(super) async fn create_networks_and_volumes(repo: &Repo, run: &mut Run) -> Result<BTreeMap<String, String>, Error> {
    let d = run.d.clone();
    for (n, _) in &repo.compose.networks {
        let name = run.name(n);
        d.create_network(NetworkCreateRequest { name: name.clone(), labels: Some(run.labels()), ..Default::default() })
            .await
            .map_err(|e| Diagnostic::error(format!("creating network {name}: {e}")))?;
        run.networks.insert(n.clone(), name);
    }
    let mut volumes = BTreeMap::new();
    for (v, _) in &repo.compose.volumes {
        let name = run.name(v);
        d.create_volume(VolumeCreateRequest { name: Some(name.clone()), labels: Some(run.labels()), ..Default::default() })
            .await
            .map_err(|e| Diagnostic::error(format!("creating volume {name}: {e}")))?;
        volumes.insert(v.clone(), name);
    }
    Ok(volumes)
}

/// The host port NGINX's 443 was published on, once it runs.
pub(super) async fn nginx_port(run: &Run) -> Option<u16> {
    let cid = run.containers.get("nginx")?;
    let info = run.d.inspect_container(cid, None::<q::InspectContainerOptions>).await.ok();
    info.and_then(|i| i.network_settings?.ports?.get("443/tcp").cloned().flatten())
        .and_then(|b| b.first()?.host_port.clone())
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

/// Creates and starts `batch` level by level of depends_on (a service after
/// what it depends on); the containers of one level start together.
pub(super) async fn start_levels(
    repo: &Repo,
    run: &Run,
    batch: &[&Service],
    images: &HashMap<String, String>,
    volumes: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, Error> {
    let mut depth: HashMap<&str, usize> = HashMap::new();
    for s in batch {
        let dd = s.depends_on.iter().filter_map(|(x, _)| depth.get(x.as_str())).max().map_or(0, |m| m + 1);
        depth.insert(&s.name, dd);
    }
    let levels = depth.values().max().map_or(0, |m| m + 1);
    let mut out = vec![];
    for level in 0..levels {
        let starts = batch.iter().filter(|s| depth[s.name.as_str()] == level).map(|s| async move {
            let cid = create_container(repo, run, s, &images[&s.name], volumes).await?;
            run.d
                .start_container(&cid, None::<q::StartContainerOptions>)
                .await
                .map_err(|e| Diagnostic::error(format!("starting `{}`: {e}", s.name)))?;
            Ok::<_, Error>((s.name.clone(), cid))
        });
        for r in futures_util::future::join_all(starts).await {
            out.push(r?);
        }
    }
    Ok(out)
}

/// The user a container runs as, for the owner of uploaded keys.
pub(super) async fn image_uid(d: &Docker, image: &str) -> u32 {
    let user = d.inspect_image(image).await.ok().and_then(|i| i.config?.user).unwrap_or_default();
    user.split(':').next().and_then(|u| u.parse().ok()).unwrap_or(0)
}

async fn create_container(repo: &Repo, run: &Run, s: &Service, image: &str, volumes: &BTreeMap<String, String>) -> Result<String, Error> {
    let d = &run.d;
    let env_vars: Vec<String> = repo
        .service_env(s)
        .into_iter()
        .map(|(k, v)| format!("{k}={}", crate::model::compose::interpolate(&v, &|x| repo.env(x))))
        .collect();
    let mut binds = vec![];
    let mut uploads: Vec<(PathBuf, String)> = vec![];
    for m in &s.volumes {
        if m.named {
            let vol = volumes.get(&m.source).ok_or_else(|| Diagnostic::error(format!("service `{}`: volume `{}` is not declared", s.name, m.source)))?;
            binds.push(format!("{vol}:{}", m.target));
        } else if m.source.starts_with("./certs/") {
            // Keys are uploaded (owned by the container's user, 0400)
            // rather than bind-mounted, so a non-root service can read them.
            uploads.push((repo.root.join(&m.source), m.target.clone()));
        } else {
            let src = if m.source.starts_with('/') { PathBuf::from(&m.source) } else { repo.root.join(&m.source) };
            binds.push(format!("{}:{}", src.display(), m.target));
        }
    }
    let mut labels = run.labels();
    labels.insert("monorepo.verify.service".into(), s.name.clone());
    let first_net = s.networks.first().map(|(n, _)| run.networks[n].clone());
    let port_bindings = (s.name == "nginx").then(|| {
        HashMap::from([(
            "443/tcp".to_string(),
            Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) }]),
        )])
    });
    let endpoint = |alias: &str| EndpointSettings { aliases: Some(vec![alias.to_string()]), ..Default::default() };
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        hostname: Some(s.name.clone()),
        env: Some(env_vars),
        labels: Some(labels),
        exposed_ports: port_bindings.as_ref().map(|_| vec!["443/tcp".to_string()]),
        host_config: Some(HostConfig {
            binds: Some(binds),
            port_bindings,
            network_mode: first_net.clone(),
            ..Default::default()
        }),
        networking_config: first_net.as_ref().map(|n| NetworkingConfig { endpoints_config: Some(HashMap::from([(n.clone(), endpoint(&s.name))])) }),
        ..Default::default()
    };
    let name = run.name(&s.name);
    let created = d
        .create_container(Some(q::CreateContainerOptions { name: Some(name.clone()), ..Default::default() }), body)
        .await
        .map_err(|e| Diagnostic::error(format!("creating container for `{}`: {e}", s.name)))?;
    // API 1.41 attaches one network at create; the others are connected before start.
    for (n, _) in s.networks.iter().skip(1) {
        d.connect_network(&run.networks[n], NetworkConnectRequest { container: created.id.clone(), endpoint_config: Some(endpoint(&s.name)) })
            .await
            .map_err(|e| Diagnostic::error(format!("connecting `{}` to {n}: {e}", s.name)))?;
    }
    if !uploads.is_empty() {
        let uid = image_uid(d, image).await;
        let mut tar = Tar::default();
        for (src, target) in &uploads {
            let target = target.trim_end_matches(":ro").trim_end_matches(":rw").trim_start_matches('/');
            tar.dir(target, 0o755, uid);
            let Ok(rd) = std::fs::read_dir(src) else {
                return Err(Diagnostic::error(format!("service `{}` mounts {} which does not exist", s.name, src.display())).fix("run `cargo xtask certs`"));
            };
            for e in rd.flatten() {
                let fname = e.file_name().to_string_lossy().into_owned();
                let data = std::fs::read(e.path()).map_err(|er| Diagnostic::error(format!("{}: {er}", e.path().display())))?;
                let mode = if fname.contains("key") { 0o400 } else { 0o444 };
                tar.file(&format!("{target}/{fname}"), &data, mode, uid);
            }
        }
        d.upload_to_container(&created.id, Some(q::UploadToContainerOptions { path: "/".into(), ..Default::default() }), bollard::body_full(tar.finish().into()))
            .await
            .map_err(|e| Diagnostic::error(format!("copying certificates into `{}`: {e}", s.name)))?;
    }
    Ok(created.id)
}
