"""The worker's side port: ``/healthz`` for the liveness probe and ``/metrics`` for Prometheus.

It runs in a thread of its own (the standard library's HTTP server), so a scrape or a probe
never competes with jobs on the event loop, and a wedged event loop shows up as a failing
``/healthz`` (the claim loop's heartbeat stops moving) instead of a probe that hangs. ``/healthz``
answers 503 with a JSON body naming the problems: a stalled claim loop, a service that keeps
failing, slots stuck past their timeout.
"""

import json
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import ClassVar, Protocol

from prometheus_client.exposition import MetricsHandler


class HealthReport(Protocol):
    @property
    def ok(self) -> bool: ...

    def body(self) -> dict[str, object]: ...


class _Handler(MetricsHandler):
    check_health: ClassVar[Callable[[], HealthReport]]

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            super().do_GET()
        elif path == "/healthz":
            health = type(self).check_health()
            body = json.dumps(health.body()).encode()
            self.send_response(200 if health.ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Probes and scrapes every few seconds would drown the job logs."""


class SidePortServer:
    def __init__(self, host: str, port: int, check_health: Callable[[], HealthReport]) -> None:
        """``check_health`` is called from this server's thread, once per probe."""
        handler = type("BoundHandler", (_Handler,), {"check_health": staticmethod(check_health)})
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
