//! `verify --engine swarm --cluster [name]`: the swarm verify on the
//! multi-node cluster of `cargo xtask cluster up`. The images are built on
//! the host, moved into the manager and pushed to the cluster's registry
//! under a tag of the run; each service is pinned to a node so that, for
//! every network, at least one cell that must connect and one that must not
//! cross nodes; each probe runs in its source task's namespace on that
//! task's node (created through that node's engine). Endpoint mode dnsrr:
//! the nodes' kernel has no IPVS. NGINX's routes are not requested from the
//! host: its port is published on a node, which the host does not reach.

use super::*;
use crate::docker::cluster::{self as cl, Names};

/// One node of the cluster: its hostname (`node<i>`), swarm id and engine.
struct Node {
    host: String,
    id: String,
    d: Docker,
}

async fn connect_nodes(n: &Names) -> Result<Vec<Node>, Error> {
    let not_up = |e: Diagnostic| {
        e.fix(format!(
            "start it with `cargo xtask cluster up{}`",
            if n.cluster == cl::DEFAULT_NAME {
                String::new()
            } else {
                format!(" --name {}", n.cluster)
            }
        ))
    };
    let m = cl::connect_node(n, 1).await.map_err(not_up)?;
    let listed = m
        .list_nodes(None::<q::ListNodesOptions>)
        .await
        .map_err(|e| {
            not_up(Diagnostic::error(format!(
                "node 1 is no swarm manager: {e}"
            )))
        })?;
    let mut nodes = vec![];
    for x in listed {
        let host = x.description.and_then(|d| d.hostname).unwrap_or_default();
        let Some(i) = host.strip_prefix("node").and_then(|i| i.parse().ok()) else {
            continue;
        };
        let ready = x.status.and_then(|s| s.state) == Some(bollard::models::NodeState::READY);
        if !ready {
            return Err(not_up(Diagnostic::error(format!(
                "cluster `{}`: {host} is not ready",
                n.cluster
            ))));
        }
        let d = if i == 1 {
            m.clone()
        } else {
            cl::connect_node(n, i).await?
        };
        nodes.push(Node {
            host,
            id: x.id.unwrap_or_default(),
            d,
        });
    }
    nodes.sort_by(|a, b| a.host.cmp(&b.host));
    if nodes.len() < 2 {
        return Err(Diagnostic::error(format!(
            "cluster `{}` has {} node(s); a multi-node verify needs two or more",
            n.cluster,
            nodes.len()
        ))
        .fix("cargo xtask cluster down && cargo xtask cluster up --nodes 3"));
    }
    Ok(nodes)
}

/// Pairs of indices into the services (source, target).
type Pairs = Vec<(usize, usize)>;

/// The pairs that the placement must split across nodes, per network: a
/// reach pair (both on it) and a block pair (a source on it and a target
/// that shares no network with that source).
fn wanted_pairs(order: &[&Service], targets: &[String]) -> Vec<(String, Pairs, Pairs)> {
    let mut nets: Vec<String> = order
        .iter()
        .flat_map(|s| s.networks.iter().map(|(n, _)| n.clone()))
        .collect();
    nets.sort();
    nets.dedup();
    let shares = |a: &Service, b: &Service| a.networks.iter().any(|(n, _)| b.on_network(n));
    nets.into_iter()
        .map(|net| {
            let (mut reach, mut block) = (vec![], vec![]);
            for (i, a) in order.iter().enumerate().filter(|(_, a)| a.on_network(&net)) {
                for (j, b) in order.iter().enumerate() {
                    if i == j || !targets.contains(&b.name) {
                        continue;
                    }
                    if b.on_network(&net) {
                        reach.push((i, j));
                    } else if !shares(a, b) {
                        block.push((i, j));
                    }
                }
            }
            (net, reach, block)
        })
        .collect()
}

/// Each service's node (an index): the assignment that splits the most
/// wanted pairs across nodes, then the most even. Exhaustive for small
/// stacks, round robin beyond.
fn place(order: &[&Service], targets: &[String], nodes: usize) -> Vec<usize> {
    let wanted = wanted_pairs(order, targets);
    let score = |a: &[usize]| {
        let split = |ps: &Pairs| ps.iter().any(|(i, j)| a[*i] != a[*j]);
        let covered: usize = wanted
            .iter()
            .map(|(_, r, b)| split(r) as usize + split(b) as usize)
            .sum();
        let mut load = vec![0usize; nodes];
        for x in a {
            load[*x] += 1;
        }
        (
            covered,
            usize::MAX - load.iter().max().copied().unwrap_or(0),
        )
    };
    let n = order.len();
    let mut best: Vec<usize> = (0..n).map(|i| i % nodes).collect();
    let total = (nodes as f64).powi(n as i32);
    if total > 200_000.0 {
        return best;
    }
    let mut best_score = score(&best);
    let mut a = vec![0usize; n];
    loop {
        let s = score(&a);
        if s > best_score {
            best_score = s;
            best = a.clone();
        }
        // The next assignment, counting in base `nodes`.
        let mut k = 0;
        while k < n {
            a[k] += 1;
            if a[k] < nodes {
                break;
            }
            a[k] = 0;
            k += 1;
        }
        if k == n {
            return best;
        }
    }
}

/// The run's name of an image in the cluster's registry.
fn run_ref(run: &Run, image: &str) -> String {
    let image = if image.rsplit('/').next().unwrap_or(image).contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    };
    format!("{}/run-{}/{image}", cl::REGISTRY, run.id)
}

/// A run per node: the same id, containers and networks, that node's
/// engine (probes are made and reaped there).
fn node_run(run: &Run, d: &Docker) -> Run {
    Run {
        id: run.id.clone(),
        root: run.root.clone(),
        d: d.clone(),
        containers: run.containers.clone(),
        networks: run.networks.clone(),
        secrets: run.secrets.clone(),
        reaping: Default::default(),
        row_probes: Default::default(),
        feed: Default::default(),
        topology: Default::default(),
        stack: Default::default(),
        keep: run.keep,
    }
}

pub(super) async fn verify(
    repo: Repo,
    o: Opts,
    mut phases: Phases,
    t_all: Instant,
    cluster: &str,
) -> Result<Exit, Error> {
    let host = docker::connect().await?;
    let names = Names::new(&repo.root, cluster);
    let nodes = connect_nodes(&names).await?;
    let _lock = lock_engine_at(&format!("unix://{}", names.socket(1).display()))?;
    let mut signals = Signals::listen()?;
    for n in &nodes {
        docker::sweep(&n.d, None).await;
    }
    let mut run = Run::new(&repo, nodes[0].d.clone());
    eprintln!(
        "verify: run {} on cluster `{cluster}` ({} nodes, {} services)",
        run.id,
        nodes.len(),
        repo.compose.services.len()
    );
    let mut pushed = vec![];
    let result = tokio::select! {
        r = body(&repo, &mut run, &o, &mut phases, &host, &nodes, &mut pushed) => r,
        e = signals.recv() => Err(e),
    };
    let t = Instant::now();
    if o.keep && result.is_ok() {
        eprintln!(
            "verify: --keep: the services of run {} are still up on cluster `{cluster}` (DOCKER_HOST=unix://{})",
            run.id,
            names.socket(1).display()
        );
    } else {
        // The manager first: once the services are gone, the workers'
        // task containers and overlay endpoints go too.
        clean(&nodes[0].d, &run.id).await;
        let id = &run.id;
        let workers = nodes[1..].iter().map(|n| async move {
            let left = docker::sweep_until_gone(&n.d, id, Duration::from_secs(18), 2).await;
            if !left.is_empty() {
                eprintln!("verify: on {}: still there: {}", n.host, left.join(", "));
            }
        });
        futures_util::future::join_all(workers).await;
        remove_pushed(&host, &names, &nodes, &pushed).await;
    }
    phases.add("cleanup", t);
    phases.finish(result, t_all)
}

/// What the images phase leaves: the volumes of the run, each service's
/// image on the host and the probe image's reference in the registry.
struct Staged {
    volumes: BTreeMap<String, String>,
    images: HashMap<String, String>,
    probe_ref: String,
}

/// Steps 1-2, networks and volumes on the manager; images built on the host,
/// then moved into the registry under the run's tags.
async fn stage(
    repo: &Repo,
    run: &mut Run,
    o: &Opts,
    host: &Docker,
    nodes: &[Node],
    pushed: &mut Vec<String>,
    order: &[&Service],
) -> Result<Staged, Error> {
    let manager = &nodes[0].d;
    let volumes = create_networks_and_volumes(repo, run).await?;
    let (builder, why) = buildkit::choose(host, o.builder).await;
    eprintln!("verify: {why}");
    let fallback = o.builder == Choice::Auto;
    let build = probe::ProbeBuild::start(&repo.root);
    let (probe_image, _probe_bin) = probe::ensure_image(host, &repo.root, build, builder).await?;
    let mut images = images::pulled_images(host, order).await?;
    images.extend(images::build_images(host, repo, order, builder, fallback).await?);
    let mut pairs: Vec<(String, String)> = images
        .values()
        .chain(std::iter::once(&probe_image))
        .map(|i| (i.clone(), run_ref(run, i)))
        .collect();
    pairs.sort();
    pairs.dedup();
    pushed.extend(pairs.iter().map(|(_, r)| r.clone()));
    let tp = Instant::now();
    cl::load_and_push(host, manager, &pairs).await?;
    let probe_ref = run_ref(run, &probe_image);
    // Every node runs probes: each pulls the probe image now.
    futures_util::future::try_join_all(nodes[1..].iter().map(|n| pull(&n.d, &probe_ref))).await?;
    eprintln!(
        "verify: {} image(s) pushed to the cluster's registry ({:.1}s)",
        pairs.len(),
        tp.elapsed().as_secs_f64()
    );
    Ok(Staged {
        volumes,
        images,
        probe_ref,
    })
}

/// Step 3, the placement, then one service per compose service: the swarm
/// service ids, each mapped to its compose service's name.
async fn create_placed(
    repo: &Repo,
    run: &Run,
    nodes: &[Node],
    order: &[&Service],
    target_names: &[String],
    st: &Staged,
) -> Result<HashMap<String, String>, Error> {
    let at = place(order, target_names, nodes.len());
    let placed: Vec<Placed> = order
        .iter()
        .zip(&at)
        .map(|(s, k)| Placed {
            image: run_ref(run, &st.images[&s.name]),
            node: nodes[*k].host.clone(),
        })
        .collect();
    let creates = order.iter().zip(&placed).map(|(s, p)| {
        create_service(
            repo,
            run,
            s,
            &st.images[&s.name],
            &st.volumes,
            Mode::Dnsrr,
            Some(p),
        )
    });
    let mut ids = HashMap::new();
    for (s, r) in order
        .iter()
        .zip(futures_util::future::join_all(creates).await)
    {
        ids.insert(r?, s.name.clone());
    }
    Ok(ids)
}

/// Waits for every task: records each started one's container in `run`,
/// returns why the others never started.
async fn start_tasks(run: &mut Run, ids: &HashMap<String, String>, timeout: u64) -> Vec<String> {
    let started = wait_tasks(run, ids, timeout).await;
    let mut not_started = vec![];
    for (name, r) in started {
        match r {
            Ok(cid) => {
                run.containers.insert(name, cid);
            }
            Err(why) => not_started.push(format!("{name} never started: {why}")),
        }
    }
    not_started
}

/// Step 4, readiness, from inside each task's namespace, on its node: why each
/// target that never became ready did not, with its last log lines.
async fn wait_ready_all(
    run: &Run,
    o: &Opts,
    runs: &[Run],
    node_of: &HashMap<String, usize>,
    targets: &[Target],
    probe_ref: &str,
) -> Vec<String> {
    let waits = targets.iter().map(|tg| {
        let cid = run.containers[&tg.service].clone();
        let r = &runs[node_of[&tg.service]];
        async move {
            (
                tg.service.clone(),
                probe::wait_ready(&r.d, r, probe_ref, tg, &cid, o.timeout).await,
            )
        }
    });
    let mut not_ready = vec![];
    for (svc, r) in futures_util::future::join_all(waits).await {
        match r {
            Ok(ms) => eprintln!("  ready  {:<12} {:.1}s", svc, ms as f64 / 1000.0),
            Err(why) => {
                let r = &runs[node_of[&svc]];
                let logs = docker::logs(&r.d, &run.containers[&svc], 15).await;
                not_ready.push(format!(
                    "{svc} never became ready: {why}\n    last log lines of {svc}:\n{}",
                    indent(&logs)
                ));
            }
        }
    }
    not_ready
}

/// Steps 5-6, one probe per source, in its task's namespace on its node: the
/// matrix cells and the data-layer cells.
async fn probe_all(
    repo: &Repo,
    run: &Run,
    order: &[&Service],
    targets: &[Target],
    runs: &[Run],
    node_of: &HashMap<String, usize>,
    probe_ref: &str,
) -> Result<(Vec<Cell>, Vec<datalayer::DataCell>), Error> {
    // The addresses as the manager knows them: the overlays' are the same
    // on every node; a node's own bridges are inside that node.
    let topo = super::super::paths::topology(run).await;
    let (cells, data) = super::super::probe_rows(repo, order, targets, &topo, probe_ref, &|name| {
        &runs[node_of[name]]
    })
    .await?;
    for r in runs {
        r.reaped().await;
    }
    Ok((cells, data))
}

/// Each cell's detail names the nodes of its ends, masked; a cell that does
/// not match carries the last log lines of both ends.
async fn annotate(
    run: &Run,
    nodes: &[Node],
    node_of: &HashMap<String, usize>,
    cells: &mut [Cell],
    data: &mut [datalayer::DataCell],
) {
    let host_of = |svc: &str| {
        node_of
            .get(svc)
            .map(|k| nodes[*k].host.as_str())
            .unwrap_or("?")
    };
    for c in cells.iter_mut() {
        c.detail = run.mask(&format!(
            "[{} -> {}] {}",
            host_of(&c.source),
            host_of(&c.target),
            c.detail
        ));
        if !c.matches() {
            for who in [c.source.clone(), c.target.clone()] {
                if let (Some(id), Some(k)) = (run.containers.get(&who), node_of.get(&who)) {
                    let l = docker::logs(&nodes[*k].d, id, 8).await;
                    c.logs.push((who, run.mask(&l)));
                }
            }
        }
    }
    for c in data.iter_mut() {
        c.detail = run.mask(&c.detail);
    }
}

#[allow(clippy::too_many_arguments)]
async fn body(
    repo: &Repo,
    run: &mut Run,
    o: &Opts,
    phases: &mut Phases,
    host: &Docker,
    nodes: &[Node],
    pushed: &mut Vec<String>,
) -> Result<Exit, Error> {
    let order = super::super::services_to_run(repo, o);
    let t = Instant::now();
    let st = stage(repo, run, o, host, nodes, pushed, &order).await?;
    phases.add("images", t);

    let t = Instant::now();
    let target_names: Vec<String> = order
        .iter()
        .filter_map(|s| matrix::target(repo, s).map(|t| t.service))
        .collect();
    let ids = create_placed(repo, run, nodes, &order, &target_names, &st).await?;
    let not_started = start_tasks(run, &ids, o.timeout).await;
    phases.add("start", t);
    for n in &not_started {
        eprintln!("verify: {}", run.mask(n));
    }
    if !not_started.is_empty() {
        return Ok(Exit::Findings);
    }
    // Where each task runs, as the manager reports it (the constraint
    // decided it; this is the proof).
    let node_of = task_nodes(run, &ids, nodes).await?;
    for s in &order {
        eprintln!("  node   {:<12} {}", s.name, nodes[node_of[&s.name]].host);
    }
    let runs: Vec<Run> = nodes.iter().map(|n| node_run(run, &n.d)).collect();

    let t = Instant::now();
    let targets: Vec<Target> = order
        .iter()
        .filter_map(|s| matrix::target(repo, s))
        .collect();
    let not_ready = wait_ready_all(run, o, &runs, &node_of, &targets, &st.probe_ref).await;
    phases.add("ready", t);
    for n in &not_ready {
        eprintln!("verify: {}", run.mask(n));
    }
    if !not_ready.is_empty() {
        return Ok(Exit::Findings);
    }

    let t = Instant::now();
    let (mut cells, mut data) =
        probe_all(repo, run, &order, &targets, &runs, &node_of, &st.probe_ref).await?;
    annotate(run, nodes, &node_of, &mut cells, &mut data).await;
    phases.add("probes", t);
    let crossing = crossing_summary(&order, &target_names, &cells, &node_of);
    for l in &crossing {
        eprintln!("  cross  {l}");
    }
    let placement: BTreeMap<String, String> = node_of
        .iter()
        .map(|(s, k)| (s.clone(), nodes[*k].host.clone()))
        .collect();
    let detected = Detected {
        mode: Mode::Dnsrr,
        why: format!(
            "a {}-node cluster; its kernel has no IPVS for virtual IPs",
            nodes.len()
        ),
    };
    write_report_placed(run, o, &cells, &data, &detected, Some(&placement))
}

/// Per network: a cross-node cell that must connect and one that must not,
/// with their outcomes; or why there is none.
fn crossing_summary(
    order: &[&Service],
    targets: &[String],
    cells: &[Cell],
    node_of: &HashMap<String, usize>,
) -> Vec<String> {
    let mut out = vec![];
    for (net, reach, block) in wanted_pairs(order, targets) {
        let pick = |pairs: &Pairs| {
            pairs.iter().find_map(|(i, j)| {
                let (a, b) = (&order[*i].name, &order[*j].name);
                (node_of.get(a) != node_of.get(b))
                    .then(|| cells.iter().find(|c| &c.source == a && &c.target == b))
                    .flatten()
            })
        };
        for (what, pairs) in [("reach", &reach), ("block", &block)] {
            if pairs.is_empty() {
                continue;
            }
            out.push(match pick(pairs) {
                Some(c) => format!(
                    "{net}: {what} {} -> {} {} ({})",
                    c.source,
                    c.target,
                    if c.matches() {
                        "as expected"
                    } else {
                        "MISMATCH"
                    },
                    c.outcome.as_str()
                ),
                None => format!("{net}: no {what} cell crosses nodes"),
            });
        }
    }
    out
}

/// Compose name -> index of the node its task runs on.
async fn task_nodes(
    run: &Run,
    ids: &HashMap<String, String>,
    nodes: &[Node],
) -> Result<HashMap<String, usize>, Error> {
    let tasks = run
        .d
        .list_tasks(Some(q::ListTasksOptions {
            filters: Some(HashMap::from([(
                "service".to_string(),
                ids.keys().cloned().collect(),
            )])),
        }))
        .await
        .map_err(|e| docker::engine_error("listing the run's tasks on node 1", e))?;
    let mut out = HashMap::new();
    for t in tasks {
        let Some(name) = t.service_id.as_ref().and_then(|i| ids.get(i)) else {
            continue;
        };
        let cid = t
            .status
            .and_then(|s| s.container_status)
            .and_then(|c| c.container_id);
        if cid.as_ref() != run.containers.get(name) {
            continue;
        }
        let k = nodes
            .iter()
            .position(|n| Some(&n.id) == t.node_id.as_ref())
            .ok_or_else(|| {
                Diagnostic::error(format!("the task of `{name}` is on no known node"))
                    .fix("a node joined or left during the run: `cargo xtask cluster status`, then run verify again")
            })?;
        out.insert(name.clone(), k);
    }
    for name in ids.values() {
        if !out.contains_key(name) {
            return Err(
                Diagnostic::error(format!("the running task of `{name}` was not found")).fix(
                    format!(
                        "`docker service ps` on node 1 shows why the task of `{name}` does not run"
                    ),
                ),
            );
        }
    }
    Ok(out)
}

async fn pull(d: &Docker, reference: &str) -> Result<(), Error> {
    let (repo, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
    let mut s = d.create_image(
        Some(q::CreateImageOptions {
            from_image: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            ..Default::default()
        }),
        None,
        None,
    );
    while let Some(r) = futures_util::StreamExt::next(&mut s).await {
        r.map_err(|e| {
            Diagnostic::error(format!("pulling {reference} on a node: {e}"))
                .fix("is the cluster's registry up? `cargo xtask cluster status`; `cargo xtask cluster push` pushes an image by hand")
        })?;
    }
    Ok(())
}

/// Removes the run's tags: from every node's engine, and from the registry
/// (its manifests, by digest; the registry's blobs go with `cluster down`).
async fn remove_pushed(host: &Docker, names: &Names, nodes: &[Node], pushed: &[String]) {
    for n in nodes {
        for r in pushed {
            let _ =
                n.d.remove_image(r, None::<q::RemoveImageOptions>, None)
                    .await;
        }
    }
    let Some(ip) = host
        .inspect_container(&names.registry(), None::<q::InspectContainerOptions>)
        .await
        .ok()
        .and_then(|c| {
            c.network_settings?
                .networks?
                .get(&names.network())?
                .ip_address
                .clone()
        })
        .filter(|a| !a.is_empty())
    else {
        eprintln!("verify: the cluster's registry has no address; its tags of this run stay until `cargo xtask cluster down`");
        return;
    };
    for r in pushed {
        let path = r.trim_start_matches(cl::REGISTRY).trim_start_matches('/');
        let (name, tag) = path.rsplit_once(':').unwrap_or((path, "latest"));
        if let Err(e) = delete_manifest(&ip, name, tag).await {
            eprintln!("verify: removing {r} from the registry: {e}");
        }
    }
}

/// One HTTP/1.1 request to the registry (plain http on the cluster's
/// internal network); returns the status and the response head.
fn registry_request(ip: &str, method: &str, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &format!("{ip}:5000").parse().map_err(|e| format!("{e}"))?,
        Duration::from_secs(5),
    )
    .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: registry:5000\r\nAccept: application/vnd.docker.distribution.manifest.v2+json\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = vec![];
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {head}"))?;
    Ok((status, head))
}

async fn delete_manifest(ip: &str, name: &str, tag: &str) -> Result<(), String> {
    let (ip, name, tag) = (ip.to_string(), name.to_string(), tag.to_string());
    tokio::task::spawn_blocking(move || {
        let (status, head) = registry_request(&ip, "HEAD", &format!("/v2/{name}/manifests/{tag}"))?;
        if status == 404 {
            return Ok(());
        }
        let digest = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("docker-content-digest")
                    .then(|| v.trim().to_string())
            })
            .ok_or_else(|| format!("HEAD gave {status} and no digest"))?;
        let (status, _) =
            registry_request(&ip, "DELETE", &format!("/v2/{name}/manifests/{digest}"))?;
        if status == 202 || status == 404 {
            Ok(())
        } else {
            Err(format!("DELETE gave {status}"))
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, nets: &[&str]) -> Service {
        let mut s = Service {
            name: name.into(),
            ..Default::default()
        };
        s.networks = nets
            .iter()
            .map(|n| (n.to_string(), Default::default()))
            .collect();
        s
    }

    #[test]
    fn placement_splits_a_reach_and_a_block_pair_of_every_network() {
        let all = [
            svc("postgres", &["pg"]),
            svc("redis", &["redis"]),
            svc("accounts", &["pg", "redis", "grpc"]),
            svc("gateway", &["grpc", "web"]),
            svc("nginx", &["web"]),
        ];
        let order: Vec<&Service> = all.iter().collect();
        let targets: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
        let at = place(&order, &targets, 3);
        for (net, reach, block) in wanted_pairs(&order, &targets) {
            for (what, ps) in [("reach", &reach), ("block", &block)] {
                if !ps.is_empty() {
                    assert!(
                        ps.iter().any(|(i, j)| at[*i] != at[*j]),
                        "{net}: no {what} pair crosses nodes in {at:?}"
                    );
                }
            }
        }
        assert!(at.iter().collect::<std::collections::BTreeSet<_>>().len() == 3);
    }
}
