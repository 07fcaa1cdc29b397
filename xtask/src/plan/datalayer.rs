//! Least privilege at the data layer: one Postgres role and database, and
//! one Redis ACL user, per service that depends on `postgres` / `redis`
//! (the same test MR010 uses). Everything is derived from the compose
//! file's service keys, through the mechanisms the official images offer:
//!
//! - `datalayer/postgres/10-service-roles.sh` (committed, no secret): run by
//!   the postgres image from `/docker-entrypoint-initdb.d/` on an empty data
//!   volume; idempotent, so it can be run again on an existing one.
//! - `secrets/postgres.env` (0600): the superuser password and one
//!   `PG_PASSWORD_<ROLE>` per role, for the init script.
//! - `secrets/redis/users.acl`: the ACL file `datalayer/redis/redis.conf`
//!   names; `default` is off, each user holds only SHA-256 hashes of its
//!   password (so the file is 0644: the redis user must read it after the
//!   image drops root, and a hash of 192 random bits is no usable secret).
//! - `secrets/<service>.env` (0600): the service's `PGPASSWORD` and/or
//!   `REDIS_PASSWORD`, listed in its compose `env_file`.
//!
//! Passwords are made once per checkout (`secrets/` is git-ignored) and kept
//! on every later plan; only what the compose file no longer names goes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::diag::{Diagnostic, Error};
use crate::model::compose::{Compose, Service};
use crate::model::repo::parse_dotenv;
use crate::plan::txn::Txn;

pub const SECRETS: &str = "secrets";
pub const PG_INIT: &str = "datalayer/postgres/10-service-roles.sh";
pub const PG_ENV: &str = "secrets/postgres.env";
pub const REDIS_ACL: &str = "secrets/redis/users.acl";
/// Marks the files this module owns.
pub const GENERATED: &str = "Written by `cargo xtask sync` from docker-compose.yml";

/// The commands a service gets on its own keys: reads, writes,
/// transactions and the connection commands (AUTH, PING, HELLO, SELECT),
/// never the dangerous ones (FLUSHALL, KEYS, CONFIG, CLIENT, DEBUG, ...).
pub const REDIS_COMMANDS: &str = "-@all +@read +@write +@transaction +@connection -@dangerous";

/// `secrets/<service>.env`.
pub fn secrets_file(service: &str) -> String {
    format!("{SECRETS}/{service}.env")
}

/// The role, database and Redis user of a service: its compose key.
pub fn uses_pg(s: &Service) -> bool {
    s.depends("postgres") && s.is_backend()
}
pub fn uses_redis(s: &Service) -> bool {
    s.depends("redis") && s.is_backend()
}

/// The variable holding a role's password in `secrets/postgres.env`.
pub fn pg_password_var(role: &str) -> String {
    format!(
        "PG_PASSWORD_{}",
        role.to_ascii_uppercase().replace('-', "_")
    )
}

/// 24 random bytes as hex. Read from the kernel directly: one read of
/// /dev/urandom needs no crate, and hex is safe in env files, SQL and ACLs.
pub fn new_password() -> Result<String, Error> {
    use std::io::Read;
    let mut b = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| {
            Diagnostic::error(format!("cannot read /dev/urandom for a new password: {e}"))
        })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// What a plan sees of `rel`: the planned content, else the file on disk.
fn current(t: &Txn, rel: &str) -> BTreeMap<String, String> {
    t.content(rel)
        .ok()
        .flatten()
        .map(|b| parse_dotenv(&String::from_utf8_lossy(&b)))
        .unwrap_or_default()
}

fn keep_or_new(old: &BTreeMap<String, String>, k: &str) -> Result<String, Error> {
    match old.get(k) {
        Some(v) if !v.is_empty() => Ok(v.clone()),
        _ => new_password(),
    }
}

/// Plans every data-layer file for `compose` into `t`, keeping existing
/// passwords. `root` is the repository (to find stale secrets files).
pub fn plan(t: &mut Txn, root: &Path, compose: &Compose) -> Result<(), Error> {
    let pg: Vec<&Service> = compose.services.iter().filter(|s| uses_pg(s)).collect();
    let redis: Vec<&Service> = compose.services.iter().filter(|s| uses_redis(s)).collect();
    // A set: a lookup per secrets file below, one file per service.
    let mut wanted = std::collections::HashSet::new();
    let mut pg_pw = vec![];
    let mut redis_pw = vec![];
    for s in compose
        .services
        .iter()
        .filter(|s| uses_pg(s) || uses_redis(s))
    {
        let rel = secrets_file(&s.name);
        let old = current(t, &rel);
        let mut text = format!("# {GENERATED}: the credentials of `{}`, made for this checkout. Keep it out of git (see datalayer/example.env).\n", s.name);
        if uses_pg(s) {
            let pw = keep_or_new(&old, "PGPASSWORD")?;
            text += &format!("PGPASSWORD={pw}\n");
            pg_pw.push((s.name.clone(), pw));
        }
        if uses_redis(s) {
            let pw = keep_or_new(&old, "REDIS_PASSWORD")?;
            text += &format!("REDIS_PASSWORD={pw}\n");
            redis_pw.push((s.name.clone(), pw));
        }
        t.write_mode(&rel, text, 0o600)?;
        wanted.insert(rel);
    }
    if compose.service("postgres").is_some() {
        let old = current(t, PG_ENV);
        let mut text = format!("# {GENERATED}: the Postgres superuser's password and each service role's, for {PG_INIT}.\n");
        text += &format!(
            "POSTGRES_PASSWORD={}\n",
            keep_or_new(&old, "POSTGRES_PASSWORD")?
        );
        for (role, pw) in &pg_pw {
            text += &format!("{}={pw}\n", pg_password_var(role));
        }
        t.write_mode(PG_ENV, text, 0o600)?;
        wanted.insert(PG_ENV.to_string());
        t.write_mode(
            PG_INIT,
            render_pg_init(&pg.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()),
            0o755,
        )?;
    }
    if compose.service("redis").is_some() {
        t.write_mode(REDIS_ACL, render_acl(&redis_pw), 0o644)?;
        wanted.insert(REDIS_ACL.to_string());
    }
    let _ = redis;
    // Secrets of services that are gone, or no longer use a store.
    for e in std::fs::read_dir(root.join(SECRETS))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = format!("{SECRETS}/{name}");
        if name.ends_with(".env")
            && e.file_type().is_ok_and(|t| t.is_file())
            && !wanted.contains(&rel)
        {
            t.delete(&rel)?;
        }
    }
    Ok(())
}

/// The Redis ACL file: `default` off, one user per service on `<svc>:*`.
pub fn render_acl(users: &[(String, String)]) -> String {
    let mut s = String::from("user default off resetkeys -@all\n");
    for (u, pw) in users {
        s += &format!(
            "user {u} on #{} resetkeys ~{u}:* resetchannels {REDIS_COMMANDS}\n",
            // Redis's ACL takes a password as `#<sha256 hex>`.
            crate::model::digest::sha256_hex(pw.as_bytes())
        );
    }
    s
}

/// The Postgres init script: for each service a LOGIN role and a database
/// it owns, CONNECT revoked from PUBLIC there and on the admin databases.
/// Values reach SQL only as psql variables (`:'x'`, quoted by psql).
pub fn render_pg_init(services: &[&str]) -> String {
    let mut s = format!(
        r#"#!/bin/sh
# {GENERATED}: one Postgres role and one database
# (owned by that role, CONNECT revoked from PUBLIC) per service that depends on
# postgres. The passwords come from the environment (secrets/postgres.env, made
# per checkout by `cargo xtask certs` or `sync`); none is in this file.
#
# The postgres image runs /docker-entrypoint-initdb.d/ only on an empty data
# volume. The script is idempotent; to apply it to an existing volume:
#   docker compose exec postgres sh /docker-entrypoint-initdb.d/10-service-roles.sh
# (verify always starts from a fresh volume).
set -eu
psql_admin() {{
  psql -v ON_ERROR_STOP=1 --no-psqlrc -q -X --username "$POSTGRES_USER" --dbname "${{POSTGRES_DB:-$POSTGRES_USER}}" "$@"
}}
service_role() {{
  psql_admin -v role="$1" -v pw="$2" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L', :'role', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'role', :'role') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'role') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'role') \gexec
SQL
}}
psql_admin <<'SQL'
SELECT format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', datname) FROM pg_database WHERE datname IN ('postgres', current_database()) \gexec
SQL
"#
    );
    for svc in services {
        let var = pg_password_var(svc);
        s += &format!(
            "service_role {svc} \"${{{var}:?{var} is not set (secrets/postgres.env)}}\"\n"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_disables_default_and_confines_each_user() {
        let a = render_acl(&[("accounts".into(), "pw".into())]);
        assert!(a.starts_with("user default off"));
        assert!(
            a.contains("user accounts on #")
                && a.contains(" ~accounts:* ")
                && !a.contains(">pw")
                && !a.contains(" pw")
        );
    }

    #[test]
    fn init_script_names_roles_and_no_password() {
        let s = render_pg_init(&["accounts", "user-events"]);
        assert!(s.contains("service_role accounts \"${PG_PASSWORD_ACCOUNTS:?"));
        assert!(s.contains("service_role user-events \"${PG_PASSWORD_USER_EVENTS:?"));
    }

    #[test]
    fn passwords_are_long_and_new() {
        let (a, b) = (new_password().unwrap(), new_password().unwrap());
        assert_eq!(a.len(), 48);
        assert_ne!(a, b);
    }
}
