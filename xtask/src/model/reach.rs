//! What reaches what, from the compose model alone: the targets a service
//! offers (port, protocol, TLS), the rule that decides whether a source must
//! reach a target, and the expected matrix over every pair. Pure: no Docker,
//! no files. `verify` probes it, `export k8s --check` compares policies with it.

use std::collections::{BTreeSet, HashMap};

use crate::model::compose::{Compose, Service};
use crate::model::repo::Repo;

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

pub fn target(repo: &Repo, s: &Service) -> Option<Target> {
    let networks: Vec<String> = s.networks.iter().map(|(n, _)| n.clone()).collect();
    let env: HashMap<String, String> = repo.service_env(s).into_iter().collect();
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
    for p in &s.expose {
        if *p > 0 && !v.contains(p) {
            v.push(*p);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

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
