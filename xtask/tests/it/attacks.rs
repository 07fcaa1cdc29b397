//! Attacks on the input gate (one gate for every name that becomes a path
//! or a directive, and the bounds on what is read): names that would become
//! paths outside the repository, NGINX directives or compose keys, from
//! arguments and from files, and files that are huge or not regular. Every case runs the real binary;
//! every refusal must exit 2 (`check`: 1, a finding) and name file:line,
//! and the repository, `certs/` included, must keep every byte, mode,
//! owner and symlink. A hang is killed and fails the case.

use std::path::Path;

use crate::common::*;

const T: u64 = 30;

/// Inserts a service block at the end of `services:`; returns the line of its key.
fn add_service_block(root: &Path, block: &str) -> usize {
    let p = root.join("docker-compose.yml");
    let t = std::fs::read_to_string(&p).unwrap();
    let at = t.find("\nnetworks:").unwrap() + 1;
    let new = format!("{}{block}\n{}", &t[..at], &t[at..]);
    std::fs::write(&p, &new).unwrap();
    line_of(root, "docker-compose.yml", block.lines().next().unwrap())
}

fn line_of(root: &Path, file: &str, needle: &str) -> usize {
    let t = std::fs::read_to_string(root.join(file)).unwrap();
    t.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {file}"))
        + 1
}

fn replace(root: &Path, file: &str, from: &str, to: &str) -> usize {
    let p = root.join(file);
    let t = std::fs::read_to_string(&p).unwrap();
    assert!(t.contains(from), "{from:?} not in {file}");
    std::fs::write(&p, t.replacen(from, to, 1)).unwrap();
    line_of(root, file, to.lines().next().unwrap())
}

fn backend_block(key: &str, labels: &str) -> String {
    format!(
        "  {key}:\n    build:\n      context: ./src\n      dockerfile: backend_services/zz/Dockerfile\n    container_name: zz\n    ports:\n      - \"50099:50099\"\n    networks: [grpc-network]\n    labels:\n{labels}\n"
    )
}

type Setup = Box<dyn Fn(&Path) -> Option<String>>;

struct Case {
    name: String,
    /// Breaks the copy; returns the `file:line` every refusal must name
    /// (None: an argument, no file).
    setup: Setup,
    /// (arguments, expected exit code)
    runs: Vec<(Vec<String>, i32)>,
}

fn v(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// The commands that read the repository: writers refuse (2), check finds (1).
fn all_commands(extra: &[Vec<String>]) -> Vec<(Vec<String>, i32)> {
    let mut out = vec![
        (
            v(&[
                "add-service",
                "zeta",
                "--grpc",
                "--https",
                "--public",
                "/zeta/",
            ]),
            2,
        ),
        (v(&["remove-service", "gateway"]), 2),
        (v(&["sync"]), 2),
        (v(&["certs"]), 2),
        (v(&["check"]), 1),
    ];
    out.extend(extra.iter().map(|a| (a.clone(), 2)));
    out
}

fn file_cases(outside: &Path) -> Vec<Case> {
    let mut out = name_cases(outside);
    out.extend(read_cases());
    out
}

/// Names the gate must refuse: service keys that walk out or read as YAML
/// words, public paths that could inject NGINX directives.
fn name_cases(outside: &Path) -> Vec<Case> {
    let mut out = vec![];
    // A key that walks out of src/backend_services/ into src/common/ (the
    // build context every image copies): sync/certs wrote a private key there.
    out.push(Case {
        name: "compose-key-into-src-common".into(),
        setup: Box::new(|r| {
            let l = add_service_block(
                r,
                &backend_block("\"../../src/common\"", "      monorepo.https: \"true\""),
            );
            Some(format!("docker-compose.yml:{l}"))
        }),
        runs: all_commands(&[v(&["remove-service", "../../src/common"])]),
    });
    // A key that walks out of the repository: remove-service deleted it.
    let o = outside.to_path_buf();
    out.push(Case {
        name: "compose-key-outside-the-repository".into(),
        setup: Box::new(move |r| {
            let rel = format!("../../../{}", o.file_name().unwrap().to_string_lossy());
            let l = add_service_block(
                r,
                &backend_block(
                    &format!("\"{rel}\""),
                    "      monorepo.https: \"true\"\n      monorepo.public-path: \"/o/\"",
                ),
            );
            Some(format!("docker-compose.yml:{l}"))
        }),
        runs: {
            let rel = format!(
                "../../../{}",
                outside.file_name().unwrap().to_string_lossy()
            );
            all_commands(&[v(&["remove-service", &rel])])
        },
    });
    for (name, label) in [
        // YAML decodes the escapes: the value has spaces, braces and `;`.
        (
            "label-public-nginx-injection",
            r#""/a/\x20\x7b\x20alias\x20/etc/nginx/certs/\x3b\x20\x7d\x20location\x20/b/""#,
        ),
        ("label-public-control-char", r#""/a\x01b/""#),
        ("label-public-newline", r#""/a/\nb/""#),
        ("label-public-dotdot", r#""/a/../b/""#),
    ] {
        out.push(Case {
            name: name.into(),
            setup: Box::new(move |r| {
                let l = replace(
                    r,
                    "docker-compose.yml",
                    "monorepo.public-path: \"/api/\"",
                    &format!("monorepo.public-path: {label}"),
                );
                Some(format!("docker-compose.yml:{l}"))
            }),
            runs: all_commands(&[]),
        });
    }
    for word in [
        "true", "null", "yes", "on", "off", "no", "1", "~", "0x1", "1e3", ".inf",
    ] {
        out.push(Case {
            name: format!("compose-key-yaml-word-{word}"),
            setup: Box::new(move |r| {
                let l = add_service_block(
                    r,
                    &backend_block(&format!("\"{word}\""), "      monorepo.protocol: \"grpc\""),
                );
                Some(format!("docker-compose.yml:{l}"))
            }),
            runs: all_commands(&[]),
        });
    }
    out
}

/// Files that must not be read (outside the repository, not regular,
/// too big); and a bad [alt_names] value.
fn read_cases() -> Vec<Case> {
    let mut out = vec![];
    out.push(Case {
        name: "env-file-outside".into(),
        setup: Box::new(|r| {
            let l = replace(
                r,
                "docker-compose.yml",
                "- src/backend_services/gateway/service.env",
                "- ../../../etc/passwd",
            );
            Some(format!("docker-compose.yml:{l}"))
        }),
        runs: all_commands(&[]),
    });
    out.push(Case {
        name: "build-context-outside".into(),
        setup: Box::new(|r| {
            let t = std::fs::read_to_string(r.join("docker-compose.yml")).unwrap();
            let at = t.find("dockerfile: backend_services/gateway").unwrap();
            let ctx = t[..at].rfind("context: ./src").unwrap();
            std::fs::write(
                r.join("docker-compose.yml"),
                format!(
                    "{}context: /etc{}",
                    &t[..ctx],
                    &t[ctx + "context: ./src".len()..]
                ),
            )
            .unwrap();
            Some(format!(
                "docker-compose.yml:{}",
                line_of(r, "docker-compose.yml", "context: /etc")
            ))
        }),
        runs: all_commands(&[]),
    });
    out.push(Case {
        name: "cnf-dns-value-not-a-host-name".into(),
        setup: Box::new(|r| {
            let l = replace(r, "openssl.cnf", "DNS.2 = nginx", "DNS.2 = nginx/../{x}");
            Some(format!("openssl.cnf:{l}"))
        }),
        runs: all_commands(&[]),
    });
    out.extend(unreadable_cases());
    out
}

/// Files that are not regular (FIFOs: a read would block) or over the
/// size limit.
fn unreadable_cases() -> Vec<Case> {
    let mut out = vec![];
    out.push(Case {
        name: "fifo-dotenv".into(),
        setup: Box::new(|r| {
            let _ = std::fs::remove_file(r.join(".env"));
            mkfifo(&r.join(".env"));
            Some(".env:".into())
        }),
        runs: {
            let mut a = all_commands(&[]);
            a[4].1 = 2; // the model itself cannot load
            a
        },
    });
    out.push(Case {
        name: "fifo-env-file".into(),
        setup: Box::new(|r| {
            let f = r.join("src/backend_services/gateway/service.env");
            std::fs::remove_file(&f).unwrap();
            mkfifo(&f);
            Some(format!(
                "docker-compose.yml:{}",
                line_of(
                    r,
                    "docker-compose.yml",
                    "- src/backend_services/gateway/service.env"
                )
            ))
        }),
        runs: all_commands(&[]),
    });
    out.push(Case {
        name: "oversized-dotenv".into(),
        setup: Box::new(|r| {
            std::fs::write(r.join(".env"), "X=1\n".repeat(2 << 20)).unwrap();
            Some(".env:".into())
        }),
        runs: {
            let mut a = all_commands(&[]);
            a[4].1 = 2;
            a
        },
    });
    out.push(Case {
        name: "oversized-env-file".into(),
        setup: Box::new(|r| {
            std::fs::write(
                r.join("src/backend_services/gateway/service.env"),
                "X=1\n".repeat(2 << 20),
            )
            .unwrap();
            Some(format!(
                "docker-compose.yml:{}",
                line_of(
                    r,
                    "docker-compose.yml",
                    "- src/backend_services/gateway/service.env"
                )
            ))
        }),
        runs: all_commands(&[]),
    });
    out
}

fn link_cases(outside: &Path) -> Vec<Case> {
    let mut out = vec![];
    // A link inside a service folder: remove-service followed it and
    // deleted the files of the folder it points to.
    let o = outside.to_path_buf();
    out.push(Case {
        name: "service-folder-holds-a-link-outside".into(),
        setup: Box::new(move |r| {
            std::os::unix::fs::symlink(&o, r.join("src/backend_services/gateway/evil")).unwrap();
            Some("src/backend_services/gateway/evil".into())
        }),
        runs: vec![(v(&["remove-service", "gateway"]), 2)],
    });
    let o = outside.to_path_buf();
    out.push(Case {
        name: "service-folder-is-a-link-outside".into(),
        setup: Box::new(move |r| {
            let d = r.join("src/backend_services/gateway");
            std::fs::rename(&d, r.join("gateway-moved")).unwrap();
            std::os::unix::fs::symlink(&o, &d).unwrap();
            Some("src/backend_services/gateway".into())
        }),
        runs: vec![(v(&["remove-service", "gateway"]), 2)],
    });
    out
}

fn arg_cases() -> Vec<Case> {
    let mut out = vec![];
    let add = |extra: &[&str]| {
        let mut a = v(&["add-service", "zeta", "--grpc"]);
        a.extend(v(extra));
        a
    };
    for (name, args) in [
        ("arg-public-control-char", add(&["--public", "/a\x01b/"])),
        (
            "arg-public-yaml-escapes",
            add(&[
                "--public",
                r"/a/\x20\x7b\x20alias\x20/etc/nginx/certs/\x3b\x20\x7d\x20location\x20/b/",
            ]),
        ),
        ("arg-public-dotdot", add(&["--public", "/a/../b/"])),
        (
            "arg-public-no-trailing-slash-percent",
            add(&["--public", "/a%20b/"]),
        ),
        (
            "arg-volume-newline",
            add(&["--volume", "data:/x\n      - /etc"]),
        ),
        (
            "arg-volume-container-path-control",
            add(&["--volume", "data:/x\x07"]),
        ),
        (
            "arg-volume-relative-container-path",
            add(&["--volume", "data:x"]),
        ),
        (
            "arg-volume-host-path-outside",
            add(&["--volume", "/etc:/x"]),
        ),
    ] {
        out.push(Case {
            name: name.into(),
            setup: Box::new(|_| None),
            runs: vec![(args, 2)],
        });
    }
    for word in [
        "true", "null", "yes", "on", "no", "off", "y", "n", "1", "~", "0x1", "1e3", "inf", "nan",
    ] {
        out.push(Case {
            name: format!("arg-service-name-{word}"),
            setup: Box::new(|_| None),
            runs: vec![(v(&["add-service", word, "--grpc"]), 2)],
        });
        out.push(Case {
            name: format!("arg-volume-name-{word}"),
            setup: Box::new(|_| None),
            runs: vec![(add(&["--volume", &format!("{word}:/data")]), 2)],
        });
    }
    out.push(Case {
        name: "arg-remove-dotdot".into(),
        setup: Box::new(|_| None),
        runs: vec![(v(&["remove-service", "../../../x"]), 2)],
    });
    out
}

fn mkfifo(p: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn every_attack_is_refused_with_file_and_line_and_changes_nothing() {
    // What lives beside the copies: a path-walking name must not touch it.
    let outside =
        std::env::temp_dir().join(format!("xtask-attacks-outside-{}", std::process::id()));
    std::fs::create_dir_all(outside.join("zz")).unwrap();
    std::fs::write(outside.join("zz/keep.txt"), "keep").unwrap();
    let outside_before = snapshot_meta(&outside);
    let mut cases = file_cases(&outside);
    cases.extend(link_cases(&outside));
    cases.extend(arg_cases());
    let (mut runs, mut failures) = (0, vec![]);
    for case in &cases {
        let c = copy(&format!("attack-{}", case.name));
        assert_eq!(
            xtask(&c.root, &["certs"]).status.code(),
            Some(0),
            "{}: certs on the clean copy",
            case.name
        );
        let want = (case.setup)(&c.root);
        let before = snapshot_meta(&c.root);
        for (args, code) in &case.runs {
            let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
            let (got, out) = xtask_timeout(&c.root, &a, T);
            runs += 1;
            let mut why = vec![];
            if got != Some(*code) {
                why.push(format!("exit {got:?}, want {code}"));
            }
            if let Some(w) = &want {
                if !out.contains(w.as_str()) {
                    why.push(format!("does not name `{w}`"));
                }
            }
            if *code == 2 && !out.contains("fix:") {
                why.push("no fix".into());
            }
            if let Some(d) = diff_meta(&before, &snapshot_meta(&c.root)) {
                why.push(format!("files changed: {d}"));
            }
            if why.is_empty() {
                println!("ok    {:40} {a:?} -> {code}", case.name);
            } else {
                println!(
                    "FAIL  {:40} {a:?}: {}\n      {}",
                    case.name,
                    why.join("; "),
                    out.lines().last().unwrap_or("")
                );
                failures.push(format!("{} {a:?}: {}", case.name, why.join("; ")));
            }
        }
    }
    assert_same_meta(
        &outside_before,
        &snapshot_meta(&outside),
        "the folder outside the repository",
    );
    let _ = std::fs::remove_dir_all(&outside);
    println!(
        "attacks: {} cases, {runs} runs, {} failed",
        cases.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn dry_run_masks_secret_values() {
    let c = copy("attack-dry-run");
    let o = xtask(
        &c.root,
        &["add-service", "zeta", "--grpc", "--pg", "--dry-run"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("PGPASSWORD="),
        "the diff shows the variable:\n{out}"
    );
    assert!(
        !out.contains("app-dev-password"),
        "the diff shows a secret value:\n{out}"
    );
}
