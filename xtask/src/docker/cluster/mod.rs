//! `cluster up|down|status|push`: a real multi-node Docker Swarm on this
//! machine. Each node is a container of the host engine running Debian's
//! `dockerd` (node.rs), on one `--internal` network with a registry from
//! Debian's `docker-registry`; node 1 is the manager, the others join it.
//! The host drives each node through its API socket, bind-mounted under
//! `target/xtask/cluster/<name>/`.
//!
//! Everything made on the host engine is labelled `monorepo.cluster=<name>`
//! and named `monorepo-cluster-<name>-*`; `down` removes exactly that (and
//! the folder), and with `--purge` the nodes' root filesystem image too,
//! which is otherwise kept as the cache that makes a second `up` warm.

mod node;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerSummary, NetworkCreateRequest, NodeSpecAvailabilityEnum, NodeState, SwarmInitRequest,
    SwarmJoinRequest,
};
use bollard::query_parameters as q;
use bollard::Docker;
use futures_util::StreamExt;

use crate::diag::{Diagnostic, Error};
use crate::docker;

pub use node::{Names, LABEL, REGISTRY};

/// The nodes' root filesystem: a daemon, its iptables and `ip`, the
/// registry, and fuse-overlayfs for hosts where overlay2 does not nest.
const PACKAGES: &[&str] = &[
    "ca-certificates",
    "docker.io",
    "iptables",
    "iproute2",
    "docker-registry",
    "fuse-overlayfs",
];

/// How long a node's daemon and the swarm get to come up.
const ENGINE_WAIT: Duration = Duration::from_secs(60);
const READY_WAIT: Duration = Duration::from_secs(90);

/// What to do when a node, its engine or the cluster's registry fails.
const CLUSTER_FIX: &str = "`cargo xtask cluster status` shows the nodes and the registry; `cargo xtask cluster down`, then `cargo xtask cluster up`, makes them anew";

/// An engine call (the host's or a node's) that failed: what it was, the
/// engine's answer, and `CLUSTER_FIX`.
fn host_err(what: &str, e: impl std::fmt::Display) -> Error {
    Diagnostic::error(format!("{what}: {e}")).fix(CLUSTER_FIX)
}

/// A file or folder of the cluster that cannot be made or opened.
fn path_err(p: &std::path::Path, e: impl std::fmt::Display) -> Error {
    Diagnostic::error(e.to_string())
        .at_path(p)
        .fix("make its folder writable by you")
}

fn label_filter(n: &Names) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{LABEL}={}", n.cluster)])])
}

/// An exclusive lock per cluster, held by `up`, `down` and `push`: two
/// `up`s of one cluster would otherwise both find nothing and both make it.
/// In the temporary folder, so `down` leaves no file behind.
fn lock(n: &Names) -> Result<std::fs::File, Error> {
    let path = std::env::temp_dir().join(format!(
        "xtask-cluster-{}.lock",
        &docker::sha256_hex(&[n.dir.as_os_str().as_encoded_bytes()])[..12]
    ));
    docker::lock_exclusive(
        &path,
        &format!("another `cluster` command on `{}`", n.cluster),
    )
}

/// The root filesystem image's tag, made (mmdebstrap + import, the
/// machinery of `images bootstrap`) when it is not there yet.
async fn rootfs(d: &Docker, root: &Path) -> Result<String, Error> {
    let suite = super::rootfs::suite();
    let mut recipe: Vec<&[u8]> = vec![b"cluster", suite.as_bytes()];
    recipe.extend(PACKAGES.iter().map(|p| p.as_bytes()));
    let hash = docker::sha256_hex(&recipe);
    let tag = super::rootfs::tag_for("cluster-rootfs", &hash);
    if !docker::image_exists(d, &tag).await {
        super::rootfs::import_rootfs(d, root, &suite, &tag, PACKAGES).await?;
    }
    Ok(tag)
}

async fn containers(d: &Docker, n: &Names) -> Result<Vec<ContainerSummary>, Error> {
    d.list_containers(Some(q::ListContainersOptions {
        all: true,
        filters: Some(label_filter(n)),
        ..Default::default()
    }))
    .await
    .map_err(|e| host_err("listing the cluster's containers", e))
}

fn name_of(c: &ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|v| v.first())
        .map(|s| s.trim_start_matches('/').to_string())
        .unwrap_or_default()
}

fn running(c: &ContainerSummary) -> bool {
    c.state.as_ref().is_some_and(|s| s.to_string() == "running")
}

/// Node `i`'s engine, through its socket on the host.
pub async fn connect_node(n: &Names, i: usize) -> Result<Docker, Error> {
    let sock = n.socket(i);
    let d = Docker::connect_with_unix(&sock.to_string_lossy(), 120, bollard::API_DEFAULT_VERSION)
        .map_err(|e| host_err(&format!("node {i}'s socket {}", sock.display()), e))?;
    d.negotiate_version()
        .await
        .map_err(|e| host_err(&format!("node {i}'s engine does not answer"), e))
}

/// Waits for node `i`'s engine to answer. On failure: why, with the
/// container's last log lines.
async fn wait_engine(d: &Docker, n: &Names, i: usize) -> Result<Docker, String> {
    let t0 = Instant::now();
    loop {
        if n.socket(i).exists() {
            if let Ok(nd) = connect_node(n, i).await {
                if nd.ping().await.is_ok() {
                    return Ok(nd);
                }
            }
        }
        let state = d
            .inspect_container(&n.node(i), None::<q::InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.state);
        let alive = state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if !alive || t0.elapsed() > ENGINE_WAIT {
            let why = if alive {
                format!(
                    "its engine did not answer within {}s",
                    ENGINE_WAIT.as_secs()
                )
            } else {
                format!(
                    "it stopped (exit code {})",
                    state.and_then(|s| s.exit_code).unwrap_or(-1)
                )
            };
            return Err(format!(
                "{why}; its last log lines:\n{}",
                docker::logs(d, &n.node(i), 15).await
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn create_and_start(
    d: &Docker,
    name: &str,
    spec: bollard::models::ContainerCreateBody,
) -> Result<(), Error> {
    d.create_container(
        Some(q::CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        }),
        spec,
    )
    .await
    .map_err(|e| host_err(&format!("creating {name}"), e))?;
    d.start_container(name, None::<q::StartContainerOptions>)
        .await
        .map_err(|e| host_err(&format!("starting {name}"), e))
}

async fn remove_container(d: &Docker, name: &str) {
    let _ = d
        .remove_container(
            name,
            Some(q::RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await;
}

fn reset_dir(n: &Names, i: usize) -> Result<(), Error> {
    let dir = n.node_dir(i);
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["docker", "run"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| path_err(&dir.join(sub), e))?;
    }
    Ok(())
}

/// Starts node `i` with `driver`; node 1 tries each storage driver in turn
/// (overlay2 does not nest on every host) and the others use what worked.
async fn start_node(
    d: &Docker,
    n: &Names,
    i: usize,
    image: &str,
    drivers: &[&str],
) -> Result<(Docker, String), Error> {
    let mut tried = vec![];
    for driver in drivers {
        reset_dir(n, i)?;
        create_and_start(d, &n.node(i), node::node_spec(n, i, image, driver)).await?;
        match wait_engine(d, n, i).await {
            Ok(nd) => return Ok((nd, driver.to_string())),
            Err(why) => {
                tried.push(format!("with {driver}: {why}"));
                remove_container(d, &n.node(i)).await;
            }
        }
    }
    Err(Diagnostic::error(format!(
        "node {i} ({}) did not start:\n{}",
        n.node(i),
        tried.join("\n")
    ))
    .fix("the node needs cgroup and mount rights the host engine may refuse; see the log lines above, and docs/cluster.md"))
}

/// The node's address on the cluster network.
async fn address(d: &Docker, n: &Names, i: usize) -> Result<String, Error> {
    d.inspect_container(&n.node(i), None::<q::InspectContainerOptions>)
        .await
        .ok()
        .and_then(|c| {
            c.network_settings?
                .networks?
                .get(&n.network())?
                .ip_address
                .clone()
        })
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            Diagnostic::error(format!("node {i} has no address on {}", n.network()))
                .fix(CLUSTER_FIX)
        })
}

/// The swarm's nodes as the manager sees them: (hostname, ready).
async fn swarm_nodes(m: &Docker) -> Result<Vec<bollard::models::Node>, Error> {
    m.list_nodes(None::<q::ListNodesOptions>)
        .await
        .map_err(|e| host_err("listing the swarm's nodes on node 1", e))
}

fn ready(nodes: &[bollard::models::Node]) -> usize {
    nodes
        .iter()
        .filter(|x| x.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY))
        .count()
}

/// What `up` found already there.
enum Found {
    Nothing,
    Healthy,
    Broken(String),
}

async fn inspect_existing(d: &Docker, n: &Names, nodes: usize) -> Result<Found, Error> {
    let cs = containers(d, n).await?;
    let net = d
        .inspect_network(&n.network(), None::<q::InspectNetworkOptions>)
        .await
        .is_ok();
    if cs.is_empty() && !net && !n.dir.exists() {
        return Ok(Found::Nothing);
    }
    let names: Vec<String> = cs.iter().map(name_of).collect();
    let mut want: Vec<String> = (1..=nodes).map(|i| n.node(i)).collect();
    want.push(n.registry());
    let missing: Vec<&String> = want.iter().filter(|w| !names.contains(w)).collect();
    if !missing.is_empty() || names.len() != want.len() {
        return Ok(Found::Broken(format!(
            "it has {} container(s) ({}), a {nodes}-node cluster has {}",
            names.len(),
            names.join(", "),
            want.len()
        )));
    }
    if let Some(c) = cs.iter().find(|c| !running(c)) {
        return Ok(Found::Broken(format!("{} is not running", name_of(c))));
    }
    let m = connect_node(n, 1).await?;
    let sn = swarm_nodes(&m).await?;
    if ready(&sn) != nodes || sn.len() != nodes {
        return Ok(Found::Broken(format!(
            "{} of its {} swarm node(s) are ready",
            ready(&sn),
            sn.len()
        )));
    }
    Ok(Found::Healthy)
}

pub async fn up(root: &Path, cluster: &str, nodes: usize) -> Result<(), Error> {
    if !(1..=9).contains(&nodes) {
        return Err(
            Diagnostic::error(format!("--nodes {nodes}: a cluster has 1 to 9 nodes"))
                .fix("cargo xtask cluster up --nodes 3"),
        );
    }
    let n = Names::new(root, cluster);
    // sockaddr_un holds 107 bytes of path.
    if n.socket(nodes).as_os_str().len() > 100 {
        return Err(Diagnostic::error(format!(
            "the node sockets' path {} is too long for a unix socket",
            n.socket(nodes).display()
        ))
        .fix("use a shorter --name or a checkout at a shorter path"));
    }
    let d = docker::connect().await?;
    let _lock = lock(&n)?;
    match inspect_existing(&d, &n, nodes).await? {
        Found::Healthy => {
            println!("cluster `{cluster}`: already up and healthy ({nodes} node(s)); reusing it");
            return print_access(&n);
        }
        Found::Broken(why) => {
            return Err(Diagnostic::error(format!(
                "cluster `{cluster}` exists but is not a healthy {nodes}-node cluster: {why}"
            ))
            .fix(format!(
                "cargo xtask cluster down{} (then up again)",
                name_flag(cluster)
            )))
        }
        Found::Nothing => {}
    }
    let t0 = Instant::now();
    let made = tokio::select! {
        r = make(&d, root, &n, nodes) => r,
        _ = tokio::signal::ctrl_c() => Err(Diagnostic::error("interrupted")),
    };
    if let Err(e) = made {
        eprintln!("cluster: up failed; removing what it made");
        teardown(&d, &n).await;
        return Err(e);
    }
    println!(
        "cluster `{cluster}`: {nodes} node(s) ready in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    print_access(&n)
}

fn name_flag(cluster: &str) -> String {
    if cluster == DEFAULT_NAME {
        String::new()
    } else {
        format!(" --name {cluster}")
    }
}

pub const DEFAULT_NAME: &str = "local";

fn print_access(n: &Names) -> Result<(), Error> {
    println!(
        "manager: export DOCKER_HOST=unix://{}",
        n.socket(1).display()
    );
    println!(
        "registry: {REGISTRY} (as the nodes name it; `cargo xtask cluster push <image>` puts a host image there)"
    );
    Ok(())
}

async fn make(d: &Docker, root: &Path, n: &Names, nodes: usize) -> Result<(), Error> {
    let image = rootfs(d, root).await?;
    d.create_network(NetworkCreateRequest {
        name: n.network(),
        driver: Some("bridge".into()),
        internal: Some(true),
        labels: Some(n.labels("network")),
        ..Default::default()
    })
    .await
    .map_err(|e| host_err(&format!("creating the network {}", n.network()), e))?;
    create_and_start(d, &n.registry(), node::registry_spec(n, &image)).await?;
    let t = Instant::now();
    let (manager, driver) = start_node(d, n, 1, &image, node::DRIVERS).await?;
    println!(
        "cluster: node 1 up ({driver}) in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    // The workers start while the manager makes the swarm.
    let chosen = [driver.as_str()];
    let workers = futures_util::future::try_join_all(
        (2..=nodes).map(|i| start_node(d, n, i, &image, &chosen)),
    );
    let addr1 = address(d, n, 1).await?;
    manager
        .init_swarm(SwarmInitRequest {
            listen_addr: Some("0.0.0.0:2377".into()),
            advertise_addr: Some(addr1.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| host_err("swarm init on node 1", e))?;
    let token = manager
        .inspect_swarm()
        .await
        .ok()
        .and_then(|s| s.join_tokens?.worker)
        .ok_or_else(|| Diagnostic::error("node 1 gave no worker join token").fix(CLUSTER_FIX))?;
    let workers = workers.await?;
    for (k, (w, _)) in workers.iter().enumerate() {
        let i = k + 2;
        let addr = address(d, n, i).await?;
        w.join_swarm(SwarmJoinRequest {
            listen_addr: Some("0.0.0.0:2377".into()),
            advertise_addr: Some(addr),
            remote_addrs: Some(vec![format!("{addr1}:2377")]),
            join_token: Some(token.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| host_err(&format!("node {i} joining the swarm"), e))?;
    }
    let t = Instant::now();
    loop {
        let sn = swarm_nodes(&manager).await?;
        if sn.len() == nodes && ready(&sn) == nodes {
            return Ok(());
        }
        if t.elapsed() > READY_WAIT {
            return Err(Diagnostic::error(format!(
                "{} of {nodes} node(s) became ready within {}s",
                ready(&sn),
                READY_WAIT.as_secs()
            ))
            .fix("see `cargo xtask cluster status` and the nodes' logs (`docker logs <node>`)"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Removes the cluster's containers, networks, volumes and folder; returns
/// what it removed (names), and what it could not remove.
async fn teardown(d: &Docker, n: &Names) -> (Vec<String>, Vec<String>) {
    let (mut gone, mut left) = (vec![], vec![]);
    let filters = label_filter(n);
    for c in containers(d, n).await.unwrap_or_default() {
        let name = name_of(&c);
        match d
            .remove_container(
                c.id.as_deref().unwrap_or(&name),
                Some(q::RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => gone.push(name),
            Err(e) => left.push(format!("container {name}: {e}")),
        }
    }
    let nets = d
        .list_networks(Some(q::ListNetworksOptions {
            filters: Some(filters.clone()),
        }))
        .await
        .unwrap_or_default();
    for net in nets {
        let name = net.name.unwrap_or_default();
        match d.remove_network(&name).await {
            Ok(()) => gone.push(name),
            Err(e) => left.push(format!("network {name}: {e}")),
        }
    }
    let vols = d
        .list_volumes(Some(q::ListVolumesOptions {
            filters: Some(filters),
        }))
        .await
        .ok()
        .and_then(|v| v.volumes)
        .unwrap_or_default();
    for v in vols {
        match d
            .remove_volume(&v.name, None::<q::RemoveVolumeOptions>)
            .await
        {
            Ok(()) => gone.push(v.name),
            Err(e) => left.push(format!("volume {}: {e}", v.name)),
        }
    }
    if n.dir.exists() {
        match std::fs::remove_dir_all(&n.dir) {
            Ok(()) => gone.push(n.dir.display().to_string()),
            Err(e) => left.push(format!("{}: {e}", n.dir.display())),
        }
    }
    (gone, left)
}

pub async fn down(root: &Path, cluster: &str, purge: bool) -> Result<(), Error> {
    let n = Names::new(root, cluster);
    let d = docker::connect().await?;
    let _lock = lock(&n)?;
    let t0 = Instant::now();
    let (gone, mut left) = teardown(&d, &n).await;
    let mut images = 0;
    if purge {
        let filters = HashMap::from([(
            "reference".to_string(),
            vec!["monorepo-local/cluster-rootfs:*".to_string()],
        )]);
        for img in d
            .list_images(Some(q::ListImagesOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .unwrap_or_default()
        {
            for t in img.repo_tags {
                match d
                    .remove_image(&t, None::<q::RemoveImageOptions>, None)
                    .await
                {
                    Ok(_) => images += 1,
                    Err(e) => left.push(format!("image {t}: {e}")),
                }
            }
        }
    }
    if !left.is_empty() {
        return Err(Diagnostic::error(format!(
            "cluster `{cluster}`: could not remove:\n  {}",
            left.join("\n  ")
        ))
        .fix(format!(
            "run `cargo xtask cluster down{}` again",
            name_flag(cluster)
        )));
    }
    println!(
        "cluster `{cluster}`: removed {} object(s){} in {:.1}s",
        gone.len(),
        if purge {
            format!(" and {images} image(s)")
        } else {
            String::new()
        },
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A container's memory use as `docker stats` counts it (without the
/// page cache it could drop).
async fn memory(d: &Docker, name: &str) -> Option<u64> {
    let s = d
        .stats(
            name,
            Some(q::StatsOptions {
                stream: false,
                one_shot: true,
            }),
        )
        .next()
        .await?
        .ok()?;
    let m = s.memory_stats?;
    let cache = m.stats.as_ref().and_then(|st| {
        st.get("total_inactive_file")
            .or_else(|| st.get("inactive_file"))
            .copied()
    });
    Some(m.usage?.saturating_sub(cache.unwrap_or(0)))
}

pub async fn status(root: &Path, cluster: &str) -> Result<(), Error> {
    let n = Names::new(root, cluster);
    let d = docker::connect().await?;
    let cs = containers(&d, &n).await?;
    if cs.is_empty() {
        println!("cluster `{cluster}`: not up");
        return Ok(());
    }
    let m = connect_node(&n, 1).await.map_err(|e| {
        e.fix(format!(
            "node 1 is not answering: `docker logs {}`, or `cargo xtask cluster down{}`",
            n.node(1),
            name_flag(cluster)
        ))
    })?;
    let mut sn = swarm_nodes(&m).await?;
    sn.sort_by_key(|x| x.description.as_ref().and_then(|d| d.hostname.clone()));
    println!("cluster `{cluster}`: {} node(s)", sn.len());
    println!(
        "{:<27} {:<8} {:<8} {:<12} {:<8} {:>10}",
        "ID", "HOSTNAME", "STATE", "AVAILABILITY", "ROLE", "MEMORY"
    );
    for x in &sn {
        let host = x
            .description
            .as_ref()
            .and_then(|d| d.hostname.clone())
            .unwrap_or_default();
        let spec = x.spec.as_ref();
        let mem = match host.strip_prefix("node").and_then(|i| i.parse().ok()) {
            Some(i) => memory(&d, &n.node(i)).await,
            None => None,
        };
        println!(
            "{:<27} {:<8} {:<8} {:<12} {:<8} {:>10}",
            x.id.clone().unwrap_or_default(),
            host,
            x.status
                .as_ref()
                .and_then(|s| s.state)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            spec.and_then(|s| s.availability)
                .unwrap_or(NodeSpecAvailabilityEnum::EMPTY)
                .to_string(),
            spec.and_then(|s| s.role)
                .map(|r| r.to_string())
                .unwrap_or_default(),
            mem.map(|b| format!("{:.1}MiB", b as f64 / 1048576.0))
                .unwrap_or_else(|| "-".into()),
        );
    }
    let reg = cs.iter().find(|c| name_of(c) == n.registry());
    println!(
        "registry: {} {} ({REGISTRY} from the nodes)",
        n.registry(),
        reg.and_then(|c| c.state.as_ref().map(|s| s.to_string()))
            .unwrap_or_else(|| "missing".into())
    );
    print_access(&n)
}

/// The name an image has in the cluster's registry.
pub fn registry_ref(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let image = if last.contains(':') || image.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    };
    format!("{REGISTRY}/{image}")
}

/// Copies host images into node 1 (`docker save | docker load` through the
/// two engines' APIs) and pushes them to the cluster's registry from there.
/// Returns their registry names.
pub async fn push(root: &Path, cluster: &str, images: &[String]) -> Result<Vec<String>, Error> {
    let n = Names::new(root, cluster);
    let d = docker::connect().await?;
    let _lock = lock(&n)?;
    let m = connect_node(&n, 1)
        .await
        .map_err(|e| e.fix(format!("cargo xtask cluster up{}", name_flag(cluster))))?;
    let pairs: Vec<(String, String)> = images
        .iter()
        .map(|i| (i.clone(), registry_ref(i)))
        .collect();
    let t = Instant::now();
    load_and_push(&d, &m, &pairs).await.map_err(|e| {
        e.fix(format!(
            "`cargo xtask cluster status{}`: is the registry running?",
            name_flag(cluster)
        ))
    })?;
    for (_, r) in &pairs {
        println!("cluster: pushed {r}");
    }
    println!(
        "cluster: {} image(s) in {:.1}s",
        pairs.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(pairs.into_iter().map(|(_, r)| r).collect())
}

/// Moves `(host image, registry name)` pairs from the host engine into the
/// manager in one `save | load` (shared layers travel once), tags them
/// there and pushes them to the registry.
pub async fn load_and_push(
    host: &Docker,
    manager: &Docker,
    pairs: &[(String, String)],
) -> Result<(), Error> {
    for (image, _) in pairs {
        if !docker::image_exists(host, image).await {
            return Err(
                Diagnostic::error(format!("no image {image} on this engine"))
                    .fix("build or pull it first; `docker images` lists what is here"),
            );
        }
    }
    let names: Vec<&str> = pairs.iter().map(|(i, _)| i.as_str()).collect();
    let mut load = manager.import_image_stream(
        q::ImportImageOptions {
            quiet: true,
            ..Default::default()
        },
        host.export_images(&names),
        None,
    );
    while let Some(r) = load.next().await {
        r.map_err(|e| host_err("loading the images into node 1", e))?;
    }
    for (image, target) in pairs {
        let (repo, tag) = target.rsplit_once(':').unwrap_or((target, "latest"));
        manager
            .tag_image(
                image,
                Some(q::TagImageOptions {
                    repo: Some(repo.to_string()),
                    tag: Some(tag.to_string()),
                }),
            )
            .await
            .map_err(|e| host_err(&format!("tagging {image} as {target} on node 1"), e))?;
        let mut s = manager.push_image(
            repo,
            Some(q::PushImageOptions {
                tag: Some(tag.to_string()),
                ..Default::default()
            }),
            None,
        );
        while let Some(r) = s.next().await {
            let info = r.map_err(|e| host_err(&format!("pushing {target}"), e))?;
            if let Some(e) = info.error_detail.and_then(|e| e.message) {
                return Err(Diagnostic::error(format!("pushing {target}: {e}")).fix(CLUSTER_FIX));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn registry_names() {
        assert_eq!(
            super::registry_ref("monorepo-local/python:abc"),
            "registry:5000/monorepo-local/python:abc"
        );
        assert_eq!(
            super::registry_ref("busybox"),
            "registry:5000/busybox:latest"
        );
    }
}
