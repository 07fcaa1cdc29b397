//! Hardening: a corpus of broken repositories, each run through every
//! command that reads the repository; they must exit 2, name the file and
//! line, and leave every file byte-identical. Plus the Docker-side faults
//! that need no running stack.

use std::path::{Path, PathBuf};

use crate::common::*;

const COMMANDS: &[&[&str]] = &[
    &["add-service", "zeta", "--grpc", "--https"],
    &["remove-service", "gateway"],
    &["sync"],
    &["certs"],
    &["check"],
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn overlay(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let dst = to.join(e.file_name());
        if p.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            overlay(&p, &dst);
        } else {
            std::fs::write(&dst, std::fs::read(&p).unwrap()).unwrap();
        }
    }
}

/// (case, the file its message must name, how to break the copy)
/// (case, the file its message must name, how to break the copy)
type Case = (String, &'static str, Box<dyn Fn(&Path)>);

fn cases() -> Vec<Case> {
    let mut out: Vec<Case> = vec![];
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        let file = if name.starts_with("cnf") {
            "openssl.cnf"
        } else if name.starts_with("nginx") {
            "nginx/nginx.conf"
        } else {
            "docker-compose.yml"
        };
        out.push((name, file, Box::new(move |root: &Path| overlay(&d, root))));
    }
    out.push((
        "huge-compose-65MB".into(),
        "docker-compose.yml",
        Box::new(|root: &Path| {
            let mut t = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
            while t.len() < 65 << 20 {
                t.push_str("# padding padding padding padding padding padding padding padding\n");
            }
            std::fs::write(root.join("docker-compose.yml"), t).unwrap();
        }),
    ));
    out.push((
        "compose-symlink-outside".into(),
        "docker-compose.yml",
        Box::new(|root: &Path| {
            let outside = root.with_extension("outside.yml");
            std::fs::copy(root.join("docker-compose.yml"), &outside).unwrap();
            std::fs::remove_file(root.join("docker-compose.yml")).unwrap();
            std::os::unix::fs::symlink(&outside, root.join("docker-compose.yml")).unwrap();
        }),
    ));
    out.push((
        "empty-openssl-cnf".into(),
        "openssl.cnf",
        Box::new(|root: &Path| std::fs::write(root.join("openssl.cnf"), "").unwrap()),
    ));
    out.push((
        "cargo-toml-without-members".into(),
        "Cargo.toml",
        Box::new(|root: &Path| {
            std::fs::write(root.join("Cargo.toml"), "[workspace]\nresolver = \"2\"\n").unwrap()
        }),
    ));
    out
}

#[test]
fn broken_repositories_exit_2_naming_file_and_line_and_change_nothing() {
    let mut tried = 0;
    let mut messages = String::new();
    let all = cases();
    for (name, file, breaker) in &all {
        let c = copy(&format!("corpus-{name}"));
        breaker(&c.root);
        let before = snapshot(&c.root);
        for cmd in COMMANDS {
            let o = xtask(&c.root, cmd);
            let out = text(&o);
            assert_eq!(
                o.status.code(),
                Some(2),
                "{name}: {cmd:?} should exit 2:\n{out}"
            );
            let located = out.contains(&format!("{file}:"))
                && out[out.find(&format!("{file}:")).unwrap() + file.len() + 1..]
                    .starts_with(|c: char| c.is_ascii_digit());
            assert!(
                located,
                "{name}: {cmd:?}: the message must name {file}:<line>:\n{out}"
            );
            assert!(
                out.contains("fix:"),
                "{name}: {cmd:?}: the message must say how to fix it:\n{out}"
            );
            assert_same(&before, &snapshot(&c.root), &format!("{name}: {cmd:?}"));
            messages += &format!(
                "=== {name}: {}\n{}\n",
                cmd.join(" "),
                snap::render(&c.root, &o)
            );
            tried += 1;
        }
        let _ = std::fs::remove_file(c.root.with_extension("outside.yml"));
    }
    // The whole messages, as committed.
    snap::assert_cli("hardening", &messages);
    println!("hardening corpus: {} broken repositories x {} commands = {tried} runs, each exit 2 with file:line and files unchanged", all.len(), COMMANDS.len());
}

#[test]
fn verify_without_a_docker_socket_says_so_and_exits_2() {
    let c = copy("nodocker");
    assert!(xtask(&c.root, &["certs"]).status.success());
    let o = xtask_env(
        &c.root,
        &["verify"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("/nonexistent/docker.sock does not exist") && text(&o).contains("fix:"),
        "{}",
        text(&o)
    );
}

#[test]
fn secrets_never_enter_a_build_context() {
    // Service contexts are ./src and ./nginx; env files are excluded, keys
    // live under certs/ outside both.
    let ignore = std::fs::read_to_string(workspace().join("src/.dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == "**/service.env"),
        "service.env must be in src/.dockerignore"
    );
    let compose = std::fs::read_to_string(workspace().join("docker-compose.yml")).unwrap();
    for l in compose
        .lines()
        .filter(|l| l.trim_start().starts_with("context:"))
    {
        let ctx = l.split(':').nth(1).unwrap().trim();
        assert!(
            ctx == "./src" || ctx == "./nginx",
            "unexpected build context {ctx}"
        );
    }
}
