//! `cluster up|status|push|down` for real: three nodes become Ready in one
//! swarm (the nested engines' own `docker node ls` is the oracle), an image
//! pushed from the host through the manager is pulled by a worker, a second
//! `up` reuses the healthy cluster and refuses a broken one, and `down`
//! leaves the host engine's containers, networks, volumes and images
//! exactly as they were. Prints the cold/warm times and each node's memory.
//!
//! `verify --engine swarm --cluster` passes the example on three nodes with
//! a reach and a block cell of every network across nodes, shows each
//! cell's nodes, and leaves nothing of the run on any node.
//!
//! The host engine never becomes a swarm: the swarm lives in the nodes.
//! The tests take turns (SERIAL): each makes a cluster of its own.
//! On an engine other people use at the same time, set
//! `CLUSTER_TEST_SHARED_ENGINE=1` to compare only what the cluster could
//! have made (its label and prefix, the root filesystem image).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Instant;

use crate::common::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn docker_at(host: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new("docker");
    if let Some(sock) = host {
        c.env("DOCKER_HOST", format!("unix://{}", sock.display()));
    }
    c.args(args).output().expect("docker")
}

fn lines(o: Output) -> BTreeSet<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The host engine's objects: containers, networks, volumes, images (with
/// their tags), and its swarm state.
fn host_objects() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (kind, args) in [
        (
            "container",
            &["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"][..],
        ),
        (
            "network",
            &["network", "ls", "--format", "{{.ID}} {{.Name}}"],
        ),
        ("volume", &["volume", "ls", "--format", "{{.Name}}"]),
        (
            "image",
            &[
                "images",
                "-a",
                "--no-trunc",
                "--format",
                "{{.ID}} {{.Repository}}:{{.Tag}}",
            ],
        ),
        ("swarm", &["info", "--format", "{{.Swarm.LocalNodeState}}"]),
    ] {
        for l in lines(docker_at(None, args)) {
            out.insert(format!("{kind} {l}"));
        }
    }
    out
}

fn ours(name: &str, o: &str) -> bool {
    o.contains(&format!("monorepo-cluster-{name}")) || o.contains("cluster-rootfs")
}

fn assert_host_as_before(before: &BTreeSet<String>, name: &str, what: &str) {
    assert_host_as_before_but(before, name, what, |_| false)
}

/// verify's own image cache on the host (the builds it keeps, the probe,
/// a classic build's intermediate layers): a multi-node verify adds to it
/// as any verify does.
fn verify_cache(o: &str) -> bool {
    o.starts_with("image ")
        && (o.contains(" monorepo-verify/")
            || o.contains(" monorepo-local/probe")
            || o.ends_with(" <none>:<none>"))
}

fn assert_host_as_before_but(
    before: &BTreeSet<String>,
    name: &str,
    what: &str,
    allowed: impl Fn(&str) -> bool,
) {
    let after = host_objects();
    let shared = std::env::var_os("CLUSTER_TEST_SHARED_ENGINE").is_some();
    let diff: Vec<String> = before
        .symmetric_difference(&after)
        .filter(|o| !allowed(o))
        .filter(|o| !shared || ours(name, o) || o.starts_with("swarm"))
        .map(|o| {
            let sign = if after.contains(o.as_str()) { "+" } else { "-" };
            format!("{sign} {o}")
        })
        .collect();
    assert!(
        diff.is_empty(),
        "{what}: the host engine changed:\n{}",
        diff.join("\n")
    );
}

/// `before`, plus the root filesystem image if `before` had none: `down`
/// keeps it as the cache of the next `up` (`down --purge` removes it).
fn with_cache(before: &BTreeSet<String>) -> BTreeSet<String> {
    let mut expected = before.clone();
    if !before.iter().any(|o| o.contains("cluster-rootfs")) {
        expected.extend(
            host_objects()
                .into_iter()
                .filter(|o| o.starts_with("image ") && o.contains("cluster-rootfs")),
        );
    }
    expected
}

fn cluster(root: &Path, name: &str, args: &[&str]) -> (Output, f64) {
    let mut a = vec!["cluster", "--name", name];
    a.extend_from_slice(args);
    let t = Instant::now();
    let o = xtask(root, &a);
    (o, t.elapsed().as_secs_f64())
}

fn ok(o: &Output, what: &str) {
    assert_eq!(o.status.code(), Some(0), "{what}:\n{}", text(o));
}

/// The nested swarm, as its own CLI sees it, and `cluster status`: three
/// nodes Ready; no node has a way out to the host.
fn assert_three_ready_nodes(root: &Path, name: &str, manager: &Path) {
    let nodes = lines(docker_at(
        Some(manager),
        &[
            "node",
            "ls",
            "--format",
            "{{.Hostname}} {{.Status}} {{.Availability}}",
        ],
    ));
    let want: BTreeSet<String> = (1..=3).map(|i| format!("node{i} Ready Active")).collect();
    assert_eq!(nodes, want);
    let (o, _) = cluster(root, name, &["status"]);
    ok(&o, "cluster status");
    let st = text(&o);
    assert_eq!(st.matches(" ready ").count(), 3, "{st}");
    assert!(
        st.contains("manager") && st.contains("registry: monorepo-cluster-"),
        "{st}"
    );
    // No node has a way out to the host: no default route.
    for i in 1..=3 {
        let r = docker_at(
            None,
            &[
                "exec",
                &format!("monorepo-cluster-{name}-node{i}"),
                "ip",
                "route",
            ],
        );
        let r = String::from_utf8_lossy(&r.stdout).into_owned();
        assert!(!r.contains("default"), "node{i} routes:\n{r}");
    }
}

/// A host image, through the manager's engine, into the registry; a worker
/// pulls it. Returns how long the push took.
fn push_and_pull_on_a_worker(root: &Path, name: &str) -> f64 {
    let tiny = std::env::temp_dir().join(format!("xtask-cluster-img-{name}"));
    std::fs::create_dir_all(&tiny).unwrap();
    std::fs::write(tiny.join("hello"), format!("cluster test {name}\n")).unwrap();
    let image = format!("monorepo-cluster-{name}-test/hello:1");
    let imported = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} -c . | docker import - {image}",
            tiny.display()
        ))
        .output()
        .unwrap();
    ok(&imported, "docker import");
    let t = Instant::now();
    let (o, _) = cluster(root, name, &["push", &image]);
    let push_secs = t.elapsed().as_secs_f64();
    ok(&o, "cluster push");
    let remote = format!("registry:5000/{image}");
    assert!(text(&o).contains(&remote), "{}", text(&o));
    let worker = root.join(format!("target/xtask/cluster/{name}/node3/run/docker.sock"));
    ok(
        &docker_at(Some(&worker), &["pull", &remote]),
        "pull on node 3",
    );
    ok(
        &docker_at(Some(&worker), &["image", "inspect", &remote]),
        "the image on node 3",
    );
    let _ = docker_at(None, &["rmi", &image]);
    let _ = std::fs::remove_dir_all(&tiny);
    push_secs
}

/// Each node's and the registry's memory use, as `docker stats` reports it.
fn node_memory(name: &str) -> String {
    String::from_utf8_lossy(
        &docker_at(
            None,
            &[
                "stats",
                "--no-stream",
                "--format",
                "{{.Name}} {{.MemUsage}}",
                &format!("monorepo-cluster-{name}-node1"),
                &format!("monorepo-cluster-{name}-node2"),
                &format!("monorepo-cluster-{name}-node3"),
                &format!("monorepo-cluster-{name}-registry"),
            ],
        )
        .stdout,
    )
    .into_owned()
}

/// A healthy cluster is reused; a broken one is refused with the fix.
/// Returns how long the reusing `up` took.
fn assert_reused_then_refused_when_broken(root: &Path, name: &str) -> f64 {
    let (o, reuse) = cluster(root, name, &["up"]);
    ok(&o, "second cluster up");
    assert!(text(&o).contains("reusing it"), "{}", text(&o));
    ok(
        &docker_at(None, &["kill", &format!("monorepo-cluster-{name}-node3")]),
        "docker kill node3",
    );
    let (o, _) = cluster(root, name, &["up"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("is not running") && text(&o).contains("cluster down"),
        "{}",
        text(&o)
    );
    reuse
}

#[test]
fn three_nodes_push_pull_reuse_refuse_and_down_leaves_the_host_as_found() {
    let _area = area("cluster");
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(docker_available(), "these tests need a Docker daemon");
    let c = copy("cluster");
    let root = c.root.as_path();
    let name = format!("t{}", std::process::id() % 100000);
    let before = host_objects();
    assert!(
        before.contains("swarm inactive"),
        "the host engine must be in no swarm"
    );
    let cached = before.iter().any(|o| o.contains("cluster-rootfs"));

    let (o, first) = cluster(root, &name, &["up"]);
    ok(&o, "cluster up");
    let manager = root.join(format!("target/xtask/cluster/{name}/node1/run/docker.sock"));
    assert!(
        text(&o).contains(&format!("DOCKER_HOST=unix://{}", manager.display())),
        "{}",
        text(&o)
    );

    assert_three_ready_nodes(root, &name, &manager);
    let push_secs = push_and_pull_on_a_worker(root, &name);
    let mem = node_memory(&name);
    let reuse = assert_reused_then_refused_when_broken(root, &name);

    let (o, down1) = cluster(root, &name, &["down"]);
    ok(&o, "cluster down");
    assert_host_as_before(&with_cache(&before), &name, "after down");
    assert!(!root.join(format!("target/xtask/cluster/{name}")).exists());

    let (o, warm) = cluster(root, &name, &["up"]);
    ok(&o, "warm cluster up");
    let purge: &[&str] = if cached {
        &["down"]
    } else {
        &["down", "--purge"]
    };
    let (o, down2) = cluster(root, &name, purge);
    ok(&o, "last cluster down");
    assert_host_as_before(&before, &name, "after the last down");

    eprintln!(
        "cluster: first up {first:.1}s ({}), warm up {warm:.1}s, reuse {reuse:.1}s, push {push_secs:.1}s, down {down1:.1}s / {down2:.1}s\nmemory:\n{mem}",
        if cached { "root filesystem cached" } else { "cold: root filesystem built" }
    );
}

/// What a verify run left on a node: anything labelled with a run, and
/// the run's image tags.
fn run_leftovers(sock: &Path) -> Vec<String> {
    let f = "label=monorepo.verify.run";
    let mut out = vec![];
    for (kind, args) in [
        ("container", &["ps", "-aq", "--filter", f][..]),
        ("volume", &["volume", "ls", "-q", "--filter", f]),
        ("network", &["network", "ls", "-q", "--filter", f]),
        ("service", &["service", "ls", "-q", "--filter", f]),
        ("secret", &["secret", "ls", "-q", "--filter", f]),
        ("config", &["config", "ls", "-q", "--filter", f]),
    ] {
        for l in lines(docker_at(Some(sock), args)) {
            out.push(format!("{kind} {l}"));
        }
    }
    for l in lines(docker_at(
        Some(sock),
        &["images", "--format", "{{.Repository}}:{{.Tag}}"],
    )) {
        if l.contains("/run-") {
            out.push(format!("image {l}"));
        }
    }
    out
}

#[test]
fn the_example_passes_across_three_nodes_and_a_run_leaves_nothing_even_interrupted() {
    let _area = area("cluster");
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = prepared("clv");
    let root = c.root.as_path();
    let name = format!("v{}", std::process::id() % 100000);
    let before = host_objects();
    let (o, up) = cluster(root, &name, &["up"]);
    ok(&o, "cluster up");
    let sock = |i: usize| {
        root.join(format!(
            "target/xtask/cluster/{name}/node{i}/run/docker.sock"
        ))
    };

    let t = Instant::now();
    let o = verify(
        root,
        &["--engine", "swarm", "--cluster", &name, "--format", "json"],
    );
    let secs = t.elapsed().as_secs_f64();
    let out = text(&o);
    let leftovers: Vec<String> = (1..=3).flat_map(|i| run_leftovers(&sock(i))).collect();
    // Interrupted once its services run: it still removes everything.
    let log = root.join("interrupted.log");
    let mut child = spawn_verify(
        root,
        &["--engine", "swarm", "--cluster", &name],
        std::fs::File::create(&log).unwrap().into(),
    );
    let t0 = Instant::now();
    while t0.elapsed().as_secs() < 300
        && !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("  node   ")
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let int_log = std::fs::read_to_string(&log).unwrap_or_default();
    let int_leftovers: Vec<String> = (1..=3).flat_map(|i| run_leftovers(&sock(i))).collect();
    // Whatever happened, the cluster goes.
    let (d, down) = cluster(root, &name, &["down"]);
    ok(&d, "cluster down");
    assert_host_as_before_but(
        &with_cache(&before),
        &name,
        "after the multi-node verify",
        verify_cache,
    );
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(leftovers, Vec::<String>::new(), "{out}");
    assert_eq!(status.code(), Some(2), "{int_log}");
    assert!(int_log.contains("interrupted (SIGINT)"), "{int_log}");
    assert_eq!(int_leftovers, Vec::<String>::new(), "{int_log}");

    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["engine"]["endpoint_mode"], "dnsrr", "{out}");
    let placed: BTreeSet<&str> = v["engine"]["nodes"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|n| n.as_str())
        .collect();
    assert_eq!(placed.len(), 3, "services on every node: {placed:?}");
    let cells = v["cells"].as_array().unwrap();
    assert!(!cells.is_empty());
    let crossing = |expected: &str| {
        cells
            .iter()
            .filter(|c| c["expected"] == expected && c["ok"] == true)
            .filter(|c| c["source_node"].is_string() && c["source_node"] != c["target_node"])
            .count()
    };
    for c in cells {
        assert!(
            c["source_node"].is_string() && c["target_node"].is_string(),
            "{c}"
        );
    }
    assert!(
        crossing("reachable") >= 4 && crossing("unreachable") >= 4,
        "{out}"
    );
    // The per-network proof: a reach and a block cell across nodes each.
    for net in ["grpc-network", "pg-network", "redis-network", "web-network"] {
        for what in ["reach", "block"] {
            let line = out
                .lines()
                .find(|l| l.contains(&format!("cross  {net}: {what} ")))
                .unwrap_or_else(|| panic!("no {what} line for {net}:\n{out}"));
            assert!(line.contains("as expected"), "{line}");
        }
    }
    eprintln!("cluster verify: up {up:.1}s, verify {secs:.1}s, down {down:.1}s");
}
