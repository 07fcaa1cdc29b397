//! The data-layer cells of verify, beside the network cells: from each
//! service's namespace, with its own credentials, Postgres lets it query its
//! own database and refuses every other service's (and the admin database)
//! with SQLSTATE 42501; Redis lets it SET and GET under `<service>:` and
//! refuses every other prefix with NOPERM. A refusal must come from the
//! server: a network failure is `unreachable`, never a pass.

use std::collections::HashMap;

use super::matrix::{env_of, pct, xml};
use crate::model::compose::Service;
use crate::model::repo::Repo;
use crate::plan::datalayer::{uses_pg, uses_redis};

/// A Redis key under a prefix no service owns.
pub const UNOWNED_PREFIX: &str = "xtask-verify-unowned";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Postgres,
    Redis,
}

impl Store {
    pub fn as_str(self) -> &'static str {
        match self {
            Store::Postgres => "postgres",
            Store::Redis => "redis",
        }
    }
}

/// What the probe saw for one data-layer cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The query ran / the key was written and read back.
    Allowed,
    /// The server refused: SQLSTATE 42501 or NOPERM.
    Denied,
    /// The server was not reached (a network failure, not a refusal).
    Unreachable,
    /// Reached, but something else went wrong (wrong password, bad reply).
    Failed,
    Missing,
}

impl Access {
    pub fn parse(s: &str) -> Access {
        match s {
            "ok" => Access::Allowed,
            "denied" => Access::Denied,
            "unresolved" | "refused" => Access::Unreachable,
            "missing" => Access::Missing,
            _ => Access::Failed,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Access::Allowed => "allowed",
            Access::Denied => "denied",
            Access::Unreachable => "unreachable",
            Access::Failed => "failed",
            Access::Missing => "missing",
        }
    }
}

/// One data-layer cell: `source` uses `resource` (a database, or a key
/// under a prefix) of `store`, which belongs to `owner`.
#[derive(Debug, Clone)]
pub struct DataCell {
    pub source: String,
    pub store: Store,
    /// `db accounts` or `key accounts:...`.
    pub resource: String,
    pub owner: String,
    pub expected_allowed: bool,
    pub outcome: Access,
    pub detail: String,
}

impl DataCell {
    pub fn matches(&self) -> bool {
        self.outcome
            == if self.expected_allowed {
                Access::Allowed
            } else {
                Access::Denied
            }
    }
    /// The cell's name in reports: `billing -> postgres db accounts`.
    pub fn name(&self) -> String {
        format!(
            "{} -> {} {}",
            self.source,
            self.store.as_str(),
            self.resource
        )
    }
    pub fn expected_str(&self) -> &'static str {
        if self.expected_allowed {
            "allowed"
        } else {
            "denied"
        }
    }
}

/// The expected cells of `src` and the probe spec of each, with its own
/// credentials. `pg_services`/`redis_services` are the stores' users.
pub fn cells_for(
    repo: &Repo,
    src: &Service,
    pg_services: &[&Service],
    redis_services: &[&Service],
) -> Vec<(DataCell, String)> {
    let env = env_of(repo, src);
    let get = |k: &str| env.get(k).cloned().unwrap_or_default();
    let mut out = vec![];
    let mk = |store, resource: String, owner: &str, allowed| DataCell {
        source: src.name.clone(),
        store,
        resource,
        owner: owner.to_string(),
        expected_allowed: allowed,
        outcome: Access::Missing,
        detail: String::new(),
    };
    let spec = |kv: Vec<(&str, String)>| {
        kv.iter()
            .map(|(k, v)| format!("{k}={}", pct(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    if uses_pg(src) {
        let port = repo
            .compose
            .service("postgres")
            .and_then(|p| p.port())
            .unwrap_or(5432)
            .to_string();
        let admin = repo
            .compose
            .service("postgres")
            .and_then(|p| {
                p.environment
                    .iter()
                    .find(|(k, _, _)| k == "POSTGRES_DB")
                    .map(|(_, v, _)| v.clone())
            })
            .unwrap_or_else(|| "postgres".into());
        let mut dbs: Vec<(String, String, bool)> = pg_services
            .iter()
            .map(|o| (o.name.clone(), o.name.clone(), o.name == src.name))
            .collect();
        dbs.push((admin.clone(), "postgres".into(), false));
        for (db, owner, allowed) in dbs {
            let c = mk(Store::Postgres, format!("db {db}"), &owner, allowed);
            let s = spec(vec![
                ("id", c.name()),
                ("kind", "pg".into()),
                ("host", "postgres".into()),
                ("port", port.clone()),
                ("user", get("PGUSER")),
                ("password", get("PGPASSWORD")),
                ("db", db),
            ]);
            out.push((c, s));
        }
    }
    if uses_redis(src) {
        let port = repo
            .compose
            .service("redis")
            .and_then(|p| p.port())
            .unwrap_or(6379)
            .to_string();
        let mut prefixes: Vec<(String, String, bool)> = redis_services
            .iter()
            .map(|o| (o.name.clone(), o.name.clone(), o.name == src.name))
            .collect();
        prefixes.push((UNOWNED_PREFIX.into(), "nobody".into(), false));
        for (prefix, owner, allowed) in prefixes {
            let key = format!("{prefix}:xtask-verify");
            let c = mk(Store::Redis, format!("key {key}"), &owner, allowed);
            let s = spec(vec![
                ("id", c.name()),
                ("kind", "redis".into()),
                ("host", "redis".into()),
                ("port", port.clone()),
                ("user", get("REDIS_USERNAME")),
                ("password", get("REDIS_PASSWORD")),
                ("key", key),
            ]);
            out.push((c, s));
        }
    }
    out
}

/// The data-layer cells of `src` and their probe specs (run in the probe
/// container of its matrix row: one container per source).
pub fn plan(repo: &Repo, src: &Service) -> Vec<(DataCell, String)> {
    let pg: Vec<&Service> = repo
        .compose
        .services
        .iter()
        .filter(|s| uses_pg(s))
        .collect();
    let redis: Vec<&Service> = repo
        .compose
        .services
        .iter()
        .filter(|s| uses_redis(s))
        .collect();
    cells_for(repo, src, &pg, &redis)
}

/// The planned cells with what the probe printed for them.
pub fn fill(
    planned: Vec<(DataCell, String)>,
    results: &[(String, String, String)],
    out: &str,
) -> Vec<DataCell> {
    let results: HashMap<&str, (&str, &str)> = results
        .iter()
        .map(|(i, o, dd)| (i.as_str(), (o.as_str(), dd.as_str())))
        .collect();
    planned
        .into_iter()
        .map(|(mut c, _)| {
            match results.get(c.name().as_str()) {
                Some((o, dd)) => {
                    c.outcome = Access::parse(o);
                    c.detail = dd.to_string();
                }
                None => c.detail = format!("the probe gave no answer: {}", out.trim()),
            }
            c
        })
        .collect()
}

/// The fix for a cell that does not match.
pub fn hint(c: &DataCell) -> String {
    match (c.store, c.expected_allowed, &c.outcome) {
        (_, _, Access::Unreachable) => format!("`{}` did not reach {} at all (a network failure, not a refusal): check its networks", c.source, c.store.as_str()),
        (Store::Postgres, false, Access::Allowed) => format!("`{}` can use `{}`'s database: revoke the grant (REVOKE CONNECT ON DATABASE ... FROM {}/PUBLIC); roles come from {}", c.source, c.owner, c.source, crate::plan::datalayer::PG_INIT),
        (Store::Redis, false, Access::Allowed) => format!("Redis user `{}` may touch keys of `{}`: its ACL must allow only `~{}:*` ({})", c.source, c.owner, c.source, crate::plan::datalayer::REDIS_ACL),
        (Store::Postgres, true, _) => format!("`{}` cannot use its own database: check PGUSER/PGDATABASE in its service.env and run `cargo xtask sync`", c.source),
        (Store::Redis, true, _) => format!("`{}` cannot use its own keys: check REDIS_USERNAME in its service.env and run `cargo xtask sync`", c.source),
        _ => "the server answered with an error other than a permission refusal".to_string(),
    }
}

pub fn render_text(cells: &[DataCell]) -> String {
    if cells.is_empty() {
        return String::new();
    }
    let mut out = String::from("\ndata layer (expected/actual; `allowed` = own database or keys, `denied` = a permission refusal from the server)\n");
    let w = cells.iter().map(|c| c.name().len()).max().unwrap_or(10);
    for c in cells {
        out += &format!(
            "{:w$}  {}/{} {}\n",
            c.name(),
            c.expected_str(),
            c.outcome.as_str(),
            if c.matches() { "ok" } else { "FAIL" }
        );
    }
    let failed: Vec<&DataCell> = cells.iter().filter(|c| !c.matches()).collect();
    if !failed.is_empty() {
        out += "\ndata-layer failures:\n";
        for c in failed {
            out += &format!(
                "- {} expected {}, got {}: {}\n  fix: {}\n",
                c.name(),
                c.expected_str(),
                c.outcome.as_str(),
                c.detail,
                hint(c)
            );
        }
    }
    out
}

pub fn to_json(c: &DataCell) -> serde_json::Value {
    serde_json::json!({
        "kind": "datalayer", "source": c.source, "store": c.store.as_str(), "resource": c.resource, "owner": c.owner,
        "expected": c.expected_str(), "outcome": c.outcome.as_str(), "ok": c.matches(), "detail": c.detail,
        "hint": (!c.matches()).then(|| hint(c)),
    })
}

/// JUnit test cases of class `datalayer.<source>`.
pub fn junit_cases(cells: &[DataCell]) -> String {
    let mut s = String::new();
    for c in cells {
        s += &format!(
            "  <testcase classname=\"datalayer.{}\" name=\"{} ({})\"",
            xml(&c.source),
            xml(&c.name()),
            c.expected_str()
        );
        if c.matches() {
            s += "/>\n";
        } else {
            s += &format!(
                ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>\n",
                xml(&format!("got {}", c.outcome.as_str())),
                xml(&format!("{}\n{}", c.detail, hint(c)))
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_passes_only_where_denial_is_expected_and_a_network_failure_never_does() {
        let cell = |allowed: bool, o: &str| DataCell {
            source: "a".into(),
            store: Store::Postgres,
            resource: "db b".into(),
            owner: "b".into(),
            expected_allowed: allowed,
            outcome: Access::parse(o),
            detail: String::new(),
        };
        assert!(cell(false, "denied").matches());
        assert!(!cell(false, "ok").matches());
        assert!(
            !cell(false, "unresolved").matches()
                && !cell(false, "refused").matches()
                && !cell(false, "failed").matches()
        );
        assert!(cell(true, "ok").matches() && !cell(true, "denied").matches());
    }
}
