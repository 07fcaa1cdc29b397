"""gateway: the public HTTP API, behind NGINX at /api/.

It calls accounts.v1.Accounts (generated stubs in common.gen.accounts.v1) over
gRPC with TLS; the certificate is checked against the local CA and the name
`accounts`:

    GET  /api/accounts/<id>                    -> GetAccount     200 {id, name, source}
    GET  /api/accounts[?limit=N&after=<id>]    -> ListAccounts   200 {accounts: [...], next_after}
    POST /api/accounts {"id": .., "name": ..}  -> CreateAccount  201 {id, name, source}

gRPC errors map to HTTP (GRPC_TO_HTTP): NOT_FOUND 404, INVALID_ARGUMENT 400,
ALREADY_EXISTS 409, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, anything else
502. GET /healthz (and /api/healthz through NGINX) answers while the gateway
runs. SIGTERM stops it cleanly.
"""

import json
import os
import urllib.parse
from collections.abc import Callable
from typing import Any

import grpc

from common import log, rpc, serve, settings
from common.gen.accounts.v1 import accounts_pb2, accounts_pb2_grpc

PREFIX = "/api/accounts"
TIMEOUT = 3.0

GRPC_TO_HTTP = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def _account(a: accounts_pb2.Account) -> dict[str, str]:
    return {"id": a.id, "name": a.name, "source": a.source}


def routes(stub: accounts_pb2_grpc.AccountsStub) -> serve.Routes:
    """The HTTP routes over an accounts.v1.Accounts stub."""

    def call(method: Callable[..., Any], request: object) -> Any:
        try:
            return method(request, timeout=TIMEOUT)
        except grpc.RpcError as e:
            code = e.code()
            status = GRPC_TO_HTTP.get(code, 502)
            # details() is None when the server sent none: then the code's name.
            detail = (e.details() or code.name) if status != 502 else f"accounts: {code.name}: {e.details()}"
            raise serve.HttpError(status, detail) from None

    def get_or_list(req: serve.Request) -> serve.Reply:
        if req.path != PREFIX and not req.path.startswith(PREFIX + "/"):
            raise serve.HttpError(404, f"no such path {req.path}")
        rest = urllib.parse.unquote(req.path[len(PREFIX) :].strip("/"))
        if "/" in rest:
            raise serve.HttpError(404, f"no such path {req.path}")
        if rest:
            return 200, _account(call(stub.GetAccount, accounts_pb2.GetAccountRequest(id=rest)))
        try:
            limit = int(req.query.get("limit", "0"))
        except ValueError:
            raise serve.HttpError(400, "limit must be an integer") from None
        if not -(2**31) <= limit < 2**31:
            raise serve.HttpError(400, "limit out of range")
        reply = call(
            stub.ListAccounts, accounts_pb2.ListAccountsRequest(limit=limit, after_id=req.query.get("after", ""))
        )
        return 200, {"accounts": [_account(a) for a in reply.accounts], "next_after": reply.next_after_id}

    def create(req: serve.Request) -> serve.Reply:
        if req.path.rstrip("/") != PREFIX:
            raise serve.HttpError(404, f"no such path {req.path}")
        try:
            body = json.loads(req.body)
        except ValueError:
            raise serve.HttpError(400, 'the body must be JSON: {"id": ..., "name": ...}') from None
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("id", "name")):
            raise serve.HttpError(400, "the body must be a JSON object with string fields id and name")
        reply = call(stub.CreateAccount, accounts_pb2.CreateAccountRequest(id=body["id"], name=body["name"]))
        return 201, _account(reply)

    return {("GET", PREFIX): get_or_list, ("POST", PREFIX): create}


def main() -> None:
    cfg = settings.load()
    log.setup(cfg.name)
    target = os.environ.get("ACCOUNTS_GRPC_ADDR", "accounts:50051")
    chan = rpc.channel(target, ca_file=cfg.tls_ca, server_name=target.split(":")[0])
    serve.run(cfg, http_routes=routes(accounts_pb2_grpc.AccountsStub(chan)))


if __name__ == "__main__":
    main()
