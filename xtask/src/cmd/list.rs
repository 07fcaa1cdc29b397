//! `list`: the services, as a table or JSON.

use std::path::Path;

use crate::diag::Error;
use crate::model::compose::{Compose, Service};
use crate::model::repo::Repo;

/// The service as Compose sees it after `extends`: the base's ports come
/// first, then its own; networks and depends_on are the union. The base may
/// live in another file (relative to the repository root) and extend again.
fn resolved(
    root: &Path,
    c: &Compose,
    s: &Service,
    env: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Service {
    let mut out = s.clone();
    let Some((file, base)) = &s.extends else {
        return out;
    };
    if depth > 10 {
        return out;
    }
    let other = file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(root.join(f)).ok())
        .and_then(|t| Compose::parse(&t, env).ok());
    let (dir, owner) = match (&other, file) {
        (Some(o), Some(f)) => (root.join(f).parent().unwrap_or(root).to_path_buf(), o),
        _ => (root.to_path_buf(), c),
    };
    let Some(b) = owner.service(base) else {
        return out;
    };
    let b = resolved(&dir, owner, b, env, depth + 1);
    out.ports = b.ports.iter().chain(&s.ports).cloned().collect();
    for n in &b.networks {
        if !out.networks.iter().any(|x| x.0 == n.0) {
            out.networks.push(n.clone());
        }
    }
    for d in &b.depends_on {
        if !out.depends_on.iter().any(|x| x.0 == d.0) {
            out.depends_on.push(d.clone());
        }
    }
    out
}

pub fn run(root: &Path, json: bool) -> Result<(), Error> {
    let _lock = crate::plan::txn::lock_shared(root)?;
    let repo = Repo::load(root)?;
    let env = |k: &str| repo.env(k);
    let services: Vec<Service> = repo
        .compose
        .services
        .iter()
        .map(|s| resolved(&repo.root, &repo.compose, s, &env, 0))
        .collect();
    let rows: Vec<serde_json::Value> = services
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                // As `docker compose config --format json` writes them.
                "ports": s.ports.iter().flat_map(|p| p.expand().into_iter().map(move |(target, published)| {
                    let mut o = serde_json::json!({"target": target, "protocol": p.protocol});
                    if let Some(h) = published { o["published"] = h.into(); }
                    if !p.host_ip.is_empty() { o["host_ip"] = p.host_ip.clone().into(); }
                    o
                })).collect::<Vec<_>>(),
                "networks": s.networks.iter().map(|n| n.0.clone()).collect::<Vec<_>>(),
                "https": s.https(),
                "public": s.public_path(),
                // The folder of its page (served by NGINX at `public`), if any.
                "frontend": s.frontend().map(|d| format!("{}/{}/{d}/", crate::model::repo::SERVICES_DIR, s.name)),
                "depends_on": s.depends_on.iter().map(|n| n.0.clone()).collect::<Vec<_>>(),
                "backend": s.is_backend(),
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap());
        return Ok(());
    }
    let cols = [
        "SERVICE",
        "PORTS",
        "NETWORKS",
        "HTTPS",
        "PUBLIC",
        "DEPENDS_ON",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let join = |k: &str| {
                r[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            vec![
                r["name"].as_str().unwrap().to_string(),
                r["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        let ip = p["host_ip"]
                            .as_str()
                            .map(|i| format!("{i}:"))
                            .unwrap_or_default();
                        let proto = if p["protocol"] == "tcp" {
                            String::new()
                        } else {
                            format!("/{}", p["protocol"].as_str().unwrap_or(""))
                        };
                        match p["published"].as_str() {
                            Some(h) => format!("{ip}{h}:{}{proto}", p["target"]),
                            None => format!("{}{proto}", p["target"]),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                join("networks"),
                if r["https"].as_bool().unwrap() {
                    "yes".into()
                } else {
                    "-".into()
                },
                match (r["public"].as_str(), r["frontend"].is_string()) {
                    (Some(p), true) => format!("{p}+page"),
                    (p, _) => p.unwrap_or("-").to_string(),
                },
                join("depends_on"),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..cols.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].len().max(1))
                .chain([cols[i].len()])
                .max()
                .unwrap()
        })
        .collect();
    let line = |c: Vec<String>| {
        c.iter()
            .enumerate()
            .map(|(i, v)| format!("{:w$}", if v.is_empty() { "-" } else { v }, w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(cols.iter().map(|s| s.to_string()).collect()));
    for c in cells {
        println!("{}", line(c));
    }
    Ok(())
}
