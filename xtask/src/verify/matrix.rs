//! The expected reachability matrix: every target a probe can reach (from
//! the compose model), the probe spec for it, and the typed cells of the
//! matrix. No Docker here.

use std::collections::{BTreeSet, HashMap};

use crate::model::compose::{Compose, Service};
use crate::model::repo::Repo;

/// Where the CA certificate goes inside a probe container.
pub const PROBE_CA: &str = "/etc/probe/ca.pem";

/// What a target speaks; the probe's `kind=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pg,
    Redis,
    Grpc,
    Http,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pg => "pg",
            Kind::Redis => "redis",
            Kind::Grpc => "grpc",
            Kind::Http => "http",
        }
    }
}

/// What the probe saw for one (source, target) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Connected and spoke the protocol.
    Ok,
    /// The name did not resolve (no shared network).
    Unresolved,
    /// Nothing listened, or the connection was refused.
    Refused,
    /// Connected but the protocol exchange failed.
    Failed,
    /// The probe gave no answer for this pair.
    Missing,
}

impl Outcome {
    /// The probe's JSON `outcome` field; anything unknown is a failure.
    pub fn parse(s: &str) -> Outcome {
        match s {
            "ok" => Outcome::Ok,
            "unresolved" => Outcome::Unresolved,
            "refused" => Outcome::Refused,
            "missing" => Outcome::Missing,
            _ => Outcome::Failed,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unresolved => "unresolved",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Missing => "missing",
        }
    }
    /// Did not connect at all: what a pair without a shared network must see.
    pub fn blocked(&self) -> bool {
        matches!(self, Outcome::Unresolved | Outcome::Refused)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a probe can reach: a service, its port and its protocol.
#[derive(Debug, Clone)]
pub struct Target {
    pub service: String,
    pub port: u16,
    pub kind: Kind,
    pub tls: bool,
    pub path: String,
    pub networks: Vec<String>,
    /// Credentials the server itself was given (Postgres).
    pub creds: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Cell {
    pub source: String,
    pub target: String,
    pub port: u16,
    pub expected: bool,
    pub outcome: Outcome,
    pub detail: String,
    pub hint: Option<String>,
    pub logs: Vec<(String, String)>,
}

impl Cell {
    pub fn matches(&self) -> bool {
        if self.expected {
            self.outcome == Outcome::Ok
        } else {
            self.outcome.blocked()
        }
    }
}

pub(super) fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_./:".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(super) fn env_of(repo: &Repo, s: &Service) -> HashMap<String, String> {
    repo.service_env(s).into_iter().collect()
}

pub fn target(repo: &Repo, s: &Service) -> Option<Target> {
    let networks: Vec<String> = s.networks.iter().map(|(n, _)| n.clone()).collect();
    let env = env_of(repo, s);
    let port = s.port()?;
    let (kind, tls, path, port) = match s.name.as_str() {
        "postgres" => (Kind::Pg, false, String::new(), port),
        "redis" => (Kind::Redis, false, String::new(), port),
        "nginx" => (Kind::Http, true, "/nginx-health".to_string(), port),
        _ if s.protocol() == "http" => (Kind::Http, s.https(), "/healthz".to_string(), port),
        _ => (Kind::Grpc, s.https(), String::new(), port),
    };
    let creds = ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"]
        .iter()
        .filter_map(|k| env.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    Some(Target {
        service: s.name.clone(),
        port,
        kind,
        tls,
        path,
        networks,
        creds,
    })
}

impl Target {
    /// The probe spec for reaching this target at `host`, with the
    /// credentials `src_env` (the source service's settings) carries.
    pub fn spec(&self, id: &str, host: &str, src_env: &HashMap<String, String>) -> String {
        let mut kv: Vec<(&str, String)> = vec![
            ("id", id.into()),
            ("kind", self.kind.as_str().into()),
            ("host", host.into()),
            ("port", self.port.to_string()),
        ];
        if self.tls {
            kv.extend([
                ("tls", "1".into()),
                ("ca", PROBE_CA.into()),
                ("name", self.service.clone()),
            ]);
        }
        if !self.path.is_empty() {
            kv.push(("path", self.path.clone()));
        }
        if self.kind == Kind::Http && self.service != "nginx" {
            kv.push(("expect", format!("\"service\": \"{}\"", self.service)));
        }
        let cred = |src: &str, own: &str, default: &str| -> String {
            src_env
                .get(src)
                .cloned()
                .or_else(|| {
                    self.creds
                        .iter()
                        .find(|(k, _)| k == own)
                        .map(|(_, v)| v.clone())
                })
                .unwrap_or(default.into())
        };
        if self.kind == Kind::Pg {
            kv.push(("user", cred("PGUSER", "POSTGRES_USER", "postgres")));
            kv.push(("password", cred("PGPASSWORD", "POSTGRES_PASSWORD", "")));
            let user = kv.iter().find(|(k, _)| *k == "user").unwrap().1.clone();
            kv.push(("db", cred("PGDATABASE", "POSTGRES_DB", &user)));
        }
        if self.kind == Kind::Redis {
            match src_env.get("REDIS_PASSWORD") {
                Some(p) => {
                    kv.push(("password", p.clone()));
                    if let Some(u) = src_env.get("REDIS_USERNAME") {
                        kv.push(("user", u.clone()));
                    }
                }
                // No credentials (readiness, or a source that uses no Redis):
                // NOAUTH from a server whose default user is off still
                // proves it answers the protocol.
                None => kv.push(("noauth_ok", "1".into())),
            }
        }
        kv.iter()
            .map(|(k, v)| format!("{k}={}", pct(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Must `src` reach `target`? Compose's rule: they share a network.
pub fn reaches(src: &Service, target: &Service) -> bool {
    target.networks.iter().any(|(n, _)| src.on_network(n))
}

/// One cell of the expected matrix: may `source` connect to `target:port`?
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expect {
    pub source: String,
    pub target: String,
    pub port: u16,
    pub reach: bool,
}

/// The expected matrix over every ordered pair of distinct services and
/// every port the target listens on (its containers' ports). `verify`
/// probes the rows of the backend services at each target's first port;
/// `export k8s --check` compares all rows, since a policy must be right for
/// every pod. Pure: no Docker, no files.
pub fn expected(compose: &Compose) -> BTreeSet<Expect> {
    let mut out = BTreeSet::new();
    for t in &compose.services {
        for port in container_ports(t) {
            for s in compose.services.iter().filter(|s| s.name != t.name) {
                out.insert(Expect {
                    source: s.name.clone(),
                    target: t.name.clone(),
                    port,
                    reach: reaches(s, t),
                });
            }
        }
    }
    out
}

/// The distinct container ports of a service, in file order.
pub fn container_ports(s: &Service) -> Vec<u16> {
    let mut v: Vec<u16> = vec![];
    for p in &s.ports {
        if let Ok(p) = u16::try_from(p.container) {
            if p > 0 && !v.contains(&p) {
                v.push(p);
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_cells_match_on_expectation() {
        let cell = |expected: bool, outcome: &str| Cell {
            source: "a".into(),
            target: "b".into(),
            port: 1,
            expected,
            outcome: Outcome::parse(outcome),
            detail: String::new(),
            hint: None,
            logs: vec![],
        };
        assert!(cell(true, "ok").matches());
        assert!(!cell(true, "refused").matches());
        assert!(cell(false, "unresolved").matches() && cell(false, "refused").matches());
        assert!(!cell(false, "ok").matches() && !cell(false, "failed").matches());
    }

    #[test]
    fn expected_is_sharing_a_network() {
        let text = "services:\n  a: {networks: [n1], ports: [\"1:10\"]}\n  b: {networks: [n1, n2], ports: [\"20\", \"21:21\"]}\n  c: {networks: [n2]}\nnetworks: {n1: {}, n2: {}}\n";
        let c = Compose::parse(text, &|_| None).unwrap();
        let e = expected(&c);
        let reach: Vec<(&str, &str, u16)> = e
            .iter()
            .filter(|x| x.reach)
            .map(|x| (x.source.as_str(), x.target.as_str(), x.port))
            .collect();
        assert_eq!(
            reach,
            vec![
                ("a", "b", 20),
                ("a", "b", 21),
                ("b", "a", 10),
                ("c", "b", 20),
                ("c", "b", 21)
            ]
        );
        // c has no port: it is never a target; every other pair is a cell.
        assert_eq!(e.len(), 2 + 2 * 2);
        assert!(e.contains(&Expect {
            source: "c".into(),
            target: "a".into(),
            port: 10,
            reach: false
        }));
    }
}
