//! `export swarm|k8s`: the real binary on a copy of the repository. The
//! manifests are checked by real validators (kubernetes-validate with the
//! Kubernetes schemas, `docker stack config`, `docker compose config`), and
//! `export k8s --check` must catch stale files and policy mutations.

use std::process::Command;

use crate::common::{copy, text, xtask};

/// The Kubernetes version the manifests are validated against.
const K8S_VERSION: &str = "1.34.0";

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn edit(root: &std::path::Path, rel: &str, from: &str, to: &str) {
    let p = root.join(rel);
    let t = std::fs::read_to_string(&p).unwrap();
    assert!(t.contains(from), "{rel} has no `{from}`");
    std::fs::write(&p, t.replacen(from, to, 1)).unwrap();
}

#[test]
fn exported_files_validate() {
    let c = copy("export-validate");
    let o = xtask(&c.root, &["certs"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    for what in ["k8s", "swarm"] {
        let o = xtask(&c.root, &["export", what]);
        assert_eq!(code(&o), 0, "{}", text(&o));
    }
    // The stack file: Docker's own loaders (paths relative to the file).
    let stack = c.root.join("deploy/swarm/stack.yml");
    let o = Command::new("docker")
        .args(["compose", "-f"])
        .arg(&stack)
        .args(["config", "-q"])
        .output()
        .expect("docker compose");
    assert!(o.status.success(), "docker compose config: {}", text(&o));
    let o = Command::new("docker")
        .args(["stack", "config", "-c"])
        .arg(&stack)
        .output()
        .expect("docker");
    assert!(o.status.success(), "docker stack config: {}", text(&o));
    // The manifests: the Kubernetes schemas, strict (unknown fields fail).
    let dir = c.root.join("deploy/k8s");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    match Command::new("kubernetes-validate").args(["-k", K8S_VERSION, "--strict", "--quiet"]).args(&files).output() {
        Err(e) => eprintln!("SKIPPED: kubernetes-validate is not installed ({e}); `bash scripts/setup.sh` installs it"),
        Ok(o) => assert!(o.status.success(), "kubernetes-validate: {}", text(&o)),
    }
    // The validator is a real oracle: an unknown field fails it.
    let bad = dir.join("redis.service.yaml");
    edit(
        &c.root,
        "deploy/k8s/redis.service.yaml",
        "spec:\n",
        "spec:\n  bogus: 1\n",
    );
    if let Ok(o) = Command::new("kubernetes-validate")
        .args(["-k", K8S_VERSION, "--strict", "--quiet"])
        .arg(&bad)
        .output()
    {
        assert!(!o.status.success(), "an unknown field passed: {}", text(&o));
    }
}

#[test]
fn check_on_the_example_is_clean_and_catches_staleness() {
    let c = copy("export-stale");
    for what in ["k8s", "swarm"] {
        let o = xtask(&c.root, &["export", what, "--check"]);
        assert_eq!(
            code(&o),
            0,
            "the committed deploy/ files are current: {}",
            text(&o)
        );
    }
    let o = xtask(&c.root, &["export", "k8s", "--check"]);
    assert!(
        text(&o).contains("30 cell(s) (12 reachable)"),
        "{}",
        text(&o)
    );
    // gateway joins pg-network in compose; nothing re-exported.
    edit(
        &c.root,
        "docker-compose.yml",
        "      - grpc-network\n      - web-network\n",
        "      - grpc-network\n      - pg-network\n      - web-network\n",
    );
    for what in ["k8s", "swarm"] {
        let o = xtask(&c.root, &["export", what, "--check"]);
        assert_eq!(code(&o), 1, "{}", text(&o));
        assert!(
            text(&o).contains("out of date with docker-compose.yml"),
            "{}",
            text(&o)
        );
    }
    let out = text(&xtask(&c.root, &["export", "k8s", "--check"]));
    assert!(out.contains("gateway -> postgres:5432: must connect (they share a network), but the policies deny it"), "{out}");
    // Re-exported, it is clean again, and the new policy admits gateway.
    assert_eq!(code(&xtask(&c.root, &["export", "k8s"])), 0);
    let o = xtask(&c.root, &["export", "k8s", "--check"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(c
        .root
        .join("deploy/k8s/pg-network.gateway.networkpolicy.yaml")
        .exists());
}

#[test]
fn check_catches_policy_mutations() {
    let c = copy("export-mutate");
    let np = "deploy/k8s/pg-network.postgres.networkpolicy.yaml";
    let original = std::fs::read_to_string(c.root.join(np)).unwrap();
    let run = |root: &std::path::Path| {
        let o = xtask(root, &["export", "k8s", "--check"]);
        (code(&o), text(&o))
    };
    // A policy removed: nothing admits accounts to postgres.
    std::fs::remove_file(c.root.join(np)).unwrap();
    let (rc, out) = run(&c.root);
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("accounts -> postgres:5432: must connect (they share a network), but the policies deny it"), "{out}");
    // A selector widened: every pod of the namespace reaches postgres.
    std::fs::write(
        c.root.join(np),
        original.replace(
            "matchLabels:\n              net.monorepo/pg-network: \"true\"",
            "{}",
        ),
    )
    .unwrap();
    let (rc, out) = run(&c.root);
    assert_eq!(rc, 1, "{out}");
    for src in ["gateway", "nginx", "redis"] {
        assert!(out.contains(&format!("{src} -> postgres:5432: must not connect (they share no network), but the policies allow it: admitted by pg-network-to-postgres")), "{out}");
    }
    assert!(!out.contains("accounts -> postgres"), "{out}");
    // A port dropped (5432 -> 5433): the member is shut out.
    std::fs::write(
        c.root.join(np),
        original.replace("port: 5432", "port: 5433"),
    )
    .unwrap();
    let (rc, out) = run(&c.root);
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("accounts -> postgres:5432: must connect"),
        "{out}"
    );
    // The default deny removed: redundant while every pod has a policy of
    // its own (only staleness is reported), but a pod with none then
    // accepts everything.
    std::fs::write(c.root.join(np), &original).unwrap();
    std::fs::remove_file(
        c.root
            .join("deploy/k8s/default-deny-ingress.networkpolicy.yaml"),
    )
    .unwrap();
    let (rc, out) = run(&c.root);
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("out of date") && out.contains("policies: 30 cell(s)"),
        "{out}"
    );
    std::fs::remove_file(
        c.root
            .join("deploy/k8s/web-network.nginx.networkpolicy.yaml"),
    )
    .unwrap();
    let (rc, out) = run(&c.root);
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("accounts -> nginx:443: must not connect (they share no network), but the policies allow it: no policy isolates `nginx` for ingress"), "{out}");
}

#[test]
fn data_layer_is_carried_without_its_secrets() {
    let c = copy("export-datalayer");
    let committed = crate::common::snapshot(&c.root);
    let o = xtask(&c.root, &["certs"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    // The per-checkout credentials exist now; exporting again changes nothing.
    let secrets: Vec<String> = ["secrets/postgres.env", "secrets/accounts.env"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(c.root.join(f))
                .unwrap()
                .lines()
                .filter_map(|l| l.split_once('=').map(|(_, v)| v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        secrets.len() >= 4 && secrets.iter().all(|v| v.len() == 48),
        "{secrets:?}"
    );
    for what in ["k8s", "swarm"] {
        let o = xtask(&c.root, &["export", what]);
        assert_eq!(code(&o), 0, "{}", text(&o));
    }
    let after = crate::common::snapshot(&c.root);
    for (f, bytes) in after.iter().filter(|(f, _)| f.starts_with("deploy/")) {
        assert_eq!(
            committed.get(f),
            Some(bytes),
            "{f} changed once secrets/ existed"
        );
        let t = String::from_utf8_lossy(bytes);
        assert!(
            !secrets.iter().any(|s| t.contains(s.as_str())),
            "{f} holds a per-checkout password"
        );
    }
    let k = |f: &str| std::fs::read_to_string(c.root.join("deploy/k8s").join(f)).unwrap();
    // The init script as a ConfigMap, mounted executable; the ACL as a Secret.
    assert!(k("datalayer-postgres.configmap.yaml")
        .contains("\"10-service-roles.sh\": |\n    #!/bin/sh\n"));
    let pg = k("postgres.deployment.yaml");
    assert!(
        pg.contains("defaultMode: 365\n            name: \"datalayer-postgres\"")
            && pg.contains("mountPath: \"/docker-entrypoint-initdb.d\""),
        "{pg}"
    );
    assert!(
        pg.contains("secretRef:\n                name: \"secrets-postgres.env\""),
        "{pg}"
    );
    let redis = k("redis.deployment.yaml");
    assert!(redis.contains("args:\n            - \"redis-server\"\n            - \"/usr/local/etc/redis/redis.conf\""), "{redis}");
    assert!(
        redis.contains("subPath: \"redis.conf\"")
            && redis.contains("secretName: \"secrets-redis\""),
        "{redis}"
    );
    let script = k("create-secrets.sh");
    for line in [
        "--from-env-file=secrets/postgres.env",
        "--from-env-file=secrets/accounts.env",
        "secrets-redis --from-file=secrets/redis/",
    ] {
        assert!(script.contains(line), "{script}");
    }
    // The stack, resolved by Compose: every config and secret file is found.
    let o = Command::new("docker")
        .args(["compose", "-f"])
        .arg(c.root.join("deploy/swarm/stack.yml"))
        .args(["config", "--format", "json"])
        .output()
        .expect("docker compose");
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["services"]["redis"]["command"],
        serde_json::json!(["redis-server", "/usr/local/etc/redis/redis.conf"])
    );
    assert_eq!(
        v["services"]["postgres"]["configs"][0]["target"],
        "/docker-entrypoint-initdb.d/10-service-roles.sh"
    );
    assert_eq!(
        v["services"]["postgres"]["configs"][0]["mode"], "0555",
        "Compose reads the mode as octal 0555"
    );
    assert_eq!(
        v["services"]["redis"]["secrets"][0]["target"],
        "/usr/local/etc/redis/acl/users.acl"
    );
    assert!(v["secrets"]["secrets-redis-users.acl"]["file"]
        .as_str()
        .unwrap()
        .ends_with("/secrets/redis/users.acl"));
    // env_file is read by the deploying client: the values are in the resolved
    // model, never in the committed file.
    let pgpw = &v["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"];
    assert!(
        pgpw.as_str()
            .is_some_and(|p| secrets.iter().any(|s| s == p)),
        "{pgpw}"
    );
}

#[test]
fn other_host_folders_are_still_refused() {
    let c = copy("export-refuse");
    edit(&c.root, "docker-compose.yml", "      - ./certs/trust:/run/trust:ro\n      - ./certs/services", "      - ./certs/trust:/run/trust:ro\n      - ./nginx:/srv/nginx:ro\n      - ./certs/services");
    for what in ["k8s", "swarm"] {
        let o = xtask(&c.root, &["export", what]);
        assert_eq!(code(&o), 2, "{}", text(&o));
        assert!(text(&o).contains("service `accounts` bind-mounts `./nginx`, a folder of this machine, which a cluster does not have"), "{}", text(&o));
    }
    // Out of datalayer/ by `..` is refused the same way.
    edit(
        &c.root,
        "docker-compose.yml",
        "./nginx:/srv/nginx:ro",
        "./datalayer/../nginx:/srv/nginx:ro",
    );
    let o = xtask(&c.root, &["export", "k8s"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("bind-mounts `./datalayer/../nginx`"),
        "{}",
        text(&o)
    );
}

/// `docker compose config --format json`'s model of the stack file.
fn stack_model(root: &std::path::Path) -> serde_json::Value {
    let o = Command::new("docker")
        .args(["compose", "-f"])
        .arg(root.join("deploy/swarm/stack.yml"))
        .args(["config", "--format", "json"])
        .output()
        .expect("docker compose");
    assert!(o.status.success(), "docker compose config: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The services of the stack file that publish a port, as Compose reads it.
fn publishing(root: &std::path::Path) -> Vec<String> {
    let m = stack_model(root);
    m["services"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, s)| s["ports"].as_array().is_some_and(|p| !p.is_empty()))
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn swarm_publishes_only_the_services_meant_for_the_network() {
    let c = copy("export-swarm-ports");
    // The stack file names the per-checkout env files.
    assert_eq!(code(&xtask(&c.root, &["certs"])), 0);
    assert_eq!(publishing(&c.root), ["nginx"], "the committed stack file");
    let o = xtask(&c.root, &["export", "swarm", "--check"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    // A service labelled for the network publishes (on its host port).
    edit(
        &c.root,
        "docker-compose.yml",
        "      monorepo.public-path: \"/api/\"\n",
        "      monorepo.public-path: \"/api/\"\n      monorepo.reach: \"network\"\n",
    );
    assert_eq!(code(&xtask(&c.root, &["export", "swarm"])), 0);
    assert_eq!(publishing(&c.root), ["gateway", "nginx"]);
    let m = stack_model(&c.root);
    assert_eq!(m["services"]["gateway"]["ports"][0]["published"], "8080");
    assert_eq!(m["services"]["gateway"]["ports"][0]["target"], 8080);
    let o = Command::new("docker")
        .args(["stack", "config", "-c"])
        .arg(c.root.join("deploy/swarm/stack.yml"))
        .output()
        .expect("docker");
    assert!(o.status.success(), "docker stack config: {}", text(&o));
}

/// Every manifest of deploy/k8s with the text `needle`.
fn manifests_with(root: &std::path::Path, needle: &str) -> Vec<String> {
    std::fs::read_dir(root.join("deploy/k8s"))
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path()).unwrap().contains(needle))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn k8s_exposes_no_service_but_the_public_ones_and_check_holds_it() {
    let c = copy("export-k8s-exposure");
    for needle in [
        "hostPort",
        "hostNetwork",
        "NodePort",
        "LoadBalancer",
        "externalIPs",
    ] {
        assert_eq!(
            manifests_with(&c.root, needle),
            Vec::<String>::new(),
            "{needle}"
        );
    }
    let validate = |rel: &str| match Command::new("kubernetes-validate")
        .args(["-k", K8S_VERSION, "--strict", "--quiet"])
        .arg(c.root.join(rel))
        .output()
    {
        Err(e) => eprintln!("SKIPPED: kubernetes-validate is not installed ({e})"),
        Ok(o) => assert!(
            o.status.success(),
            "{rel}: kubernetes-validate: {}",
            text(&o)
        ),
    };
    let check = || {
        let o = xtask(&c.root, &["export", "k8s", "--check"]);
        (code(&o), text(&o))
    };
    let svc = "deploy/k8s/postgres.service.yaml";
    let dep = "deploy/k8s/postgres.deployment.yaml";
    let svc_text = std::fs::read_to_string(c.root.join(svc)).unwrap();
    let dep_text = std::fs::read_to_string(c.root.join(dep)).unwrap();
    // Valid manifests (the schemas accept them) that open postgres.
    for (ty, line) in [("NodePort", 12), ("LoadBalancer", 12)] {
        std::fs::write(
            c.root.join(svc),
            svc_text.replace("spec:\n", &format!("spec:\n  type: \"{ty}\"\n")),
        )
        .unwrap();
        validate(svc);
        let (rc, out) = check();
        assert_eq!(rc, 1, "{out}");
        assert!(out.contains(&format!("{svc}:{line}: the Service `postgres` of type {ty} opens `postgres` to the nodes' network, but `postgres` is not public")), "{out}");
    }
    std::fs::write(
        c.root.join(svc),
        svc_text.replace("spec:\n", "spec:\n  externalIPs:\n    - \"192.0.2.10\"\n"),
    )
    .unwrap();
    validate(svc);
    let (rc, out) = check();
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("the Service `postgres` with externalIPs opens `postgres`"),
        "{out}"
    );
    std::fs::write(c.root.join(svc), &svc_text).unwrap();
    assert_eq!(check().0, 0);
    assert!(dep_text.contains("containerPort: 5432\n"), "{dep_text}");
    // `hostPort` at the column of `containerPort` (the item's keys).
    let line = dep_text
        .lines()
        .find(|l| l.contains("containerPort: 5432"))
        .unwrap();
    let indent = " ".repeat(line.find("containerPort").unwrap());
    std::fs::write(
        c.root.join(dep),
        dep_text.replace(
            "containerPort: 5432\n",
            &format!("containerPort: 5432\n{indent}hostPort: 5432\n"),
        ),
    )
    .unwrap();
    validate(dep);
    let (rc, out) = check();
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("the Deployment `postgres`'s hostPort 5432 opens `postgres`"),
        "{out}"
    );
    std::fs::write(c.root.join(dep), &dep_text).unwrap();
    // nginx may be exposed: only staleness is reported.
    let nginx = "deploy/k8s/nginx.service.yaml";
    edit(
        &c.root,
        nginx,
        "spec:\n",
        "spec:\n  type: \"LoadBalancer\"\n",
    );
    validate(nginx);
    let (rc, out) = check();
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("out of date") && !out.contains("opens `"),
        "{out}"
    );
}
