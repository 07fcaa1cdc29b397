//! The stack of a verify run: its networks and volumes, and the containers
//! created, and started after what they depend on.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkConnectRequest, NetworkCreateRequest,
    NetworkingConfig, PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters as q;
use bollard::Docker;

use super::pgseed::{self, Seeding};
use super::run::Run;
use crate::diag::{Diagnostic, Error};
use crate::docker::Tar;
use crate::model::compose::Service;
use crate::model::repo::Repo;

/// The run's networks and volumes (named and labelled with its id), all
/// created at once. Returns compose volume -> docker volume.
pub(super) async fn create_networks_and_volumes(
    repo: &Repo,
    run: &mut Run,
) -> Result<BTreeMap<String, String>, Error> {
    let d = run.d.clone();
    let nets = repo.compose.networks.iter().map(|(n, _)| {
        let (d, name, labels) = (&d, run.name(n), run.labels());
        async move {
            d.create_network(NetworkCreateRequest {
                name: name.clone(),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(|e| Diagnostic::error(format!("creating network {name}: {e}")))?;
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
            .map_err(|e| Diagnostic::error(format!("creating volume {name}: {e}")))?;
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

/// Starts the container `cid` of `s`.
pub(super) async fn start(run: &Run, s: &Service, cid: &str) -> Result<(), Error> {
    run.d
        .start_container(cid, None::<q::StartContainerOptions>)
        .await
        .map_err(|e| Diagnostic::error(format!("starting `{}`: {e}", s.name)))
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

/// A service's mounts as binds (named volumes of the run, host paths) and
/// uploads (certificates: owned by the container's user, 0400, rather than
/// bind-mounted, so a non-root service can read them).
#[allow(clippy::type_complexity)]
fn mounts(
    repo: &Repo,
    s: &Service,
    volumes: &BTreeMap<String, String>,
) -> Result<(Vec<String>, Vec<(PathBuf, String)>), Error> {
    let mut binds = vec![];
    let mut uploads: Vec<(PathBuf, String)> = vec![];
    for m in &s.volumes {
        if m.named {
            let vol = volumes.get(&m.source).ok_or_else(|| {
                Diagnostic::error(format!(
                    "service `{}`: volume `{}` is not declared",
                    s.name, m.source
                ))
            })?;
            binds.push(format!("{vol}:{}", m.target));
        } else if m.source.starts_with("./certs/") {
            uploads.push((repo.root.join(&m.source), m.target.clone()));
        } else {
            let src = if m.source.starts_with('/') {
                PathBuf::from(&m.source)
            } else {
                repo.root.join(&m.source)
            };
            binds.push(format!("{}:{}", src.display(), m.target));
        }
    }
    Ok((binds, uploads))
}

/// What `create_container` sends for `s`: the body (image, environment,
/// mounts, labels, its first network) and the certificate folders to copy
/// in before it starts.
pub(super) fn container_body(
    repo: &Repo,
    run: &Run,
    s: &Service,
    image: &str,
    volumes: &BTreeMap<String, String>,
) -> Result<(ContainerCreateBody, Vec<(PathBuf, String)>), Error> {
    let env_vars: Vec<String> = repo
        .service_env(s)
        .into_iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                crate::model::compose::interpolate(&v, &|x| repo.env(x))
            )
        })
        .collect();
    let (binds, uploads) = mounts(repo, s, volumes)?;
    let mut labels = run.labels();
    labels.insert("monorepo.verify.service".into(), s.name.clone());
    let first_net = s.networks.first().map(|(n, _)| run.networks[n].clone());
    let port_bindings = (s.name == "nginx").then(|| {
        HashMap::from([(
            "443/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }]),
        )])
    });
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        hostname: Some(s.name.clone()),
        env: Some(env_vars),
        cmd: (!s.command.is_empty()).then(|| s.command.clone()),
        labels: Some(labels),
        exposed_ports: port_bindings.as_ref().map(|_| vec!["443/tcp".to_string()]),
        host_config: Some(HostConfig {
            binds: Some(binds),
            port_bindings,
            network_mode: first_net.clone(),
            ..Default::default()
        }),
        networking_config: first_net.as_ref().map(|n| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(n.clone(), endpoint(&s.name))])),
        }),
        ..Default::default()
    };
    Ok((body, uploads))
}

fn endpoint(alias: &str) -> EndpointSettings {
    EndpointSettings {
        aliases: Some(vec![alias.to_string()]),
        ..Default::default()
    }
}

/// Creates the container of `s` (not started): its networks connected, its
/// certificates copied in, and Postgres's data directory from the cache.
pub(super) async fn create(
    repo: &Repo,
    run: &Run,
    s: &Service,
    image: &str,
    volumes: &BTreeMap<String, String>,
    seeding: Option<&Seeding<'_>>,
) -> Result<String, Error> {
    let d = &run.d;
    let (body, uploads) = container_body(repo, run, s, image, volumes)?;
    // Postgres from a cached data directory (made first if there is none).
    let seed = match seeding.filter(|_| s.name == pgseed::SERVICE) {
        Some(seeding) => pgseed::prepare(repo, run, s, &body, &uploads, seeding).await?,
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
        .map_err(|e| Diagnostic::error(format!("creating container for `{}`: {e}", s.name)))?;
    // API 1.41 attaches one network at create; the others are connected before start.
    for (n, _) in s.networks.iter().skip(1) {
        d.connect_network(
            &run.networks[n],
            NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: Some(endpoint(&s.name)),
            },
        )
        .await
        .map_err(|e| Diagnostic::error(format!("connecting `{}` to {n}: {e}", s.name)))?;
    }
    if !uploads.is_empty() {
        upload(d, &created.id, s, image, &uploads).await?;
    }
    if let Some(seed) = seed {
        seed.upload(d, &created.id).await?;
    }
    Ok(created.id)
}

/// Copies the certificate folders into the container before it starts.
async fn upload(
    d: &Docker,
    id: &str,
    s: &Service,
    image: &str,
    uploads: &[(PathBuf, String)],
) -> Result<(), Error> {
    let uid = image_uid(d, image).await;
    let mut tar = Tar::default();
    for (src, target) in uploads {
        let target = target
            .trim_end_matches(":ro")
            .trim_end_matches(":rw")
            .trim_start_matches('/');
        tar.dir(target, 0o755, uid);
        let Ok(rd) = std::fs::read_dir(src) else {
            return Err(Diagnostic::error(format!(
                "service `{}` mounts {} which does not exist",
                s.name,
                src.display()
            ))
            .fix("run `cargo xtask certs`"));
        };
        for e in rd.flatten() {
            let fname = e.file_name().to_string_lossy().into_owned();
            let data = std::fs::read(e.path())
                .map_err(|er| Diagnostic::error(format!("{}: {er}", e.path().display())))?;
            let mode = if fname.contains("key") { 0o400 } else { 0o444 };
            tar.file(&format!("{target}/{fname}"), &data, mode, uid);
        }
    }
    d.upload_to_container(
        id,
        Some(q::UploadToContainerOptions {
            path: "/".into(),
            ..Default::default()
        }),
        bollard::body_full(tar.finish().into()),
    )
    .await
    .map_err(|e| Diagnostic::error(format!("copying certificates into `{}`: {e}", s.name)))?;
    Ok(())
}
