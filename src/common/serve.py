"""Runs a service: a gRPC server (health plus the service's own services) or
an HTTP server (GET /healthz plus the service's routes), with TLS when the
service has a certificate, until SIGTERM or SIGINT.

Stopping: a service is PID 1 in its container, and the kernel gives PID 1 no
default action for SIGTERM, so without a handler `docker stop` waits out its
timeout and then kills the process mid-request. handle_signals() turns both
signals into a flag; run() then stops accepting, gives in-flight requests
cfg.stop_grace seconds, and returns (exit code 0)."""

import dataclasses
import json
import logging
import signal
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

import grpc

from common import health
from common.gen.grpc.health.v1 import health_pb2_grpc
from common.settings import Settings

# Set by the signal handler. A plain flag, polled: a handler that took a lock
# (threading.Event.set) could deadlock against the main thread holding it.
_stopping = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _stopping
    if not _stopping:
        logging.info("%s: stopping", signal.Signals(signum).name)
    _stopping = True


def handle_signals() -> None:
    """SIGTERM and SIGINT ask the service to stop (see stopping())."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def stopping() -> bool:
    return _stopping


def sleep(seconds: float) -> bool:
    """Sleeps up to `seconds`, less when asked to stop; True if asked to stop."""
    end = time.monotonic() + seconds
    while not _stopping and time.monotonic() < end:
        time.sleep(min(0.05, max(0.0, end - time.monotonic())))
    return _stopping


def wait_for_stop() -> None:
    while not sleep(3600):
        pass


@dataclasses.dataclass(frozen=True)
class GrpcService:
    """One generated service: its add_<Name>Servicer_to_server function, the
    implementation, and its full name (for Health/Check by name)."""

    add: Callable[[Any, grpc.Server], None]
    servicer: object
    name: str


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]  # name -> last value
    body: bytes


# A route's answer: (HTTP status, JSON body).
Reply = tuple[int, dict[str, Any]]
# {(method, path prefix): route}
Routes = Mapping[tuple[str, str], Callable[[Request], Reply]]


class HttpError(Exception):
    """Raised by a route: answered with `status` and {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def run(
    cfg: Settings,
    grpc_services: Sequence[GrpcService] = (),
    http_routes: Routes | None = None,
    checks: Sequence[health.Check] | None = None,
) -> None:
    """Serves until SIGTERM/SIGINT, then stops cleanly and returns.

    checks: [(name, fn)] for the health check; by default Postgres and Redis
    as configured (health.dependency_checks)."""
    handle_signals()
    checks = health.dependency_checks(cfg) if checks is None else checks
    stop: Callable[[], object]
    if cfg.protocol == "http":
        http = start_http(cfg, checks, http_routes or {})
        stop = lambda: stop_http(http, cfg.stop_grace)  # noqa: E731
    else:
        server, _ = start_grpc(cfg, checks, grpc_services)
        stop = lambda: server.stop(cfg.stop_grace).wait()  # noqa: E731
    wait_for_stop()
    started = time.monotonic()
    stop()
    logging.info("stopped in %.2f s", time.monotonic() - started)


def start_grpc(
    cfg: Settings, checks: Sequence[health.Check], services: Iterable[GrpcService] = (), host: str = "0.0.0.0"
) -> tuple[grpc.Server, int]:
    """A started grpc.Server and the port it listens on (cfg.port, or the
    one the system picked for port 0)."""
    services = list(services)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(checks, [s.name for s in services]), server)
    for s in services:
        s.add(s.servicer, server)
    addr = f"{host}:{cfg.port}"
    if cfg.tls:
        with open(cfg.tls_key, "rb") as k, open(cfg.tls_cert, "rb") as c:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port(addr, creds)
    else:
        port = server.add_insecure_port(addr)
    if not port:
        raise OSError(f"gRPC: cannot listen on {addr}")
    server.start()
    logging.info("gRPC on %s:%s (tls=%s)", host, port, cfg.tls)
    return server, port


MAX_BODY = 64 * 1024


class _HttpServer(ThreadingHTTPServer):
    """Counts the requests in flight so a stop can wait for them."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.active = 0
        self.idle = threading.Condition()
        super().__init__(address, handler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self.idle:
            self.active += 1
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.idle:
                self.active -= 1
                self.idle.notify_all()


def start_http(cfg: Settings, checks: Sequence[health.Check], routes: Routes, host: str = "0.0.0.0") -> _HttpServer:
    """A serving HTTP server (its port: server.server_address[1]).

    routes: {(method, path prefix): fn(Request) -> (status, dict)}; the
    longest matching prefix wins. A route raises HttpError for a client's
    mistake; any other exception is a 500 (logged, details not sent)."""

    healthz = {"/healthz", cfg.public_path.rstrip("/") + "/healthz"}
    health_status = health.Coalesced(checks)

    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # a client that sends nothing does not hold a thread forever

        def do_GET(self) -> None:
            self.dispatch("GET")

        def do_POST(self) -> None:
            self.dispatch("POST")

        def do_PUT(self) -> None:
            self.dispatch("PUT")

        def do_DELETE(self) -> None:
            self.dispatch("DELETE")

        def dispatch(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path in healthz and method == "GET":
                ok = health_status() == health.Status.SERVING
                return self.reply(
                    200 if ok else 503, {"service": cfg.name, "status": "SERVING" if ok else "NOT_SERVING"}
                )
            prefixes = sorted((p for (_, p) in routes if url.path.startswith(p)), key=len, reverse=True)
            if not prefixes:
                return self.reply(404, {"error": "not found", "path": url.path})
            fn = routes.get((method, prefixes[0]))
            if fn is None:
                allowed = sorted(m for (m, p) in routes if p == prefixes[0])
                return self.reply(405, {"error": f"method {method} not allowed"}, {"Allow": ", ".join(allowed)})
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return self.reply(400, {"error": "bad Content-Length"})
            if length > MAX_BODY or length < 0:
                return self.reply(413, {"error": f"body larger than {MAX_BODY} bytes"})
            body = self.rfile.read(length) if length else b""
            query = dict(urllib.parse.parse_qsl(url.query))
            try:
                code, out = fn(Request(method, url.path, query, body))
            except HttpError as e:
                code, out = e.status, {"error": str(e)}
            except Exception:
                logging.exception("%s %s failed", method, url.path)
                code, out = 500, {"error": "internal error"}
            self.reply(code, out)

        def reply(self, code: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args: Any) -> None:
            logging.info("%s %s", self.address_string(), fmt % args)

    server = _HttpServer((host, cfg.port), Handler)
    if cfg.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        # The handshake runs in the request's thread, not in the accept loop.
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    logging.info("HTTP on %s:%s (tls=%s)", host, server.server_address[1], cfg.tls)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


def stop_http(server: _HttpServer, grace: float) -> None:
    """Stops accepting, waits up to `grace` seconds for requests in flight."""
    server.shutdown()
    with server.idle:
        if not server.idle.wait_for(lambda: server.active == 0, grace):
            logging.warning("stopping with %d request(s) still in flight", server.active)
    server.server_close()
