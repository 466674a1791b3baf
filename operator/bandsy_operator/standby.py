"""What a standby serves while it waits for the Lease: ``/healthz``, so that its probes pass,
a rollout counts it ready, and it is restarted should it hang. kopf serves the endpoint once
the process leads (the port is handed over: this server is closed first)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEALTH_PATH = "/healthz"


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == HEALTH_PATH else 404
        body = b"standby\n" if status == 200 else b""
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a line per probe drowns everything else


@contextmanager
def serving_health(port: int) -> Iterator[None]:
    server = ThreadingHTTPServer(("0.0.0.0", port), _Health)  # noqa: S104  probes come from the node
    thread = threading.Thread(target=server.serve_forever, name="standby-health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
