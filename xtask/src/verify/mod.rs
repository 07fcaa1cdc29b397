//! `verify`: builds the images, starts the stack in a world of its own
//! (networks, volumes and containers named and labelled with a run id),
//! and proves from inside each service's network namespace that it reaches
//! exactly what its networks say it should. See ARCHITECTURE.md.

pub mod probe;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig, PortBinding, VolumeCreateRequest};
use bollard::query_parameters as q;
use bollard::Docker;

use crate::check;
use crate::model::compose::Service;
use crate::docker::{self, Tar, PID_LABEL, RUN_LABEL};
use probe::{Cell, Target};
use crate::model::repo::Repo;
use crate::Error;

pub struct Opts {
    pub only: Vec<String>,
    pub json: bool,
    pub junit: Option<PathBuf>,
    pub keep: bool,
    pub timeout: u64,
}

/// Wall time of each phase, for the report and the benchmarks.
#[derive(Default)]
struct Phases(Vec<(&'static str, f64)>);

impl Phases {
    fn add(&mut self, name: &'static str, since: Instant) {
        self.0.push((name, since.elapsed().as_secs_f64()));
    }
}

pub struct Run {
    pub id: String,
    root: PathBuf,
    d: Docker,
    /// compose service name -> container id
    containers: BTreeMap<String, String>,
    /// compose network name -> docker network name
    networks: BTreeMap<String, String>,
    secrets: Vec<String>,
}

impl Run {
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(RUN_LABEL.to_string(), self.id.clone()), (PID_LABEL.to_string(), std::process::id().to_string())])
    }
    pub fn container(&self, service: &str) -> Option<String> {
        self.containers.get(service).cloned()
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    fn name(&self, what: &str) -> String {
        format!("mr-{}-{what}", self.id)
    }
    /// Hides values of variables whose names look secret.
    pub fn mask(&self, s: &str) -> String {
        let mut s = s.to_string();
        for v in &self.secrets {
            s = s.replace(v.as_str(), "****");
        }
        s
    }
}

pub fn is_secret_name(k: &str) -> bool {
    let k = k.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "PASSWD", "API_KEY", "PRIVATE_KEY"].iter().any(|p| k.contains(p))
}

pub async fn verify(root: &Path, o: Opts) -> Result<u8, Error> {
    let t_all = Instant::now();
    let mut phases = Phases::default();
    let t = Instant::now();
    let repo = Repo::load(root)?;
    let findings = check::run(&repo)?;
    if !findings.is_empty() {
        eprint!("{}", check::render_human(&findings));
        eprintln!("verify: the static check failed; fix the findings above first");
        return Ok(1);
    }
    for s in &o.only {
        if repo.compose.service(s).is_none() {
            return Err(Error::input(format!("--only `{s}`: no such service")));
        }
    }
    phases.add("check", t);
    let d = docker::connect().await?;
    let swept = docker::sweep(&d, None).await;
    if swept > 0 {
        eprintln!("verify: removed {swept} object(s) left by an earlier interrupted run");
    }
    let id = format!("{:x}{:04x}", std::process::id(), (time::OffsetDateTime::now_utc().unix_timestamp() & 0xffff) as u16);
    let mut secrets = vec![];
    for s in &repo.compose.services {
        for (k, v) in repo.service_env(s) {
            if is_secret_name(&k) && v.len() >= 4 {
                secrets.push(v);
            }
        }
    }
    let mut run = Run { id, root: root.to_path_buf(), d: d.clone(), containers: BTreeMap::new(), networks: BTreeMap::new(), secrets };
    eprintln!("verify: run {} ({} services)", run.id, repo.compose.services.len());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::failure(format!("cannot install a SIGTERM handler: {e}")))?;
    let result = tokio::select! {
        r = body(&repo, &mut run, &o, &mut phases) => r,
        _ = tokio::signal::ctrl_c() => Err(Error::failure("interrupted (SIGINT)")),
        _ = term.recv() => Err(Error::failure("interrupted (SIGTERM)")),
    };
    let t = Instant::now();
    if o.keep && result.is_ok() {
        eprintln!("verify: --keep: the stack of run {} is still up. Remove it with:", run.id);
        eprintln!("  docker rm -f $(docker ps -aq --filter label={RUN_LABEL}={}) && docker network prune -f --filter label={RUN_LABEL}={} && docker volume prune -f --filter label={RUN_LABEL}={}", run.id, run.id, run.id);
    } else {
        // Twice: a create that was in flight when we were interrupted may
        // land after the first sweep.
        docker::sweep(&d, Some(&run.id)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        docker::sweep(&d, Some(&run.id)).await;
    }
    phases.add("cleanup", t);
    let code = result?;
    let breakdown: Vec<String> = phases.0.iter().map(|(n, s)| format!("{n} {s:.1}s")).collect();
    eprintln!("verify: {:.1}s ({})", t_all.elapsed().as_secs_f64(), breakdown.join(", "));
    Ok(code)
}

/// Services in depends_on order (dependencies first).
fn start_order<'a>(services: &'a [Service], wanted: &[String]) -> Vec<&'a Service> {
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

async fn body(repo: &Repo, run: &mut Run, o: &Opts, phases: &mut Phases) -> Result<u8, Error> {
    let d = run.d.clone();
    // Which services run: the --only ones (or all) and what they depend on,
    // plus the infrastructure every matrix targets.
    let wanted: Vec<String> = if o.only.is_empty() {
        repo.compose.services.iter().map(|s| s.name.clone()).collect()
    } else {
        let mut w = o.only.clone();
        w.extend(["postgres", "redis", "nginx"].iter().filter(|n| repo.compose.service(n).is_some()).map(|s| s.to_string()));
        w
    };
    let order = start_order(&repo.compose.services, &wanted);

    // 1. Networks and volumes of this run.
    let t = Instant::now();
    for (n, _) in &repo.compose.networks {
        let name = run.name(n);
        d.create_network(NetworkCreateRequest { name: name.clone(), labels: Some(run.labels()), ..Default::default() })
            .await
            .map_err(|e| Error::failure(format!("creating network {name}: {e}")))?;
        run.networks.insert(n.clone(), name);
    }
    let mut volumes = BTreeMap::new();
    for (v, _) in &repo.compose.volumes {
        let name = run.name(v);
        d.create_volume(VolumeCreateRequest { name: Some(name.clone()), labels: Some(run.labels()), ..Default::default() })
            .await
            .map_err(|e| Error::failure(format!("creating volume {name}: {e}")))?;
        volumes.insert(v.clone(), name);
    }

    // 2. Images. What needs no build (Postgres, Redis) starts meanwhile, so
    // its initialisation overlaps the builds.
    let (probe_image, probe_bin) = probe::ensure_image(&d, &repo.root).await?;
    let prebuilt: Vec<&Service> = order
        .iter()
        .copied()
        .filter(|s| s.build.is_none() && s.depends_on.iter().all(|(x, _)| repo.compose.service(x).is_some_and(|x| x.build.is_none())))
        .collect();
    let mut images = pulled_images(&d, &order).await?;
    let (built, early) = {
        let (run_ref, images_ref): (&Run, &HashMap<String, String>) = (run, &images);
        tokio::join!(build_images(&d, repo, &order), start_levels(repo, run_ref, &prebuilt, images_ref, &volumes))
    };
    images.extend(built?);
    let early = early?;
    phases.add("images", t);
    let t = Instant::now();
    let started: Vec<String> = early.iter().map(|(n, _)| n.clone()).collect();
    run.containers.extend(early);

    // 3. The rest, level by level of depends_on.
    let rest: Vec<&Service> = order.iter().copied().filter(|s| !started.contains(&s.name)).collect();
    let late = start_levels(repo, run, &rest, &images, &volumes).await?;
    run.containers.extend(late);
    let mut nginx_port = None;
    if let Some(cid) = run.containers.get("nginx") {
        let info = d.inspect_container(cid, None::<q::InspectContainerOptions>).await.ok();
        nginx_port = info
            .and_then(|i| i.network_settings?.ports?.get("443/tcp").cloned().flatten())
            .and_then(|b| b.first()?.host_port.clone())
            .and_then(|p| p.parse::<u16>().ok());
    }
    phases.add("start", t);

    // 4. Readiness: every container answers its own protocol, from inside.
    let t = Instant::now();
    let targets: Vec<Target> = order.iter().filter_map(|s| probe::target(repo, s)).collect();
    let waits = targets.iter().map(|tg| probe::wait_ready(&d, run, &probe_image, tg, o.timeout));
    let ready = futures_util::future::join_all(waits).await;
    let mut not_ready = vec![];
    for (tg, r) in targets.iter().zip(ready) {
        match r {
            Ok(ms) => eprintln!("  ready  {:<12} {:.1}s", tg.service, ms as f64 / 1000.0),
            Err(why) => {
                let logs = docker::logs(&d, &run.containers[&tg.service], 15).await;
                not_ready.push(format!("{} never became ready: {}\n    last log lines of {}:\n{}", tg.service, why, tg.service, indent(&logs)));
            }
        }
    }
    phases.add("ready", t);
    if !not_ready.is_empty() {
        for n in &not_ready {
            eprintln!("verify: {}", run.mask(n));
        }
        return Ok(1);
    }

    // 5. The matrix, from each backend service's namespace.
    let t = Instant::now();
    let sources: Vec<&Service> = order.iter().copied().filter(|s| s.is_backend() && (o.only.is_empty() || o.only.contains(&s.name))).collect();
    let mut cells: Vec<Cell> = vec![];
    let runs = sources.iter().map(|src| probe::matrix_row(&d, run, repo, &probe_image, src, &targets));
    for row in futures_util::future::join_all(runs).await {
        cells.extend(row?);
    }
    // 6. Public routes through NGINX, from the host.
    if let Some(port) = nginx_port {
        cells.extend(probe::nginx_routes(repo, &probe_bin, port, &order));
    }
    phases.add("probes", t);

    // Logs of the containers in failing cells.
    for c in cells.iter_mut().filter(|c| !c.matches()) {
        for who in [&c.source, &c.target] {
            if let Some(id) = run.containers.get(who.as_str()) {
                let l = docker::logs(&d, id, 8).await;
                c.logs.push((who.clone(), l));
            }
        }
    }
    for c in cells.iter_mut() {
        c.detail = run.mask(&c.detail);
        for (_, l) in c.logs.iter_mut() {
            *l = run.mask(l);
        }
    }
    let failed = cells.iter().filter(|c| !c.matches()).count();
    if o.json {
        println!("{}", probe::render_json(&run.id, &cells));
    } else {
        print!("{}", probe::render_matrix(&cells));
    }
    if let Some(j) = &o.junit {
        std::fs::write(j, probe::render_junit(&cells)).map_err(|e| Error::failure(format!("{}: {e}", j.display())))?;
    }
    eprintln!("verify: {} probe(s), {} mismatch(es)", cells.len(), failed);
    Ok(if failed == 0 { 0 } else { 1 })
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n")
}

/// Creates and starts `batch` level by level of depends_on (a service after
/// what it depends on); the containers of one level start together.
async fn start_levels(
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
                .map_err(|e| Error::failure(format!("starting `{}`: {e}", s.name)))?;
            Ok::<_, Error>((s.name.clone(), cid))
        });
        for r in futures_util::future::join_all(starts).await {
            out.push(r?);
        }
    }
    Ok(out)
}

/// The images of the services that are not built here (Postgres, Redis):
/// they must be on the machine already, since verify does not pull.
async fn pulled_images(d: &Docker, order: &[&Service]) -> Result<HashMap<String, String>, Error> {
    let mut images = HashMap::new();
    for s in order.iter().filter(|s| s.build.is_none()) {
        let Some(img) = &s.image else {
            return Err(Error::input(format!("service `{}` has neither build nor image", s.name)));
        };
        if !docker::image_exists(d, img).await {
            return Err(Error::input(format!(
                "image `{img}` of `{}` is not on this machine and verify does not pull\n  fix: `docker pull {img}`, or on a machine without a registry `cargo xtask images bootstrap`",
                s.name
            )));
        }
        images.insert(s.name.clone(), img.clone());
    }
    Ok(images)
}

/// Builds (or finds) the image of every service that has a `build:`;
/// independent builds run together. Returns service -> image reference.
async fn build_images(d: &Docker, repo: &Repo, order: &[&Service]) -> Result<HashMap<String, String>, Error> {
    let mut images = HashMap::new();
    let mut jobs = vec![];
    for s in order {
        let Some(b) = &s.build else { continue };
        let ctx = repo.root.join(&b.context);
        let tar = docker::context_tar(&ctx, &b.dockerfile)?;
        let args: HashMap<String, String> = b.args.iter().cloned().collect();
        // The hash covers the context (Dockerfile included), the
        // arguments and the identity of the base images they name.
        let mut sorted: Vec<_> = args.iter().collect();
        sorted.sort();
        let mut arg_parts: Vec<String> = vec![];
        for (k, v) in sorted {
            arg_parts.push(format!("{k}={v}"));
            arg_parts.push(docker::image_id(d, v).await.unwrap_or_default());
        }
        let mut refs: Vec<&[u8]> = vec![&tar, b.dockerfile.as_bytes()];
        refs.extend(arg_parts.iter().map(|p| p.as_bytes()));
        let hash = docker::sha256_hex(&refs);
        let tag = format!("monorepo-verify/{}:{}", s.name, &hash[..16]);
        images.insert(s.name.clone(), tag.clone());
        if docker::image_exists(d, &tag).await {
            eprintln!("  image  {:<12} cached ({tag})", s.name);
            continue;
        }
        let (name, df) = (s.name.clone(), b.dockerfile.clone());
        // No build label: the hash is in the tag, and a LABEL is one
        // more layer commit (seconds on fuse-overlayfs).
        let labels = HashMap::new();
        jobs.push(async move {
            let t = Instant::now();
            let r = docker::build(d, &tag, tar, &df, &args, labels).await;
            (name, tag, t.elapsed(), r)
        });
    }
    if !jobs.is_empty() {
        eprintln!("  image  building {} image(s) in parallel...", jobs.len());
    }
    let mut failed = vec![];
    for (name, tag, took, r) in futures_util::future::join_all(jobs).await {
        match r {
            Ok(()) => {
                eprintln!("  image  {name:<12} built in {:.1}s ({tag})", took.as_secs_f64());
                docker::remove_older_tags(d, &tag).await;
            }
            Err(log) => failed.push(format!("building `{name}` failed:\n{}", indent(&log))),
        }
    }
    if !failed.is_empty() {
        return Err(Error::failure(failed.join("\n")));
    }
    Ok(images)
}

/// The user a container runs as, for the owner of uploaded keys.
async fn image_uid(d: &Docker, image: &str) -> u32 {
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
            let vol = volumes.get(&m.source).ok_or_else(|| Error::input(format!("service `{}`: volume `{}` is not declared", s.name, m.source)))?;
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
        .map_err(|e| Error::failure(format!("creating container for `{}`: {e}", s.name)))?;
    // API 1.41 attaches one network at create; the others are connected before start.
    for (n, _) in s.networks.iter().skip(1) {
        d.connect_network(&run.networks[n], NetworkConnectRequest { container: created.id.clone(), endpoint_config: Some(endpoint(&s.name)) })
            .await
            .map_err(|e| Error::failure(format!("connecting `{}` to {n}: {e}", s.name)))?;
    }
    if !uploads.is_empty() {
        let uid = image_uid(d, image).await;
        let mut tar = Tar::default();
        for (src, target) in &uploads {
            let target = target.trim_end_matches(":ro").trim_end_matches(":rw").trim_start_matches('/');
            tar.dir(target, 0o755, uid);
            let Ok(rd) = std::fs::read_dir(src) else {
                return Err(Error::input(format!("service `{}` mounts {} which does not exist\n  fix: run `cargo xtask certs`", s.name, src.display())));
            };
            for e in rd.flatten() {
                let fname = e.file_name().to_string_lossy().into_owned();
                let data = std::fs::read(e.path()).map_err(|er| Error::failure(format!("{}: {er}", e.path().display())))?;
                let mode = if fname.contains("key") { 0o400 } else { 0o444 };
                tar.file(&format!("{target}/{fname}"), &data, mode, uid);
            }
        }
        d.upload_to_container(&created.id, Some(q::UploadToContainerOptions { path: "/".into(), ..Default::default() }), bollard::body_full(tar.finish().into()))
            .await
            .map_err(|e| Error::failure(format!("copying certificates into `{}`: {e}", s.name)))?;
    }
    Ok(created.id)
}
