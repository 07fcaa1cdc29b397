"""gateway: the public HTTP API, behind NGINX at /api/.

GET /api/accounts/<id> calls accounts.v1.Accounts/GetAccount over gRPC with
TLS (the certificate is checked against the local CA and the name
`accounts`). GET /healthz (and /api/healthz through NGINX) answers while the
gateway runs.
"""

import os

import grpc

from common import log, rpc, serve, settings


def main() -> None:
    cfg = settings.load()
    log.setup(cfg.name)
    target = os.environ.get("ACCOUNTS_GRPC_ADDR", "accounts:50051")
    chan = rpc.channel(target, ca_file=cfg.tls_ca, server_name=target.split(":")[0])

    def account(path: str):
        account_id = path.rstrip("/").rsplit("/", 1)[-1]
        try:
            reply = rpc.unary(chan, "/accounts.v1.Accounts/GetAccount", {1: account_id})
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return 404, {"error": e.details()}
            return 502, {"error": f"accounts: {e.code().name}: {e.details()}"}
        return 200, {"id": reply.get(1, ""), "name": reply.get(2, ""), "source": reply.get(3, "")}

    serve.run(cfg, http_routes={"/api/accounts/": account})


if __name__ == "__main__":
    main()
