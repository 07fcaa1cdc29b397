//! `verify`: builds the images, starts the stack in a world of its own
//! (networks, volumes and containers named and labelled with a run id),
//! and proves from inside each service's network namespace that it reaches
//! exactly what its networks say it should. See ARCHITECTURE.md.

pub mod images;
pub mod matrix;
pub mod probe;
pub mod report;
pub mod run;
pub mod stack;
pub mod swarm;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};


use crate::check;
use crate::model::compose::Service;
use crate::docker::{self, RUN_LABEL};
use matrix::{Cell, Target};
use run::{is_secret_name, Phases, Run};
use images::{build_images, pulled_images};
use stack::{start_levels, start_order};
use report::indent;
use crate::model::repo::Repo;
use crate::diag::{did_you_mean, Diagnostic, Error};

pub use crate::cli::VerifyArgs as Opts;
use crate::cli::Format;
use crate::diag::Exit;

pub async fn verify(root: &Path, o: Opts) -> Result<Exit, Error> {
    let t_all = Instant::now();
    let mut phases = Phases::default();
    let t = Instant::now();
    // Recover an interrupted change and read a whole one, not half of it.
    let repo = {
        let _lock = crate::plan::txn::lock_shared(root)?;
        Repo::load(root)?
    };
    let findings = check::run(&repo)?;
    if !findings.is_empty() {
        eprint!("{}", check::render_human(&findings));
        eprintln!("verify: the static check failed; fix the findings above first");
        return Ok(Exit::Findings);
    }
    for s in &o.only {
        if repo.compose.service(s).is_none() {
            let names: Vec<&str> = repo.compose.services.iter().map(|s| s.name.as_str()).collect();
            let e = Diagnostic::error(format!("--only `{s}`: no such service"));
            return Err(match did_you_mean(s, &names) {
                Some(near) => e.fix(format!("did you mean `{near}`?")),
                None => e.fix(format!("name one of: {}", names.join(", "))),
            });
        }
    }
    phases.add("check", t);
    if o.engine == crate::cli::Engine::Swarm {
        return swarm::verify(repo, o, phases, t_all).await;
    }
    if o.init_swarm {
        return Err(Diagnostic::error("--init-swarm makes a swarm for `--engine swarm` only").fix("add `--engine swarm`, or drop --init-swarm"));
    }
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
        .map_err(|e| Diagnostic::error(format!("cannot install a SIGTERM handler: {e}")))?;
    let result = tokio::select! {
        r = body(&repo, &mut run, &o, &mut phases) => r,
        _ = tokio::signal::ctrl_c() => Err(Diagnostic::error("interrupted (SIGINT)")),
        _ = term.recv() => Err(Diagnostic::error("interrupted (SIGTERM)")),
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

/// The services that run: the --only ones (or all) and what they depend
/// on, plus the infrastructure every matrix targets; dependencies first.
fn services_to_run<'a>(repo: &'a Repo, o: &Opts) -> Vec<&'a Service> {
    let wanted: Vec<String> = if o.only.is_empty() {
        repo.compose.services.iter().map(|s| s.name.clone()).collect()
    } else {
        let mut w = o.only.clone();
        w.extend(["postgres", "redis", "nginx"].iter().filter(|n| repo.compose.service(n).is_some()).map(|s| s.to_string()));
        w
    };
    start_order(&repo.compose.services, &wanted)
}

async fn body(repo: &Repo, run: &mut Run, o: &Opts, phases: &mut Phases) -> Result<Exit, Error> {
    let order = services_to_run(repo, o);
    // 1-2. Networks, volumes and images; what needs no build starts meanwhile.
    let t = Instant::now();
    let volumes = stack::create_networks_and_volumes(repo, run).await?;
    let (probe_image, probe_bin) = probe::ensure_image(&run.d, &repo.root).await?;
    let images = start_while_building(repo, run, &order, &volumes).await?;
    phases.add("images", t);
    // 3. The rest, level by level of depends_on.
    let t = Instant::now();
    let rest: Vec<&Service> = order.iter().copied().filter(|s| !run.containers.contains_key(&s.name)).collect();
    let late = start_levels(repo, run, &rest, &images, &volumes).await?;
    run.containers.extend(late);
    let nginx_port = stack::nginx_port(run).await;
    phases.add("start", t);
    // 4. Readiness: every container answers its own protocol, from inside.
    let t = Instant::now();
    let targets: Vec<Target> = order.iter().filter_map(|s| matrix::target(repo, s)).collect();
    let all_ready = wait_ready(run, &probe_image, &targets, o.timeout).await;
    phases.add("ready", t);
    if !all_ready {
        return Ok(Exit::Findings);
    }
    // 5-6. The matrix from each backend service's namespace, and the public
    // routes through NGINX from the host.
    let t = Instant::now();
    let sources: Vec<&Service> = order.iter().copied().filter(|s| s.is_backend() && (o.only.is_empty() || o.only.contains(&s.name))).collect();
    let mut cells: Vec<Cell> = vec![];
    let rows = sources.iter().map(|src| probe::matrix_row(&run.d, run, repo, &probe_image, src, &targets));
    for row in futures_util::future::join_all(rows).await {
        cells.extend(row?);
    }
    if let Some(port) = nginx_port {
        cells.extend(probe::nginx_routes(repo, &probe_bin, port, &order));
    }
    phases.add("probes", t);
    attach_logs_and_mask(run, &mut cells).await;
    write_report(run, o, &cells)
}

/// Pulled images are resolved, the rest built, while the containers that
/// need no build (Postgres, Redis) start. Returns service -> image.
async fn start_while_building(repo: &Repo, run: &mut Run, order: &[&Service], volumes: &BTreeMap<String, String>) -> Result<HashMap<String, String>, Error> {
    let d = run.d.clone();
    let prebuilt: Vec<&Service> = order
        .iter()
        .copied()
        .filter(|s| s.build.is_none() && s.depends_on.iter().all(|(x, _)| repo.compose.service(x).is_some_and(|x| x.build.is_none())))
        .collect();
    let mut images = pulled_images(&d, order).await?;
    let (built, early) = {
        let (run_ref, images_ref): (&Run, &HashMap<String, String>) = (run, &images);
        tokio::join!(build_images(&d, repo, order), start_levels(repo, run_ref, &prebuilt, images_ref, volumes))
    };
    images.extend(built?);
    run.containers.extend(early?);
    Ok(images)
}

/// Waits for every target; reports the ones that never answered, with
/// their last log lines. True when all are ready.
async fn wait_ready(run: &Run, probe_image: &str, targets: &[Target], timeout: u64) -> bool {
    let waits = targets.iter().map(|tg| probe::wait_ready(&run.d, run, probe_image, tg, timeout));
    let ready = futures_util::future::join_all(waits).await;
    let mut not_ready = vec![];
    for (tg, r) in targets.iter().zip(ready) {
        match r {
            Ok(ms) => eprintln!("  ready  {:<12} {:.1}s", tg.service, ms as f64 / 1000.0),
            Err(why) => {
                let logs = docker::logs(&run.d, &run.containers[&tg.service], 15).await;
                not_ready.push(format!("{} never became ready: {}\n    last log lines of {}:\n{}", tg.service, why, tg.service, indent(&logs)));
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
    for c in cells.iter_mut().filter(|c| !c.matches()) {
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

fn write_report(run: &Run, o: &Opts, cells: &[Cell]) -> Result<Exit, Error> {
    let failed = cells.iter().filter(|c| !c.matches()).count();
    if o.format == Format::Json {
        println!("{}", report::render_json(&run.id, cells));
    } else {
        print!("{}", report::render_matrix(cells));
    }
    if let Some(j) = &o.junit {
        std::fs::write(j, report::render_junit(cells)).map_err(|e| Diagnostic::error(format!("{}: {e}", j.display())))?;
    }
    eprintln!("verify: {} probe(s), {} mismatch(es)", cells.len(), failed);
    Ok(Exit::findings_unless(failed == 0))
}
