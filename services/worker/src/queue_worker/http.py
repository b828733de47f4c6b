"""The worker's side port: ``/healthz`` for the liveness probe and ``/metrics`` for Prometheus.

It runs in a thread of its own (the standard library's HTTP server), so a scrape or a probe
never competes with jobs on the event loop, and a wedged event loop shows up as a failing
``/healthz`` (the claim loop's heartbeat stops moving) instead of a probe that hangs.
"""

import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import ClassVar

from prometheus_client.exposition import MetricsHandler


class _Handler(MetricsHandler):
    is_healthy: ClassVar[Callable[[], bool]]

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            super().do_GET()
        elif path == "/healthz":
            ok = type(self).is_healthy()
            body = b'{"status":"ok"}' if ok else b'{"status":"stalled"}'
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Probes and scrapes every few seconds would drown the job logs."""


class SidePortServer:
    def __init__(self, host: str, port: int, is_healthy: Callable[[], bool]) -> None:
        handler = type("BoundHandler", (_Handler,), {"is_healthy": staticmethod(is_healthy)})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="side-port", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
