//! `add-service`: check the request against the model, plan every file
//! into one `Txn`, read the compose text back, then diff or commit.

use std::path::Path;

use crate::diag::{did_you_mean, Diagnostic, Error};
use crate::edit;
use crate::edit::compose as edit_compose;
use crate::model::cnf;
use crate::model::compose::{self, Compose};
use crate::model::nginx;
use crate::model::repo::{Repo, RESERVED, SERVICES_DIR};
use crate::plan::certs;
use crate::plan::proto;
use crate::plan::scaffold::{self, Options};
use crate::plan::txn::{self, Txn};

use crate::cli::AddArgs;

use crate::model::names;

pub fn validate_name(name: &str) -> Result<(), Error> {
    names::service(name)
        .map_err(|e| Diagnostic::error(e).fix("pick a name like `billing` or `user-events`"))?;
    if RESERVED.contains(&name) {
        return Err(Diagnostic::error(format!("`{name}` is reserved (it names a folder of src/, an infrastructure service or a network)")).fix("pick another name"));
    }
    Ok(())
}

fn parse_volume(v: &str) -> Result<(String, String), Error> {
    let (name, path) = v.split_once(':').unwrap_or((v, ""));
    names::volume(name)
        .and_then(|_| names::container_path(path))
        .map_err(|e| {
            Diagnostic::error(format!(
                "--volume {v:?}: {e}; expected `<name>:<absolute container path>`"
            ))
            .fix("e.g. `--volume billing-data:/var/lib/billing`")
        })?;
    Ok((name.to_string(), path.to_string()))
}

fn validate_public(path: &str) -> Result<(), Error> {
    names::public_path(path).map_err(|e| {
        Diagnostic::error(format!("--public: {e}")).fix("give a path like `/api/billing/`")
    })
}

/// Every port some service uses, host or container side, ranges included
/// (a table by port: one pass, whatever the number of services).
fn used_ports(c: &Compose) -> Vec<bool> {
    let mut used = vec![false; 65536];
    let mut mark =
        |a: u32, b: u32| (a.min(65535)..=b.min(65535)).for_each(|p| used[p as usize] = true);
    for p in c.services.iter().flat_map(|s| &s.ports) {
        mark(p.container, p.container_end);
        if let Some(h) = p.host {
            mark(h, p.host_end.unwrap_or(h));
        }
    }
    used
}

/// Whether a port entry uses port `p` (host or container side, ranges included).
fn takes(x: &compose::Port, p: u32) -> bool {
    (x.container..=x.container_end).contains(&p)
        || x.host
            .is_some_and(|h| (h..=x.host_end.unwrap_or(h)).contains(&p))
}

/// Checks the request against the repository and returns the options.
pub fn resolve_add(repo: &Repo, a: &AddArgs) -> Result<Options, Error> {
    let name = &a.name;
    validate_name(name)?;
    if let Some(s) = repo.compose.service(name) {
        return Err(
            Diagnostic::error(format!("service `{name}` already exists"))
                .at(&repo.compose_file, s.line)
                .fix(format!(
                    "pick another name, or `cargo xtask remove-service {name}` first"
                )),
        );
    }
    // --pg / --redis name the infrastructure service: without it, the
    // depends_on would be invalid compose and the service could not reach
    // its database. Refused rather than silently omitted.
    for (flag, infra, on) in [("--pg", "postgres", a.pg), ("--redis", "redis", a.redis)] {
        if on && repo.compose.service(infra).is_none() {
            return Err(Diagnostic::error(format!("{flag} needs a `{infra}` service, and there is none"))
                .at(&repo.compose_file, 0)
                .fix(format!("add a `{infra}` service to {} first (this repository's compose file shows one), or leave out {flag}", repo.compose_file)));
        }
    }
    if repo.service_dirs.iter().any(|d| d == name) {
        return Err(
            Diagnostic::error(format!("{SERVICES_DIR}/{name}/ already exists"))
                .fix("pick another name, or remove that folder"),
        );
    }
    let used = used_ports(&repo.compose);
    let port = match a.port {
        Some(p) if !(1..=65535).contains(&p) => {
            return Err(Diagnostic::error(format!("--port {p} is out of range"))
                .fix("use a port from 1 to 65535"))
        }
        Some(p) => {
            if let Some(s) = repo
                .compose
                .services
                .iter()
                .find(|s| s.ports.iter().any(|x| takes(x, p)))
            {
                let line = s.ports.iter().find(|x| takes(x, p)).unwrap().line;
                return Err(Diagnostic::error(format!(
                    "port {p} is already taken by `{}`",
                    s.name
                ))
                .at(&repo.compose_file, line)
                .fix("pick a free port, or leave out --port to get the next free one"));
            }
            p as u16
        }
        None => (50051u32..=65535)
            .find(|p| !used[*p as usize])
            .ok_or_else(|| Diagnostic::error("no free port from 50051 up").fix("pass --port"))?
            as u16,
    };
    for d in &a.depends_on {
        // The new service has no profiles, so it always runs: a dependency
        // that runs only under a profile would be invalid compose whenever
        // that profile is off.
        if let Some(s) = repo.compose.service(d).filter(|s| !s.profiles.is_empty()) {
            return Err(Diagnostic::error(format!("--depends-on `{d}`: `{d}` runs only with profile {}, and the new service always runs", s.profiles.join(", ")))
                .at(&repo.compose_file, s.line)
                .fix("depend on a service without `profiles:`, or add the dependency by hand together with a profile"));
        }
        if repo.compose.service(d).is_none() {
            let names: Vec<&str> = repo
                .compose
                .services
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            let fix = match did_you_mean(d, &names) {
                Some(near) => format!(
                    "did you mean `{near}`? (the services: {})",
                    names.join(", ")
                ),
                None => format!("name one of: {}", names.join(", ")),
            };
            return Err(Diagnostic::error(format!(
                "--depends-on `{d}`: no such service in {}",
                repo.compose_file
            ))
            .fix(fix));
        }
    }
    if a.frontend && a.public.is_none() {
        return Err(Diagnostic::error(
            "--frontend needs --public: the page is served at that path",
        )
        .fix(format!("add `--public /{name}/`")));
    }
    if let Some(p) = &a.public {
        validate_public(p)?;
        if a.frontend {
            frontend_paths_free(repo, p)?;
        } else if let Some((s, q)) = repo.backend().find_map(|s| {
            s.frontend()
                .and(s.public_path())
                .filter(|q| *q != p && p.starts_with(q))
                .map(|q| (s, q))
        }) {
            return Err(Diagnostic::error(format!(
                "path `{p}` lies inside `{q}`, the page of `{}`: a page owns every path below its own",
                s.name
            ))
            .at(&repo.compose_file, s.line)
            .fix("pick a --public path outside the page's"));
        }
        if let Some(r) = repo.nginx.conflict(p, "") {
            return Err(
                Diagnostic::error(format!("path `{p}` is already routed to {}", r.host))
                    .at(&r.file, r.line)
                    .fix("pick another --public path"),
            );
        }
        if let Some(s) = repo.backend().find(|s| s.public_path() == Some(p.as_str())) {
            return Err(Diagnostic::error(format!(
                "path `{p}` is already the public path of `{}`",
                s.name
            ))
            .at(&repo.compose_file, s.line)
            .fix("pick another --public path"));
        }
    }
    let mut volumes = vec![];
    for v in &a.volumes {
        volumes.push(parse_volume(v)?);
    }
    let entry = a.entry.clone().unwrap_or_else(|| "server.py".into());
    if entry != "server.py" && entry != "main.py" {
        return Err(Diagnostic::error(format!(
            "--entry `{entry}`: must be server.py or main.py"
        )));
    }
    if a.grpc && a.public.is_none() {
        let pkg = scaffold::proto_pkg(name);
        if scaffold::PYTHON_KEYWORDS.contains(&pkg.as_str()) {
            return Err(Diagnostic::error(format!("`{name}` cannot name a gRPC service: its package `{pkg}` is a Python keyword, so `common.gen.{pkg}.v1` could not be imported")).fix(format!("pick another name, e.g. `{name}-svc`")));
        }
        for dir in [
            format!("{}/{pkg}", proto::PROTO_DIR),
            format!("{}/{pkg}", proto::GEN_DIR),
        ] {
            if repo.root.join(&dir).exists() {
                return Err(Diagnostic::error(format!(
                    "{dir}/ already exists: the API of `{name}` would mix with what is there"
                ))
                .fix("pick another name, or remove that folder"));
            }
        }
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
        frontend: a.frontend,
    })
}

/// A frontend owns its whole path (deep links fall back to its page) and
/// the exact path without the slash (a redirect): no other public path may
/// lie inside it, contain it, or be routed there by NGINX already. (That
/// NGINX has a `volumes:` block list for its mount is checked by the edit.)
fn frontend_paths_free(repo: &Repo, p: &str) -> Result<(), Error> {
    if p == "/" {
        return Err(
            Diagnostic::error("--frontend --public /: a page needs a path of its own")
                .fix("give a path like `/billing-web/`"),
        );
    }
    for s in repo.backend() {
        let Some(q) = s.public_path() else { continue };
        if q != p && (q.starts_with(p) || p.starts_with(q)) {
            return Err(Diagnostic::error(format!(
                "path `{p}` clashes with `{q}`, the public path of `{}`: a page owns every path below its own",
                s.name
            ))
            .at(&repo.compose_file, s.line)
            .fix("pick a --public path that neither contains nor lies inside another service's"));
        }
    }
    let bare = p.trim_end_matches('/');
    if let Some(r) = repo.nginx.routes.iter().find(|r| {
        (r.path.starts_with(p) || r.path == bare)
            && r.server
                .as_ref()
                .is_none_or(|s| repo.nginx.location_servers.contains(s))
    }) {
        return Err(Diagnostic::error(format!(
            "NGINX already routes `{}` (inside `{p}`) to {}",
            r.path, r.host
        ))
        .at(&r.file, r.line)
        .fix("pick another --public path"));
    }
    Ok(())
}

/// The generator, started for the `.proto` the request will add before the
/// repository is read and the request checked: it needs only the name, and
/// it is the longest step of an added gRPC service (a Python start and
/// protoc), so it runs while the rest is done. None when the request
/// cannot serve an API or the start fails: `plan_add` then starts it
/// itself, where any error is reported in its usual order. A refused
/// request drops it, which stops it.
pub fn start_proto(root: &Path, a: &AddArgs) -> Option<proto::Pending> {
    let serves_api = a.grpc && a.public.is_none();
    if !serves_api
        || validate_name(&a.name).is_err()
        || scaffold::PYTHON_KEYWORDS.contains(&scaffold::proto_pkg(&a.name).as_str())
    {
        return None;
    }
    let (path, content) = scaffold::proto(&a.name);
    let mut t = Txn::new(root);
    t.write(&path, content).ok()?;
    proto::start(&t, root, &[path]).ok()
}

/// Plans the whole addition into one transaction; `early` is the generator
/// `start_proto` started for this request, if it did.
pub fn plan_add(
    repo: &Repo,
    o: &Options,
    early: Option<proto::Pending>,
) -> Result<(Txn, Vec<String>), Error> {
    let mut t = Txn::new(&repo.root);
    for (path, content) in scaffold::files(o) {
        t.write(&path, content)?;
    }
    // Its generated code lands in the same transaction as the .proto; the
    // generator runs while the compose edit below is planned and checked.
    let pending = match early {
        Some(p) if o.serves_api() => Some(p),
        _ if o.serves_api() => Some(proto::start(
            &t,
            &repo.root,
            &[scaffold::proto_file(&o.name)],
        )?),
        _ => None,
    };
    let (form, plain) = edit_compose::Form::plain(&repo.compose_text);
    let unit = edit_compose::indent_unit(&plain);
    let mut text =
        edit_compose::insert_entry(&plain, "services", &scaffold::compose_entry(o, unit))?;
    let mut change = edit_compose::Change {
        added: vec![("services", o.name.clone())],
        removed: vec![],
        changed: vec![],
    };
    // Declarations take their own section's indentation, not the services'.
    for net in o.networks() {
        if !repo.compose.networks.iter().any(|(n, _)| *n == net) {
            let pad = " ".repeat(edit_compose::section_indent(&text, "networks", unit));
            text = edit_compose::insert_entry(&text, "networks", &format!("{pad}{net}:\n"))?;
            change.added.push(("networks", net));
        }
    }
    for (v, _) in &o.volumes {
        if !repo.compose.volumes.iter().any(|(n, _)| n == v)
            && !change.added.iter().any(|(s, n)| *s == "volumes" && n == v)
        {
            let pad = " ".repeat(edit_compose::section_indent(&text, "volumes", unit));
            text = edit_compose::insert_entry(&text, "volumes", &format!("{pad}{v}:\n"))?;
            change.added.push(("volumes", v.clone()));
        }
    }
    // A frontend's files reach NGINX by a read-only bind mount (no new
    // port, no image to rebuild when a file changes: docs/frontend.md).
    if o.frontend {
        let p = o.public.as_deref().unwrap_or_default();
        text = edit_compose::add_list_item(
            &text,
            "nginx",
            "volumes",
            &edit::nginx::frontend_mount(&o.name, p),
        )
        .map_err(|e| {
            e.at(
                &repo.compose_file,
                repo.compose.service("nginx").map_or(0, |s| s.line),
            )
        })?;
        change.changed.push(("services", "nginx".to_string()));
    }
    // Read back what we wrote: exactly the intended change, and the new
    // entry parses to what was asked.
    let loaded = repo.compose_tree.as_ref().filter(|_| form.is_plain());
    let tree = edit_compose::verify_edit(&plain, loaded, &text, &change, &repo.compose_file)?;
    let env = |k: &str| repo.env(k);
    let parsed = Compose::from_tree(tree.as_ref(), &env).map_err(|e| {
        Diagnostic::error(format!(
            "internal error: the edited compose file does not parse: {e}"
        ))
    })?;
    let s = parsed.service(&o.name).ok_or_else(|| {
        Diagnostic::error("internal error: the new service is missing after the edit")
    })?;
    if s.port() != Some(o.port) {
        return Err(Diagnostic::error(format!(
            "internal error: the new service's port reads back as {:?}, not {}",
            s.port(),
            o.port
        )));
    }
    let text = form.restore(&text);
    if let Some(p) = pending {
        p.finish(&mut t)?;
    }
    t.write(&repo.compose_file, text)?;
    // Its role, database, ACL user and credentials (and the derived files).
    crate::plan::datalayer::plan(&mut t, &repo.root, &parsed)?;

    let mut cnf_text = repo.cnf_text.clone();
    if o.https {
        cnf_text = edit::cnf::add_dns(&cnf_text, &repo.cnf, &o.name)?;
        t.write(cnf::FILE, cnf_text.clone())?;
    }
    if let Some(p) = &o.public {
        let conf = if o.frontend {
            edit::nginx::render_frontend(&o.name, p, o.port, o.https)
        } else {
            edit::nginx::render_location(&o.name, p, o.port, o.https, o.protocol() == "grpc")
        };
        t.write(&nginx::location_file(&o.name), conf)?;
    }
    let mut report = vec![];
    if o.https {
        let cnf = repo.cnf.reparse(&cnf_text)?;
        let mut https = repo.wanted_alt_names();
        https.push(o.name.clone());
        report = certs::plan(&mut t, &cnf, &https, false)?;
    }
    Ok((t, report))
}

pub fn run(root: &Path, a: &AddArgs) -> Result<(), Error> {
    let _lock = if a.dry_run {
        txn::lock_shared(root)?
    } else {
        txn::lock(root)?
    };
    let early = start_proto(root, a);
    let repo = Repo::load(root)?;
    repo.refuse_untrusted()?;
    let o = resolve_add(&repo, a)?;
    let (t, report) = plan_add(&repo, &o, early)?;
    super::finish(
        t,
        a.dry_run,
        &format!("added service `{}` on port {}", o.name, o.port),
        &report,
    )
}
