//! The static commands: add-service, remove-service, sync, certs, list.
//! Each loads the repository model, plans every file into one `Txn`, then
//! prints the plan (`--dry-run`) or commits it under the repository lock.

pub mod images;

use std::path::Path;

use crate::plan::certs;
use crate::model::cnf::{self, Cnf};
use crate::edit::compose as edit_compose;
use crate::model::compose::{self, Compose};
use crate::model::nginx;
use crate::model::repo::{Repo, RESERVED, SERVICES_DIR};
use crate::plan::scaffold::{self, Options};
use crate::plan::sync;
use crate::plan::txn::{self, Txn};
use crate::edit;
use crate::Error;

pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(Error::input(format!(
            "`{name}` is not a valid service name: it must be a DNS label (lowercase letters, digits and '-', starting with a letter, not ending with '-', at most 63 characters)\n  fix: pick a name like `billing` or `user-events`"
        )));
    }
    if RESERVED.contains(&name) {
        return Err(Error::input(format!("`{name}` is reserved (it names a folder of src/, an infrastructure service or a network)\n  fix: pick another name")));
    }
    Ok(())
}

fn parse_volume(v: &str) -> Result<(String, String), Error> {
    let (name, path) = v.split_once(':').unwrap_or((v, ""));
    let name_ok = !name.is_empty() && name.starts_with(|c: char| c.is_ascii_alphanumeric()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !name_ok || !path.starts_with('/') || path.contains(':') {
        return Err(Error::input(format!("--volume `{v}`: expected `<name>:<absolute container path>`\n  fix: e.g. `--volume billing-data:/var/lib/billing`")));
    }
    Ok((name.to_string(), path.to_string()))
}

fn validate_public(path: &str) -> Result<(), Error> {
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || "{};'\"#$".contains(c)) {
        return Err(Error::input(format!("--public `{path}`: not a URL path\n  fix: give a path like `/api/billing/`")));
    }
    Ok(())
}

fn used_ports(c: &Compose) -> Vec<u32> {
    let mut out = vec![];
    for p in c.services.iter().flat_map(|s| &s.ports) {
        out.extend(p.container..=p.container_end);
        if let Some(h) = p.host {
            out.extend(h..=p.host_end.unwrap_or(h));
        }
    }
    out
}

/// Whether a port entry uses port `p` (host or container side, ranges included).
fn takes(x: &compose::Port, p: u32) -> bool {
    (x.container..=x.container_end).contains(&p) || x.host.is_some_and(|h| (h..=x.host_end.unwrap_or(h)).contains(&p))
}

/// Raw flags of `add-service`, before they are checked against the repo.
#[derive(Default)]
pub struct AddArgs {
    pub name: String,
    pub grpc: bool,
    pub pg: bool,
    pub redis: bool,
    pub https: bool,
    pub public: Option<String>,
    pub port: Option<u32>,
    pub depends_on: Vec<String>,
    pub volumes: Vec<String>,
    pub entry: Option<String>,
    pub dry_run: bool,
}

/// Checks the request against the repository and returns the options.
pub fn resolve_add(repo: &Repo, a: &AddArgs) -> Result<Options, Error> {
    let name = &a.name;
    validate_name(name)?;
    if let Some(s) = repo.compose.service(name) {
        return Err(Error::input(format!("{}:{}: service `{name}` already exists\n  fix: pick another name, or `cargo xtask remove-service {name}` first", compose::FILE, s.line)));
    }
    // --pg / --redis name the infrastructure service: without it, the
    // depends_on would be invalid compose and the service could not reach
    // its database. Refused rather than silently omitted.
    for (flag, infra, on) in [("--pg", "postgres", a.pg), ("--redis", "redis", a.redis)] {
        if on && repo.compose.service(infra).is_none() {
            return Err(Error::input(format!(
                "{}: {flag} needs a `{infra}` service, and there is none\n  fix: add a `{infra}` service to {} first (this repository's compose file shows one), or leave out {flag}",
                repo.compose_file, repo.compose_file
            )));
        }
    }
    if repo.service_dirs.iter().any(|d| d == name) {
        return Err(Error::input(format!("{SERVICES_DIR}/{name}/ already exists\n  fix: pick another name, or remove that folder")));
    }
    let used = used_ports(&repo.compose);
    let port = match a.port {
        Some(p) if !(1..=65535).contains(&p) => {
            return Err(Error::input(format!("--port {p} is out of range\n  fix: use a port from 1 to 65535")))
        }
        Some(p) => {
            if let Some(s) = repo.compose.services.iter().find(|s| s.ports.iter().any(|x| takes(x, p))) {
                let line = s.ports.iter().find(|x| takes(x, p)).unwrap().line;
                return Err(Error::input(format!("{}:{line}: port {p} is already taken by `{}`\n  fix: pick a free port, or leave out --port to get the next free one", compose::FILE, s.name)));
            }
            p as u16
        }
        None => (50051u32..=65535).find(|p| !used.contains(p)).ok_or_else(|| Error::input("no free port from 50051 up\n  fix: pass --port"))? as u16,
    };
    for d in &a.depends_on {
        if repo.compose.service(d).is_none() {
            return Err(Error::input(format!("--depends-on `{d}`: no such service in {}\n  fix: name one of: {}", compose::FILE, repo.compose.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "))));
        }
    }
    if let Some(p) = &a.public {
        validate_public(p)?;
        if let Some(r) = repo.routes.iter().find(|r| &r.path == p) {
            return Err(Error::input(format!("{}:{}: path `{p}` is already routed to {}\n  fix: pick another --public path", r.file, r.line, r.host)));
        }
        if let Some(s) = repo.backend().find(|s| s.public_path() == Some(p.as_str())) {
            return Err(Error::input(format!("{}:{}: path `{p}` is already the public path of `{}`\n  fix: pick another --public path", compose::FILE, s.line, s.name)));
        }
    }
    let mut volumes = vec![];
    for v in &a.volumes {
        volumes.push(parse_volume(v)?);
    }
    let entry = a.entry.clone().unwrap_or_else(|| "server.py".into());
    if entry != "server.py" && entry != "main.py" {
        return Err(Error::input(format!("--entry `{entry}`: must be server.py or main.py")));
    }
    Ok(Options {
        name: name.clone(),
        grpc: a.grpc,
        pg: a.pg,
        redis: a.redis,
        https: a.https,
        public: a.public.clone(),
        port,
        depends_on: a.depends_on.clone(),
        volumes,
        entry,
    })
}

/// Plans the whole addition into one transaction.
pub fn plan_add(repo: &Repo, o: &Options) -> Result<(Txn, Vec<String>), Error> {
    let mut t = Txn::new(&repo.root);
    for (path, content) in scaffold::files(o) {
        t.write(&path, content)?;
    }
    let (form, plain) = edit_compose::Form::plain(&repo.compose_text);
    let unit = edit_compose::indent_unit(&plain);
    let mut text = edit_compose::insert_entry(&plain, "services", &scaffold::compose_entry(o, unit))?;
    let mut change = edit_compose::Change { added: vec![("services", o.name.clone())], removed: vec![] };
    // Declarations take their own section's indentation, not the services'.
    for net in o.networks() {
        if !repo.compose.networks.iter().any(|(n, _)| *n == net) {
            let pad = " ".repeat(edit_compose::section_indent(&text, "networks", unit));
            text = edit_compose::insert_entry(&text, "networks", &format!("{pad}{net}:\n"))?;
            change.added.push(("networks", net));
        }
    }
    for (v, _) in &o.volumes {
        if !repo.compose.volumes.iter().any(|(n, _)| n == v) && !change.added.iter().any(|(s, n)| *s == "volumes" && n == v) {
            let pad = " ".repeat(edit_compose::section_indent(&text, "volumes", unit));
            text = edit_compose::insert_entry(&text, "volumes", &format!("{pad}{v}:\n"))?;
            change.added.push(("volumes", v.clone()));
        }
    }
    // Read back what we wrote: exactly the intended change, and the new
    // entry parses to what was asked.
    edit_compose::verify_edit(&plain, &text, &change, &repo.compose_file)?;
    let env = |k: &str| repo.env(k);
    let parsed = Compose::parse(&text, &env).map_err(|e| Error::failure(format!("internal error: the edited compose file does not parse: {e}")))?;
    let s = parsed.service(&o.name).ok_or_else(|| Error::failure("internal error: the new service is missing after the edit"))?;
    if s.port() != Some(o.port) {
        return Err(Error::failure(format!("internal error: the new service's port reads back as {:?}, not {}", s.port(), o.port)));
    }
    let text = form.restore(&text);
    t.write(&repo.compose_file, text)?;

    let mut cnf_text = repo.cnf_text.clone();
    if o.https {
        cnf_text = edit::cnf::add_dns(&cnf_text, &repo.cnf, &o.name);
        t.write(cnf::FILE, cnf_text.clone())?;
    }
    if let Some(p) = &o.public {
        t.write(&nginx::location_file(&o.name), edit::nginx::render_location(&o.name, p, o.port, o.https, o.protocol() == "grpc"))?;
    }
    let mut report = vec![];
    if o.https {
        let cnf = Cnf::parse(&cnf_text)?;
        let mut https = repo.wanted_alt_names();
        https.push(o.name.clone());
        report = certs::plan(&mut t, &cnf, &https, false)?;
    }
    Ok((t, report))
}

pub fn add(root: &Path, a: &AddArgs) -> Result<(), Error> {
    let _lock = if a.dry_run { None } else { Some(txn::lock(root)?) };
    let repo = Repo::load(root)?;
    let o = resolve_add(&repo, a)?;
    let (t, report) = plan_add(&repo, &o)?;
    finish(t, a.dry_run, &format!("added service `{}` on port {}", o.name, o.port), &report)
}

fn finish(t: Txn, dry_run: bool, what: &str, report: &[String]) -> Result<(), Error> {
    if dry_run {
        print!("{}", t.diff());
        println!("dry run: {} file(s) would change; nothing was written", t.paths().len());
        return Ok(());
    }
    let written = t.commit()?;
    println!("{what}");
    for p in &written {
        if !p.starts_with(certs::DIR) {
            println!("  wrote {p}");
        }
    }
    for r in report {
        println!("  cert  {r}");
    }
    Ok(())
}

pub fn remove(root: &Path, name: &str, keep_files: bool, dry_run: bool) -> Result<(), Error> {
    let _lock = if dry_run { None } else { Some(txn::lock(root)?) };
    let repo = Repo::load(root)?;
    let Some(svc) = repo.compose.service(name) else {
        return Err(Error::input(format!("no service `{name}` in {}\n  fix: `cargo xtask list` shows the services", compose::FILE)));
    };
    // Anything that still names the service keeps it: refuse, naming each place.
    let cf = &repo.compose_file;
    let mut uses: Vec<String> = vec![];
    for s in repo.compose.services.iter().filter(|s| s.name != name) {
        for (d, l) in s.depends_on.iter().filter(|(d, _)| d == name) {
            uses.push(format!("{cf}:{l}: `{}` depends_on `{d}`", s.name));
        }
        for (_, key, l) in s.refs.iter().filter(|(d, ..)| d == name) {
            uses.push(format!("{cf}:{l}: `{}` names it in {key}", s.name));
        }
    }
    let (form, plain) = edit_compose::Form::plain(&repo.compose_text);
    uses.extend(edit_compose::anchors_used_outside(&plain, name).into_iter().map(|(a, l)| format!("{cf}:{l}: alias `*{a}` refers to an anchor defined in `{name}`")));
    if !uses.is_empty() {
        return Err(Error::input(format!("`{name}` is still referred to:\n  {}\n  fix: remove those references first, then remove `{name}`", uses.join("\n  "))));
    }
    let mut t = Txn::new(&repo.root);
    let mut text = edit_compose::remove_entry(&plain, "services", name, false)
        .ok_or_else(|| Error::failure(format!("{cf}:{}: cannot find the block of `{name}` to remove", svc.line)))?;
    let mut change = edit_compose::Change { added: vec![], removed: vec![("services", name.to_string())] };
    // The mirror of add-service: a declaration goes only when no other
    // service uses it and it is exactly what add-service writes (a bare
    // `name:`); anything a user wrote (`driver: local`, a comment) stays.
    let unit = edit_compose::indent_unit(&plain);
    let others = || repo.compose.services.iter().filter(|s| s.name != name);
    let mut drop: Vec<(&str, String)> = vec![];
    for (n, _) in &svc.networks {
        if n != "default" && !others().any(|s| s.on_network(n)) {
            drop.push(("networks", n.clone()));
        }
    }
    for m in svc.volumes.iter().filter(|m| m.named) {
        if !others().any(|s| s.volumes.iter().any(|o| o.named && o.source == m.source)) && !drop.contains(&("volumes", m.source.clone())) {
            drop.push(("volumes", m.source.clone()));
        }
    }
    for (sec, n) in drop {
        let pad = " ".repeat(edit_compose::section_indent(&text, sec, unit));
        if edit_compose::entry_text(&text, sec, &n).as_deref() == Some(format!("{pad}{n}:\n").as_str()) {
            if let Some(t2) = edit_compose::remove_entry(&text, sec, &n, true) {
                text = t2;
                change.removed.push((sec, n));
            }
        }
    }
    edit_compose::verify_edit(&plain, &text, &change, cf)?;
    let text = form.restore(&text);
    t.write(&repo.compose_file, text)?;
    let mut cnf_text = repo.cnf_text.clone();
    let lines: Vec<usize> = repo.cnf.alt_names.iter().filter(|a| a.kind == "DNS" && a.value == name).map(|a| a.line).collect();
    if !lines.is_empty() {
        cnf_text = edit::cnf::remove_lines(&cnf_text, &lines);
        t.write(cnf::FILE, cnf_text.clone())?;
    }
    t.delete(&nginx::location_file(name))?;
    certs::remove_service(&mut t, name)?;
    let mut report = vec![];
    if !lines.is_empty() && repo.root.join(certs::CA_CERT).exists() {
        let https: Vec<String> = repo.wanted_alt_names().into_iter().filter(|n| n != name).collect();
        report = certs::plan(&mut t, &Cnf::parse(&cnf_text)?, &https, false)?;
    }
    if !keep_files {
        let dir = repo.root.join(SERVICES_DIR).join(name);
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    t.delete(&p.strip_prefix(&repo.root).unwrap().to_string_lossy())?;
                }
            }
        }
    }
    finish(t, dry_run, &format!("removed service `{name}`"), &report)
}

/// `sync`: returns true when everything was already in sync.
pub fn sync(root: &Path, check: bool) -> Result<bool, Error> {
    let _lock = if check { None } else { Some(txn::lock(root)?) };
    let repo = Repo::load(root)?;
    let t = sync::plan(&repo)?;
    if t.is_empty() {
        println!("sync: everything is up to date");
        return Ok(true);
    }
    if check {
        print!("{}", t.diff());
        println!("sync --check: {} file(s) out of date; run `cargo xtask sync`", t.paths().len());
        return Ok(false);
    }
    let written = t.commit()?;
    for p in written {
        println!("  wrote {p}");
    }
    Ok(false)
}

pub fn certs(root: &Path, force: bool) -> Result<(), Error> {
    let _lock = txn::lock(root)?;
    let repo = Repo::load(root)?;
    let mut t = Txn::new(&repo.root);
    let report = certs::plan(&mut t, &repo.cnf, &repo.wanted_alt_names(), force)?;
    t.commit()?;
    if report.is_empty() {
        println!("certs: all certificates are current");
    }
    for r in report {
        println!("  {r}");
    }
    Ok(())
}

pub fn list(root: &Path, json: bool) -> Result<(), Error> {
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

