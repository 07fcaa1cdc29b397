"""grpc.health.v1.Health (see src/proto/grpc/health/v1/health.proto) and the
dependency checks behind it: a service is SERVING only while every database
and cache it uses answers."""

import logging

from common import pb

UNKNOWN, SERVING, NOT_SERVING = 0, 1, 2
SERVICE = "grpc.health.v1.Health"


def check_postgres(pg: dict) -> None:
    import psycopg2

    conn = psycopg2.connect(connect_timeout=2, **pg)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    finally:
        conn.close()


def check_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        if not client.ping():
            raise RuntimeError("PING was not answered")
    finally:
        client.close()


def dependency_checks(cfg) -> list:
    checks = []
    if cfg.pg:
        checks.append(("postgres", lambda: check_postgres(cfg.pg)))
    if cfg.redis_url:
        checks.append(("redis", lambda: check_redis(cfg.redis_url)))
    return checks


def status(checks) -> int:
    for name, check in checks:
        try:
            check()
        except Exception as e:  # any failure means not serving
            logging.warning("health: %s unreachable: %s", name, e)
            return NOT_SERVING
    return SERVING


def grpc_handler(checks):
    """A generic handler serving Health/Check with the given checks."""
    import grpc

    def check(request: bytes, context) -> bytes:
        return pb.encode({1: status(checks)})

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                check, request_deserializer=lambda b: b, response_serializer=lambda b: b
            )
        },
    )
