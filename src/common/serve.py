"""Runs a service: a gRPC server (health plus the service's own handlers) or
an HTTP server (GET /healthz plus the service's routes), with TLS when the
service has a certificate."""

import json
import logging
import ssl
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common import health


def run(cfg, grpc_handlers=(), http_routes=None) -> None:
    checks = health.dependency_checks(cfg)
    if cfg.protocol == "http":
        run_http(cfg, checks, http_routes or {})
    else:
        run_grpc(cfg, checks, grpc_handlers)


def run_grpc(cfg, checks, handlers) -> None:
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((health.grpc_handler(checks), *handlers))
    addr = f"0.0.0.0:{cfg.port}"
    if cfg.tls:
        with open(cfg.tls_key, "rb") as k, open(cfg.tls_cert, "rb") as c:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        server.add_secure_port(addr, creds)
    else:
        server.add_insecure_port(addr)
    server.start()
    logging.info("gRPC on %s (tls=%s)", addr, cfg.tls)
    server.wait_for_termination()


def run_http(cfg, checks, routes) -> None:
    """routes: {path prefix: fn(path) -> (status, dict)}."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path in ("/healthz", cfg.public_path.rstrip("/") + "/healthz"):
                st = health.status(checks)
                body = {"service": cfg.name, "status": "SERVING" if st == health.SERVING else "NOT_SERVING"}
                return self.reply(200 if st == health.SERVING else 503, body)
            for prefix, fn in routes.items():
                if self.path.startswith(prefix):
                    try:
                        code, body = fn(self.path)
                    except Exception as e:
                        logging.exception("handler failed")
                        code, body = 502, {"error": str(e)}
                    return self.reply(code, body)
            self.reply(404, {"error": "not found", "path": self.path})

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):
            logging.info("%s %s", self.address_string(), fmt % args)

    server = ThreadingHTTPServer(("0.0.0.0", cfg.port), Handler)
    if cfg.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    logging.info("HTTP on :%s (tls=%s)", cfg.port, cfg.tls)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Event().wait()
