//! `export swarm|k8s`: the real binary on a copy of the repository. The
//! manifests are checked by real validators (kubernetes-validate with the
//! Kubernetes schemas, `docker stack config`, `docker compose config`), and
//! `export k8s --check` must catch stale files and policy mutations.

mod common;

use std::process::Command;

use common::{copy, text, xtask};

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
    let committed = common::snapshot(&c.root);
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
    let after = common::snapshot(&c.root);
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
