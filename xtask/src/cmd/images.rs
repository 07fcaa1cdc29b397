//! `images bootstrap`: local stand-ins for the base images, for machines
//! that reach no registry. One Debian root filesystem is made by
//! `mmdebstrap` from the machine's own apt sources and imported; the four
//! stand-ins are thin layers on it. Their names are written to `.env`, the
//! one place compose and verify read image overrides from.

use std::collections::HashMap;
use std::path::Path;

use crate::diag::{Diagnostic, Error};
use crate::docker::rootfs::{import_rootfs, suite, tag_for};
use crate::docker::{self, Tar, HASH_LABEL};
use crate::model::digest::recipe_hash;
use crate::plan::txn::Txn;

const PACKAGES: &[&str] = &[
    "ca-certificates",
    "python3",
    "python3-grpcio",
    "python3-psycopg2",
    "python3-redis",
    "postgresql",
    "redis-server",
    "nginx",
];

/// The official image's interface, on Debian's postgresql package:
/// POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, data in PGDATA.
const PG_ENTRYPOINT: &str = r#"#!/bin/sh
set -e
BIN=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)
PGDATA=${PGDATA:-/var/lib/postgresql/data}
mkdir -p "$PGDATA" /run/postgresql
# As the official image: only what is not postgres's changes owner (a
# seeded, copy-on-write data directory is then not copied up whole).
find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
chown postgres:postgres /run/postgresql
chmod 700 "$PGDATA"
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" > /tmp/pw
  chown postgres /tmp/pw
  as_pg "$BIN/initdb" -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --pwfile=/tmp/pw --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f /tmp/pw
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  DB=${POSTGRES_DB:-${POSTGRES_USER:-postgres}}
  if [ "$DB" != postgres ]; then
    echo "CREATE DATABASE \"$DB\";" | as_pg "$BIN/postgres" --single -D "$PGDATA" postgres >/dev/null
  fi
  # As the official image: /docker-entrypoint-initdb.d/*.sh and *.sql, once,
  # against a server on the local socket only, as the superuser.
  if [ -n "$(find /docker-entrypoint-initdb.d -maxdepth 1 \( -name '*.sh' -o -name '*.sql' \) 2>/dev/null)" ]; then
    export PATH="$BIN:$PATH" PGHOST=/run/postgresql POSTGRES_USER="${POSTGRES_USER:-postgres}" POSTGRES_DB="$DB"
    as_pg "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/run/postgresql" -w start >/dev/null
    for f in /docker-entrypoint-initdb.d/*; do
      case "$f" in
        *.sh) echo "entrypoint: running $f"; as_pg sh "$f" ;;
        *.sql) echo "entrypoint: running $f"; as_pg psql -v ON_ERROR_STOP=1 --no-psqlrc -q --username "$POSTGRES_USER" --dbname "$DB" -f "$f" ;;
      esac
    done
    as_pg "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
  fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" -D "$PGDATA"
"#;

struct StandIn {
    env: &'static str,
    name: &'static str,
    dockerfile: &'static str,
}

const STAND_INS: &[StandIn] = &[
    StandIn { env: "PYTHON_IMAGE", name: "python", dockerfile: "FROM {rootfs}\nENV LANG=C.UTF-8\nCMD [\"python3\"]\n" },
    StandIn {
        env: "POSTGRES_IMAGE",
        name: "postgres",
        dockerfile: "FROM {rootfs}\nCOPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh\nRUN chmod 755 /usr/local/bin/docker-entrypoint.sh\nENV PGDATA=/var/lib/postgresql/data\nEXPOSE 5432\nCMD [\"/usr/local/bin/docker-entrypoint.sh\"]\n",
    },
    StandIn {
        env: "REDIS_IMAGE",
        name: "redis",
        dockerfile: "FROM {rootfs}\nUSER redis\nEXPOSE 6379\nCMD [\"redis-server\", \"--bind\", \"0.0.0.0\", \"--protected-mode\", \"no\", \"--save\", \"\"]\n",
    },
    StandIn {
        env: "NGINX_IMAGE",
        name: "nginx",
        dockerfile: "FROM {rootfs}\nRUN ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log\nEXPOSE 443\nCMD [\"nginx\", \"-g\", \"daemon off;\"]\n",
    },
];

/// Sets `KEY=value` lines in `.env`, keeping every other line.
pub fn set_env_lines(text: &str, vals: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut done = vec![];
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if let Some((k, v)) = vals.iter().find(|(k, _)| k == key) {
            out.push_str(&format!("{k}={v}\n"));
            done.push(k.clone());
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    for (k, v) in vals.iter().filter(|(k, _)| !done.contains(k)) {
        out.push_str(&format!("{k}={v}\n"));
    }
    out
}

pub async fn bootstrap(root: &Path) -> Result<(), Error> {
    let t0 = std::time::Instant::now();
    let d = docker::connect().await?;
    let suite = suite();
    // The root filesystem depends on the suite and packages only; the
    // stand-ins also on their Dockerfiles and the Postgres entrypoint.
    let mut fs_recipe: Vec<&[u8]> = vec![suite.as_bytes()];
    fs_recipe.extend(PACKAGES.iter().map(|p| p.as_bytes()));
    let fs_hash = recipe_hash(&fs_recipe);
    let rootfs = tag_for("rootfs", &fs_hash);
    let mut recipe: Vec<&[u8]> = vec![fs_hash.as_bytes(), PG_ENTRYPOINT.as_bytes()];
    recipe.extend(STAND_INS.iter().map(|s| s.dockerfile.as_bytes()));
    let hash = recipe_hash(&recipe);

    let mut missing = vec![];
    for s in STAND_INS {
        let tag = tag_for(s.name, &hash);
        let labelled = d
            .inspect_image(&tag)
            .await
            .ok()
            .and_then(|i| i.config?.labels?.get(HASH_LABEL).cloned())
            .is_some_and(|h| h == hash);
        if !labelled {
            missing.push(s);
        }
    }
    if !missing.is_empty() && !docker::image_exists(&d, &rootfs).await {
        import_rootfs(&d, root, &suite, &rootfs, PACKAGES).await?;
    }
    for s in &missing {
        let tag = tag_for(s.name, &hash);
        println!("images: building {tag}");
        let mut tar = Tar::default();
        tar.file(
            "Dockerfile",
            s.dockerfile.replace("{rootfs}", &rootfs).as_bytes(),
            0o644,
            0,
        );
        tar.file("entrypoint.sh", PG_ENTRYPOINT.as_bytes(), 0o755, 0);
        let labels = HashMap::from([(HASH_LABEL.to_string(), hash.clone())]);
        docker::build(
            &d,
            &tag,
            tar.finish(),
            "Dockerfile",
            &HashMap::new(),
            labels,
        )
        .await
        .map_err(|log| Diagnostic::error(format!("building {tag} failed:\n{log}")))?;
    }
    let vals: Vec<(String, String)> = STAND_INS
        .iter()
        .map(|s| (s.env.to_string(), tag_for(s.name, &hash)))
        .collect();
    let _lock = crate::plan::txn::lock(root)?;
    let old = std::fs::read_to_string(root.join(".env")).unwrap_or_else(|_| {
        "# Image overrides for machines without a registry, written by `cargo xtask images bootstrap`.\n".into()
    });
    let mut txn = Txn::new(root);
    txn.write(".env", set_env_lines(&old, &vals))?;
    txn.commit()?;
    for (k, v) in &vals {
        println!("images: {k}={v}");
    }
    println!(
        "images: {} built, {} already current; .env updated ({:.1}s)",
        missing.len(),
        STAND_INS.len() - missing.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn env_lines_are_replaced_in_place() {
        let out = super::set_env_lines(
            "# c\nA=1\nB=2\n",
            &[("B".into(), "x".into()), ("C".into(), "y".into())],
        );
        assert_eq!(out, "# c\nA=1\nB=x\nC=y\n");
    }
}
