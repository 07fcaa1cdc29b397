"""In-process servers and a fake account store for the handler tests."""

import grpc

from common import serve, settings


class FakeStore:
    """The Store interface over a dict; `down` makes it raise Unavailable."""

    def __init__(self, unavailable, accounts=None):
        self.accounts = dict(accounts or {})
        self.down = False
        self.unavailable = unavailable
        self.cached = set()

    def _up(self):
        if self.down:
            raise self.unavailable("postgres: connection refused")

    def get(self, account_id):
        self._up()
        if account_id not in self.accounts:
            return None
        source = "redis" if account_id in self.cached else "postgres"
        self.cached.add(account_id)
        return self.accounts[account_id], source

    def create(self, account_id, name):
        self._up()
        if account_id in self.accounts:
            return False
        self.accounts[account_id] = name
        return True

    def list(self, after_id, limit):
        self._up()
        return [(i, n) for i, n in sorted(self.accounts.items()) if i > after_id][:limit]


def grpc_server(services, checks=()):
    """A started plaintext gRPC server on loopback, and a channel to it."""
    cfg = settings.load({"PORT": "0"})
    server, port = serve.start_grpc(cfg, list(checks), services, host="127.0.0.1")
    return server, grpc.insecure_channel(f"127.0.0.1:{port}")
