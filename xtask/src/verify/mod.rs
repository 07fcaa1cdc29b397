//! `verify`: builds the images, starts the stack in a world of its own
//! (networks, volumes and containers named and labelled with a run id),
//! and proves from inside each service's network namespace that it reaches
//! exactly what its networks say it should. See ARCHITECTURE.md.

mod attach;
pub mod datalayer;
mod feed;
pub mod images;
pub mod load;
pub mod matrix;
pub mod paths;
pub mod pgcow;
pub mod pgseed;
pub mod probe;
pub mod probe_build;
pub mod report;
pub mod run;
pub mod stack;
pub mod swarm;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::check;
use crate::diag::{name_one_of, Diagnostic, Error};
use crate::docker::buildkit::{self, Builder, Choice};
use crate::docker::{self, RUN_LABEL};
use crate::model::compose::Service;
use crate::model::repo::Repo;
use images::pulled_images;
use matrix::{Cell, Target};
use report::indent;
use run::{Phases, Run};
use stack::start_order;

use crate::cli::Format;
pub use crate::cli::VerifyArgs as Opts;
use crate::diag::Exit;

pub async fn verify(root: &Path, o: Opts) -> Result<Exit, Error> {
    run::trace(format_args!("start"));
    let t_all = Instant::now();
    let mut phases = Phases::default();
    let t = Instant::now();
    crate::plan::certs::ensure(root, "verify")?;
    // Recover an interrupted change and read a whole one, not half of it.
    let mut repo = {
        let _lock = crate::plan::txn::lock_shared(root)?;
        Repo::load(root)?
    };
    if !preflight(&repo, &o)? {
        return Ok(Exit::Findings);
    }
    if o.engine == crate::cli::Engine::Swarm {
        phases.add("check", t);
        return swarm::verify(repo, o, phases, t_all).await;
    }
    // The probe, built while Compose reads the stack and the networks are made.
    let probe_build = probe::ProbeBuild::start(&repo.root);
    // The stack Compose would run, read by Compose itself; every key verify
    // does not model is refused here, before anything is created.
    let stack = load::load(&repo)?;
    run::trace(format_args!("stack read (docker compose config)"));
    repo.compose = load::view(&repo.compose, &stack);
    phases.add("check", t);
    if o.init_swarm {
        return Err(
            Diagnostic::error("--init-swarm makes a swarm for `--engine swarm` only")
                .fix("add `--engine swarm`, or drop --init-swarm"),
        );
    }
    let d = docker::connect().await?;
    run::trace(format_args!("engine connected"));
    let swept = docker::sweep(&d, None).await;
    run::trace(format_args!("earlier runs swept"));
    if swept > 0 {
        eprintln!("verify: removed {swept} object(s) left by an earlier interrupted run");
    }
    let mut run = Run::new(&repo, d.clone());
    run.stack = stack;
    run.keep = o.keep;
    eprintln!(
        "verify: run {} ({} services)",
        run.id,
        repo.compose.services.len()
    );

    let mut signals = run::Signals::listen()?;
    let (result, interrupted) = tokio::select! {
        r = body(&repo, &mut run, &o, probe_build, &mut phases) => (r, false),
        e = signals.recv() => (Err(e), true),
    };
    // The report is out; what is left is removal, and the command exits
    // only when nothing of this run is left.
    run::trace(format_args!("report printed"));
    let t = Instant::now();
    run.reaped().await;
    run::trace(format_args!("probe containers removed"));
    if o.keep && result.is_ok() {
        eprintln!(
            "verify: --keep: the stack of run {} is still up. Remove it with:",
            run.id
        );
        // `docker volume prune` passes over a volume with driver options
        // (the copy-on-write Postgres data, pgcow.rs): each is named to `rm`.
        let f = format!("--filter label={RUN_LABEL}={}", run.id);
        eprintln!("  docker ps -aq {f} | xargs -r docker rm -f && docker network prune -f {f} && docker volume ls -q {f} | xargs -r docker volume rm");
    } else {
        // Checked, not assumed: under load the daemon refused a network
        // whose last endpoint it was still releasing (24 services, 2 cores).
        // Interrupted, a second clear look: a create that was in flight may
        // land after the first. (A run that ended by itself has nothing in
        // flight.)
        let left = docker::sweep_until_gone(
            &d,
            &run.id,
            Duration::from_secs(5),
            if interrupted { 2 } else { 1 },
        )
        .await;
        if !left.is_empty() {
            eprintln!("verify: warning: the daemon refused to remove {} object(s) of run {} after 5 s of retries: {}", left.len(), run.id, left.join(", "));
            eprintln!("  fix: `docker network rm <name>` (a network that \"has active endpoints\" with no container on it holds a stale endpoint inside the daemon: restarting the daemon clears it); the next verify retries them");
        }
    }
    phases.add("cleanup", t);
    phases.finish(result, t_all)
}

/// The static check must be clean and every --only name a service.
/// False (after printing the findings) when the check is not clean.
fn preflight(repo: &Repo, o: &Opts) -> Result<bool, Error> {
    let findings = check::verify_findings(check::run(repo)?);
    if !findings.is_empty() {
        eprint!("{}", check::render_human(&findings));
        eprintln!("verify: the static check failed; fix the findings above first");
        return Ok(false);
    }
    let names: Vec<&str> = repo
        .compose
        .services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    if let Some(s) = o.only.iter().find(|s| !names.contains(&s.as_str())) {
        return Err(Diagnostic::error(format!("--only `{s}`: no such service"))
            .fix(name_one_of(s, &names, "services")));
    }
    Ok(true)
}

/// The services that run: the --only ones (or all) and what they depend
/// on, plus the infrastructure every matrix targets; dependencies first.
fn services_to_run<'a>(repo: &'a Repo, o: &Opts) -> Vec<&'a Service> {
    let wanted: Vec<String> = if o.only.is_empty() {
        repo.compose
            .services
            .iter()
            .map(|s| s.name.clone())
            .collect()
    } else {
        let mut w = o.only.clone();
        w.extend(
            ["postgres", "redis", "nginx"]
                .iter()
                .filter(|n| repo.compose.service(n).is_some())
                .map(|s| s.to_string()),
        );
        w
    };
    start_order(&repo.compose.services, &wanted)
}

async fn body(
    repo: &Repo,
    run: &mut Run,
    o: &Opts,
    probe_build: probe::ProbeBuild,
    phases: &mut Phases,
) -> Result<Exit, Error> {
    let order = services_to_run(repo, o);
    // 1. Networks and volumes, all at once; the builder and the probe's
    // image meanwhile.
    let t = Instant::now();
    let d = run.d.clone();
    let probe = async {
        let (builder, why) = buildkit::choose(&d, o.builder).await;
        eprintln!("verify: images built with {why}");
        let image = probe::ensure_image(&d, &repo.root, probe_build, builder).await;
        run::trace(format_args!("probe image there"));
        (builder, image)
    };
    let (volumes, (builder, probe_image)) =
        tokio::join!(stack::create_networks_and_volumes(repo, run), probe);
    let (volumes, (probe_image, probe_bin)) = (volumes?, probe_image?);
    run::trace(format_args!("networks and volumes created"));
    let fallback = o.builder == Choice::Auto;
    // 2-4. Images, start, readiness.
    let targets: Vec<Target> = order
        .iter()
        .filter_map(|s| matrix::target(repo, s))
        .collect();
    let sources = row_sources(&order, o);
    let (started, ready, built_at, started_at) = start_stack(&Start {
        repo,
        run,
        order: &order,
        volumes: &volumes,
        probe_image: &probe_image,
        targets: &targets,
        builder,
        fallback,
        timeout: o.timeout,
        no_seed: o.no_seed,
        sources: &sources,
        t,
    })
    .await?;
    run.containers.extend(started);
    // The phases as seen on the line of work that ends last (the one that
    // builds); Postgres and Redis start and get ready inside them.
    phases.push("images", built_at);
    phases.push("start", started_at.saturating_sub(built_at));
    phases.push("ready", t.elapsed().saturating_sub(started_at));
    let nginx_port = stack::nginx_port(run).await;
    if !report_ready(run, &targets, ready).await {
        return Ok(Exit::Findings);
    }
    let (cells, data) = probe_phase(
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
    write_report(run, o, &cells, &data)
}

/// 5-7, for both engines: the matrix from each backend service's namespace,
/// the public routes through NGINX from the host, and the data-layer cells
/// (own database and keys allowed, others' refused); secrets masked.
#[allow(clippy::too_many_arguments)]
async fn probe_phase(
    run: &Run,
    repo: &Repo,
    o: &Opts,
    order: &[&Service],
    targets: &[Target],
    probe_image: &str,
    probe_bin: &Path,
    nginx_port: Option<u16>,
    phases: &mut Phases,
) -> Result<(Vec<Cell>, Vec<datalayer::DataCell>), Error> {
    let t = Instant::now();
    let names = row_sources(order, o);
    let sources: Vec<&Service> = order
        .iter()
        .copied()
        .filter(|s| names.contains(&s.name.as_str()))
        .collect();
    // The addresses and host ports every path is tried at.
    run::trace(format_args!("probes phase"));
    let topo = paths::topology(run).await;
    run::trace(format_args!("topology read"));
    if let Some(fed) = run.topology.get().filter(|fed| **fed != topo) {
        restarted(run, fed, &topo).await;
    }
    let (mut cells, mut data) =
        probe_rows(repo, &sources, targets, &topo, probe_image, &|_| run).await?;
    run::trace(format_args!("every row done"));
    if let Some(port) = nginx_port {
        cells.extend(probe::nginx_routes(repo, probe_bin, port, order));
    }
    for c in data.iter_mut() {
        c.detail = run.mask(&c.detail);
    }
    run::trace(format_args!("NGINX routes done"));
    phases.add("probes", t);
    attach_logs_and_mask(run, &mut cells).await;
    run::trace(format_args!("logs of failed cells read"));
    Ok((cells, data))
}

/// A container restarted (or changed its addresses) since the rows were
/// fed: what their probes answered early may no longer hold. Each fed row's
/// probe is dropped and the probes phase makes a new one, with the
/// addresses read now.
async fn restarted(run: &Run, fed: &paths::Topology, now: &paths::Topology) {
    let changed: Vec<&str> = fed
        .runs
        .keys()
        .chain(now.runs.keys())
        .filter(|s| fed.runs.get(*s) != now.runs.get(*s) || fed.addrs.get(*s) != now.addrs.get(*s))
        .map(String::as_str)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let changed: Vec<String> = changed.iter().map(|s| format!("`{s}`")).collect();
    eprintln!(
        "verify: {} restarted while the stack started: every row is probed again",
        changed.join(", ")
    );
    for row in run.feed.abandon().await {
        let p = run
            .row_probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&row);
        if let Some(p) = p {
            run.reap(&p.id);
        }
    }
}

/// One probe container per source, all at once, each in the run (the
/// engine) that holds the source's container: its matrix row and its
/// data-layer cells.
async fn probe_rows<'r>(
    repo: &Repo,
    sources: &[&Service],
    targets: &[Target],
    topo: &paths::Topology,
    probe_image: &str,
    run_of: &dyn Fn(&str) -> &'r Run,
) -> Result<(Vec<Cell>, Vec<datalayer::DataCell>), Error> {
    let rows = sources.iter().map(|src| async move {
        let run = run_of(&src.name);
        let planned = datalayer::plan(repo, src);
        let extra = data_specs(&planned);
        let (row, results, out) =
            probe::matrix_row(&run.d, run, repo, probe_image, src, targets, &extra, topo).await?;
        Ok::<_, Error>((row, datalayer::fill(planned, &results, &out)))
    });
    let (mut cells, mut data) = (vec![], vec![]);
    for r in futures_util::future::join_all(rows).await {
        let (row, d) = r?;
        cells.extend(row);
        data.extend(d);
    }
    Ok((cells, data))
}

/// The data-layer cells' specs, each with the store it is about (the
/// spec's host is the store's service name).
fn data_specs(planned: &[(datalayer::DataCell, String)]) -> Vec<(String, String)> {
    planned
        .iter()
        .map(|(c, s)| (c.store.as_str().to_string(), s.clone()))
        .collect()
}

type Ready = Vec<(String, Result<u128, String>)>;

/// The services whose namespaces the matrix is probed from: every one
/// (infrastructure too: what Postgres, Redis and NGINX can reach is part of
/// the proof), or the --only ones.
fn row_sources<'a>(order: &[&'a Service], o: &Opts) -> Vec<&'a str> {
    order
        .iter()
        .filter(|s| o.only.is_empty() || o.only.contains(&s.name))
        .map(|s| s.name.as_str())
        .collect()
}

/// Every service on its own line of work, as Compose orders them
/// (depends_on means "started first"): its image (pulled, or built now,
/// all builds at once), its container (created at once; Postgres from its
/// cached data directory), its start once what it depends on has started,
/// then its readiness wait. A service waits for nothing else: NGINX need
/// not wait for Postgres, nor a built service for another's build.
/// Returns the containers, the readiness of each target, and when (since
/// `t`, the start of the images phase) the last build and the last start
/// were done.
/// What starting the stack reads: the run, what runs in which order, and
/// the options that matter to it.
struct Start<'a> {
    repo: &'a Repo,
    run: &'a Run,
    order: &'a [&'a Service],
    volumes: &'a BTreeMap<String, String>,
    probe_image: &'a str,
    targets: &'a [Target],
    builder: Builder,
    fallback: bool,
    timeout: u64,
    no_seed: bool,
    /// The services whose matrix rows are probed (their probes made ahead).
    sources: &'a [&'a str],
    /// The start of the images phase.
    t: Instant,
}

/// What the lines of work tell each other: who has started, each
/// container once created, and when the last build and start were done.
struct Lines<'a> {
    started: HashMap<&'a str, tokio::sync::watch::Sender<bool>>,
    created: HashMap<&'a str, tokio::sync::watch::Sender<Option<String>>>,
    timing: std::sync::Mutex<(Duration, Duration)>,
}

impl Lines<'_> {
    /// The container of `name` once it exists (`network_mode: service:x`).
    async fn container_of(&self, name: &str) -> Option<String> {
        let mut rx = self.created.get(name)?.subscribe();
        let _ = rx.wait_for(|c| c.is_some()).await;
        let id = rx.borrow().clone();
        id
    }
    fn mark(&self, built: bool, t: Instant) {
        let mut tm = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        if built {
            tm.0 = tm.0.max(t.elapsed());
        } else {
            tm.1 = tm.1.max(t.elapsed());
        }
    }
}

type Line = ((String, String), Option<(String, Result<u128, String>)>);

async fn start_stack(
    st: &Start<'_>,
) -> Result<(Vec<(String, String)>, Ready, Duration, Duration), Error> {
    let (d, order) = (&st.run.d, st.order);
    let pulled = pulled_images(d, order).await?;
    // How many builds know whether they must build, and whether any must.
    let (decided_tx, decided) = tokio::sync::watch::channel((0usize, false));
    let decide = |building: bool| {
        decided_tx.send_modify(|(n, any)| {
            *n += 1;
            *any |= building;
        })
    };
    let seeding = pgseed::Seeding {
        probe_image: st.probe_image,
        timeout: st.timeout,
        decided,
        builds: order.iter().filter(|s| s.build.is_some()).count(),
    };
    let seeding = (!st.no_seed).then_some(&seeding);
    // Builds are shared: a failed one is reported with every other failure.
    let decide = &decide;
    let builds: HashMap<String, _> = order
        .iter()
        .filter(|s| s.build.is_some())
        .map(|s| {
            (
                s.name.clone(),
                futures_util::FutureExt::shared(Box::pin(async move {
                    images::build_one(d, st.repo, s, st.builder, st.fallback, decide)
                        .await
                        .1
                })),
            )
        })
        .collect();
    let lines = Lines {
        started: order
            .iter()
            .map(|s| (s.name.as_str(), tokio::sync::watch::channel(false).0))
            .collect(),
        created: order
            .iter()
            .map(|s| (s.name.as_str(), tokio::sync::watch::channel(None).0))
            .collect(),
        timing: std::sync::Mutex::new((Duration::ZERO, Duration::ZERO)),
    };
    let work = order.iter().map(|s| {
        let (builds, pulled, lines) = (&builds, &pulled, &lines);
        async move {
            let image = match builds.get(&s.name) {
                Some(b) => {
                    let tag = b
                        .clone()
                        .await
                        .map_err(|why| images::build_failed(st.repo, &[(&s.name, why)]))?;
                    lines.mark(true, st.t);
                    tag
                }
                None => pulled[&s.name].clone(),
            };
            line(st, lines, s, &image, seeding).await
        }
    });
    let all = futures_util::future::try_join_all(work);
    let results = match tokio::try_join!(all, feed_rows(st, &lines)) {
        Ok((r, ())) => r,
        Err(e) => {
            // A failed build: report every failed build, not just the first.
            let done = builds.iter().map(|(n, b)| {
                let b = b.clone();
                async move { (n.as_str(), b.await) }
            });
            let mut failed: Vec<(&str, String)> = futures_util::future::join_all(done)
                .await
                .into_iter()
                .filter_map(|(n, r)| Some((n, r.err()?)))
                .collect();
            failed.sort();
            return Err(if failed.len() > 1 {
                images::build_failed(st.repo, &failed)
            } else {
                e
            });
        }
    };
    let (built_at, started_at) = *lines.timing.lock().unwrap_or_else(|e| e.into_inner());
    let containers = results.iter().map(|(c, _)| c.clone()).collect();
    let ready = results.into_iter().filter_map(|(_, r)| r).collect();
    Ok((containers, ready, built_at, started_at))
}

/// Once every container has started: the addresses every path is tried at
/// (kept in the run for the probes phase) and each row's specs, fed to its
/// probe as soon as it runs (verify/feed.rs). Every name and address is
/// final then: the engine's DNS has each container's names, the networks
/// their endpoints, the host its published ports.
async fn feed_rows(st: &Start<'_>, lines: &Lines<'_>) -> Result<(), Error> {
    for tx in lines.started.values() {
        // Ends when that service has started (or the stack failed and
        // this future is dropped).
        let _ = tx.subscribe().wait_for(|up| *up).await;
    }
    let containers: BTreeMap<String, String> = lines
        .created
        .iter()
        .filter_map(|(n, tx)| Some((n.to_string(), tx.borrow().clone()?)))
        .collect();
    let run = st.run;
    let topo = paths::topology_of(run, &containers).await;
    run::trace(format_args!("every container started, topology read"));
    if topo.runs.len() != containers.len() {
        // One has exited or restarts (a one-shot job, a crash under a
        // restart policy): its names and addresses are not final yet. The
        // rows get their specs at the probes phase, as a whole.
        return Ok(());
    }
    let plans = st
        .order
        .iter()
        .filter(|s| st.sources.contains(&s.name.as_str()))
        .map(|s| {
            let extra = data_specs(&datalayer::plan(st.repo, s));
            let plan = probe::feed_plan(st.repo, run, &topo, s, st.targets, &extra);
            (s.name.clone(), plan)
        })
        .collect();
    let _ = run.topology.set(topo);
    run.feed.plan(plans).await;
    run::trace(format_args!("rows fed"));
    Ok(())
}

/// One service's line of work once its image is there: its container
/// (in the namespace it shares, once that exists), its row's probe made
/// ahead, its start once what it depends on has started (and is healthy or
/// completed, as the condition says), then its readiness.
async fn line(
    st: &Start<'_>,
    lines: &Lines<'_>,
    s: &Service,
    image: &str,
    seeding: Option<&pgseed::Seeding<'_>>,
) -> Result<Line, Error> {
    let (run, d) = (st.run, &st.run.d);
    let svc = run.stack.service(&s.name);
    let ns = match svc.and_then(|v| v.shares_namespace_of()) {
        Some(x) => lines.container_of(x).await,
        None => None,
    };
    run::trace(format_args!("{} image {}", s.name, image));
    let cid = stack::create(st.repo, run, s, image, st.volumes, seeding, ns.as_deref()).await?;
    run::trace(format_args!("{} created", s.name));
    lines.created[s.name.as_str()].send_replace(Some(cid.clone()));
    // The row's probe is made beside the wait and the start, not before
    // them: it only needs the container to exist.
    let ahead = async {
        if st.sources.contains(&s.name.as_str()) {
            let row = probe::precreate_row(d, run, st.probe_image, s, &cid, st.targets, st.timeout)
                .await?;
            return Ok::<_, Error>(Some(row));
        }
        Ok(None)
    };
    let go = async {
        for (dep, _) in &s.depends_on {
            if let Some(tx) = lines.started.get(dep.as_str()) {
                let mut rx = tx.subscribe();
                // The sender lives as long as `lines`: this ends when the
                // dependency has started (or the whole stack fails).
                let _ = rx.wait_for(|up| *up).await;
            }
            let cond = svc
                .and_then(|v| v.depends_on.iter().find(|(d, _)| d == dep))
                .map(|(_, c)| c.as_str());
            let dep_cid = lines
                .created
                .get(dep.as_str())
                .and_then(|tx| tx.borrow().clone());
            if let (Some(cond), Some(dep_cid)) = (cond, dep_cid) {
                stack::wait_condition(st.repo, run, &s.name, dep, &dep_cid, cond, st.timeout)
                    .await?;
            }
        }
        run::trace(format_args!("{} starting", s.name));
        stack::start(run, s, &cid).await?;
        run::trace(format_args!("{} started", s.name));
        lines.started[s.name.as_str()].send_replace(true);
        lines.mark(false, st.t);
        Ok::<_, Error>(())
    };
    let (row_probe, started) = tokio::join!(ahead, go);
    run::trace(format_args!("{} started, its row probe created", s.name));
    let mut row_probe = row_probe?;
    started?;
    // Readiness: by the row's own probe when the service is a source too
    // (`probe row`), else by a probe of its own.
    let ready = match st.targets.iter().find(|tg| tg.service == s.name) {
        Some(tg) => Some((
            s.name.clone(),
            match &mut row_probe {
                Some(p) => {
                    let input = p.input.take();
                    let open = async {
                        if let Some(i) = input {
                            run.feed.open(&s.name, i).await;
                        }
                    };
                    probe::readiness(d, tg, &cid, &p.id, &mut p.io, st.timeout, open).await
                }
                None => probe::wait_ready(d, run, st.probe_image, tg, &cid, st.timeout).await,
            },
        )),
        None => None,
    };
    if let Some(p) = row_probe {
        run.row_probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(s.name.clone(), p);
    }
    run::trace(format_args!("{} ready", s.name));
    Ok(((s.name.clone(), cid), ready))
}

/// Prints how long each target took to answer; reports the ones that never
/// did, with their last log lines. True when all are ready.
async fn report_ready(run: &Run, targets: &[Target], ready: Ready) -> bool {
    let ready: HashMap<String, Result<u128, String>> = ready.into_iter().collect();
    let mut not_ready = vec![];
    for tg in targets {
        match &ready[&tg.service] {
            Ok(ms) => eprintln!("  ready  {:<12} {:.1}s", tg.service, *ms as f64 / 1000.0),
            Err(why) => {
                let logs = docker::logs(&run.d, &run.containers[&tg.service], 15).await;
                not_ready.push(format!(
                    "{} never became ready: {}\n    last log lines of {}:\n{}",
                    tg.service,
                    why,
                    tg.service,
                    indent(&logs)
                ));
            }
        }
    }
    for n in &not_ready {
        eprintln!("verify: {}", run.mask(n));
    }
    not_ready.is_empty()
}

/// The logs of the containers in failing cells; secrets masked everywhere.
async fn attach_logs_and_mask(run: &Run, cells: &mut [Cell]) {
    // A path that leaks says all in its address; logs help a broken service.
    for c in cells
        .iter_mut()
        .filter(|c| !c.matches() && c.via.is_empty())
    {
        for who in [&c.source, &c.target] {
            if let Some(id) = run.containers.get(who.as_str()) {
                let l = docker::logs(&run.d, id, 8).await;
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
}

fn write_report(
    run: &Run,
    o: &Opts,
    cells: &[Cell],
    data: &[datalayer::DataCell],
) -> Result<Exit, Error> {
    let failed = cells.iter().filter(|c| !c.matches()).count()
        + data.iter().filter(|c| !c.matches()).count();
    if o.format == Format::Json {
        println!("{}", report::render_json(&run.id, cells, data));
    } else {
        print!("{}", report::render_matrix(cells));
        print!("{}", datalayer::render_text(data));
    }
    if let Some(j) = &o.junit {
        std::fs::write(j, report::render_junit(cells, data)).map_err(|e| {
            Diagnostic::error(format!("writing the JUnit report: {e}"))
                .at_path(j)
                .fix("give --junit a path in a folder you can write")
        })?;
    }
    eprintln!(
        "verify: {} probe(s) ({} data-layer), {} mismatch(es)",
        cells.len() + data.len(),
        data.len(),
        failed
    );
    Ok(Exit::findings_unless(failed == 0))
}
