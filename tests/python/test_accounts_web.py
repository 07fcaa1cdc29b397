"""accounts-web's API (Backend/server.py, as `add-service --frontend` wrote
it, its items the accounts behind the gateway): over the gateway's real
routes and a real gRPC accounts service on a fake store; and the in-memory
items the scaffold starts with."""

import importlib.util

import pytest

from common import serve, settings
from common.gen.accounts.v1 import accounts_pb2_grpc
from conftest import SRC, closed_port, load_service
from fakes import FakeStore, grpc_server
from test_gateway import call

accounts = load_service("accounts")
gateway = load_service("gateway")


def load_web():
    path = SRC / "backend_services" / "accounts-web" / "Backend" / "server.py"
    spec = importlib.util.spec_from_file_location("accounts_web_server", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


web = load_web()


def start(name, public, routes):
    cfg = settings.load({"PROTOCOL": "http", "PORT": "0", "PUBLIC_PATH": public, "SERVICE_NAME": name})
    server = serve.start_http(cfg, [], routes, host="127.0.0.1")
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def chain():
    store = FakeStore(accounts.Unavailable, {"1": "Ada Lovelace"})
    svc = serve.GrpcService(accounts_pb2_grpc.add_AccountsServicer_to_server, accounts.Accounts(store), accounts.SERVICE_NAME)
    grpc_srv, chan = grpc_server([svc])
    gw, gw_base = start("gateway", "/api/", gateway.routes(accounts_pb2_grpc.AccountsStub(chan)))
    api, base = start("accounts-web", "/accounts-web/", web.routes(web.GatewayItems(gw_base)))
    yield base
    serve.stop_http(api, 1)
    serve.stop_http(gw, 1)
    grpc_srv.stop(None)


def test_lists_and_creates_accounts_through_the_gateway(chain):
    assert call(chain + "/healthz") == (200, {"service": "accounts-web", "status": "SERVING"})
    assert call(chain + "/items") == (200, {"items": [{"id": "1", "name": "Ada Lovelace"}]})
    status, made = call(chain + "/items", "POST", {"name": "  Grace Hopper "})
    assert status == 201 and made["name"] == "Grace Hopper" and made["id"].startswith("web-")
    status, listed = call(chain + "/items")
    assert status == 200 and made in listed["items"]


def test_bad_requests_and_unknown_routes_are_json(chain):
    assert call(chain + "/items", "POST", b"not json") == (400, {"error": 'the body must be JSON: {"name": ...}'})
    assert call(chain + "/items", "POST", {"name": ""})[0] == 400
    assert call(chain + "/items", "POST", {"name": "x" * 201})[0] == 400
    status, body = call(chain + "/no/such/route")
    assert status == 404 and body["path"] == "/no/such/route"
    assert call(chain + "/items/extra")[0] == 404


def test_gateway_down_is_503():
    api, base = start("accounts-web", "/accounts-web/", web.routes(web.GatewayItems(f"http://127.0.0.1:{closed_port()}")))
    try:
        status, body = call(base + "/items")
        assert status == 503 and "gateway unreachable" in body["error"]
    finally:
        serve.stop_http(api, 1)


def test_memory_items():
    api, base = start("w", "/w/", web.routes(web.MemoryItems()))
    try:
        assert call(base + "/items") == (200, {"items": []})
        assert call(base + "/items", "POST", {"name": "a"}) == (201, {"id": 1, "name": "a"})
        assert call(base + "/items") == (200, {"items": [{"id": 1, "name": "a"}]})
    finally:
        serve.stop_http(api, 1)
