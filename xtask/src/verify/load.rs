//! The stack verify proves is the one Compose would run: Compose v2's own
//! loader (`docker compose config --format json`) reads the project, and
//! `model::stack` types its answer. Keys verify does not model are refused
//! here, before anything is created, at the line that wrote them.

use std::path::Path;
use std::process::Command;

use crate::diag::{Diagnostic, Error, Label};
use crate::model::compose::{Build, Compose, Mount, Port, Service};
use crate::model::repo::Repo;
use crate::model::stack::{MountKind, Stack, Unmodeled};

/// The compose CLI: `docker compose` unless `XTASK_COMPOSE` names another
/// command (split on spaces).
fn compose_cmd() -> Command {
    let spec = std::env::var("XTASK_COMPOSE").unwrap_or_else(|_| "docker compose".into());
    let mut parts = spec.split_whitespace();
    let mut c = Command::new(parts.next().unwrap_or("docker"));
    c.args(parts);
    c
}

/// Runs Compose's loader in the repository's root (so `COMPOSE_FILE`,
/// `COMPOSE_PROFILES`, `.env` and the override file apply exactly as for
/// `docker compose up`). Its refusal is about the compose file.
fn compose_json(repo: &Repo) -> Result<serde_json::Value, Error> {
    let out = compose_cmd()
        .args(["config", "--format", "json"])
        .current_dir(&repo.root)
        .output()
        .map_err(|e| {
            Diagnostic::error(format!("cannot run `docker compose`: {e}"))
                .fix("install Docker Compose v2 (`bash scripts/setup.sh` does)")
        })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(Diagnostic::error(format!(
            "Compose refuses this project, so verify does too: {msg}"
        ))
        .at(&repo.compose_file, 0)
        .fix("`docker compose config` shows the same; fix what it names"));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        Diagnostic::error(format!(
            "`docker compose config --format json` printed no JSON: {e}"
        ))
        .fix("check `docker compose version` is v2")
    })
}

/// The stack of `repo`, or every key verify does not model as one error.
pub fn load(repo: &Repo) -> Result<Stack, Error> {
    load_allowing(repo, &[])
}

/// The same, for an engine that models `allowed` service keys too (the
/// swarm engine: `deploy`), which the stack then leaves out.
pub fn load_allowing(repo: &Repo, allowed: &[&str]) -> Result<Stack, Error> {
    stack_of(repo, compose_json(repo)?, allowed)
}

/// The stack of `v`, Compose's model of `repo` (no Compose run: the tests
/// drive the refusals through it).
fn stack_of(repo: &Repo, mut v: serde_json::Value, allowed: &[&str]) -> Result<Stack, Error> {
    if let Some(svcs) = v.get_mut("services").and_then(|s| s.as_object_mut()) {
        for s in svcs.values_mut().filter_map(|s| s.as_object_mut()) {
            s.retain(|k, _| !allowed.contains(&k.as_str()));
        }
    }
    match Stack::from_json(&v) {
        Ok(st) => refuse_unsupported(repo, st),
        Err(bad) => Err(unmodeled(repo, &bad)),
    }
}

/// What Compose accepts but verify cannot run as Compose would.
fn refuse_unsupported(repo: &Repo, st: Stack) -> Result<Stack, Error> {
    let mut bad = vec![];
    for s in &st.services {
        if let Some(x) = s.shares_namespace_of() {
            if st.service(x).is_none() {
                bad.push(Unmodeled {
                    owner: s.name.clone(),
                    key: "network_mode".into(),
                    why: format!("`service:{x}` names no service of the stack"),
                });
            }
        } else if let Some(m) = &s.network_mode {
            if !matches!(m.as_str(), "host" | "none" | "bridge") {
                bad.push(Unmodeled {
                    owner: s.name.clone(),
                    key: "network_mode".into(),
                    why: format!(
                        "`{m}` joins a namespace outside the project; use `service:<name>` or networks"
                    ),
                });
            }
        }
        for m in &s.volumes {
            if m.kind == MountKind::Bind && !Path::new(&m.source).exists() {
                bad.push(Unmodeled {
                    owner: s.name.clone(),
                    key: "volumes".into(),
                    why: format!(
                        "bind source {} does not exist (Compose would make an empty folder there); create it or run `cargo xtask certs` if it is a certificate folder",
                        m.source
                    ),
                });
            }
        }
    }
    if bad.is_empty() {
        Ok(st)
    } else {
        Err(unmodeled(repo, &bad))
    }
}

/// One error at the first key, with every key as a label at its line.
fn unmodeled(repo: &Repo, bad: &[Unmodeled]) -> Error {
    let first = &bad[0];
    let (file, line) = locate(repo, &first.owner, &first.key);
    let mut d = Diagnostic::error(format!(
        "verify cannot prove the stack Compose would run: {} key(s) are not modeled",
        bad.len()
    ))
    .at(&file, line);
    for u in bad {
        let (f, l) = locate(repo, &u.owner, &u.key);
        d = d.label(Label::at(
            &f,
            l,
            format!("`{}` of `{}`: {}", u.key, u.owner, u.why),
        ));
    }
    d.fix("change each key as its line says; verify refuses rather than prove a different stack")
}

/// The file and line of `owner.key` in the repository's compose file (the
/// owner's line when the key came from an override, `extends` or
/// `include`, line 1 when the owner did too).
pub fn locate(repo: &Repo, owner: &str, key: &str) -> (String, usize) {
    let file = repo.compose_file.clone();
    let Some(tree) = &repo.compose_tree else {
        return (file, 1);
    };
    let (section, name) = match owner.split_once('.') {
        Some((sec @ ("networks" | "volumes"), n)) => (sec, n),
        _ => ("services", owner),
    };
    let Some(node) = tree.get(section).and_then(|s| s.get(name)) else {
        return (file, 1);
    };
    let first = key.split('.').next().unwrap_or(key);
    let line = node
        .keys()
        .into_iter()
        .find(|(k, _)| *k == first)
        .map(|(_, l)| l)
        .unwrap_or(node.line.saturating_sub(1).max(1));
    (file, line)
}

/// `e` at the line of `owner.key` (see `locate`; an unknown key: the
/// owner's line) unless it has a place already.
pub fn at_key(repo: &Repo, owner: &str, key: &str, e: Diagnostic) -> Diagnostic {
    if !e.file.is_empty() {
        return e;
    }
    let (file, line) = locate(repo, owner, key);
    e.at(&file, line)
}

/// The typed view the rest of verify reads (targets, the matrix, the data
/// layer), made from the stack so that it agrees with Compose: networks
/// (the implicit `default` included), ports, mounts and environment as
/// Compose resolved them; lines from the file where the service is in it.
pub fn view(file_model: &Compose, st: &Stack) -> Compose {
    let services = st
        .services
        .iter()
        .map(|s| {
            let file = file_model.service(&s.name);
            let line = file.map(|f| f.line).unwrap_or(1);
            let build = s.build.as_ref().map(|b| Build {
                context: b.context.clone(),
                dockerfile: b.dockerfile.clone(),
                args: b.args.clone(),
                line: file.and_then(|f| f.build.as_ref()).map_or(line, |b| b.line),
            });
            Service {
                name: s.name.clone(),
                line,
                container_name: s.container_name.clone().map(|c| (c, line)),
                build,
                image: s.image.clone(),
                ports: s
                    .ports
                    .iter()
                    .map(|p| Port {
                        host: p.published.as_deref().and_then(|h| h.parse().ok()),
                        host_end: None,
                        container: u32::from(p.target),
                        container_end: u32::from(p.target),
                        protocol: p.protocol.clone(),
                        host_ip: p.host_ip.clone(),
                        line,
                    })
                    .collect(),
                networks: st.networks_of(s).into_iter().map(|n| (n, line)).collect(),
                volumes: s
                    .volumes
                    .iter()
                    .filter(|m| m.kind != MountKind::Tmpfs)
                    .map(|m| Mount {
                        source: m.source.clone(),
                        target: m.target.clone(),
                        named: m.kind == MountKind::Volume,
                        line,
                    })
                    .collect(),
                depends_on: s
                    .depends_on
                    .iter()
                    .map(|(d, _)| (d.clone(), line))
                    .collect(),
                env_file: vec![],
                env_file_optional: vec![],
                refs: file.map(|f| f.refs.clone()).unwrap_or_default(),
                environment: s
                    .environment
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.clone()?, line)))
                    .collect(),
                labels: s.labels.clone(),
                has_healthcheck: s.healthcheck.as_ref().is_some_and(|h| !h.disable),
                command: s.command.clone().unwrap_or_default(),
                extends: None,
                profiles: vec![],
                expose: s
                    .expose
                    .iter()
                    .filter_map(|e| e.split('/').next()?.parse().ok())
                    .collect(),
            }
        })
        .collect();
    Compose {
        services,
        networks: st.networks.keys().map(|n| (n.clone(), 1)).collect(),
        volumes: st.volumes.keys().map(|v| (v.clone(), 1)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reach;

    /// Each refusal of a key verify does not model, through the same path
    /// as `verify` (Compose's JSON typed, then refused) without running
    /// Compose: an error at the file and line of the key, the key and its
    /// reason as a label at that line, and a fix.
    #[test]
    fn refusals_carry_the_keys_file_line_and_a_fix() {
        let head = "services:\n  web:\n    image: nginx\n    container_name: web\n";
        // (lines added to `web`, top-level text after it, what Compose's
        // JSON adds to `web`, its top-level `networks`, the label's
        // fragment, the line)
        type Case<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, usize);
        let cases: &[Case] = &[
            (
                "    ipc: host\n",
                "",
                r#""ipc": "host""#,
                "",
                "`ipc` of `web`: a shared IPC namespace",
                5,
            ),
            (
                "    links: [web]\n",
                "",
                r#""links": ["web"]"#,
                "",
                "`links` of `web`: legacy links",
                5,
            ),
            (
                "    restart: always\n    mem_limit: 64m\n",
                "",
                r#""restart": "always", "mem_limit": "67108864""#,
                "",
                "`mem_limit` of `web`: resource limits",
                6,
            ),
            (
                "    network_mode: \"container:abc\"\n",
                "",
                r#""network_mode": "container:abc""#,
                "",
                "`network_mode` of `web`: `container:abc` joins a namespace outside the project",
                5,
            ),
            (
                "    network_mode: \"service:ghost\"\n",
                "",
                r#""network_mode": "service:ghost""#,
                "",
                "`network_mode` of `web`: `service:ghost` names no service",
                5,
            ),
            (
                "    volumes:\n      - /nonexistent-xtask-unit/x:/x\n",
                "",
                r#""volumes": [{"type": "bind", "source": "/nonexistent-xtask-unit/x", "target": "/x"}]"#,
                "",
                "`volumes` of `web`: bind source /nonexistent-xtask-unit/x does not exist",
                5,
            ),
            (
                "",
                "networks:\n  outside:\n    external: true\n",
                "",
                r#""outside": {"name": "outside", "external": true}"#,
                "`external` of `networks.outside`: an external network",
                7,
            ),
        ];
        for (i, (svc, top, json, nets, want, line)) in cases.iter().enumerate() {
            let text = format!("{head}{svc}{top}");
            let repo = crate::model::repo::scratch(
                &format!("load-refuse-{i}"),
                &[("docker-compose.yml", &text)],
            );
            let sep = if json.is_empty() { "" } else { ", " };
            let v: serde_json::Value = serde_json::from_str(&format!(
                r#"{{"name": "p", "services": {{"web": {{"image": "nginx", "container_name": "web"{sep}{json}}}}}, "networks": {{{nets}}}}}"#
            ))
            .unwrap();
            let e = stack_of(&repo, v, &[]).expect_err(want);
            let ctx = format!("case {i}: {e}");
            assert_eq!(e.severity.exit(), crate::diag::Exit::Failure, "{ctx}");
            assert_eq!(
                (e.file.as_str(), e.line),
                ("docker-compose.yml", *line),
                "{ctx}"
            );
            assert!(e.fix.as_deref().is_some_and(|f| !f.is_empty()), "{ctx}");
            let l = e.labels.iter().find(|l| l.message.contains(want));
            assert!(l.is_some(), "{ctx}: no label with {want:?}");
            assert_eq!(
                l.map(|l| (l.file.as_str(), l.line)),
                Some(("docker-compose.yml", *line)),
                "{ctx}"
            );
            // The text keeps the shape it had: the place, then each key at its line.
            assert!(
                e.to_string()
                    .contains(&format!("\n  docker-compose.yml:{line}: {want}")),
                "{ctx}"
            );
            std::fs::remove_dir_all(&repo.root).ok();
        }
    }

    /// Two keys: one error at the first, both as labels, each at its line;
    /// `--format json` carries them as `labels`.
    #[test]
    fn every_refused_key_is_a_label_at_its_line() {
        let text = "services:\n  web:\n    image: nginx\n    ipc: host\n    pid: host\n";
        let repo = crate::model::repo::scratch("load-two", &[("docker-compose.yml", text)]);
        let v = serde_json::json!({"name": "p", "services": {"web": {"image": "nginx", "ipc": "host", "pid": "host"}}});
        let e = stack_of(&repo, v, &[]).unwrap_err();
        assert!(e.message.contains("2 key(s) are not modeled"), "{e}");
        let at: Vec<(usize, bool)> = e
            .labels
            .iter()
            .map(|l| {
                (
                    l.line,
                    l.message.starts_with("`ipc`") || l.message.starts_with("`pid`"),
                )
            })
            .collect();
        assert_eq!(at, [(4, true), (5, true)], "{e}");
        assert_eq!(e.line, 4);
        let j = e.to_json();
        assert_eq!(j["labels"][1]["line"], 5, "{j}");
        assert_eq!(j["labels"][1]["file"], "docker-compose.yml", "{j}");
        // `allowed` keys (the swarm engine's `deploy`) are left out, not refused.
        let v = serde_json::json!({"name": "p", "services": {"web": {"image": "nginx", "deploy": {"replicas": 1}}}});
        assert!(stack_of(&repo, v.clone(), &["deploy"]).is_ok());
        assert!(stack_of(&repo, v, &[]).is_err());
        std::fs::remove_dir_all(&repo.root).ok();
    }

    /// Two services without `networks:` share Compose's `default` network
    /// and must reach each other; `networks: [default, n]` is two networks.
    #[test]
    fn the_implicit_default_network_is_a_network() {
        let v = serde_json::json!({
            "name": "p",
            "services": {
                "a": {"image": "x", "networks": {"default": null}, "ports": [{"target": 80, "protocol": "tcp", "host_ip": "127.0.0.1"}]},
                "b": {"image": "x", "networks": {"default": null}, "expose": ["9000"]},
                "c": {"image": "x", "networks": {"default": null, "n": null}},
                "d": {"image": "x", "networks": {"n": null}}
            },
            "networks": {"default": {"name": "p_default"}, "n": {"name": "p_n"}}
        });
        let st = Stack::from_json(&v).unwrap();
        let repo_view = Compose {
            services: vec![],
            networks: vec![],
            volumes: vec![],
        };
        let c = view(&repo_view, &st);
        let s = |n: &str| c.service(n).unwrap();
        assert!(reach::reaches(s("a"), s("b")) && reach::reaches(s("b"), s("a")));
        assert!(reach::reaches(s("c"), s("d")) && !reach::reaches(s("a"), s("d")));
        // A service with only `expose:` is a target at that port.
        assert_eq!(s("b").port(), Some(9000));
        let e = reach::expected(&c);
        assert!(e
            .iter()
            .any(|x| x.source == "a" && x.target == "b" && x.port == 9000 && x.reach));
    }
}
