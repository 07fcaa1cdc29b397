//! `check`: the static house rules. Each rule is one function in the file of
//! the model it reads; `RULES` pairs every `diag::Rule` with its function,
//! and `run` calls them in ID order. IDs, names and descriptions live in
//! `diag::Rule`, so `check --rules` and the findings cannot disagree.

mod certs;
mod compose;
mod datalayer;
mod folders;
mod routes;

use crate::diag::{Diagnostic, Error, Rule};
use crate::model::repo::Repo;

/// A check finding: a `Diagnostic` with a rule and severity Finding.
pub type Finding = Diagnostic;

type Check = fn(&Repo, &mut Vec<Finding>) -> Result<(), Error>;

/// Every rule with its check, in ID order.
pub const RULES: &[(Rule, Check)] = &[
    (Rule::ServiceFolder, folders::service_folder),
    (Rule::FolderInCompose, folders::folder_in_compose),
    (Rule::BuildContext, compose::build_context),
    (Rule::ContainerName, compose::container_name),
    (Rule::Ports, compose::ports),
    (Rule::NetworksDeclared, compose::networks_declared),
    (Rule::VolumesDeclared, compose::volumes_declared),
    (Rule::DependsOn, compose::depends_on),
    (Rule::EnvFile, compose::env_file),
    (Rule::DataNetworks, compose::data_networks),
    (Rule::GrpcNetwork, compose::grpc_network),
    (Rule::AltNames, certs::alt_names),
    (Rule::Certificates, certs::certificates),
    (Rule::NginxEndpoint, routes::nginx_endpoint),
    (Rule::Sync, routes::sync),
    (Rule::Names, names),
    (Rule::OwnDataUsers, datalayer::own_data_users),
    (Rule::CommittedCredentials, datalayer::committed_credentials),
];

/// Runs every rule. Findings come in rule order, each rule's in file order.
pub fn run(repo: &Repo) -> Result<Vec<Finding>, Error> {
    // MR016 first: the other rules read paths made from these names, so a
    // repository with a bad one gets only these findings.
    let mut gate = vec![];
    names(repo, &mut gate)?;
    if !gate.is_empty() {
        return Ok(gate);
    }
    let mut out = vec![];
    for (rule, check) in RULES {
        if *rule == Rule::Names {
            continue;
        }
        check(repo, &mut out)?;
    }
    Ok(out)
}

/// MR016: the input gate (model/names.rs).
fn names(repo: &Repo, out: &mut Vec<Finding>) -> Result<(), Error> {
    out.extend(repo.name_problems().into_iter().map(|p| Diagnostic::finding(Rule::Names, &p.file, p.line, p.msg, p.fix)));
    Ok(())
}

pub fn render_human(findings: &[Finding]) -> String {
    let mut s = String::new();
    for x in findings {
        s += &format!("{x}\n");
    }
    s += &if findings.is_empty() { "check: clean\n".to_string() } else { format!("check: {} finding(s)\n", findings.len()) };
    s
}

/// `{"findings": [...], "clean": bool}`; each finding keeps the fields
/// `id`, `file`, `line`, `message`, `fix` and adds `rule`, `severity`, `column`.
pub fn render_json(findings: &[Finding]) -> String {
    let v: Vec<serde_json::Value> = findings.iter().map(Diagnostic::to_json).collect();
    serde_json::to_string_pretty(&serde_json::json!({"findings": v, "clean": findings.is_empty()})).unwrap() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_one_check_in_id_order() {
        let rules: Vec<Rule> = RULES.iter().map(|(r, _)| *r).collect();
        assert_eq!(rules, Rule::ALL);
    }
}
