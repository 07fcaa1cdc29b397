"""Service settings, read from the environment (the service's env_file)."""

import dataclasses
import os
from collections.abc import Mapping
from typing import TypedDict


class SettingsError(ValueError):
    """A setting has a value the service cannot run with; the message names it."""


class PgParams(TypedDict, total=False):
    """psycopg2.connect's keyword arguments; empty when the service uses no Postgres."""

    host: str
    port: int
    user: str
    password: str
    dbname: str


class RedisAuth(TypedDict, total=False):
    """redis.Redis.from_url's credentials; empty: the URL's (it holds none)."""

    username: str
    password: str


@dataclasses.dataclass(frozen=True)
class Settings:
    name: str
    port: int
    protocol: str  # "grpc" or "http"
    public_path: str
    tls_cert: str
    tls_key: str
    tls_ca: str
    pg: PgParams
    redis_url: str
    # The service's own Redis ACL user (keys `<service>:*`); empty: the URL's.
    redis_username: str = ""
    redis_password: str = ""
    # Seconds in-flight requests get to finish after SIGTERM.
    stop_grace: float = 1.0

    @property
    def redis_auth(self) -> RedisAuth:
        """username/password for redis.Redis.from_url (the URL holds none)."""
        auth: RedisAuth = {}
        if self.redis_username:
            auth["username"] = self.redis_username
        if self.redis_password:
            auth["password"] = self.redis_password
        return auth

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)


def _int(env: Mapping[str, str], key: str, default: str, lo: int, hi: int) -> int:
    raw = env.get(key, default)
    try:
        n = int(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r}: not an integer (want {lo}-{hi})") from None
    if not lo <= n <= hi:
        raise SettingsError(f"{key}={raw!r}: out of range (want {lo}-{hi})")
    return n


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Raises SettingsError for a malformed value, naming the variable."""
    env = os.environ if env is None else env
    pg: PgParams = {}
    if env.get("PGHOST"):
        pg = {
            "host": env["PGHOST"],
            "port": _int(env, "PGPORT", "5432", 1, 65535),
            "user": env.get("PGUSER", "app"),
            "password": env.get("PGPASSWORD", ""),
            "dbname": env.get("PGDATABASE", "app"),
        }
    protocol = env.get("PROTOCOL", "grpc")
    if protocol not in ("grpc", "http"):
        raise SettingsError(f"PROTOCOL={protocol!r}: want grpc or http")
    tls_cert, tls_key = env.get("TLS_CERT", ""), env.get("TLS_KEY", "")
    if bool(tls_cert) != bool(tls_key):
        raise SettingsError("TLS_CERT and TLS_KEY go together: set both (TLS) or neither (plaintext)")
    raw_grace = env.get("STOP_GRACE", "1.0")
    try:
        stop_grace = float(raw_grace)
    except ValueError:
        stop_grace = -1.0
    if not 0 <= stop_grace <= 60:
        raise SettingsError(f"STOP_GRACE={raw_grace!r}: want seconds in 0-60")
    return Settings(
        name=env.get("SERVICE_NAME", "service"),
        # 0 lets the system pick a free port (tests).
        port=_int(env, "PORT", "50051", 0, 65535),
        protocol=protocol,
        public_path=env.get("PUBLIC_PATH", ""),
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=env.get("TLS_CA", ""),
        pg=pg,
        redis_url=env.get("REDIS_URL", ""),
        redis_username=env.get("REDIS_USERNAME", ""),
        redis_password=env.get("REDIS_PASSWORD", ""),
        stop_grace=stop_grace,
    )
