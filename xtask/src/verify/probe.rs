//! Running the static probe (`probe/`): its binary and FROM-scratch image,
//! probe containers in a service's network namespace, readiness, one
//! matrix row per source, and the NGINX routes from the host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters as q;
use bollard::Docker;
use futures_util::StreamExt;

use super::attach::{self, Attached, Input};
use super::feed::{self, Taken};
use super::matrix::{self, env_of, pct, Cell, Outcome, Target};
use super::paths::{self, Topology};
use super::run::{trace, tracing, RowProbe, Run};
use crate::diag::{Diagnostic, Error};
use crate::docker::buildkit::{self, Builder};
use crate::docker::{self, engine_error, Tar, ENGINE_FIX, HASH_LABEL};
use crate::model::compose::Service;
use crate::model::repo::Repo;

/// The static probe's build (`probe_build`: cargo decides whether anything
/// is rebuilt; `XTASK_PROBE_BIN` names a prebuilt binary instead) on a
/// thread of its own, started early: cargo takes
/// about 0.1 s even when nothing changed, and the run has other work then
/// (Compose reading the stack, the networks being created). Dropped before
/// its result was taken (Compose refused the stack, the run was
/// interrupted), it kills cargo, which would otherwise build on after
/// verify exited, holding cargo's lock on the target directory.
pub struct ProbeBuild {
    rx: tokio::sync::oneshot::Receiver<Result<PathBuf, Error>>,
    child: Arc<Mutex<Option<Child>>>,
}

impl ProbeBuild {
    pub fn start(root: &Path) -> ProbeBuild {
        ProbeBuild::start_with(root, &super::probe_build::cargo())
    }

    fn start_with(root: &Path, cargo: &str) -> ProbeBuild {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let child = Arc::new(Mutex::new(None));
        if let Ok(p) = std::env::var("XTASK_PROBE_BIN") {
            let _ = tx.send(Ok(PathBuf::from(p)));
            return ProbeBuild { rx, child };
        }
        let mut stdout = match super::probe_build::spawn(root, cargo) {
            Ok(mut c) => {
                let out = c.stdout.take();
                *lock(&child) = Some(c);
                out
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return ProbeBuild { rx, child };
            }
        };
        let waited = Arc::clone(&child);
        std::thread::spawn(move || {
            // Read to the end without the lock (cargo closes its stdout as
            // it exits), then reap it under the lock, so a drop either
            // finds it running and kills it or finds it reaped.
            let mut out = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = std::io::Read::read_to_end(s, &mut out);
            }
            let status = lock(&waited).take().map(|mut c| c.wait());
            let result = match status {
                Some(status) => super::probe_build::finish(&out, status),
                None => Err(Diagnostic::error("the probe's build was stopped")),
            };
            let _ = tx.send(result);
        });
        ProbeBuild { rx, child }
    }

    async fn path(mut self) -> Result<PathBuf, Error> {
        (&mut self.rx).await.unwrap_or_else(|_| {
            Err(Diagnostic::error(
                "the probe's build ended without a result (its thread panicked)",
            ))
        })
    }
}

impl Drop for ProbeBuild {
    fn drop(&mut self) {
        // Not yet reaped, so its pid is still cargo's: kill is safe.
        if let Some(mut c) = lock(&self.child).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn lock(m: &Mutex<Option<Child>>) -> std::sync::MutexGuard<'_, Option<Child>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Returns the probe image's tag and the binary (also run on the host).
/// The image holds the repository's CA at `/etc/probe/ca.pem` (its tag is
/// the hash of both): copied into each probe container, it cost a mount of
/// the container's file system per row.
pub async fn ensure_image(
    d: &Docker,
    root: &Path,
    build: ProbeBuild,
    builder: Builder,
) -> Result<(String, PathBuf), Error> {
    let bin_path = build.path().await?;
    let bin = std::fs::read(&bin_path).map_err(|e| {
        Diagnostic::error(format!("reading the probe's executable: {e}"))
            .at_path(&bin_path)
            .fix("remove it and run verify again: it builds the probe anew")
    })?;
    let ca = std::fs::read(root.join(crate::plan::certs::TRUST)).unwrap_or_default();
    let hash = docker::sha256_hex(&[&bin, &ca]);
    let tag = format!("monorepo-local/probe:{}", &hash[..12]);
    if docker::image_exists(d, &tag).await {
        return Ok((tag, bin_path));
    }
    let mut tar = Tar::default();
    tar.file(
        "Dockerfile",
        b"FROM scratch\nCOPY probe /probe\nCOPY --chown=65534:65534 etc /etc\nUSER 65534:65534\nENTRYPOINT [\"/probe\"]\n",
        0o644,
        0,
    );
    tar.file("probe", &bin, 0o755, 0);
    tar.dir("etc/probe", 0o755, 65534);
    tar.file("etc/probe/ca.pem", &ca, 0o444, 65534);
    let labels = HashMap::from([(HASH_LABEL.to_string(), hash)]);
    buildkit::build_image(
        d,
        builder,
        true,
        &tag,
        tar.finish(),
        "Dockerfile",
        &HashMap::new(),
        labels,
        &mut |_| {},
    )
    .await
    .map_err(|log| {
        Diagnostic::error(format!("building the probe image failed:\n{log}")).fix(ENGINE_FIX)
    })?;
    Ok((tag, bin_path))
}

/// A probe container in `ns`'s network namespace, created but not
/// started (`ns` need only exist, not run), and attached to (`attach`).
/// It adds no capabilities (drops them all) and mounts nothing from the
/// host.
async fn create_probe(
    d: &Docker,
    run: &Run,
    image: &str,
    ns: &str,
    cmd: Vec<String>,
) -> Result<(String, Attached, Input), String> {
    let mut labels = run.labels();
    labels.insert("monorepo.verify.probe".into(), "1".into());
    let mut body = probe_body(image, ns, cmd, labels);
    attach::open_stdin(&mut body);
    let c = d
        .create_container(None::<q::CreateContainerOptions>, body)
        .await
        .map_err(|e| format!("creating the probe: {e}"))?;
    match attach::attach(d, &c.id).await {
        Ok((io, input)) => Ok((c.id, io, input)),
        Err(e) => {
            run.reap(&c.id);
            Err(format!("attaching to the probe: {e}"))
        }
    }
}

fn probe_body(
    image: &str,
    ns: &str,
    cmd: Vec<String>,
    labels: HashMap<String, String>,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(format!("container:{ns}")),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The exit code of `id` once it is not running: the daemon answers the
/// moment it stops (no polling). `None` if the wait itself failed.
pub(super) async fn exited(d: &Docker, id: &str) -> Option<i64> {
    let mut s = d.wait_container(
        id,
        Some(q::WaitContainerOptions {
            condition: "not-running".into(),
        }),
    );
    match s.next().await {
        Some(Ok(r)) => Some(r.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
        _ => None,
    }
}

/// The exit code of `id` if it is not running now.
async fn exited_now(d: &Docker, id: &str) -> Option<i64> {
    let st = d
        .inspect_container(id, None::<q::InspectContainerOptions>)
        .await
        .ok()?
        .state?;
    if st.running == Some(true) {
        None
    } else {
        Some(st.exit_code.unwrap_or(-1))
    }
}

pub(super) async fn stdout_of(d: &Docker, id: &str) -> String {
    docker::logs(d, id, 1000).await
}

/// Waits until `t` (container `cid`) answers its own protocol from inside
/// its namespace, or its container exits, or `timeout` passes, with a
/// probe container of its own (`probe wait`). Returns the milliseconds
/// taken. The probe container is removed in the background.
pub async fn wait_ready(
    d: &Docker,
    run: &Run,
    image: &str,
    t: &Target,
    cid: &str,
    timeout: u64,
) -> Result<u128, String> {
    let cmd = vec!["wait".into(), timeout.to_string(), ready_spec(t)];
    // `_input` open until the end: `probe wait` reads no stdin.
    let (pid, mut io, _input) = match create_probe(d, run, image, cid, cmd).await {
        Ok(p) => p,
        Err(e) => {
            // The usual cause: the service died before the probe could join it.
            return Err(match exited_now(d, cid).await {
                Some(code) => format!("its container exited (code {code})"),
                None => e,
            });
        }
    };
    let result = readiness(d, t, cid, &pid, &mut io, timeout, async {}).await;
    run.reap(&pid);
    result
}

pub(super) fn run_container(run: &Run, service: &str) -> Result<String, String> {
    run.container(service)
        .ok_or_else(|| format!("`{service}` has no container"))
}

/// The three slowest specs of a probe's output, as `id outcome ms`.
fn slowest(out: &str) -> String {
    let mut v: Vec<(u64, String)> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .map(|v| {
            let ms = v["ms"].as_u64().unwrap_or(0);
            let what = format!(
                "{} {} {ms}",
                v["id"].as_str().unwrap_or(""),
                v["outcome"].as_str().unwrap_or("")
            );
            (ms, what)
        })
        .collect();
    v.sort();
    v.iter()
        .rev()
        .take(3)
        .map(|(_, w)| w.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// (id, outcome, detail) of each JSON line the probe printed.
pub(super) fn parse_lines(out: &str) -> Vec<(String, String, String)> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
            (s("id"), s("outcome"), s("detail"))
        })
        .collect()
}

fn tls_hint(repo: &Repo, detail: &str, name: &str) -> Option<String> {
    if !detail.contains("not valid for the name") {
        return None;
    }
    let after = repo
        .cnf
        .insert_after()
        .unwrap_or(repo.cnf.section_line)
        .max(1);
    Some(format!(
        "add `DNS.{} = {name}` under [ {} ] in {}:{after}, then run `cargo xtask certs`",
        repo.cnf.next_dns_index(),
        repo.cnf.section,
        repo.cnf.section_file
    ))
}

/// What the probe container of `src`'s matrix row runs: the cells it
/// fills (each target by name, then every other path to it: see
/// verify/paths.rs) and the specs, each with the target it is about
/// (`extra` last, the same).
fn row_plan(
    repo: &Repo,
    run: &Run,
    topo: &Topology,
    src: &Service,
    targets: &[Target],
    extra: &[(String, String)],
) -> (Vec<Cell>, Vec<(String, String)>) {
    let env = env_of(repo, src);
    let mut specs = vec![];
    let mut cells = vec![];
    let own_ns = run
        .stack
        .service(&src.name)
        .map(|s| run.stack.networks_of(s));
    let same_ns = |t: &str| {
        let (Some(a), Some(b)) = (run.stack.service(&src.name), run.stack.service(t)) else {
            return false;
        };
        a.shares_namespace_of() == Some(t) || b.shares_namespace_of() == Some(&src.name)
    };
    let none = run
        .stack
        .service(&src.name)
        .is_some_and(|s| run.stack.mode_of(s).as_deref() == Some("none"));
    for t in targets
        .iter()
        .filter(|t| t.service != src.name && !same_ns(&t.service))
    {
        let id = format!("{}->{}", src.name, t.service);
        specs.push((t.service.clone(), t.spec(&id, &t.service, &env)));
        let expected = !none
            && repo.compose.service(&t.service).is_some_and(|ts| {
                own_ns.as_ref().map_or_else(
                    || matrix::reaches(src, ts),
                    |nets| ts.networks.iter().any(|(n, _)| nets.contains(n)),
                )
            });
        let cell = |via: String, expected: bool, port: u16| Cell {
            source: src.name.clone(),
            target: t.service.clone(),
            via,
            port,
            expected,
            outcome: Outcome::Missing,
            detail: String::new(),
            hint: None,
            logs: vec![],
        };
        cells.push(cell(String::new(), expected, t.port));
        for (k, p) in paths::paths(&run.stack, &repo.compose, topo, &src.name, t)
            .into_iter()
            .enumerate()
        {
            let pid = format!("{id}#{k}");
            let mut spec = t.clone();
            spec.port = p.port;
            let line = if p.own_port {
                spec.spec(&pid, &p.host, &env)
            } else {
                format!(
                    "id={}&kind=tcp&host={}&port={}",
                    pct(&pid),
                    pct(&p.host),
                    p.port
                )
            };
            // A path the engine drops waits out the connect timeout, and
            // that wait is the probe phase's length. An open path connects
            // in the kernel of this machine in about 0.1 ms, whatever the
            // load (no SYN crosses a wire; the probe tries twice at once, so
            // a thread kept off the CPU cannot pass an open path for a
            // dropped one: probe/src/main.rs `connect_within`); a lost SYN is
            // resent only after 1 s, so a longer timeout would not catch
            // more open paths.
            let line = format!("{line}&connect_ms={PATH_CONNECT_MS}");
            specs.push((t.service.clone(), line));
            cells.push(cell(p.via, p.expected, p.target_port));
        }
    }
    specs.extend(extra.iter().cloned());
    (cells, specs)
}

/// `src`'s row as its probe reads it while the stack starts
/// (verify/feed.rs): the same specs `matrix_row` matches its cells to.
pub(super) fn feed_plan(
    repo: &Repo,
    run: &Run,
    topo: &Topology,
    src: &Service,
    targets: &[Target],
    extra: &[(String, String)],
) -> feed::Plan {
    feed::Plan::new(&row_plan(repo, run, topo, src, targets, extra).1)
}

/// The connect timeout of a path probe, in ms.
const PATH_CONNECT_MS: u64 = 100;

/// The command of a row's probe (`probe row`): with `ready` (its own
/// service's target and the timeout), first the readiness wait. It reads
/// its specs from stdin, written once the stack runs (the addresses are
/// known only then).
fn row_cmd(ready: Option<(&Target, u64)>) -> Vec<String> {
    match ready {
        None => vec!["row".into()],
        Some((t, timeout)) => vec!["row".into(), timeout.to_string(), ready_spec(t)],
    }
}

fn ready_spec(t: &Target) -> String {
    t.spec(
        &format!("ready:{}", t.service),
        "127.0.0.1",
        &HashMap::new(),
    )
}

/// Creates the probe container of `src`'s matrix row as soon as `src`'s
/// own container exists (`cid`). When `src` is a target too, the same
/// container is its readiness wait (`readiness`): one container where
/// there were two. The caller keeps it in `Run::row_probes` for the probe
/// phase.
pub(super) async fn precreate_row(
    d: &Docker,
    run: &Run,
    image: &str,
    src: &Service,
    cid: &str,
    targets: &[Target],
    timeout: u64,
) -> Result<RowProbe, Error> {
    let own = targets.iter().find(|t| t.service == src.name);
    let cmd = row_cmd(own.map(|t| (t, timeout)));
    let (id, io, input) = create_probe(d, run, image, cid, cmd)
        .await
        .map_err(|e| engine_error(format!("the row of `{}`", src.name), e))?;
    Ok(RowProbe {
        id,
        waits: own.is_some(),
        io,
        input: Some(input),
    })
}

/// Starts the probe `pid` (made in `cid`'s namespace with a readiness wait:
/// `probe wait`, or a row's `probe row`) and reads its first line as it is
/// printed (`io`, attached before the start): whether `t` answered (a row's
/// probe runs its specs meanwhile), or `cid` exited, or `timeout` passed.
/// `started` runs once the probe has started (a row's stdin is handed to
/// the feed then). Returns the milliseconds taken.
pub(super) async fn readiness(
    d: &Docker,
    t: &Target,
    cid: &str,
    pid: &str,
    io: &mut Attached,
    timeout: u64,
    started: impl std::future::Future<Output = ()>,
) -> Result<u128, String> {
    let start = Instant::now();
    if let Err(e) = d
        .start_container(pid, None::<q::StartContainerOptions>)
        .await
    {
        // The usual cause: the service died before the probe could join it.
        return Err(match exited_now(d, cid).await {
            Some(code) => format!("its container exited (code {code})"),
            None => format!("starting the probe: {e}"),
        });
    }
    started.await;
    let deadline = Duration::from_secs(timeout + 10);
    tokio::select! {
        out = io.line() => {
            let out = out?;
            match parse_lines(&out).into_iter().next() {
                Some((_, outcome, _)) if outcome == "ok" => Ok(start.elapsed().as_millis()),
                first => match exited_now(d, cid).await {
                    Some(c) => Err(format!("its container exited (code {c})")),
                    None => Err(format!(
                        "no answer on port {} after {timeout}s: {}",
                        t.port,
                        first.map(|(_, _, detail)| detail).unwrap_or(out)
                    )),
                },
            }
        }
        code = exited(d, cid) => Err(format!("its container exited (code {})", code.unwrap_or(-1))),
        _ = tokio::time::sleep(deadline) => Err(format!("timed out after {timeout}s")),
    }
}

/// Runs `specs` in `src`'s row probe (made ahead, or made now in `cid`'s
/// namespace): the row fed while the stack started is closed (its specs
/// are these, written then), else they are written now; its whole output
/// read back. The probe container is then removed in the background.
async fn run_row(
    d: &Docker,
    run: &Run,
    image: &str,
    src: &Service,
    cid: &str,
    specs: &[String],
) -> Result<String, Error> {
    let precreated = run
        .row_probes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&src.name);
    let row_err =
        |what: &str, e: String| engine_error(format!("{what} of `{}`'s row", src.name), e);
    let (pid, waits, io, input) = match precreated {
        Some(p) => (p.id, p.waits, p.io, p.input),
        None => {
            let (id, io, input) = create_probe(d, run, image, cid, row_cmd(None))
                .await
                .map_err(|e| row_err("the probe", e))?;
            (id, false, io, Some(input))
        }
    };
    // A probe that was the readiness wait runs already.
    if !waits {
        d.start_container(&pid, None::<q::StartContainerOptions>)
            .await
            .map_err(|e| row_err("starting the probe", e.to_string()))?;
    }
    trace(format_args!("row {} writing specs", src.name));
    // A probe that ended before its specs (it crashed) refuses them: what
    // it printed is still its row's answer, and its cells fail with it.
    let sent = match run.feed.finish(&src.name).await {
        Taken::Fed(r) => r,
        Taken::Unfed(opened) => match input.or(opened) {
            Some(mut input) => {
                let mut text = specs.join("\n");
                text.push('\n');
                input.send(&text).await.map_err(|e| e.to_string())
            }
            None => Err("its stdin was not kept".into()),
        },
    };
    trace(format_args!("row {} specs written", src.name));
    let t = Instant::now();
    let limit = Duration::from_secs(120);
    let mut out = match tokio::time::timeout(limit, io.rest()).await {
        Ok((out, true)) => out,
        // The attach broke or the probe hangs: what the daemon logged once
        // it exits, within the same 120 s.
        _ => {
            let left = limit.saturating_sub(t.elapsed());
            let _ = tokio::time::timeout(left, exited(d, &pid)).await;
            stdout_of(d, &pid).await
        }
    };
    if let Err(e) = sent {
        out.push_str(&format!("\n(writing the specs to the probe failed: {e})"));
    }
    if tracing() {
        let slow = slowest(&out);
        trace(format_args!(
            "row {} output read; slowest: {slow}",
            src.name
        ));
    }
    run.reap(&pid);
    Ok(out)
}

/// One row of the matrix: every target probed from `src`'s namespace, in
/// one probe container that also runs `extra` specs (the source's
/// data-layer cells). Returns the cells, and the probe's lines and output
/// for the extra specs.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub async fn matrix_row(
    d: &Docker,
    run: &Run,
    repo: &Repo,
    image: &str,
    src: &Service,
    targets: &[Target],
    extra: &[(String, String)],
    topo: &Topology,
) -> Result<(Vec<Cell>, Vec<(String, String, String)>, String), Error> {
    let cid = run_container(run, &src.name).map_err(Diagnostic::error)?;
    let (mut cells, specs) = row_plan(repo, run, topo, src, targets, extra);
    let specs: Vec<String> = specs.into_iter().map(|(_, s)| s).collect();
    let out = run_row(d, run, image, src, &cid, &specs).await?;
    let results = parse_lines(&out);
    let mut k_of: HashMap<String, usize> = HashMap::new();
    for c in cells.iter_mut() {
        let base = format!("{}->{}", c.source, c.target);
        let id = if c.via.is_empty() {
            base
        } else {
            let k = k_of.entry(base.clone()).or_insert(0);
            *k += 1;
            format!("{base}#{}", *k - 1)
        };
        match results.iter().find(|(i, _, _)| *i == id) {
            Some((_, outcome, detail)) => {
                c.outcome = Outcome::parse(outcome);
                c.detail = detail.clone();
                c.hint = tls_hint(repo, detail, &c.target);
            }
            None => c.detail = format!("the probe gave no answer: {}", out.trim()),
        }
        if !c.via.is_empty() {
            if !c.matches() {
                c.hint = Some(if c.expected {
                    format!("`{}` is meant to be reachable from the network but `{}` could not reach it through {}", c.target, c.source, c.via)
                } else if c.via.starts_with("host") {
                    format!("`{}` publishes port {} where every container reaches it through the host: bind it to loopback (`127.0.0.1:<port>:<port>`) or remove it in {}; label it `monorepo.reach: \"network\"` only if it must be reachable from the network", c.target, c.port, repo.compose_file)
                } else {
                    format!(
                        "`{}` reached `{}` {} though they share no network",
                        c.source, c.target, c.via
                    )
                });
            }
            continue;
        }
        if !c.matches() && c.expected && c.hint.is_none() {
            // Expected means they share a network, and the target answered
            // its readiness probe on 127.0.0.1 in its own namespace.
            let t = targets.iter().find(|t| t.service == c.target).unwrap();
            let shared: Vec<&str> = t
                .networks
                .iter()
                .filter(|n| src.on_network(n))
                .map(String::as_str)
                .collect();
            c.hint = match c.outcome {
                Outcome::Refused => Some(format!("`{}` answers inside its own container but refused `{}` on port {} over {}: it listens on 127.0.0.1 only; bind 0.0.0.0 (every interface) in its server", c.target, c.source, c.port, shared.join(", "))),
                Outcome::Unresolved => Some(format!("`{}` does not resolve from `{}` though both are on {}: check its container_name and network aliases in docker-compose.yml", c.target, c.source, shared.join(", "))),
                _ => None,
            };
        }
        if !c.matches() && !c.expected {
            c.hint = Some(format!(
                "`{}` reached `{}` though their networks say it must not",
                c.source, c.target
            ));
        }
    }
    Ok((cells, results, out))
}

/// Each public path, requested from the host through NGINX's published
/// https port, must answer from the right service with a certificate valid
/// for `localhost`. A service with a page (`monorepo.frontend`) gets its
/// page's cells instead: the page and a deep link are HTML, a missing file
/// is a 404, the path without its slash redirects, its API answers
/// `<path>api/healthz`, and an unknown API route is the API's 404, not the
/// page.
pub fn nginx_routes(repo: &Repo, bin: &Path, port: u16, order: &[&Service]) -> Vec<Cell> {
    let mut cells = vec![];
    let ca = repo.root.join(crate::plan::certs::TRUST);
    for s in order.iter().filter(|s| s.is_backend()) {
        let Some(path) = s.public_path() else {
            continue;
        };
        let healthz = Want::Ok(format!("\"service\": \"{}\"", s.name));
        let wants: Vec<(String, String, Want)> = if s.frontend().is_some() {
            let bare = path.trim_end_matches('/');
            let page = || Want::Ok("<html".to_string());
            vec![
                (format!("nginx{path} (page)"), path.to_string(), page()),
                (
                    format!("nginx{path}verify/deep/link (page)"),
                    format!("{path}verify/deep/link"),
                    page(),
                ),
                (
                    format!("nginx{path}verify-missing.js (404)"),
                    format!("{path}verify-missing.js"),
                    Want::Status(404, "", ""),
                ),
                (
                    format!("nginx{bare} (301)"),
                    bare.to_string(),
                    Want::Status(301, "", ""),
                ),
                (
                    format!("nginx{path}api/healthz"),
                    format!("{path}api/healthz"),
                    healthz,
                ),
                (
                    format!("nginx{path}api/verify-no-such-route (the API's 404)"),
                    format!("{path}api/verify-no-such-route"),
                    Want::Status(404, "\"error\"", "<html"),
                ),
            ]
        } else {
            vec![(
                format!("nginx{path}"),
                format!("{}/healthz", path.trim_end_matches('/')),
                healthz,
            )]
        };
        for (target, full, want) in wants {
            let (outcome, detail) = route(bin, &ca, port, &full, &want);
            cells.push(Cell {
                source: "host".into(),
                target,
                via: String::new(),
                port,
                expected: true,
                outcome,
                detail,
                hint: None,
                logs: vec![],
            });
        }
    }
    cells
}

/// What a route must answer: 200 with `expect` in the body, or another
/// status whose body holds the first string and not the second.
enum Want {
    Ok(String),
    Status(u16, &'static str, &'static str),
}

/// One GET through NGINX with the probe (`check`, kind http over TLS),
/// judged against `want`. The probe reports any status but 200 as a
/// failure saying `answered <status>: <body>`, which is read back here.
/// NGINX may still be resolving the upstream: retried briefly.
fn route(bin: &Path, ca: &Path, port: u16, path: &str, want: &Want) -> (Outcome, String) {
    let expect = match want {
        Want::Ok(e) => e.clone(),
        Want::Status(..) => String::new(),
    };
    let spec = [
        ("id", format!("host->nginx{path}")),
        ("kind", "http".into()),
        ("host", "127.0.0.1".into()),
        ("port", port.to_string()),
        ("tls", "1".into()),
        ("ca", ca.display().to_string()),
        ("name", "localhost".into()),
        ("path", path.to_string()),
        ("expect", expect),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", pct(v)))
    .collect::<Vec<_>>()
    .join("&");
    let mut last = (Outcome::Failed, String::new());
    for _ in 0..20 {
        let out = std::process::Command::new(bin)
            .args(["check", &spec])
            .output();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if let Some((_, o, d)) = parse_lines(&text).into_iter().next() {
            last = judge(want, Outcome::parse(&o), d);
        }
        if last.0 == Outcome::Ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    last
}

fn judge(want: &Want, got: Outcome, detail: String) -> (Outcome, String) {
    match want {
        Want::Ok(_) => (got, detail),
        Want::Status(code, has, lacks) => {
            let answered = format!("answered {code}: ");
            let body = detail.split_once(&answered).map(|(_, b)| b);
            match body {
                Some(b)
                    if got != Outcome::Ok
                        && b.contains(has)
                        && (lacks.is_empty() || !b.contains(lacks)) =>
                {
                    (Outcome::Ok, format!("{code} as it must be"))
                }
                _ => (
                    Outcome::Failed,
                    format!(
                        "wanted {code}{}{}, got: {}",
                        if has.is_empty() {
                            String::new()
                        } else {
                            format!(" with `{has}`")
                        },
                        if lacks.is_empty() {
                            String::new()
                        } else {
                            format!(" without `{lacks}`")
                        },
                        if got == Outcome::Ok {
                            "200".to_string()
                        } else {
                            detail
                        }
                    ),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for cargo: a shell script in a fresh folder (its root).
    fn fake_cargo(tag: &str, body: &str) -> (PathBuf, String) {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("cargo");
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, script.to_string_lossy().into_owned())
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_build_dropped_before_its_result_kills_cargo() {
        let (dir, cargo) = fake_cargo("probe-build-drop", "echo $$ > pid; exec sleep 60");
        let build = ProbeBuild::start_with(&dir, &cargo);
        let pid_file = dir.join("pid");
        let t = Instant::now();
        let pid = loop {
            match std::fs::read_to_string(&pid_file).map(|s| s.trim().parse::<i32>()) {
                Ok(Ok(pid)) => break pid,
                _ if t.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => panic!("the fake cargo never started"),
            }
        };
        assert!(docker::pid_alive(pid), "cargo runs before the drop");
        drop(build);
        // Killed and reaped by the drop: the pid is gone, not a zombie.
        assert!(
            !docker::pid_alive(pid),
            "cargo (pid {pid}) outlived the dropped build"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_finished_build_names_cargos_executable_or_says_it_failed() {
        let line =
            r#"{"reason":"compiler-artifact","target":{"name":"probe"},"executable":"/t/probe"}"#;
        let (dir, cargo) = fake_cargo("probe-build-ok", &format!("echo '{line}'"));
        let got = block_on(ProbeBuild::start_with(&dir, &cargo).path()).unwrap();
        assert_eq!(got, PathBuf::from("/t/probe"));
        let (dir2, cargo) = fake_cargo("probe-build-fail", "exit 101");
        let e = block_on(ProbeBuild::start_with(&dir2, &cargo).path()).unwrap_err();
        assert!(e.message.contains("building the probe"), "{}", e.message);
        for d in [dir, dir2] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn route_cells_read_the_status_the_probe_reports() {
        let want = Want::Status(404, "\"error\"", "<html");
        let api = "http: GET /w/api/x answered 404: {\"error\": \"not found\", \"path\": \"/x\"}";
        assert_eq!(judge(&want, Outcome::Failed, api.into()).0, Outcome::Ok);
        let page = "http: GET /w/api/x answered 404: <html><head>";
        assert_eq!(
            judge(&want, Outcome::Failed, page.into()).0,
            Outcome::Failed
        );
        let (o, d) = judge(&want, Outcome::Ok, String::new());
        assert!(o == Outcome::Failed && d.contains("got: 200"), "{d}");
        let moved = "http: GET /w answered 301: <html>";
        assert_eq!(
            judge(&Want::Status(301, "", ""), Outcome::Failed, moved.into()).0,
            Outcome::Ok
        );
        assert_eq!(
            judge(&Want::Status(404, "", ""), Outcome::Failed, moved.into()).0,
            Outcome::Failed
        );
        assert_eq!(
            judge(&Want::Ok("x".into()), Outcome::Refused, "r".into()).0,
            Outcome::Refused
        );
    }

    #[test]
    fn the_probe_container_adds_nothing_and_mounts_nothing() {
        let b = probe_body("probe:x", "abc", vec!["check".into()], HashMap::new());
        let h = b.host_config.unwrap();
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        assert!(
            h.cap_add.is_none()
                && h.binds.is_none()
                && h.mounts.is_none()
                && h.privileged.is_none()
        );
        assert_eq!(h.network_mode.as_deref(), Some("container:abc"));
    }
}
