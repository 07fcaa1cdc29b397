//! Rules on `openssl.cnf` and the certificates it asks for.

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Error, Rule};
use crate::model::cnf;
use crate::model::der;
use crate::model::repo::Repo;
use crate::plan::certs;

/// MR012: every https service has a DNS.N in openssl.cnf, and the N are unique.
pub fn alt_names(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    for s in repo.backend().filter(|s| s.https() && repo.cnf.dns(&s.name).is_none()) {
        let after = repo.cnf.alt_names.last().map(|a| a.line).unwrap_or(repo.cnf.section_line);
        out.push(Diagnostic::finding(Rule::AltNames, cnf::FILE, after, format!("https service `{}` has no DNS entry", s.name), format!("add `DNS.{} = {}` under [alt_names] (or run `cargo xtask sync`)", repo.cnf.next_dns_index(), s.name)));
    }
    let mut seen: BTreeMap<(String, u32), usize> = BTreeMap::new();
    for a in &repo.cnf.alt_names {
        if let Some(l) = seen.insert((a.kind.clone(), a.index), a.line) {
            out.push(Diagnostic::finding(Rule::AltNames, cnf::FILE, a.line, format!("{}.{} is also used on line {l}", a.kind, a.index), "renumber it (`cargo xtask sync` does)"));
        }
    }
    Ok(())
}

/// MR013: the certificates exist, cover [alt_names], and do not expire soon.
pub fn certificates(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let read = |rel: &str| std::fs::read_to_string(repo.root.join(rel)).ok().and_then(|p| der::parse(&der::pem_to_der(&p)?));
    let ca = read(certs::CA_CERT);
    let ca_ski = ca.as_ref().and_then(|c| c.subject_key_id.as_deref());
    for leaf in certs::wanted(&repo.cnf, &repo.wanted_alt_names()) {
        let rel = format!("{}/cert.pem", leaf.dir);
        if let Some(why) = certs::stale_reason(&leaf, read(&rel).as_ref(), ca_ski, now) {
            out.push(Diagnostic::finding(Rule::Certificates, &rel, 0, format!("certificate is stale: {why}"), "run `cargo xtask certs`"));
        }
    }
    Ok(())
}
