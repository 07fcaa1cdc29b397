"""Service settings, read from the environment (the service's env_file)."""

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class Settings:
    name: str
    port: int
    protocol: str  # "grpc" or "http"
    public_path: str
    tls_cert: str
    tls_key: str
    tls_ca: str
    pg: dict
    redis_url: str

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)


def load(env=None) -> Settings:
    env = os.environ if env is None else env
    pg = {}
    if env.get("PGHOST"):
        pg = {
            "host": env["PGHOST"],
            "port": int(env.get("PGPORT", "5432")),
            "user": env.get("PGUSER", "app"),
            "password": env.get("PGPASSWORD", ""),
            "dbname": env.get("PGDATABASE", "app"),
        }
    return Settings(
        name=env.get("SERVICE_NAME", "service"),
        port=int(env.get("PORT", "50051")),
        protocol=env.get("PROTOCOL", "grpc"),
        public_path=env.get("PUBLIC_PATH", ""),
        tls_cert=env.get("TLS_CERT", ""),
        tls_key=env.get("TLS_KEY", ""),
        tls_ca=env.get("TLS_CA", ""),
        pg=pg,
        redis_url=env.get("REDIS_URL", ""),
    )
