"""accounts.v1.Accounts: the handlers over a fake store (gRPC in process), and
the real Store on Postgres and Redis from the project's images."""

import grpc
import pytest

from common import health, serve, settings
from common.gen.accounts.v1 import accounts_pb2 as pb
from common.gen.accounts.v1 import accounts_pb2_grpc
from common.gen.grpc.health.v1 import health_pb2, health_pb2_grpc
from conftest import closed_port, load_service
from fakes import FakeStore, grpc_server

accounts = load_service("accounts")


@pytest.fixture
def fake():
    store = FakeStore(accounts.Unavailable, {"1": "Ada Lovelace", "2": "Alan Turing"})
    svc = serve.GrpcService(
        accounts_pb2_grpc.add_AccountsServicer_to_server, accounts.Accounts(store), accounts.SERVICE_NAME
    )
    server, chan = grpc_server([svc])
    yield store, accounts_pb2_grpc.AccountsStub(chan)
    server.stop(None)


def code_of(call, *args):
    with pytest.raises(grpc.RpcError) as e:
        call(*args, timeout=5)
    return e.value.code()


def test_get(fake):
    _, stub = fake
    assert stub.GetAccount(pb.GetAccountRequest(id="1"), timeout=5) == pb.Account(
        id="1", name="Ada Lovelace", source="postgres"
    )
    assert stub.GetAccount(pb.GetAccountRequest(id="1"), timeout=5).source == "redis"
    assert code_of(stub.GetAccount, pb.GetAccountRequest(id="3")) == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.GetAccount, pb.GetAccountRequest(id="")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.GetAccount, pb.GetAccountRequest(id="x" * 65)) == grpc.StatusCode.INVALID_ARGUMENT


def test_create(fake):
    store, stub = fake
    assert stub.CreateAccount(pb.CreateAccountRequest(id="3", name="Grace Hopper"), timeout=5).name == "Grace Hopper"
    assert store.accounts["3"] == "Grace Hopper"
    assert code_of(stub.CreateAccount, pb.CreateAccountRequest(id="3", name="Other")) == grpc.StatusCode.ALREADY_EXISTS
    assert store.accounts["3"] == "Grace Hopper"
    assert code_of(stub.CreateAccount, pb.CreateAccountRequest(id="4", name="")) == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        code_of(stub.CreateAccount, pb.CreateAccountRequest(id="4", name="n" * 201)) == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "4" not in store.accounts


def test_list_pages_and_limits(fake):
    store, stub = fake
    store.accounts.update({str(i): f"n{i}" for i in range(3, 8)})
    page = stub.ListAccounts(pb.ListAccountsRequest(limit=3), timeout=5)
    assert [a.id for a in page.accounts] == ["1", "2", "3"] and page.next_after_id == "3"
    page = stub.ListAccounts(pb.ListAccountsRequest(limit=3, after_id="6"), timeout=5)
    assert [a.id for a in page.accounts] == ["7"] and page.next_after_id == ""
    assert len(stub.ListAccounts(pb.ListAccountsRequest(), timeout=5).accounts) == 7
    assert code_of(stub.ListAccounts, pb.ListAccountsRequest(limit=-1)) == grpc.StatusCode.INVALID_ARGUMENT
    store.accounts.update({f"x{i:03}": "n" for i in range(150)})
    assert len(stub.ListAccounts(pb.ListAccountsRequest(limit=1000), timeout=5).accounts) == accounts.MAX_PAGE


def test_store_down_is_unavailable(fake):
    store, stub = fake
    store.down = True
    assert code_of(stub.GetAccount, pb.GetAccountRequest(id="1")) == grpc.StatusCode.UNAVAILABLE
    assert code_of(stub.CreateAccount, pb.CreateAccountRequest(id="9", name="n")) == grpc.StatusCode.UNAVAILABLE
    assert code_of(stub.ListAccounts, pb.ListAccountsRequest()) == grpc.StatusCode.UNAVAILABLE


def cfg_for(pg, redis_url):
    return settings.load(
        {
            "PGHOST": pg["host"],
            "PGPORT": str(pg["port"]),
            "PGUSER": pg["user"],
            "PGPASSWORD": pg["password"],
            "PGDATABASE": pg["dbname"],
            "REDIS_URL": redis_url,
        }
    )


def test_real_store(postgres, redis_url):
    import redis

    store = accounts.Store(cfg_for(postgres, redis_url))
    with pytest.raises(RuntimeError):
        store.check_migrated()
    store.migrate()
    store.migrate()  # idempotent
    store.check_migrated()
    redis.Redis.from_url(redis_url).delete("accounts:account:1", "accounts:account:new")
    assert store.get("1") == ("Ada Lovelace", "postgres")
    assert store.get("1") == ("Ada Lovelace", "redis")
    assert store.get("nope") is None
    assert store.create("new", "Hedy Lamarr") is True
    assert store.create("new", "Someone") is False
    assert store.get("new") == ("Hedy Lamarr", "postgres")
    assert store.list("", 2) == [("1", "Ada Lovelace"), ("2", "Alan Turing")]
    assert ("new", "Hedy Lamarr") in store.list("2", 100)
    # SQL goes through parameters, never into the statement.
    assert store.get("1' OR '1'='1") is None


def test_redis_down_only_costs_the_cache(postgres):
    store = accounts.Store(cfg_for(postgres, f"redis://127.0.0.1:{closed_port()}/0"))
    store.migrate()
    assert store.get("2") == ("Alan Turing", "postgres")


def test_postgres_down_is_unavailable_and_not_serving(redis_url):
    pg = {"host": "127.0.0.1", "port": closed_port(), "user": "app", "password": "x", "dbname": "app"}
    cfg = cfg_for(pg, redis_url)
    store = accounts.Store(cfg)
    with pytest.raises(accounts.Unavailable):
        store.get("never-cached")
    with pytest.raises(accounts.Unavailable):
        store.create("new2", "n")
    with pytest.raises(accounts.Unavailable):
        store.migrate()
    checks = [("schema", store.check_migrated), *health.dependency_checks(cfg)]
    server, chan = grpc_server([], checks=checks)
    try:
        reply = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        server.stop(None)


def test_redis_down_is_not_serving(postgres):
    cfg = cfg_for(postgres, f"redis://127.0.0.1:{closed_port()}/0")
    store = accounts.Store(cfg)
    store.migrate()
    checks = [("schema", store.check_migrated), *health.dependency_checks(cfg)]
    assert health.status(checks) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert health.status(checks[:2]) == health_pb2.HealthCheckResponse.SERVING
