//! Self-signed certificates with rcgen: a local CA made once and reused,
//! the shared server certificate whose SANs are exactly `[alt_names]`, and
//! one leaf per https service. Everything lands under `certs/` (ignored by
//! git); keys are written 0600. Only what is stale is regenerated.
//!
//! certs/ca/{ca.pem,ca.key}            the CA; never mounted anywhere
//! certs/trust/ca.pem                  the CA certificate alone, for clients
//! certs/server/{cert,key,ca}.pem      the shared certificate (NGINX)
//! certs/services/<name>/{cert,key,ca}.pem   one per https service

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::diag::{Diagnostic, Error};
use crate::model::cnf::Cnf;
use crate::model::der::{self, CertInfo};
use crate::model::repo::Repo;
use crate::plan::txn::Txn;

pub const DIR: &str = "certs";
pub const CA_CERT: &str = "certs/ca/ca.pem";
pub const CA_KEY: &str = "certs/ca/ca.key";
pub const TRUST: &str = "certs/trust/ca.pem";
pub const SERVER_DIR: &str = "certs/server";
pub const CA_DAYS: i64 = 3650;
pub const LEAF_DAYS: i64 = 825;
pub const RENEW_DAYS: i64 = 30;

pub fn service_dir(name: &str) -> String {
    format!("{DIR}/services/{name}")
}

/// One certificate to make: where it goes and the names it must carry.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub dir: String,
    pub dns: Vec<String>,
    pub ips: Vec<String>,
}

/// The leaves the repository needs: the shared one and one per https service.
pub fn wanted(cnf: &Cnf, https_services: &[String]) -> Vec<Leaf> {
    let mut out = vec![Leaf {
        dir: SERVER_DIR.into(),
        dns: cnf
            .alt_names
            .iter()
            .filter(|a| a.kind == "DNS")
            .map(|a| a.value.clone())
            .collect(),
        ips: cnf
            .alt_names
            .iter()
            .filter(|a| a.kind == "IP")
            .map(|a| a.value.clone())
            .collect(),
    }];
    for s in https_services {
        // The callers have refused bad names (Repo::refuse_untrusted); a
        // name that is no DNS label never becomes a folder here.
        if crate::model::names::service(s).is_err() {
            continue;
        }
        out.push(Leaf {
            dir: service_dir(s),
            dns: vec![s.clone()],
            ips: vec![],
        });
    }
    out
}

fn ca_params(now: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    // The DN must come out the same every time: leaves are signed by an
    // issuer rebuilt from these parameters and the stored key.
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "monorepo");
    dn.push(DnType::CommonName, "monorepo local development CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(CA_DAYS);
    p
}

fn read_info(txn: &Txn, rel: &str) -> Option<CertInfo> {
    let pem = String::from_utf8(txn.content(rel).ok()??).ok()?;
    der::parse(&der::pem_to_der(&pem)?)
}

/// Why a leaf must be remade, or None when it is current.
pub fn stale_reason(
    leaf: &Leaf,
    info: Option<&CertInfo>,
    ca_ski: Option<&[u8]>,
    now: i64,
) -> Option<String> {
    let Some(info) = info else {
        return Some("missing".into());
    };
    let mut want = leaf.dns.clone();
    want.sort();
    let mut have = info.dns.clone();
    have.sort();
    let mut want_ip: Vec<String> = leaf.ips.iter().map(|i| der::canonical_ip(i)).collect();
    want_ip.sort();
    let mut have_ip = info.ips.clone();
    have_ip.sort();
    if want != have || want_ip != have_ip {
        return Some(format!("SANs are {have:?}, want {want:?}"));
    }
    if info.not_before > now + 3600 {
        return Some("not valid yet (clock skew?)".into());
    }
    if info.not_after - now < RENEW_DAYS * 86400 {
        return Some("expires within 30 days".into());
    }
    if ca_ski.is_none() || info.authority_key_id.as_deref() != ca_ski {
        return Some("signed by another CA".into());
    }
    None
}

/// Plans every certificate file into `txn`. Returns one line per file made.
pub fn plan(
    txn: &mut Txn,
    cnf: &Cnf,
    https_services: &[String],
    force: bool,
) -> Result<Vec<String>, Error> {
    let now = OffsetDateTime::now_utc();
    let now_s = now.unix_timestamp();
    let mut report = vec![];
    let fail = |e: rcgen::Error| Diagnostic::error(format!("certificate generation failed: {e}"));

    // The CA: reused while its key loads and it has 30 days left.
    let ca_info = read_info(txn, CA_CERT);
    let ca_key_pem = txn.content(CA_KEY)?.and_then(|b| String::from_utf8(b).ok());
    let existing = match (&ca_info, ca_key_pem.as_deref().map(KeyPair::from_pem)) {
        (Some(i), Some(Ok(k))) if i.is_ca && i.not_after - now_s >= RENEW_DAYS * 86400 => {
            Some((k, i.clone()))
        }
        _ => None,
    };
    let (ca_key, ca_pem, ca_ski) = match existing {
        Some((k, info)) => {
            let pem = String::from_utf8(txn.content(CA_CERT)?.unwrap()).unwrap();
            (k, pem, info.subject_key_id.clone())
        }
        None => {
            let k = KeyPair::generate().map_err(fail)?;
            let cert = ca_params(now).self_signed(&k).map_err(fail)?;
            let info = der::parse(cert.der()).expect("rcgen output parses");
            txn.write(CA_CERT, cert.pem())?;
            txn.write_mode(CA_KEY, k.serialize_pem(), 0o600)?;
            report.push(format!("{CA_CERT}: new local CA (valid {CA_DAYS} days)"));
            (k, cert.pem(), info.subject_key_id)
        }
    };
    txn.write(TRUST, ca_pem.clone())?;
    let issuer = Issuer::new(ca_params(now), &ca_key);

    for leaf in wanted(cnf, https_services) {
        let cert_rel = format!("{}/cert.pem", leaf.dir);
        let info = read_info(txn, &cert_rel);
        let key_ok = txn.content(&format!("{}/key.pem", leaf.dir))?.is_some();
        let reason = if force {
            Some("--force".to_string())
        } else {
            stale_reason(&leaf, info.as_ref(), ca_ski.as_deref(), now_s)
                .or_else(|| (!key_ok).then(|| "key missing".to_string()))
        };
        txn.write(&format!("{}/ca.pem", leaf.dir), ca_pem.clone())?;
        let Some(reason) = reason else { continue };
        let mut names = leaf.dns.clone();
        names.extend(leaf.ips.iter().cloned());
        let mut p = CertificateParams::new(names).map_err(fail)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "monorepo");
        dn.push(
            DnType::CommonName,
            leaf.dns
                .first()
                .cloned()
                .unwrap_or_else(|| "monorepo".into()),
        );
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        p.not_before = now - Duration::hours(1);
        p.not_after = now + Duration::days(LEAF_DAYS);
        let key = KeyPair::generate().map_err(fail)?;
        let cert = p.signed_by(&key, &issuer).map_err(fail)?;
        txn.write(&cert_rel, cert.pem())?;
        txn.write_mode(&format!("{}/key.pem", leaf.dir), key.serialize_pem(), 0o600)?;
        if leaf.dir != SERVER_DIR {
            // Bind-mounted by `docker-compose up` into a container that runs
            // as the template's non-root user: that user must own the key.
            txn.chown(
                &format!("{}/key.pem", leaf.dir),
                crate::plan::scaffold::APP_UID,
            );
        }
        report.push(format!("{cert_rel}: {} ({reason})", leaf.dns.join(", ")));
    }
    Ok(report)
}

/// Plans removal of a service's certificate folder.
pub fn remove_service(txn: &mut Txn, name: &str) -> Result<(), Error> {
    crate::model::names::service(name)
        .map_err(|e| crate::diag::Diagnostic::error(e).fix("name a service of the compose file"))?;
    for f in ["cert.pem", "key.pem", "ca.pem"] {
        txn.delete(&format!("{}/{f}", service_dir(name)))?;
    }
    Ok(())
}

// --- making them: `certs`, and `ensure` for commands that need them ---

/// Makes what is missing or stale (all leaves with `force`), under the
/// repository lock; returns one line per certificate made.
pub fn make(root: &Path, force: bool) -> Result<Vec<String>, Error> {
    make_with(root, force, false)
}

/// `make`; with `data_if_missing`, the data-layer files are written only
/// when one of them is missing (a fresh clone): a hand edit of an existing
/// one (an ACL widened to `~*`) is drift for `check` (MR015) to report, not
/// something a command that merely needs the files may quietly undo.
fn make_with(root: &Path, force: bool, data_if_missing: bool) -> Result<Vec<String>, Error> {
    let _lock = crate::plan::txn::lock(root)?;
    let repo = Repo::load(root)?;
    repo.refuse_untrusted()?;
    let mut t = Txn::new(&repo.root);
    let report = plan(&mut t, &repo.cnf, &repo.wanted_alt_names(), force)?;
    // The data-layer credentials are made per checkout like the keys.
    let mut data = Txn::new(&repo.root);
    crate::plan::datalayer::plan(&mut data, &repo.root, &repo.compose)?;
    if !data_if_missing || data.paths().iter().any(|p| !repo.root.join(p).exists()) {
        crate::plan::datalayer::plan(&mut t, &repo.root, &repo.compose)?;
    }
    t.commit()?;
    Ok(report)
}

/// For commands that use the certificates (verify): they are derived
/// files, so make the missing or stale ones as `certs` would, and say so on
/// stderr (stdout may be a JSON report).
pub fn ensure(root: &Path, who: &str) -> Result<(), Error> {
    let report = make_with(root, false, true)?;
    if !report.is_empty() {
        eprintln!("{who}: made the missing or stale certificates (as `cargo xtask certs` does):");
        for r in report {
            eprintln!("  cert  {r}");
        }
    }
    Ok(())
}
