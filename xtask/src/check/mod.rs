//! `check`: the static house rules. Each rule is one function in the file of
//! the model it reads; `RULES` pairs every `diag::Rule` with its function,
//! and `run` calls them in ID order. IDs, names and descriptions live in
//! `diag::Rule`, so `check --rules` and the findings cannot disagree.

mod certs;
mod compose;
mod datalayer;
mod folders;
mod frontend;
mod proto;
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
    (Rule::ProtoGenerated, proto::generated),
    (Rule::OwnDataUsers, datalayer::own_data_users),
    (Rule::CommittedCredentials, datalayer::committed_credentials),
    (Rule::PortOnAllInterfaces, compose::port_on_all_interfaces),
    (Rule::FrontendFiles, frontend::frontend_files),
    (Rule::FrontendRoutes, frontend::frontend_routes),
];

/// MR016: the names the input gate refuses (`model/names.rs`).
fn names(repo: &Repo, out: &mut Vec<Finding>) -> Result<(), Error> {
    out.extend(repo.name_problems());
    Ok(())
}

/// Runs every rule. Findings come in rule order, each rule's in file order.
pub fn run(repo: &Repo) -> Result<Vec<Finding>, Error> {
    // MR016 first: the other rules read paths made from these names, so a
    // repository with a bad one gets only these findings.
    let mut out = vec![];
    names(repo, &mut out)?;
    if !out.is_empty() {
        return Ok(out);
    }
    for (rule, check) in RULES {
        if *rule != Rule::Names {
            check(repo, &mut out)?;
        }
    }
    Ok(out)
}

/// The findings that stop `verify`. A machine without protoc cannot tell
/// whether the committed generated code is current (MR017); verify does not
/// need protoc to build and prove the stack, so that one is a warning there.
pub fn verify_findings(findings: Vec<Finding>) -> Vec<Finding> {
    let (warn, stop): (Vec<Finding>, Vec<Finding>) = findings.into_iter().partition(proto::unknown);
    for mut w in warn {
        w.severity = crate::diag::Severity::Warning;
        w.message += " (not a failure for verify)";
        crate::diag::warn(&w);
    }
    stop
}

pub fn render_human(findings: &[Finding]) -> String {
    let mut s = String::new();
    for x in findings {
        s += &format!("{x}\n");
    }
    s += &if findings.is_empty() {
        "check: clean\n".to_string()
    } else {
        format!("check: {} finding(s)\n", findings.len())
    };
    s
}

/// `{"findings": [...], "clean": bool}`; each finding keeps the fields
/// `id`, `file`, `line`, `message`, `fix` and adds `rule`, `severity`, `column`.
pub fn render_json(findings: &[Finding]) -> String {
    let v: Vec<serde_json::Value> = findings.iter().map(Diagnostic::to_json).collect();
    serde_json::to_string_pretty(&serde_json::json!({"findings": v, "clean": findings.is_empty()}))
        .unwrap()
        + "\n"
}

/// `check --format json` when the repository cannot be read at all:
/// `{"findings": [], "clean": false, "error": {...}}`, the error with the
/// same fields as a finding (severity `error`).
pub fn render_json_error(e: &Diagnostic) -> String {
    serde_json::to_string_pretty(
        &serde_json::json!({"findings": [], "clean": false, "error": e.to_json()}),
    )
    .unwrap()
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::repo::scratch;

    #[test]
    fn verify_is_not_stopped_by_a_missing_protoc_but_by_stale_code() {
        let missing = Diagnostic::finding(
            Rule::ProtoGenerated,
            crate::plan::proto::GEN_DIR,
            0,
            "cannot check the generated code: no protoc",
            "install",
        );
        let stale = Diagnostic::finding(
            Rule::ProtoGenerated,
            "src/common/gen/a/v1/a_pb2.py",
            0,
            "generated code is stale: differs",
            "run `cargo xtask proto`",
        );
        let other = Diagnostic::finding(Rule::Ports, "docker-compose.yml", 3, "m", "f");
        assert_eq!(
            verify_findings(vec![missing, stale.clone(), other.clone()]),
            vec![stale, other]
        );
    }

    #[test]
    fn every_rule_has_one_check_in_id_order() {
        let rules: Vec<Rule> = RULES.iter().map(|(r, _)| *r).collect();
        assert_eq!(rules, Rule::ALL);
    }

    /// A clash names its other half as a label with its own file and line:
    /// a host port taken in the compose file and again in the override,
    /// and two equal [alt_names] keys.
    #[test]
    fn the_other_half_of_a_clash_is_a_label_at_its_own_file() {
        let repo = scratch(
            "check-labels",
            &[
                (
                    "docker-compose.yml",
                    "services:\n  a:\n    image: x\n    ports:\n      - \"8080:80\"\n  b:\n    image: x\n",
                ),
                (
                    "docker-compose.override.yml",
                    "services:\n  b:\n    ports:\n      - \"8080:80\"\n",
                ),
                (
                    "openssl.cnf",
                    "[ req ]\ndistinguished_name = dn\n\n[ dn ]\nCN = localhost\n\n[ alt_names ]\nDNS.1 = localhost\nDNS.2 = a\nDNS.2 = b\n",
                ),
            ],
        );
        let mut out = vec![];
        compose::ports(&repo, &mut out).unwrap();
        let [f] = &out[..] else { panic!("{out:?}") };
        assert_eq!(
            (f.file.as_str(), f.line),
            ("docker-compose.override.yml", 4),
            "{f}"
        );
        assert_eq!(
            f.labels,
            [crate::diag::Label::at(
                "docker-compose.yml",
                5,
                "`a` publishes 8080/tcp here"
            )]
        );
        assert!(
            !f.message.contains("line"),
            "the other place is in the prose: {f}"
        );
        assert_eq!(f.to_json()["labels"][0]["file"], "docker-compose.yml");

        let mut out = vec![];
        certs::alt_names(&repo, &mut out).unwrap();
        let f = out
            .iter()
            .find(|f| f.message.contains("DNS.2"))
            .expect("no MR012 finding");
        assert_eq!((f.file.as_str(), f.line), ("openssl.cnf", 10), "{f}");
        assert_eq!(
            f.labels,
            [crate::diag::Label::at(
                "openssl.cnf",
                9,
                "DNS.2 is first used here"
            )]
        );
        assert_eq!(
            f.to_string().lines().nth(1),
            Some("  openssl.cnf:9: DNS.2 is first used here")
        );
        std::fs::remove_dir_all(&repo.root).ok();
    }
}
