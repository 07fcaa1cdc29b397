"""accounts: the account store, served over gRPC with TLS.

accounts.v1.Accounts/GetAccount (src/proto/accounts/v1/accounts.proto) reads
an account from Postgres and caches it in Redis for a minute. The health
check reports NOT_SERVING while Postgres or Redis is unreachable.
"""

import logging
import time

import grpc

from common import health, log, pb, serve, settings

SEED = [("1", "Ada Lovelace"), ("2", "Alan Turing")]


def connect_pg(cfg):
    import psycopg2

    return psycopg2.connect(connect_timeout=3, **cfg.pg)


def migrate(cfg) -> None:
    """Creates and seeds the table; retried until Postgres is up."""
    for attempt in range(60):
        try:
            conn = connect_pg(cfg)
            with conn, conn.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL)")
                cur.executemany("INSERT INTO accounts VALUES (%s, %s) ON CONFLICT (id) DO NOTHING", SEED)
            conn.close()
            return
        except Exception as e:
            logging.info("waiting for postgres (%s): %s", attempt, e)
            time.sleep(1)
    logging.error("postgres never became reachable; serving NOT_SERVING")


def accounts_handler(cfg):
    import redis

    cache = redis.Redis.from_url(cfg.redis_url, socket_timeout=2)

    def get_account(request: bytes, context) -> bytes:
        account_id = pb.decode(request).get(1, "")
        key = f"account:{account_id}"
        try:
            name = cache.get(key)
            if name is not None:
                return pb.encode({1: account_id, 2: name.decode(), 3: "redis"})
        except redis.RedisError as e:
            logging.warning("cache unavailable: %s", e)
        conn = connect_pg(cfg)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT name FROM accounts WHERE id = %s", (account_id,))
                row = cur.fetchone()
        finally:
            conn.close()
        if row is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no account {account_id!r}")
        try:
            cache.setex(key, 60, row[0])
        except redis.RedisError:
            pass
        return pb.encode({1: account_id, 2: row[0], 3: "postgres"})

    return grpc.method_handlers_generic_handler(
        "accounts.v1.Accounts",
        {
            "GetAccount": grpc.unary_unary_rpc_method_handler(
                get_account, request_deserializer=lambda b: b, response_serializer=lambda b: b
            )
        },
    )


def main() -> None:
    cfg = settings.load()
    log.setup(cfg.name)
    migrate(cfg)
    serve.run(cfg, grpc_handlers=[accounts_handler(cfg)])


if __name__ == "__main__":
    main()
