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
use crate::docker::buildkit::{self, Builder, Choice};
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
    pub builder: Choice,
}

/// Wall time of each phase, for the report and the benchmarks.
#[derive(Default)]
struct Phases(Vec<(&'static str, f64)>);

impl Phases {
    fn add(&mut self, name: &'static str, since: Instant) {
        self.0.push((name, since.elapsed().as_secs_f64()));
    }
    fn push(&mut self, name: &'static str, d: Duration) {
        self.0.push((name, d.as_secs_f64()));
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
    /// Removals of finished probe containers, running in the background;
    /// awaited before the final sweep.
    reaping: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
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
    /// Removes a container that has done its work, off the critical path.
    pub fn reap(&self, id: &str) {
        let (d, id) = (self.d.clone(), id.to_string());
        let h = tokio::spawn(async move {
            let _ = d.remove_container(&id, Some(q::RemoveContainerOptions { force: true, v: true, ..Default::default() })).await;
        });
        self.reaping.lock().unwrap_or_else(|e| e.into_inner()).push(h);
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
    let mut run = Run { id, root: root.to_path_buf(), d: d.clone(), containers: BTreeMap::new(), networks: BTreeMap::new(), secrets, reaping: Default::default() };
    eprintln!("verify: run {} ({} services)", run.id, repo.compose.services.len());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::failure(format!("cannot install a SIGTERM handler: {e}")))?;
    let (result, interrupted) = tokio::select! {
        r = body(&repo, &mut run, &o, &mut phases) => (r, false),
        _ = tokio::signal::ctrl_c() => (Err(Error::failure("interrupted (SIGINT)")), true),
        _ = term.recv() => (Err(Error::failure("interrupted (SIGTERM)")), true),
    };
    // The report is out; what is left is removal (the command still exits
    // only when nothing of this run is left).
    let t = Instant::now();
    let reaping: Vec<_> = std::mem::take(&mut *run.reaping.lock().unwrap_or_else(|e| e.into_inner()));
    futures_util::future::join_all(reaping).await;
    if o.keep && result.is_ok() {
        eprintln!("verify: --keep: the stack of run {} is still up. Remove it with:", run.id);
        eprintln!("  docker rm -f $(docker ps -aq --filter label={RUN_LABEL}={}) && docker network prune -f --filter label={RUN_LABEL}={} && docker volume prune -f --filter label={RUN_LABEL}={}", run.id, run.id, run.id);
    } else {
        docker::sweep(&d, Some(&run.id)).await;
        if interrupted {
            // Again: a create that was in flight when we were interrupted
            // may land after the first sweep. (A run that ended by itself
            // has nothing in flight.)
            tokio::time::sleep(Duration::from_millis(300)).await;
            docker::sweep(&d, Some(&run.id)).await;
        }
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

    // 1. Networks and volumes of this run, all at once.
    let t = Instant::now();
    let nets = repo.compose.networks.iter().map(|(n, _)| {
        let (d, name, labels) = (&d, run.name(n), run.labels());
        async move {
            d.create_network(NetworkCreateRequest { name: name.clone(), labels: Some(labels), ..Default::default() })
                .await
                .map_err(|e| Error::failure(format!("creating network {name}: {e}")))?;
            Ok::<_, Error>((n.clone(), name))
        }
    });
    let vols = repo.compose.volumes.iter().map(|(v, _)| {
        let (d, name, labels) = (&d, run.name(v), run.labels());
        async move {
            d.create_volume(VolumeCreateRequest { name: Some(name.clone()), labels: Some(labels), ..Default::default() })
                .await
                .map_err(|e| Error::failure(format!("creating volume {name}: {e}")))?;
            Ok::<_, Error>((v.clone(), name))
        }
    });
    let (nets, vols) = tokio::join!(futures_util::future::join_all(nets), futures_util::future::join_all(vols));
    for r in nets {
        let (n, name) = r?;
        run.networks.insert(n, name);
    }
    let volumes: BTreeMap<String, String> = vols.into_iter().collect::<Result<_, _>>()?;

    // 2.-4. Images, start, readiness. What needs no build (Postgres,
    // Redis) starts meanwhile, so its initialisation overlaps the builds.
    let (builder, why) = buildkit::choose(&d, o.builder).await;
    eprintln!("verify: images built with {why}");
    let fallback = o.builder == Choice::Auto;
    let (probe_image, probe_bin) = probe::ensure_image(&d, &repo.root, builder).await?;
    let prebuilt: Vec<&Service> = order
        .iter()
        .copied()
        .filter(|s| s.build.is_none() && s.depends_on.iter().all(|(x, _)| repo.compose.service(x).is_some_and(|x| x.build.is_none())))
        .collect();
    let pulled = pulled_images(&d, &order).await?;
    let rest: Vec<&Service> = order.iter().copied().filter(|s| !prebuilt.iter().any(|p| p.name == s.name)).collect();
    let targets: Vec<Target> = order.iter().filter_map(|s| probe::target(repo, s)).collect();
    // Readiness: every container answers its own protocol, from inside.
    let waits = |started: Vec<(String, String)>| {
        let (d, run, image, targets) = (&d, &*run, &probe_image, &targets);
        async move {
            let w = targets.iter().filter_map(|tg| {
                let cid = started.iter().find(|(n, _)| *n == tg.service)?.1.clone();
                Some(async move { (tg.service.clone(), probe::wait_ready(d, run, image, tg, &cid, o.timeout).await) })
            });
            futures_util::future::join_all(w).await
        }
    };
    // Two lines of work at once. Early: start what needs no build and wait
    // for it to answer. Late: build the images, create the containers
    // meanwhile allowed (creation has no order), start them level by level
    // of depends_on once the early ones run, and wait for them to answer.
    let (early_started, gate) = tokio::sync::oneshot::channel::<()>();
    let early = async {
        let started = start_levels(repo, run, &prebuilt, &pulled, &volumes, async {}).await?;
        let _ = early_started.send(());
        let ready = waits(started.clone()).await;
        Ok::<_, Error>((started, ready))
    };
    let late = async {
        let mut images = pulled.clone();
        images.extend(build_images(&d, repo, &order, builder, fallback).await?);
        let built_at = t.elapsed();
        let started = start_levels(repo, run, &rest, &images, &volumes, async {
            let _ = gate.await;
        })
        .await?;
        let started_at = t.elapsed();
        let ready = waits(started.clone()).await;
        Ok::<_, Error>((started, ready, built_at, started_at))
    };
    let ((early, early_ready), (late, late_ready, built_at, started_at)) = tokio::try_join!(early, late)?;
    run.containers.extend(early);
    run.containers.extend(late);
    // The phases as seen on the late line (the one that ends last): the
    // early line runs inside them.
    phases.push("images", built_at);
    phases.push("start", started_at.saturating_sub(built_at));
    phases.push("ready", t.elapsed().saturating_sub(started_at));
    let mut nginx_port = None;
    if let Some(cid) = run.containers.get("nginx") {
        let info = d.inspect_container(cid, None::<q::InspectContainerOptions>).await.ok();
        nginx_port = info
            .and_then(|i| i.network_settings?.ports?.get("443/tcp").cloned().flatten())
            .and_then(|b| b.first()?.host_port.clone())
            .and_then(|p| p.parse::<u16>().ok());
    }
    let ready: HashMap<String, Result<u128, String>> = early_ready.into_iter().chain(late_ready).collect();
    let mut not_ready = vec![];
    for tg in &targets {
        match &ready[&tg.service] {
            Ok(ms) => eprintln!("  ready  {:<12} {:.1}s", tg.service, *ms as f64 / 1000.0),
            Err(why) => {
                let logs = docker::logs(&d, &run.containers[&tg.service], 15).await;
                not_ready.push(format!("{} never became ready: {}\n    last log lines of {}:\n{}", tg.service, why, tg.service, indent(&logs)));
            }
        }
    }
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

/// Creates every container of `batch` at once (creation has no order),
/// then, once `gate` is through, starts them level by level of depends_on
/// (a service after what it depends on); one level starts together.
async fn start_levels(
    repo: &Repo,
    run: &Run,
    batch: &[&Service],
    images: &HashMap<String, String>,
    volumes: &BTreeMap<String, String>,
    gate: impl std::future::Future<Output = ()>,
) -> Result<Vec<(String, String)>, Error> {
    let mut depth: HashMap<&str, usize> = HashMap::new();
    for s in batch {
        let dd = s.depends_on.iter().filter_map(|(x, _)| depth.get(x.as_str())).max().map_or(0, |m| m + 1);
        depth.insert(&s.name, dd);
    }
    let creates = batch.iter().map(|s| async move { Ok::<_, Error>((s.name.clone(), create_container(repo, run, s, &images[&s.name], volumes).await?)) });
    let mut created = vec![];
    for r in futures_util::future::join_all(creates).await {
        created.push(r?);
    }
    gate.await;
    let levels = depth.values().max().map_or(0, |m| m + 1);
    for level in 0..levels {
        let starts = created.iter().filter(|(n, _)| depth[n.as_str()] == level).map(|(n, cid)| async move {
            run.d.start_container(cid, None::<q::StartContainerOptions>).await.map_err(|e| Error::failure(format!("starting `{n}`: {e}")))
        });
        for r in futures_util::future::join_all(starts).await {
            r?;
        }
    }
    Ok(created)
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
async fn build_images(d: &Docker, repo: &Repo, order: &[&Service], builder: Builder, fallback: bool) -> Result<HashMap<String, String>, Error> {
    let mut jobs = vec![];
    for s in order {
        let Some(b) = &s.build else { continue };
        let ctx = repo.root.join(&b.context);
        let tar = docker::context_tar(&ctx, &b.dockerfile)?;
        let args: HashMap<String, String> = b.args.iter().cloned().collect();
        jobs.push(async move {
            // The hash covers the context (Dockerfile included), the
            // arguments and the identity of the base images they name; it
            // does not depend on the builder, so either finds the other's.
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
            if docker::image_exists(d, &tag).await {
                eprintln!("  image  {:<12} cached ({tag})", s.name);
                return (s.name.clone(), tag, Ok(false));
            }
            eprintln!("  image  {:<12} building with {}", s.name, if builder == Builder::BuildKit { "BuildKit" } else { "the classic builder" });
            let t = Instant::now();
            // One line per finished step (BuildKit); the builder's own
            // bookkeeping steps ([internal] ...) are left out.
            let name = s.name.clone();
            let mut on_step = move |st: &buildkit::Step| {
                if st.name.starts_with("[internal]") {
                    return;
                }
                let how = match (&st.error, st.cached) {
                    (Some(e), _) => format!("FAILED: {e}"),
                    (None, true) => "cached".to_string(),
                    (None, false) => format!("{:.1}s", st.seconds),
                };
                eprintln!("  image  {name:<12} {} {how}", st.name);
            };
            // No build label: the hash is in the tag, and a LABEL is one
            // more layer commit (seconds on fuse-overlayfs, classic builder).
            let r = buildkit::build_image(d, builder, fallback, &tag, tar, &b.dockerfile, &args, HashMap::new(), &mut on_step).await;
            let r = r.map(|_| {
                eprintln!("  image  {:<12} built in {:.1}s ({tag})", s.name, t.elapsed().as_secs_f64());
                true
            });
            (s.name.clone(), tag, r)
        });
    }
    let mut images = HashMap::new();
    let mut failed = vec![];
    for (name, tag, r) in futures_util::future::join_all(jobs).await {
        match r {
            Ok(built) => {
                if built {
                    docker::remove_older_tags(d, &tag).await;
                }
                images.insert(name, tag);
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
