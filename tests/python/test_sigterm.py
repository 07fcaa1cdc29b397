"""Services stop cleanly on SIGTERM: exit code 0 within STOP_WITHIN seconds
(a behaviour, not a benchmark: `docker stop` would otherwise wait 10 s and
kill). Each test starts the real entry point as a process, as the image's CMD
does, and prints the time it took to stop."""

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import pytest

from common.gen.grpc.health.v1 import health_pb2, health_pb2_grpc
from conftest import ROOT, SRC, closed_port, free_port, service_env, wait_until

STOP_WITHIN = 2.0


def start(script, **env):
    return subprocess.Popen(
        [sys.executable, "-B", "-u", str(script)],
        env=service_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(proc):
    """SIGTERM; returns (exit code, seconds to exit, output)."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    elapsed = time.monotonic() - t0
    out = proc.stdout.read()
    print(f"stopped in {elapsed:.3f} s")
    return proc.returncode, elapsed, out


def grpc_health(port):
    chan = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        return health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    finally:
        chan.close()


def http_get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, json.loads(r.read())


READY_WITHIN = 60  # generous: the machine may be busy; this is not what is measured


def wait_ready(proc, ready, what):
    def probe():
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{proc.stdout.read()}")
        if not ready():
            raise RuntimeError(f"{what} not ready")

    try:
        wait_until(probe, READY_WITHIN, what)
    except BaseException:
        proc.kill()
        raise


def assert_clean_stop(proc):
    code, elapsed, out = stop(proc)
    assert code == 0, out
    assert elapsed < STOP_WITHIN, f"took {elapsed:.2f} s to stop\n{out}"
    assert "SIGTERM: stopping" in out and "stopped in" in out, out


def test_gateway_http(tmp_path):
    port = free_port()
    proc = start(
        SRC / "backend_services/gateway/server.py",
        SERVICE_NAME="gateway",
        PORT=port,
        PROTOCOL="http",
        PUBLIC_PATH="/api/",
        ACCOUNTS_GRPC_ADDR=f"127.0.0.1:{closed_port()}",
    )
    wait_ready(proc, lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, "gateway")
    assert_clean_stop(proc)


def accounts_env(port, pg, redis_url):
    return dict(
        SERVICE_NAME="accounts",
        PORT=port,
        PROTOCOL="grpc",
        PGHOST=pg["host"],
        PGPORT=pg["port"],
        PGUSER=pg["user"],
        PGPASSWORD=pg["password"],
        PGDATABASE=pg["dbname"],
        REDIS_URL=redis_url,
    )


def test_accounts_grpc_serving(postgres, redis_url):
    port = free_port()
    proc = start(SRC / "backend_services/accounts/server.py", **accounts_env(port, postgres, redis_url))
    wait_ready(proc, lambda: grpc_health(port) == health_pb2.HealthCheckResponse.SERVING, "accounts SERVING")
    assert_clean_stop(proc)


def test_accounts_grpc_while_postgres_is_down(redis_url):
    """Still waiting for Postgres (NOT_SERVING, migration retrying): SIGTERM
    still stops it at once."""
    port = free_port()
    pg = {"host": "127.0.0.1", "port": closed_port(), "user": "app", "password": "x", "dbname": "app"}
    proc = start(SRC / "backend_services/accounts/server.py", **accounts_env(port, pg, redis_url))
    wait_ready(proc, lambda: grpc_health(port) == health_pb2.HealthCheckResponse.NOT_SERVING, "accounts NOT_SERVING")
    assert_clean_stop(proc)


SLOW_HTTP = """
import time
from common import log, serve, settings
log.setup("slow")
serve.run(settings.load(), http_routes={("GET", "/slow"): lambda r: (time.sleep(0.7), (200, {"done": True}))[1]})
"""


def test_request_in_flight_finishes(tmp_path):
    """SIGTERM during a request: the request is answered, then the process exits."""
    script = tmp_path / "slow.py"
    script.write_text(SLOW_HTTP)
    port = free_port()
    proc = start(script, PORT=port, PROTOCOL="http", STOP_GRACE="2")
    wait_ready(proc, lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, "server")
    result: dict[str, object] = {}
    t = threading.Thread(target=lambda: result.update(r=http_get(f"http://127.0.0.1:{port}/slow")))
    t.start()
    time.sleep(0.2)
    assert_clean_stop(proc)
    t.join(5)
    assert result["r"] == (200, {"done": True})


def render(template: str, **vars) -> str:
    """The `{{var}}` fill of xtask's scaffolder."""
    text = (ROOT / "xtask/templates" / template).read_text()
    for k, v in vars.items():
        text = text.replace("{{" + k + "}}", v)
    assert "{{" not in text, text
    return text


@pytest.mark.skipif(shutil.which("protoc") is None, reason="protoc not installed (scripts/setup.sh installs it)")
def test_scaffolded_grpc_service(tmp_path):
    """grpc_server.py.tmpl and service.proto.tmpl, filled as add-service
    would for `user-prefs`, generated, run: Ping answers, SIGTERM stops it."""
    vars = dict(name="user-prefs", proto_pkg="user_prefs", service_class="UserPrefs")
    shutil.copytree(SRC / "proto", tmp_path / "src/proto")
    shutil.copytree(SRC / "common", tmp_path / "src/common", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "src/proto/user_prefs/v1").mkdir(parents=True)
    (tmp_path / "src/proto/user_prefs/v1/user_prefs.proto").write_text(render("service.proto.tmpl", **vars))
    svc = tmp_path / "src/backend_services/user-prefs"
    svc.mkdir(parents=True)
    (svc / "server.py").write_text(render("grpc_server.py.tmpl", **vars))
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen_proto.py"), "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr

    port = free_port()
    env = service_env(SERVICE_NAME="user-prefs", PORT=port, PROTOCOL="grpc")
    env["PYTHONPATH"] = str(tmp_path / "src")
    proc = subprocess.Popen(
        [sys.executable, "-B", "-u", str(svc / "server.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_ready(proc, lambda: grpc_health(port) == health_pb2.HealthCheckResponse.SERVING, "user-prefs")
    try:
        client = (
            "import grpc\n"
            "from common.gen.user_prefs.v1 import user_prefs_pb2 as pb, user_prefs_pb2_grpc as g\n"
            "from common.gen.grpc.health.v1 import health_pb2 as h, health_pb2_grpc as hg\n"
            f"chan = grpc.insecure_channel('127.0.0.1:{port}')\n"
            "stub = g.UserPrefsStub(chan)\n"
            "print(stub.Ping(pb.PingRequest(message='hello'), timeout=5))\n"
            "try:\n    stub.Ping(pb.PingRequest(message='x' * 2000), timeout=5)\n"
            "except grpc.RpcError as e:\n    print(e.code())\n"
            "print(hg.HealthStub(chan).Check(h.HealthCheckRequest(service='user_prefs.v1.UserPrefs'), timeout=5).status)\n"
        )
        out = subprocess.run(
            [sys.executable, "-B", "-c", client], env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [
            "message:",
            '"hello"',
            "service:",
            '"user-prefs"',
            "StatusCode.INVALID_ARGUMENT",
            "1",
        ]
    except Exception:
        proc.kill()
        raise
    assert_clean_stop(proc)
