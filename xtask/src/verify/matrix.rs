//! The expected reachability matrix: every target a probe can reach (from
//! the compose model), the probe spec for it, and the typed cells of the
//! matrix. No Docker here.

use std::collections::HashMap;

use crate::model::compose::Service;
pub use crate::model::reach::{container_ports, expected, reaches, target, Expect, Kind, Target};
use crate::model::repo::Repo;

/// Where the CA certificate goes inside a probe container.
pub const PROBE_CA: &str = "/etc/probe/ca.pem";

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

#[derive(Debug, Clone)]
pub struct Cell {
    pub source: String,
    pub target: String,
    /// How it was tried: empty for the target's name, else the path
    /// (verify/paths.rs: an address, or the host at a published port).
    pub via: String,
    pub port: u16,
    pub expected: bool,
    pub outcome: Outcome,
    pub detail: String,
    pub hint: Option<String>,
    pub logs: Vec<(String, String)>,
}

impl Cell {
    /// ` via <path>` for a path cell, nothing for the name cell: how the
    /// text and JUnit reports name a cell.
    pub fn via_suffix(&self) -> String {
        if self.via.is_empty() {
            String::new()
        } else {
            format!(" via {}", self.via)
        }
    }
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

/// `s` as XML attribute or text content (the JUnit reports of every engine).
pub fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_cells_match_on_expectation() {
        let cell = |expected: bool, outcome: &str| Cell {
            source: "a".into(),
            target: "b".into(),
            via: String::new(),
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
}
