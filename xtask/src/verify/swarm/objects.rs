//! The run's swarm objects: overlay networks and volumes, secrets and
//! configs for mounted files, and one service per compose service, then
//! its task's container.

use super::*;

pub(super) async fn create_networks_and_volumes(
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
            .map_err(|e| docker::engine_error(format!("creating volume {name}"), e))?;
        volumes.insert(v.clone(), name);
    }
    Ok(volumes)
}

/// Attachable, so probe containers can join it too.
pub(super) async fn create_overlay(
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
        .map_err(|e| docker::engine_error(format!("creating overlay network {name}"), e))?;
    Ok(())
}

/// A secret or config name: `[a-zA-Z0-9-_.]`, at most 64 characters.
pub(super) fn object_name(run: &Run, service: &str, target: &str) -> String {
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
pub(super) struct FileRef {
    target: String,
    data: Vec<u8>,
    uid: u32,
    secret: bool,
    /// Readable by every user, as the repository's file is on the host
    /// (the compose engine bind-mounts it): the image's user may be a name
    /// whose uid is not known here.
    readable: bool,
}

pub(super) async fn create_file_object(
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
                docker::engine_error(format!("creating the secret {name} for `{service}`"), e)
            })?;
        let file = TaskSpecContainerSpecFile {
            name: Some(f.target.clone()),
            uid,
            gid,
            mode: Some(if f.readable { 0o444 } else { 0o400 }),
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
                docker::engine_error(format!("creating the config {name} for `{service}`"), e)
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

/// A file verify ships to the cluster that cannot be read.
fn read_error(p: &Path, e: std::io::Error) -> Error {
    Diagnostic::error(e.to_string())
        .at_path(p)
        .fix("make it readable by you: verify ships it to the cluster as a secret or config")
}

/// The files of a `./certs/...` mount (a folder or one file), owned by the
/// service's user; keys become secrets (0400), the rest configs.
pub(super) fn cert_files(
    repo: &Repo,
    s: &Service,
    source: &str,
    target: &str,
    uid: u32,
) -> Result<Vec<FileRef>, Error> {
    let src = repo.root.join(source);
    let missing = || {
        let e = Diagnostic::error(format!(
            "service `{}` mounts {} which does not exist",
            s.name,
            src.display()
        ));
        super::super::load::at_key(repo, &s.name, "volumes", e.fix("run `cargo xtask certs`"))
    };
    let read = |p: &Path| std::fs::read(p).map_err(|e| read_error(p, e));
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
            readable: false,
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
            readable: false,
        });
    }
    Ok(out)
}

/// The files under a repository mount (a file, or a folder walked down),
/// for a cluster whose nodes do not have the repository: configs, or
/// secrets under `./secrets/`, readable like the host's files (the image's
/// user may be a name whose uid is not known here). Symbolic links are
/// not followed: through a bind mount they resolve in the container's own
/// filesystem, and read here they would ship a host file.
pub(super) fn repo_files(
    root: &Path,
    service: &str,
    source: &str,
    target: &str,
    uid: u32,
) -> Result<Vec<FileRef>, Error> {
    let secret = source.starts_with("./secrets/");
    let src = root.join(source);
    let read = |p: &Path| std::fs::read(p).map_err(|e| read_error(p, e));
    let file = |data, target: String| FileRef {
        target,
        data,
        uid,
        secret,
        readable: true,
    };
    let meta = std::fs::symlink_metadata(&src).map_err(|_| {
        Diagnostic::error(format!(
            "service `{service}` mounts {} which does not exist",
            src.display()
        ))
        .fix("create it, or remove the mount")
    })?;
    if meta.is_file() {
        return Ok(vec![file(read(&src)?, target.to_string())]);
    }
    let mut out = vec![];
    let mut stack = vec![(src, target.trim_end_matches('/').to_string())];
    while let Some((dir, at)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| read_error(&dir, e))?;
        for e in rd.flatten() {
            let (p, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push((p, format!("{at}/{name}"))),
                Ok(t) if t.is_file() => out.push(file(read(&p)?, format!("{at}/{name}"))),
                _ => eprintln!(
                    "verify: `{service}`: {} is not shipped to the cluster (not a regular file)",
                    p.display()
                ),
            }
        }
    }
    out.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(out)
}

/// NGINX's configuration as configs over the files its image carries
/// (nginx/Dockerfile copies the folder to /etc/nginx), so the swarm serves
/// the repository's current nginx.conf and locations.
pub(super) fn nginx_files(repo: &Repo, s: &Service) -> Vec<FileRef> {
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
            readable: false,
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
                readable: false,
            });
        }
    }
    out
}

pub(super) fn env_vars(repo: &Repo, s: &Service) -> Vec<String> {
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
pub(super) async fn local_image_id(
    d: &Docker,
    image: &str,
    service: &str,
) -> Result<String, Error> {
    docker::image_id(d, image).await.ok_or_else(|| {
        Diagnostic::error(format!(
            "image `{image}` of `{service}` is not on this machine"
        ))
        .fix(format!("`docker pull {image}`, or on a machine without a registry `cargo xtask images bootstrap`"))
    })
}

pub(super) fn task_spec(
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

pub(super) fn service_spec(
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
pub(super) fn endpoint(s: &Service, mode: Mode) -> EndpointSpec {
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
pub(super) async fn create_service(
    repo: &Repo,
    run: &Run,
    s: &Service,
    image: &str,
    volumes: &BTreeMap<String, String>,
    mode: Mode,
    placed: Option<&Placed>,
) -> Result<String, Error> {
    let d = &run.d;
    let image_id = match placed {
        // On a cluster every node pulls the run's tag from the registry.
        Some(p) => p.image.clone(),
        None => local_image_id(d, image, &s.name).await?,
    };
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
                let e = Diagnostic::error(format!(
                    "service `{}`: volume `{}` is not declared",
                    s.name, m.source
                ));
                let e = e.fix(format!(
                    "declare `{}` under the top-level `volumes:`",
                    m.source
                ));
                super::super::load::at_key(repo, &s.name, "volumes", e)
            })?;
            mounts.push(Mount {
                target: Some(target),
                source: Some(vol.clone()),
                typ: Some(MountType::VOLUME),
                read_only: Some(read_only),
                // A node that has no such volume makes it: labelled, so
                // the run's sweep of that node removes it.
                volume_options: placed.map(|_| MountVolumeOptions {
                    labels: Some(run.labels()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        } else if m.source.starts_with("./certs/") {
            files.extend(cert_files(repo, s, &m.source, &target, uid)?);
        } else if placed.is_some() && m.source.starts_with("./") {
            // The nodes do not have the repository: its files travel as
            // configs (secrets under ./secrets/).
            files.extend(
                repo_files(&repo.root, &s.name, &m.source, &target, uid)
                    .map_err(|e| super::super::load::at_key(repo, &s.name, "volumes", e))?,
            );
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
    if let Some(p) = placed {
        task.placement = Some(TaskSpecPlacement {
            constraints: Some(vec![format!("node.hostname=={}", p.node)]),
            ..Default::default()
        });
    }
    if let Some(c) = task.container_spec.as_mut() {
        c.mounts = Some(mounts);
        c.secrets = Some(secrets);
        c.configs = Some(configs);
    }
    let spec = service_spec(run, run.name(&s.name), &s.name, task, endpoint(s, mode));
    let r = d.create_service(spec, None).await.map_err(|e| {
        docker::engine_error(format!("creating the swarm service of `{}`", s.name), e)
    })?;
    r.id.ok_or_else(|| {
        Diagnostic::error(format!(
            "the engine gave no id for the service of `{}`",
            s.name
        ))
    })
}

/// Where a service runs on a multi-node cluster, and the registry name of
/// its image there.
pub(super) struct Placed {
    pub image: String,
    pub node: String,
}

/// Waits for each service's task to run on this node. Returns compose name
/// -> its task's container id, or why it never ran (with its logs).
pub(super) async fn wait_tasks(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_files_are_walked_down_without_following_links() {
        let root = std::env::temp_dir().join(format!("xtask-repo-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("web/css")).unwrap();
        std::fs::create_dir_all(root.join("secrets/r")).unwrap();
        std::fs::write(root.join("web/index.html"), "i").unwrap();
        std::fs::write(root.join("web/css/a.css"), "a").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("web/passwd")).unwrap();
        std::fs::write(root.join("secrets/r/users.acl"), "u").unwrap();
        let f = repo_files(&root, "web", "./web", "/srv/", 7).unwrap();
        let got: Vec<(&str, &[u8], bool)> = f
            .iter()
            .map(|f| (f.target.as_str(), f.data.as_slice(), f.secret))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/srv/css/a.css", &b"a"[..], false),
                ("/srv/index.html", &b"i"[..], false)
            ]
        );
        assert!(f.iter().all(|f| f.readable && f.uid == 7));
        let s = repo_files(&root, "redis", "./secrets/r", "/acl", 0).unwrap();
        assert!(s.len() == 1 && s[0].secret && s[0].target == "/acl/users.acl");
        assert!(repo_files(&root, "x", "./missing", "/m", 0).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
