//! `export swarm|k8s [--check] [--dry-run] [--registry <prefix>]`.

use std::path::Path;

use crate::cli::{ExportArgs, ExportTarget};
use crate::diag::{Error, Exit};
use crate::export::{self, k8s, policy, swarm, Opts};
use crate::model::reach as matrix;
use crate::model::repo::Repo;
use crate::plan::txn;

pub fn run(root: &Path, a: &ExportArgs) -> Result<Exit, Error> {
    let _lock = if a.check || a.dry_run {
        None
    } else {
        Some(txn::lock(root)?)
    };
    let repo = Repo::load(root)?;
    let o = Opts::new(&repo, a.registry.as_deref())?;
    let (what, t) = match a.target {
        ExportTarget::Swarm => ("swarm", swarm::plan(&repo, &o)?),
        ExportTarget::K8s => ("k8s", k8s::plan(&repo, &o)?),
    };
    if !a.check {
        if a.dry_run {
            print!("{}", t.diff());
            println!(
                "dry run: {} file(s) would change; nothing was written",
                t.paths().len()
            );
            return Ok(Exit::Ok);
        }
        if t.is_empty() {
            println!("export {what}: up to date");
        }
        for p in t.commit()? {
            println!("  wrote {p}");
        }
        return Ok(Exit::Ok);
    }
    let mut clean = true;
    if !t.is_empty() {
        print!("{}", t.diff());
        println!("export {what} --check: {} file(s) out of date with docker-compose.yml; run `cargo xtask export {what}`", t.paths().len());
        clean = false;
    }
    if a.target == ExportTarget::K8s {
        clean &= check_policies(&repo)?;
    }
    if clean {
        println!("export {what} --check: up to date");
    }
    Ok(Exit::findings_unless(clean))
}

/// Evaluates the NetworkPolicies as written in deploy/k8s against the
/// expected matrix, and finds every hostPort, hostNetwork, NodePort,
/// LoadBalancer or externalIPs that opens a non-public service to the
/// nodes' network; prints every difference.
fn check_policies(repo: &Repo) -> Result<bool, Error> {
    let mut files = vec![];
    for f in k8s::existing(repo)
        .into_iter()
        .filter(|f| f.ends_with(".yaml"))
    {
        files.push((f.clone(), crate::model::repo::read_text(&repo.root, &f)?));
    }
    let cluster = policy::Cluster::read(&files)?;
    let compose = export::compose(repo)?;
    let expected = matrix::expected(&compose);
    let mut diffs = policy::compare(&cluster, &expected);
    let public = compose
        .services
        .iter()
        .filter(|s| s.network_reach())
        .map(|s| s.name.clone())
        .collect();
    diffs.extend(policy::exposures(&cluster, &public));
    let reach = expected.iter().filter(|e| e.reach).count();
    if diffs.is_empty() {
        println!("policies: {} cell(s) ({reach} reachable) as docker-compose.yml's networks say, from {} NetworkPolicies", expected.len(), cluster.policies.len());
        return Ok(true);
    }
    println!(
        "policies: {} difference(s) from docker-compose.yml's networks:",
        diffs.len()
    );
    for d in &diffs {
        println!("- {d}");
    }
    Ok(false)
}
