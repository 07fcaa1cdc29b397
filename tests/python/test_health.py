import grpc
import psycopg2
import pytest
import redis

from common import health, settings
from common.gen.grpc.health.v1 import health_pb2, health_pb2_grpc
from conftest import closed_port
from fakes import grpc_server

S = health_pb2.HealthCheckResponse


def failing():
    raise ConnectionRefusedError("refused")


def test_status():
    assert health.status([]) == S.SERVING
    assert health.status([("a", lambda: None)]) == S.SERVING
    assert health.status([("a", lambda: None), ("b", failing)]) == S.NOT_SERVING


def test_callers_at_once_share_a_check_and_later_ones_see_changes():
    import threading
    import time

    state = {"runs": 0, "up": True}

    def slow():
        state["runs"] += 1
        time.sleep(0.2)
        if not state["up"]:
            raise ConnectionRefusedError("down")

    st = health.Coalesced([("dep", slow)])
    got: list[int] = []
    callers = [threading.Thread(target=lambda: got.append(st())) for _ in range(20)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert got == [S.SERVING] * 20
    assert 1 <= state["runs"] <= 2
    # A caller that comes after a check ended gets a check of its own.
    state["up"] = False
    assert st() == S.NOT_SERVING
    state["up"] = True
    assert st() == S.SERVING


def test_dependency_checks_follow_settings():
    assert health.dependency_checks(settings.load({})) == []
    cfg = settings.load({"PGHOST": "db", "REDIS_URL": "redis://r:6379/0"})
    assert [n for n, _ in health.dependency_checks(cfg)] == ["postgres", "redis"]


def test_checks_fail_on_unreachable_dependencies():
    with pytest.raises(psycopg2.OperationalError):
        health.check_postgres(
            {"host": "127.0.0.1", "port": closed_port(), "user": "app", "password": "x", "dbname": "app"}
        )
    with pytest.raises(redis.ConnectionError):
        health.check_redis(f"redis://127.0.0.1:{closed_port()}/0")


def test_check_over_grpc():
    state = {"up": True}

    def dep():
        if not state["up"]:
            raise ConnectionRefusedError("down")

    server, chan = grpc_server([], checks=[("dep", dep)])
    try:
        stub = health_pb2_grpc.HealthStub(chan)
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == S.SERVING
        assert stub.Check(health_pb2.HealthCheckRequest(service="grpc.health.v1.Health"), timeout=5).status == S.SERVING
        state["up"] = False
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == S.NOT_SERVING
        with pytest.raises(grpc.RpcError) as e:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        server.stop(None)


def test_check_with_real_dependencies(postgres, redis_url):
    cfg = settings.load(
        {
            "PGHOST": postgres["host"],
            "PGPORT": str(postgres["port"]),
            "PGUSER": "app",
            "PGPASSWORD": postgres["password"],
            "PGDATABASE": "app",
            "REDIS_URL": redis_url,
        }
    )
    assert health.status(health.dependency_checks(cfg)) == S.SERVING
    wrong = settings.load(
        {"PGHOST": "127.0.0.1", "PGPORT": str(postgres["port"]), "PGPASSWORD": "wrong", "REDIS_URL": redis_url}
    )
    assert health.status(health.dependency_checks(wrong)) == S.NOT_SERVING
