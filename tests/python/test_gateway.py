"""The gateway's HTTP routes over a real gRPC accounts service (the handlers
on a fake store), and common.serve's HTTP server."""

import json
import urllib.error
import urllib.request

import grpc
import pytest

from common import serve, settings
from common.gen.accounts.v1 import accounts_pb2_grpc
from conftest import closed_port, load_service
from fakes import FakeStore, grpc_server

accounts = load_service("accounts")
gateway = load_service("gateway")


def start(routes, checks=()):
    cfg = settings.load({"PROTOCOL": "http", "PORT": "0", "PUBLIC_PATH": "/api/", "SERVICE_NAME": "gateway"})
    server = serve.start_http(cfg, list(checks), routes, host="127.0.0.1")
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def call(url, method="GET", body=None):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def api():
    store = FakeStore(accounts.Unavailable, {"1": "Ada Lovelace", "2": "Alan Turing"})
    svc = serve.GrpcService(
        accounts_pb2_grpc.add_AccountsServicer_to_server, accounts.Accounts(store), accounts.SERVICE_NAME
    )
    grpc_srv, chan = grpc_server([svc])
    http, base = start(gateway.routes(accounts_pb2_grpc.AccountsStub(chan)))
    yield store, base
    serve.stop_http(http, 1)
    grpc_srv.stop(None)


def test_get(api):
    store, base = api
    assert call(base + "/api/accounts/1") == (200, {"id": "1", "name": "Ada Lovelace", "source": "postgres"})
    assert call(base + "/api/accounts/1/")[1]["source"] == "redis"
    status, body = call(base + "/api/accounts/42")
    assert status == 404 and "42" in body["error"]
    store.accounts["a b"] = "Spaced"
    assert call(base + "/api/accounts/a%20b") == (200, {"id": "a b", "name": "Spaced", "source": "postgres"})
    assert call(base + "/api/accounts/1/extra")[0] == 404
    assert call(base + "/api/accountsX")[0] == 404


def test_list(api):
    store, base = api
    store.accounts.update({"3": "c", "4": "d"})
    status, body = call(base + "/api/accounts?limit=2")
    assert status == 200 and [a["id"] for a in body["accounts"]] == ["1", "2"] and body["next_after"] == "2"
    status, body = call(base + "/api/accounts?limit=2&after=2")
    assert [a["id"] for a in body["accounts"]] == ["3", "4"] and body["next_after"] == ""
    assert call(base + "/api/accounts?limit=-1")[0] == 400  # INVALID_ARGUMENT from accounts
    assert call(base + "/api/accounts?limit=ten")[0] == 400
    assert call(base + f"/api/accounts?limit={2**31}")[0] == 400


def test_create(api):
    store, base = api
    assert call(base + "/api/accounts", "POST", {"id": "9", "name": "Grace"}) == (
        201,
        {"id": "9", "name": "Grace", "source": "postgres"},
    )
    assert store.accounts["9"] == "Grace"
    assert call(base + "/api/accounts", "POST", {"id": "9", "name": "Again"})[0] == 409
    assert call(base + "/api/accounts", "POST", {"id": "10", "name": ""})[0] == 400
    assert call(base + "/api/accounts", "POST", b"{not json")[0] == 400
    assert call(base + "/api/accounts", "POST", ["id", "name"])[0] == 400
    assert call(base + "/api/accounts", "POST", {"id": 10, "name": "n"})[0] == 400
    assert call(base + "/api/accounts/9", "POST", {"id": "11", "name": "n"})[0] == 404
    assert call(base + "/api/accounts", "POST", b"x" * (serve.MAX_BODY + 1))[0] == 413
    assert "10" not in store.accounts and "11" not in store.accounts


def test_store_down_is_503(api):
    store, base = api
    store.down = True
    status, body = call(base + "/api/accounts/1")
    assert status == 503 and "postgres" in body["error"]


def test_unexpected_accounts_error_is_502(api, monkeypatch):
    store, base = api

    def boom(*a):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(store, "get", boom)
    status, body = call(base + "/api/accounts/1")
    assert status == 502 and body["error"].startswith("accounts: UNKNOWN")


def test_accounts_unreachable_is_503():
    chan = grpc.insecure_channel(f"127.0.0.1:{closed_port()}")
    http, base = start(gateway.routes(accounts_pb2_grpc.AccountsStub(chan)))
    try:
        assert call(base + "/api/accounts/1")[0] == 503
    finally:
        serve.stop_http(http, 1)


def test_grpc_to_http_mapping():
    assert gateway.GRPC_TO_HTTP == {
        grpc.StatusCode.NOT_FOUND: 404,
        grpc.StatusCode.INVALID_ARGUMENT: 400,
        grpc.StatusCode.ALREADY_EXISTS: 409,
        grpc.StatusCode.UNAVAILABLE: 503,
        grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    }


def test_http_server_basics():
    state = {"up": True}

    def dep():
        if not state["up"]:
            raise ConnectionRefusedError("down")

    def crash(req):
        raise KeyError("secret detail")

    http, base = start(
        {("GET", "/api/crash"): crash, ("GET", "/api/echo"): lambda r: (200, {"q": r.query})}, [("dep", dep)]
    )
    try:
        assert call(base + "/healthz") == (200, {"service": "gateway", "status": "SERVING"})
        assert call(base + "/api/healthz")[0] == 200
        state["up"] = False
        assert call(base + "/healthz") == (503, {"service": "gateway", "status": "NOT_SERVING"})
        assert call(base + "/api/crash") == (500, {"error": "internal error"})
        assert call(base + "/api/echo?a=1&b=x%20y") == (200, {"q": {"a": "1", "b": "x y"}})
        assert call(base + "/nope")[0] == 404
        status, _ = call(base + "/api/echo", "DELETE")
        assert status == 405
    finally:
        serve.stop_http(http, 1)
