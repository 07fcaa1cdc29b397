"""grpc.health.v1.Health (src/proto/grpc/health/v1/health.proto) and the
dependency checks behind it: a service is SERVING only while every database
and cache it uses answers."""

import logging
import threading
from collections.abc import Callable, Iterable, Sequence

import grpc

from common.gen.grpc.health.v1 import health_pb2, health_pb2_grpc
from common.settings import PgParams, RedisAuth, Settings

Status = health_pb2.HealthCheckResponse
SERVICE = "grpc.health.v1.Health"

# (name, fn): fn raises while the dependency `name` is unreachable.
Check = tuple[str, Callable[[], object]]


def check_postgres(pg: PgParams) -> None:
    import psycopg2

    conn = psycopg2.connect(connect_timeout=2, **pg)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    finally:
        conn.close()


def check_redis(url: str, auth: RedisAuth | None = None) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, **(auth or {}))
    try:
        if not client.ping():
            raise RuntimeError("PING was not answered")
    finally:
        client.close()


def dependency_checks(cfg: Settings) -> list[Check]:
    """[(name, fn)]: each fn raises while its dependency is unreachable."""
    checks: list[Check] = []
    if cfg.pg:
        checks.append(("postgres", lambda: check_postgres(cfg.pg)))
    if cfg.redis_url:
        checks.append(("redis", lambda: check_redis(cfg.redis_url, cfg.redis_auth)))
    return checks


def status(checks: Iterable[Check]) -> int:
    """SERVING, or NOT_SERVING at the first check that fails."""
    for name, check in checks:
        try:
            check()
        except Exception as e:  # noqa: BLE001 - any failure means not serving
            logging.warning("health: %s unreachable: %s", name, e)
            return int(Status.NOT_SERVING)
    return int(Status.SERVING)


class Coalesced:
    """`status(checks)` for callers that come at once: one check runs at a
    time, and a caller takes the first one that started after it arrived
    (it says what held then), so a burst costs at most two checks. Without
    it every Health/Check opened its own Postgres connection: verify's
    probes at 24 services pushed Postgres past its 100 connections."""

    def __init__(self, checks: Sequence[Check]) -> None:
        self.checks = checks
        self._run = threading.Lock()
        self._count = threading.Lock()
        self._started = 0
        self._done: tuple[int, int] | None = None  # (which check, its status)

    def __call__(self) -> int:
        with self._count:
            seen = self._started
        with self._run:
            if self._done is not None and self._done[0] > seen:
                return self._done[1]
            with self._count:
                self._started += 1
                n = self._started
            st = status(self.checks)
            self._done = (n, st)
            return st


class HealthServicer(health_pb2_grpc.HealthServicer):
    """Check for the server as a whole (service "") and for each service it
    serves by full name; any other name is NOT_FOUND, as the protocol says."""

    def __init__(self, checks: Sequence[Check], services: Iterable[str] = ()) -> None:
        self.status = Coalesced(checks)
        self.services = {"", SERVICE, *services}

    def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in self.services:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=self.status())
