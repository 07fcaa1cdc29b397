//! `list`: the services, as a table or JSON.

use std::path::Path;

use crate::model::repo::Repo;
use crate::diag::Error;


pub fn run(root: &Path, json: bool) -> Result<(), Error> {
    let repo = Repo::load(root)?;
    let rows: Vec<serde_json::Value> = repo
        .compose
        .services
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
                "depends_on": s.depends_on.iter().map(|n| n.0.clone()).collect::<Vec<_>>(),
                "backend": s.is_backend(),
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap());
        return Ok(());
    }
    let cols = ["SERVICE", "PORTS", "NETWORKS", "HTTPS", "PUBLIC", "DEPENDS_ON"];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let join = |k: &str| r[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect::<Vec<_>>().join(",");
            vec![
                r["name"].as_str().unwrap().to_string(),
                r["ports"].as_array().unwrap().iter().map(|p| {
                    let ip = p["host_ip"].as_str().map(|i| format!("{i}:")).unwrap_or_default();
                    let proto = if p["protocol"] == "tcp" { String::new() } else { format!("/{}", p["protocol"].as_str().unwrap_or("")) };
                    match p["published"].as_str() { Some(h) => format!("{ip}{h}:{}{proto}", p["target"]), None => format!("{}{proto}", p["target"]) }
                }).collect::<Vec<_>>().join(","),
                join("networks"),
                if r["https"].as_bool().unwrap() { "yes".into() } else { "-".into() },
                r["public"].as_str().unwrap_or("-").to_string(),
                join("depends_on"),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..cols.len()).map(|i| cells.iter().map(|c| c[i].len().max(1)).chain([cols[i].len()]).max().unwrap()).collect();
    let line = |c: Vec<String>| c.iter().enumerate().map(|(i, v)| format!("{:w$}", if v.is_empty() { "-" } else { v }, w = widths[i])).collect::<Vec<_>>().join("  ").trim_end().to_string();
    println!("{}", line(cols.iter().map(|s| s.to_string()).collect()));
    for c in cells {
        println!("{}", line(c));
    }
    Ok(())
}

