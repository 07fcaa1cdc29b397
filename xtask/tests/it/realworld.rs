//! Real-world compose files: the minimal
//! reproductions, each run as the real binary on a copy of this repository
//! whose compose file is replaced or extended, held against `docker compose
//! config` (Compose v2) as the oracle.

use std::path::Path;
use std::process::Command;

use crate::common::*;

fn compose_ok(root: &Path, file: &str) -> Result<(), String> {
    let o = Command::new("docker")
        .current_dir(root)
        .args(["compose", "-f", file, "config", "-q"])
        .output()
        .expect("docker compose (v2)");
    if o.status.success() {
        Ok(())
    } else {
        Err(text(&o))
    }
}

fn write(root: &Path, rel: &str, body: &str) {
    std::fs::write(root.join(rel), body).unwrap();
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// This repository's compose file with `extra` appended under `services:`
/// (at the file's 2-space indentation).
fn with_services(root: &Path, extra: &str) -> String {
    let t = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let t = t.replacen("\nnetworks:\n", &format!("\n{extra}\nnetworks:\n"), 1);
    write(root, "docker-compose.yml", &t);
    t
}

/// add-service with every flag, then remove-service: exit 0 both, the
/// intermediate file passes Compose, and every byte comes back, the
/// per-checkout `secrets/` included: measured on a set-up checkout.
fn roundtrip(root: &Path, file: &str, add: &[&str]) -> String {
    set_up(root);
    let before = snapshot(root);
    let mut args = vec!["add-service", "zz-new"];
    args.extend_from_slice(add);
    let o = xtask(root, &args);
    assert_eq!(code(&o), 0, "add {args:?}:\n{}", text(&o));
    let mid = std::fs::read_to_string(root.join(file)).unwrap();
    if let Err(e) = compose_ok(root, file) {
        panic!("after add, docker compose rejects {file}:\n{e}\n---\n{mid}");
    }
    let o = xtask(root, &["remove-service", "zz-new"]);
    assert_eq!(code(&o), 0, "remove:\n{}", text(&o));
    assert_same(&before, &snapshot(root), "add then remove");
    mid
}

// ---- point 1: a reader no stricter than Compose ----------------------------

const READER_CASES: &[(&str, &str)] = &[
    ("flow-closed-at-key-indent", "  hc:\n    image: busybox\n    healthcheck:\n      test: [\n        \"CMD\", \"true\"\n      ]\n"),
    ("flow-closed-at-key-indent-2", "  hc:\n    image: busybox\n    command: [\n    \"sh\", \"-c\", \"true\"\n    ]\n"),
    ("dollar-var", "  bind:\n    image: busybox\n    ports:\n      - \"$BIND:80/tcp\"\n"),
    ("port-ranges", "  ranges:\n    image: busybox\n    ports:\n      - \"3001-3005\"\n      - \"9000-9001:9000-9001\"\n      - '${MIN:-20000}-${MAX:-20050}:20000-20050/udp'\n      - \"127.0.0.1::50052\"\n"),
    ("ports-long", "  long:\n    image: busybox\n    ports:\n      - target: 80\n        published: \"7000-7001\"\n        protocol: udp\n        host_ip: 127.0.0.1\n        mode: host\n      - target: 81\n        published: 7100\n"),
    ("env-file-long", "  envl:\n    image: busybox\n    env_file:\n      - path: ./x.env\n        required: false\n      - ./y.env\n"),
    ("tab-in-block-scalar", "  tabs:\n    image: busybox\n    command: |\n      echo \t hi\n       \tindented with a tab\n"),
    ("depends-on-map", "  dep:\n    image: busybox\n    depends_on:\n      postgres:\n        condition: service_healthy\n        restart: true\n        required: false\n"),
    ("networks-map", "  netm:\n    image: busybox\n    networks:\n      pg-network:\n        aliases: [db-client]\n      redis-network: {}\n"),
    ("volumes-long", "  voll:\n    image: busybox\n    volumes:\n      - type: volume\n        source: pg-data\n        target: /data\n        read_only: true\n      - type: bind\n        source: ./src\n        target: /src\n"),
    ("profiles", "  prof:\n    image: busybox\n    profiles: [debug]\n"),
    ("interpolation", "  interp:\n    image: \"busybox:${TAG-latest}\"\n    environment:\n      A: \"${UNSET:-${ALSO_UNSET:-nested}}\"\n      B: \"${SET_BUT:+alt}\"\n      C: \"$$NOT_A_VAR\"\n      D: \"${BIND?needs BIND}\"\n      E: \"${BIND:?needs BIND}\"\n      F: \"${NOPE+x}\"\n"),
];

#[test]
fn reader_accepts_what_compose_accepts_and_edits_round_trip() {
    let mut failures = vec![];
    for (name, extra) in READER_CASES {
        let c = copy(&format!("rw-reader-{name}"));
        let env = std::fs::read_to_string(c.root.join(".env")).unwrap_or_default();
        write(&c.root, ".env", &format!("{env}BIND=9000\n"));
        write(&c.root, "y.env", "Y=1\n");
        with_services(&c.root, extra);
        set_up(&c.root);
        compose_ok(&c.root, "docker-compose.yml")
            .unwrap_or_else(|e| panic!("{name}: the case itself must be valid compose: {e}"));
        let o = xtask(&c.root, &["list", "--format", "json"]);
        if code(&o) != 0 {
            failures.push(format!("{name}: list exit {}:\n{}", code(&o), text(&o)));
            continue;
        }
        let r = std::panic::catch_unwind(|| {
            roundtrip(
                &c.root,
                "docker-compose.yml",
                &[
                    "--grpc",
                    "--pg",
                    "--redis",
                    "--https",
                    "--public",
                    "/zz/",
                    "--volume",
                    "zz-data:/data",
                    "--depends-on",
                    "gateway",
                ],
            );
        });
        if r.is_err() {
            failures.push(format!("{name}: round trip failed (see panic above)"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn byte_order_mark_and_crlf_and_no_final_newline_are_kept() {
    for (name, f) in [
        (
            "bom",
            Box::new(|t: &str| format!("\u{feff}{t}")) as Box<dyn Fn(&str) -> String>,
        ),
        ("crlf", Box::new(|t: &str| t.replace('\n', "\r\n"))),
        (
            "nofinal",
            Box::new(|t: &str| t.trim_end_matches('\n').to_string()),
        ),
        (
            "bom-crlf-nofinal",
            Box::new(|t: &str| {
                format!(
                    "\u{feff}{}",
                    t.replace('\n', "\r\n").trim_end_matches("\r\n")
                )
            }),
        ),
    ] {
        let c = copy(&format!("rw-bytes-{name}"));
        let t = std::fs::read_to_string(c.root.join("docker-compose.yml")).unwrap();
        write(&c.root, "docker-compose.yml", &f(&t));
        let mid = roundtrip(
            &c.root,
            "docker-compose.yml",
            &["--grpc", "--pg", "--volume", "zz-data:/data"],
        );
        if name.contains("crlf") {
            assert!(
                !mid.replace("\r\n", "").contains('\n'),
                "{name}: an LF line was inserted into a CRLF file:\n{mid:?}"
            );
        }
    }
}

// ---- point 2: sections other than services ---------------------------------

#[test]
fn declarations_use_their_section_indentation_and_mirror_exactly() {
    let c = copy("rw-sections");
    // Services at 4 spaces, networks and volumes at 2; a user-written
    // `data:` that add-service reuses and remove-service must keep.
    let file = "services:\n    postgres:\n        image: busybox\n    db:\n        image: busybox\n        networks: [web-network]\n        volumes:\n            - data:/d\nvolumes:\n  data:\n    driver: local\n  other:\nnetworks:\n  web-network:\n";
    write(&c.root, "docker-compose.yml", file);
    let mid = roundtrip(
        &c.root,
        "docker-compose.yml",
        &[
            "--grpc",
            "--pg",
            "--volume",
            "data:/data",
            "--volume",
            "zz-data:/zz",
            "--public",
            "/zz/",
        ],
    );
    assert!(mid.contains("\n  zz-data:\n"), "{mid}");
    assert!(
        mid.contains("\n  grpc-network:\n") && mid.contains("\n  pg-network:\n"),
        "{mid}"
    );
}

// ---- point 3: remove-service refuses while anything refers to it -----------

#[test]
fn remove_refuses_while_referenced_and_takes_its_comment_block() {
    let refs: &[(&str, &str)] = &[
        ("depends-list", "    depends_on: [target]\n"),
        (
            "depends-map",
            "    depends_on:\n      target:\n        condition: service_started\n",
        ),
        ("links", "    links:\n      - target:alias\n"),
        ("volumes-from", "    volumes_from: [target]\n"),
        ("network-mode", "    network_mode: service:target\n"),
        ("ipc", "    ipc: \"service:target\"\n"),
        ("pid", "    pid: service:target\n"),
        ("extends", "    extends:\n      service: target\n"),
        ("anchor", "    healthcheck: *hc\n"),
    ];
    for (name, r) in refs {
        let c = copy(&format!("rw-refs-{name}"));
        let t = with_services(&c.root, &format!("  target:\n    image: busybox\n    healthcheck: &hc\n      test: [\"CMD\", \"true\"]\n\n  user:\n    image: busybox\n{r}"));
        set_up(&c.root);
        compose_ok(&c.root, "docker-compose.yml")
            .unwrap_or_else(|e| panic!("{name}: case must be valid: {e}"));
        let o = xtask(&c.root, &["remove-service", "target"]);
        assert_eq!(code(&o), 2, "{name}: remove must refuse:\n{}", text(&o));
        let user = t.lines().position(|l| l == "  user:").unwrap();
        let first = user
            + t.lines()
                .skip(user)
                .position(|l| l == r.lines().next().unwrap())
                .unwrap()
            + 1;
        let lines: Vec<usize> = (first..first + r.lines().count()).collect();
        assert!(
            lines
                .iter()
                .any(|l| text(&o).contains(&format!("docker-compose.yml:{l}"))),
            "{name}: must name one of lines {lines:?}:\n{}",
            text(&o)
        );
        assert_eq!(
            std::fs::read_to_string(c.root.join("docker-compose.yml")).unwrap(),
            t,
            "{name}: nothing written"
        );
    }
    // The comment block just above a service goes with it.
    let c = copy("rw-comment");
    let t = with_services(
        &c.root,
        "  # The job runner.\n  # Owned by the data team.\n  runner:\n    image: busybox\n",
    );
    let o = xtask(&c.root, &["remove-service", "runner"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let after = std::fs::read_to_string(c.root.join("docker-compose.yml")).unwrap();
    assert!(
        !after.contains("job runner") && !after.contains("data team"),
        "{after}"
    );
    assert_eq!(
        after,
        t.replace(
            "\n  # The job runner.\n  # Owned by the data team.\n  runner:\n    image: busybox\n",
            ""
        )
    );
}

// ---- point 4: --pg without a postgres service ------------------------------

#[test]
fn pg_without_postgres_is_refused_with_the_fix() {
    let c = copy("rw-nopg");
    write(
        &c.root,
        "docker-compose.yml",
        "services:\n  app:\n    image: busybox\n",
    );
    let before = snapshot(&c.root);
    let o = xtask(&c.root, &["add-service", "zz-new", "--pg"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("postgres") && text(&o).contains("fix:"),
        "{}",
        text(&o)
    );
    assert_same(&before, &snapshot(&c.root), "refused --pg");
}

// ---- point 6: check false positives ----------------------------------------

#[test]
fn check_has_no_false_positives_on_protocols_and_the_default_network() {
    let c = copy("rw-check");
    assert_eq!(code(&xtask(&c.root, &["certs"])), 0);
    // Bound to loopback (MR020 holds every other address).
    with_services(&c.root, "  dns:\n    image: busybox\n    container_name: dns\n    ports:\n      - \"127.0.0.1:53:53/tcp\"\n      - \"127.0.0.1:53:53/udp\"\n    networks:\n      - default\n");
    let o = xtask(&c.root, &["check"]);
    let out = text(&o);
    assert!(
        !out.contains("already published"),
        "tcp and udp are two ports:\n{out}"
    );
    assert!(!out.contains("undeclared network `default`"), "{out}");
    assert_eq!(code(&o), 0, "{out}");
    // A real duplicate is still found.
    with_services(&c.root, "  dns2:\n    image: busybox\n    container_name: dns2\n    ports:\n      - \"53:53/udp\"\n");
    let o = xtask(&c.root, &["check"]);
    assert!(text(&o).contains("host port 53/udp"), "{}", text(&o));
}

// ---- finding the file the way Compose does ---------------------------------

#[test]
fn finds_compose_yaml_first_and_check_reads_the_override() {
    let c = copy("rw-discovery");
    let t = std::fs::read_to_string(c.root.join("docker-compose.yml")).unwrap();
    std::fs::remove_file(c.root.join("docker-compose.yml")).unwrap();
    write(&c.root, "compose.yaml", &t);
    let o = xtask(&c.root, &["list"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let mid = roundtrip(&c.root, "compose.yaml", &["--grpc"]);
    assert!(mid.contains("zz-new:"));
    assert!(!c.root.join("docker-compose.yml").exists());
    // The override: a port published twice across both files is found.
    write(
        &c.root,
        "compose.override.yaml",
        "services:\n  redis:\n    ports:\n      - \"5432:1234\"\n",
    );
    let o = xtask(&c.root, &["check"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("compose.override.yaml:4"), "{}", text(&o));
}

// ---- YAML bounds ------------------------------------------------------------

#[test]
fn alias_bomb_and_deep_nesting_exit_2_with_file_and_line() {
    let c = copy("rw-bomb");
    let mut bomb = String::from("x-a0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb += &format!("x-a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n");
    }
    bomb += "services:\n  a:\n    image: busybox\n";
    write(&c.root, "docker-compose.yml", &bomb);
    let o = xtask(&c.root, &["list"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("docker-compose.yml:") && text(&o).contains("alias"),
        "{}",
        text(&o)
    );

    let deep = format!(
        "services:\n  a:\n    image: busybox\n    labels: {}{}\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    write(&c.root, "docker-compose.yml", &deep);
    let o = xtask(&c.root, &["list"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("docker-compose.yml:4") && text(&o).contains("nested"),
        "{}",
        text(&o)
    );
}
