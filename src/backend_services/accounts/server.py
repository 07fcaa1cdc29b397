"""accounts: the account store, served over gRPC with TLS.

accounts.v1.Accounts (src/proto/accounts/v1/accounts.proto, generated code in
common.gen.accounts.v1): GetAccount reads an account from Postgres and caches
it in Redis for a minute, CreateAccount adds one, ListAccounts pages through
them in id order. The health check reports NOT_SERVING until the table exists
and while Postgres or Redis is unreachable. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import grpc

from common import health, log, serve, settings
from common.gen.accounts.v1 import accounts_pb2, accounts_pb2_grpc

if TYPE_CHECKING:
    import psycopg2.extensions
    import redis

SEED = [("1", "Ada Lovelace"), ("2", "Alan Turing")]
CACHE_SECONDS = 60
MAX_ID, MAX_NAME = 64, 200
DEFAULT_PAGE, MAX_PAGE = 50, 100

T = TypeVar("T")


class Unavailable(Exception):
    """The store cannot answer now (Postgres is down); the caller may retry."""


class Store:
    """Postgres holds the accounts; Redis caches reads. A Redis failure only
    costs the cache; a Postgres failure raises Unavailable."""

    def __init__(self, cfg: settings.Settings) -> None:
        import redis

        self.cfg = cfg
        self.redis_error = redis.RedisError
        self.cache: redis.Redis[bytes] | None = (
            redis.Redis.from_url(cfg.redis_url, socket_timeout=2, socket_connect_timeout=2, **cfg.redis_auth)
            if cfg.redis_url
            else None
        )
        self.migrated = threading.Event()

    def _connect(self) -> psycopg2.extensions.connection:
        import psycopg2

        try:
            return psycopg2.connect(connect_timeout=3, **self.cfg.pg)
        except psycopg2.OperationalError as e:
            raise Unavailable(f"postgres: {e}".strip()) from e

    def _query(self, sql: str, args: Sequence[object] = (), write: bool = False) -> Any:
        """The rows (a list of tuples), or the count of rows written."""
        import psycopg2

        conn = self._connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.rowcount if write else cur.fetchall()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
            raise Unavailable(f"postgres: {e}".strip()) from e
        finally:
            conn.close()

    def migrate(self) -> None:
        """Creates and seeds the table."""
        self._query("CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL)", write=True)
        for row in SEED:
            self._query("INSERT INTO accounts VALUES (%s, %s) ON CONFLICT (id) DO NOTHING", row, write=True)
        self.migrated.set()

    def migrate_until_done(self) -> None:
        """Retries migrate() until it works or the service stops: after 0.1 s,
        then twice as long each time, at most a second apart (Postgres is
        often up a moment after this service starts)."""
        attempt = 0
        while not serve.stopping():
            try:
                self.migrate()
                logging.info("accounts table ready")
                return
            except Exception as e:  # noqa: BLE001 - logged, and retried until it works
                attempt += 1
                logging.info("waiting for postgres (attempt %d): %s", attempt, e)
                serve.sleep(min(1.0, 0.1 * 2 ** (attempt - 1)))

    def check_migrated(self) -> None:
        if not self.migrated.is_set():
            raise RuntimeError("the accounts table is not ready yet")

    def _cache(self, op: str, *args: object) -> Any:
        if self.cache is None:
            return None
        try:
            return getattr(self.cache, op)(*args)
        except self.redis_error as e:
            logging.warning("cache unavailable: %s", e)
            return None

    def get(self, account_id: str) -> tuple[str, str] | None:
        """(name, source) or None."""
        # Under the service's own prefix: its ACL user may touch only `accounts:*`.
        key = f"accounts:account:{account_id}"
        name = self._cache("get", key)
        if name is not None:
            return name.decode(), "redis"
        rows = self._query("SELECT name FROM accounts WHERE id = %s", (account_id,))
        if not rows:
            return None
        self._cache("setex", key, CACHE_SECONDS, rows[0][0])
        return rows[0][0], "postgres"

    def create(self, account_id: str, name: str) -> bool:
        """False when the id is taken."""
        written: int = self._query(
            "INSERT INTO accounts VALUES (%s, %s) ON CONFLICT (id) DO NOTHING", (account_id, name), write=True
        )
        return written == 1

    def list(self, after_id: str, limit: int) -> list[tuple[str, str]]:
        """[(id, name)] in id order, after `after_id`."""
        rows: list[tuple[str, str]] = self._query(
            "SELECT id, name FROM accounts WHERE id > %s ORDER BY id LIMIT %s", (after_id, limit)
        )
        return rows


def _valid(context: grpc.ServicerContext, field: str, value: str, limit: int) -> str:
    if not value or len(value) > limit:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field} must be 1-{limit} characters")
    return value


class AccountStore(Protocol):
    """What Accounts needs of a store: Store, or the tests' fake."""

    def get(self, account_id: str) -> tuple[str, str] | None: ...
    def create(self, account_id: str, name: str) -> bool: ...
    def list(self, after_id: str, limit: int) -> list[tuple[str, str]]: ...


class Accounts(accounts_pb2_grpc.AccountsServicer):
    """accounts.v1.Accounts over a Store (anything with get/create/list)."""

    def __init__(self, store: AccountStore) -> None:
        self.store = store

    def _call(self, context: grpc.ServicerContext, fn: Callable[..., T], *args: object) -> T:
        try:
            return fn(*args)
        except Unavailable as e:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(e))

    def GetAccount(
        self, request: accounts_pb2.GetAccountRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.Account:
        account_id = _valid(context, "id", request.id, MAX_ID)
        found = self._call(context, self.store.get, account_id)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no account {account_id!r}")
        name, source = found
        return accounts_pb2.Account(id=account_id, name=name, source=source)

    def CreateAccount(
        self, request: accounts_pb2.CreateAccountRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.Account:
        account_id = _valid(context, "id", request.id, MAX_ID)
        name = _valid(context, "name", request.name, MAX_NAME)
        if not self._call(context, self.store.create, account_id, name):
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"account {account_id!r} exists")
        return accounts_pb2.Account(id=account_id, name=name, source="postgres")

    def ListAccounts(
        self, request: accounts_pb2.ListAccountsRequest, context: grpc.ServicerContext
    ) -> accounts_pb2.ListAccountsResponse:
        if request.limit < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"limit must not be negative (got {request.limit})")
        limit = min(request.limit or DEFAULT_PAGE, MAX_PAGE)
        # One more than asked tells whether there is a next page.
        rows = self._call(context, self.store.list, request.after_id, limit + 1)
        page = rows[:limit]
        reply = accounts_pb2.ListAccountsResponse(
            accounts=[accounts_pb2.Account(id=i, name=n, source="postgres") for i, n in page]
        )
        if len(rows) > limit:
            reply.next_after_id = page[-1][0]
        return reply


SERVICE_NAME = accounts_pb2.DESCRIPTOR.services_by_name["Accounts"].full_name


def main() -> None:
    cfg = settings.load()
    log.setup(cfg.name)
    store = Store(cfg)
    serve.handle_signals()
    threading.Thread(target=store.migrate_until_done, daemon=True).start()
    checks = [("schema", store.check_migrated), *health.dependency_checks(cfg)]
    service = serve.GrpcService(accounts_pb2_grpc.add_AccountsServicer_to_server, Accounts(store), SERVICE_NAME)
    serve.run(cfg, grpc_services=[service], checks=checks)


if __name__ == "__main__":
    main()
