//! Rules on `openssl.cnf` and the certificates it asks for.

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Error, Label, Rule};
use crate::model::der;
use crate::model::repo::Repo;
use crate::plan::certs;

/// MR012: every https service has a DNS.N in openssl.cnf, and the keys are unique.
pub fn alt_names(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    let c = &repo.cnf;
    for s in repo
        .backend()
        .filter(|s| s.https() && c.dns(&s.name).is_none())
    {
        let after = c.insert_after().unwrap_or(c.section_line).max(1);
        out.push(Diagnostic::finding(
            Rule::AltNames,
            &c.section_file,
            after,
            format!("https service `{}` has no DNS entry", s.name),
            format!(
                "add `DNS.{} = {}` under [ {} ] (or run `cargo xtask sync`)",
                c.next_dns_index(),
                s.name,
                c.section
            ),
        ));
    }
    // OpenSSL keeps only the last of two equal keys: the other name is lost.
    let mut seen: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    for a in &c.alt_names {
        if let Some((f, l)) = seen.insert(&a.key, (&a.file, a.line)) {
            out.push(
                Diagnostic::finding(
                    Rule::AltNames,
                    &a.file,
                    a.line,
                    format!(
                        "{} is used twice: OpenSSL keeps only the last, the other name is lost",
                        a.key
                    ),
                    "renumber it (`cargo xtask sync` does)",
                )
                .label(Label::at(f, l, format!("{} is first used here", a.key))),
            );
        }
    }
    Ok(())
}

/// MR013: the certificates exist, cover [alt_names], and do not expire soon.
pub fn certificates(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let read = |rel: &str| {
        crate::model::files::read_bounded(&repo.root.join(rel))
            .ok()
            .and_then(|b| der::parse(&der::pem_to_der(&String::from_utf8(b).ok()?)?))
    };
    let ca = read(certs::CA_CERT);
    let ca_ski = ca.as_ref().and_then(|c| c.subject_key_id.as_deref());
    for leaf in certs::wanted(&repo.cnf, &repo.wanted_alt_names()) {
        let rel = format!("{}/cert.pem", leaf.dir);
        if let Some(why) = certs::stale_reason(&leaf, read(&rel).as_ref(), ca_ski, now) {
            out.push(Diagnostic::finding(
                Rule::Certificates,
                &rel,
                0,
                format!("certificate is stale: {why}"),
                "run `cargo xtask certs`",
            ));
        }
    }
    Ok(())
}
