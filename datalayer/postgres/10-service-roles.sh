#!/bin/sh
# Written by `cargo xtask sync` from docker-compose.yml: one Postgres role and one database
# (owned by that role, CONNECT revoked from PUBLIC) per service that depends on
# postgres. The passwords come from the environment (secrets/postgres.env, made
# per checkout by `cargo xtask certs` or `sync`); none is in this file.
#
# The postgres image runs /docker-entrypoint-initdb.d/ only on an empty data
# volume. The script is idempotent; to apply it to an existing volume:
#   docker compose exec postgres sh /docker-entrypoint-initdb.d/10-service-roles.sh
# (verify always starts from a fresh volume).
set -eu
psql_admin() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc -q -X --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" "$@"
}
service_role() {
  psql_admin -v role="$1" -v pw="$2" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L', :'role', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'role', :'role') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'role') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'role') \gexec
SQL
}
psql_admin <<'SQL'
SELECT format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', datname) FROM pg_database WHERE datname IN ('postgres', current_database()) \gexec
SQL
service_role accounts "${PG_PASSWORD_ACCOUNTS:?PG_PASSWORD_ACCOUNTS is not set (secrets/postgres.env)}"
