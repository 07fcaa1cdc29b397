"""Shared fixtures of the Python tests (run: /usr/bin/python3 -m pytest tests/python).

The code under test is src/ (as in the images: /app holds common/ and the
service's files). Postgres and Redis come from the same images compose uses:
POSTGRES_IMAGE / REDIS_IMAGE from the environment or the repository's .env
(written by `cargo xtask images bootstrap`), else the official images.
"""

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))
sys.dont_write_bytecode = True

PG_ENV = {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "test-password", "POSTGRES_DB": "app"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    return free_port()


def image(var: str, official: str) -> str:
    if os.environ.get(var):
        return os.environ[var]
    env_file = ROOT / ".env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith(var + "="):
                return line.split("=", 1)[1].strip()
    return official


class Container:
    def __init__(self, image_name: str, port: int, env: dict[str, str]) -> None:
        self.name = f"mr-pytest-{uuid.uuid4().hex[:8]}"
        args = [
            "docker",
            "run",
            "-d",
            "--rm",
            "--name",
            self.name,
            "--label",
            "monorepo.pytest=1",
            "-p",
            f"127.0.0.1::{port}",
        ]
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        r = subprocess.run([*args, image_name], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise RuntimeError(
                f"docker run {image_name}: {r.stderr.strip()} (run `bash scripts/setup.sh` for the images)"
            )
        out = subprocess.run(
            ["docker", "port", self.name, f"{port}/tcp"], capture_output=True, text=True, check=True
        ).stdout
        self.port = int(out.splitlines()[0].rsplit(":", 1)[1])

    def logs(self) -> str:
        return subprocess.run(
            ["docker", "logs", "--tail", "20", self.name], capture_output=True, text=True, check=False
        ).stdout

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, check=False)


def wait_until(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except AssertionError:
            raise  # a definite failure, not "not ready yet"
        except Exception as e:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready after {timeout} s: {e}") from e
            time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres():
    """Connection settings (a settings.pg dict) of a fresh Postgres."""
    import psycopg2

    c = Container(image("POSTGRES_IMAGE", "postgres:16"), 5432, PG_ENV)
    pg: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": c.port,
        "user": "app",
        "password": PG_ENV["POSTGRES_PASSWORD"],
        "dbname": "app",
    }
    try:
        wait_until(lambda: psycopg2.connect(connect_timeout=2, **pg).close(), 60, f"postgres ({c.logs()})")
        yield pg
    finally:
        c.remove()


@pytest.fixture(scope="session")
def redis_url():
    import redis

    c = Container(image("REDIS_IMAGE", "redis:7"), 6379, {})
    url = f"redis://127.0.0.1:{c.port}/0"
    try:
        wait_until(lambda: redis.Redis.from_url(url).ping(), 30, "redis")
        yield url
    finally:
        c.remove()


def service_env(**kw: object) -> dict[str, str]:
    """The environment of a service process started by a test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "REDIS", "TLS_"))}
    env.update(PYTHONPATH=str(SRC), PYTHONDONTWRITEBYTECODE="1")
    env.update({k: str(v) for k, v in kw.items()})
    return env


def load_service(name: str) -> ModuleType:
    """src/backend_services/<name>/server.py as module `<name>_server`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_server", SRC / "backend_services" / name / "server.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
