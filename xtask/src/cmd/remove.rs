//! `remove-service`: the exact reverse of `add-service`, planned the same way.

use std::path::Path;

use crate::diag::{name_one_of, Diagnostic, Error, Label};
use crate::edit;
use crate::edit::compose as edit_compose;
use crate::model::cnf;
use crate::model::compose::{Compose, Service};
use crate::model::nginx;
use crate::model::repo::{Repo, SERVICES_DIR};
use crate::plan::certs;
use crate::plan::proto;
use crate::plan::scaffold;
use crate::plan::txn::{self, Txn};

pub fn run(root: &Path, name: &str, keep_files: bool, dry_run: bool) -> Result<(), Error> {
    let _lock = if dry_run {
        txn::lock_shared(root)?
    } else {
        txn::lock(root)?
    };
    let repo = Repo::load(root)?;
    repo.refuse_untrusted()?;
    let Some(svc) = repo.compose.service(name) else {
        return Err(
            Diagnostic::error(format!("no service `{name}` in {}", repo.compose_file))
                .fix(name_one_of(name, &repo.compose.names(), "services")),
        );
    };
    refuse_if_referred(&repo, name)?;
    // The generator plans the removal of the service's API while the compose
    // edit below is made and checked (it is the longest step: a Python start
    // and a pass over src/common/gen). Started on a scratch plan of the
    // deletions only; the real ones are planned below in their usual place,
    // and any error there is reported as before (a failed start here only
    // means the generator runs there instead).
    let early = if keep_files {
        None
    } else {
        start_proto(&repo.root, name)
    };
    let mut t = Txn::new(&repo.root);
    let parsed = plan_compose(&mut t, &repo, svc, keep_files)?;
    // Its role, ACL user and credentials go with it.
    crate::plan::datalayer::plan(&mut t, &repo.root, &parsed)?;
    let report = plan_cnf_and_certs(&mut t, &repo, name)?;
    if !keep_files {
        plan_folder(&mut t, &repo, name, early)?;
    }
    super::finish(t, dry_run, &format!("removed service `{name}`"), &report)
}

/// Anything that still names the service keeps it: refuse, naming each place.
fn refuse_if_referred(repo: &Repo, name: &str) -> Result<(), Error> {
    let cf = &repo.compose_file;
    let mut uses: Vec<Label> = vec![];
    for s in repo.compose.services.iter().filter(|s| s.name != name) {
        for (d, l) in s.depends_on.iter().filter(|(d, _)| d == name) {
            uses.push(Label::at(cf, *l, format!("`{}` depends_on `{d}`", s.name)));
        }
        for (_, key, l) in s.refs.iter().filter(|(d, ..)| d == name) {
            uses.push(Label::at(cf, *l, format!("`{}` names it in {key}", s.name)));
        }
    }
    let (_, plain) = edit_compose::Form::plain(&repo.compose_text);
    uses.extend(
        edit_compose::anchors_used_outside(&plain, name)
            .into_iter()
            .map(|(a, l)| {
                Label::at(
                    cf,
                    l,
                    format!("alias `*{a}` refers to an anchor defined in `{name}`"),
                )
            }),
    );
    if !uses.is_empty() {
        let line = repo.compose.service(name).map_or(0, |s| s.line);
        let mut e = Diagnostic::error(format!("`{name}` is still referred to:")).at(cf, line);
        e.labels = uses;
        return Err(e.fix(format!(
            "remove those references first, then remove `{name}`"
        )));
    }
    Ok(())
}

/// The compose edit: the service's block, and the network and volume
/// declarations only it used (as add-service wrote them); checked by
/// parsing the result; unless `keep_files`, no other service may still
/// mount the folder. Returns the edited file's model.
fn plan_compose(
    t: &mut Txn,
    repo: &Repo,
    svc: &Service,
    keep_files: bool,
) -> Result<Compose, Error> {
    let cf = &repo.compose_file;
    let name = svc.name.as_str();
    let (form, plain) = edit_compose::Form::plain(&repo.compose_text);
    // The last service takes `services:` with it: the mirror of add-service
    // in a file that has none (one that only `include`s others).
    let last = repo.compose.services.len() == 1;
    let mut text = edit_compose::remove_entry(&plain, "services", name, last).ok_or_else(|| {
        Diagnostic::error(format!("cannot find the block of `{name}` to remove")).at(cf, svc.line)
    })?;
    let mut change = edit_compose::Change {
        added: vec![],
        removed: vec![("services", name.to_string())],
        changed: vec![],
    };
    // Its page's mount in NGINX's volumes, exactly as add-service wrote it.
    if let (Some(_), Some(path)) = (svc.frontend(), svc.public_path()) {
        let item = edit::nginx::frontend_mount(name, path);
        if let Some(t2) = edit_compose::remove_list_item(&text, "nginx", "volumes", &item) {
            text = t2;
            change.changed.push(("services", "nginx".to_string()));
        }
    }
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
        if !others().any(|s| s.volumes.iter().any(|o| o.named && o.source == m.source))
            && !drop.contains(&("volumes", m.source.clone()))
        {
            drop.push(("volumes", m.source.clone()));
        }
    }
    for (sec, n) in drop {
        let pad = " ".repeat(edit_compose::section_indent(&text, sec, unit));
        if edit_compose::entry_text(&text, sec, &n).as_deref()
            == Some(format!("{pad}{n}:\n").as_str())
        {
            if let Some(t2) = edit_compose::remove_entry(&text, sec, &n, true) {
                text = t2;
                change.removed.push((sec, n));
            }
        }
    }
    let loaded = repo.compose_tree.as_ref().filter(|_| form.is_plain());
    let tree = edit_compose::verify_edit(&plain, loaded, &text, &change, cf)?;
    let env = |k: &str| repo.env(k);
    let parsed = Compose::from_tree(tree.as_ref(), &env).map_err(|e| {
        Diagnostic::error(format!(
            "internal error: the edited compose file does not parse: {e}"
        ))
    })?;
    // A mount of its folder that is not the line add-service wrote (edited
    // by hand) would be left pointing at nothing: the user decides.
    let folder = format!("{SERVICES_DIR}/{name}/");
    for o in parsed.services.iter().filter(|_| !keep_files) {
        if let Some(m) = o.volumes.iter().find(|m| {
            !m.named
                && format!(
                    "{}/",
                    m.source.trim_start_matches("./").trim_end_matches('/')
                )
                .starts_with(&folder)
        }) {
            return Err(Diagnostic::error(format!(
                "`{}` still mounts {} from the folder of `{name}`",
                o.name, m.source
            ))
            .at(cf, m.line)
            .fix("remove that mount first, or pass --keep-files"));
        }
    }
    let text = form.restore(&text);
    t.write(&repo.compose_file, text)?;
    Ok(parsed)
}

/// Its `DNS.N` in openssl.cnf, its endpoint file, its certificates, and
/// the shared certificate re-made without it. Returns the certificates made.
fn plan_cnf_and_certs(t: &mut Txn, repo: &Repo, name: &str) -> Result<Vec<String>, Error> {
    let mut cnf_text = repo.cnf_text.clone();
    let lines: Vec<usize> = repo
        .cnf
        .alt_names
        .iter()
        .filter(|a| a.kind == "DNS" && a.value == name && a.file == cnf::FILE)
        .flat_map(|a| a.lines())
        .collect();
    if !lines.is_empty() {
        cnf_text = edit::cnf::remove_lines(&cnf_text, &lines);
        t.write(cnf::FILE, cnf_text.clone())?;
    }
    t.delete(&nginx::location_file(name))?;
    certs::remove_service(t, name)?;
    let mut report = vec![];
    if !lines.is_empty() && repo.root.join(certs::CA_CERT).exists() {
        let https: Vec<String> = repo
            .wanted_alt_names()
            .into_iter()
            .filter(|n| n != name)
            .collect();
        report = certs::plan(t, &repo.cnf.reparse(&cnf_text)?, &https, false)?;
    }
    Ok(report)
}

/// The service's folder, file by file (links refused), and its API files
/// with their generated code.
fn plan_folder(
    t: &mut Txn,
    repo: &Repo,
    name: &str,
    early: Option<(proto::Pending, Vec<String>)>,
) -> Result<(), Error> {
    // The folder is found by name: only a DNS label, joined by the one
    // function that refuses paths leaving the repository.
    crate::model::names::service(name).map_err(|e| {
        Diagnostic::error(e).fix(format!("name a service of {}", repo.compose_file))
    })?;
    let dir =
        crate::model::names::join(&repo.root, &format!("{SERVICES_DIR}/{name}")).map_err(|e| {
            Diagnostic::error(e).fix(format!("name a service of {}", repo.compose_file))
        })?;
    // Symlinks are never followed (a link to /etc inside the folder
    // would make this delete /etc's files) nor deleted: refused.
    let link = |p: &std::path::Path| -> Result<(), Error> {
        let rel = p
            .strip_prefix(&repo.root)
            .unwrap_or(p)
            .display()
            .to_string();
        Err(Diagnostic::error(format!("{rel} is a symlink; remove-service does not follow or delete links (nothing was written)"))
            .fix("remove the link yourself, or pass --keep-files"))
    };
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return link(&dir);
    }
    let protos = own_protos(&repo.root, name);
    if !protos.is_empty() {
        for p in &protos {
            t.delete(p)?;
        }
        // Its generated code goes in the same transaction.
        match early {
            Some((p, planned)) if planned == protos => p.finish(t)?,
            _ => proto::plan(t, &repo.root, &protos)?,
        }
    }
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let ft = e
                .file_type()
                .map_err(|er| Diagnostic::error(format!("{}: {er}", p.display())))?;
            if ft.is_symlink() {
                return link(&p);
            } else if ft.is_dir() {
                stack.push(p);
            } else {
                t.delete(&p.strip_prefix(&repo.root).unwrap().to_string_lossy())?;
            }
        }
    }
    Ok(())
}

/// The generator started for the removal of `name`'s API files, with those
/// files; None when it has none or the start fails.
fn start_proto(root: &Path, name: &str) -> Option<(proto::Pending, Vec<String>)> {
    crate::model::names::service(name).ok()?;
    let protos = own_protos(root, name);
    if protos.is_empty() {
        return None;
    }
    let mut t = Txn::new(root);
    for p in &protos {
        t.delete(p).ok()?;
    }
    Some((proto::start(&t, root, &protos).ok()?, protos))
}

/// The service's API files as `add-service --grpc` wrote them: everything
/// under `src/proto/<pkg>/` when each file there is a .proto of package
/// `<pkg>.…`; otherwise (the folder is shared with another API, e.g. a
/// service named `grpc` beside grpc.health) only `<pkg>/v1/<pkg>.proto`.
fn own_protos(root: &Path, name: &str) -> Vec<String> {
    let pkg = scaffold::proto_pkg(name);
    let base = format!("{}/{pkg}", proto::PROTO_DIR);
    let files: Vec<String> = proto::walk(&root.join(&base))
        .into_iter()
        .map(|f| format!("{base}/{f}"))
        .collect();
    let own = |rel: &String| {
        rel.ends_with(".proto")
            && std::fs::read_to_string(root.join(rel)).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.trim().starts_with(&format!("package {pkg}.")))
            })
    };
    if files.iter().all(own) {
        return files;
    }
    let single = scaffold::proto_file(name);
    files.into_iter().filter(|f| *f == single).collect()
}
