"""grpc.health.v1.Health (src/proto/grpc/health/v1/health.proto) and the
dependency checks behind it: a service is SERVING only while every database
and cache it uses answers."""

import logging

from common.gen.grpc.health.v1 import health_pb2, health_pb2_grpc

Status = health_pb2.HealthCheckResponse
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
    """[(name, fn)]: each fn raises while its dependency is unreachable."""
    checks = []
    if cfg.pg:
        checks.append(("postgres", lambda: check_postgres(cfg.pg)))
    if cfg.redis_url:
        checks.append(("redis", lambda: check_redis(cfg.redis_url)))
    return checks


def status(checks) -> int:
    """SERVING, or NOT_SERVING at the first check that fails."""
    for name, check in checks:
        try:
            check()
        except Exception as e:  # any failure means not serving
            logging.warning("health: %s unreachable: %s", name, e)
            return Status.NOT_SERVING
    return Status.SERVING


class HealthServicer(health_pb2_grpc.HealthServicer):
    """Check for the server as a whole (service "") and for each service it
    serves by full name; any other name is NOT_FOUND, as the protocol says."""

    def __init__(self, checks, services=()):
        self.checks = checks
        self.services = {"", SERVICE, *services}

    def Check(self, request, context):
        import grpc

        if request.service not in self.services:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status(self.checks))
