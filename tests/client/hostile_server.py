"""A loopback HTTP server that answers what a test tells it to, as a broken proxy or a buggy API
might: a redirect, an HTML page with a 200, a cursor that never ends. Each request is answered
by ``answer(method, path_and_query)``: a status, headers and a body; the requests are kept. A
body given as chunks is sent a chunk at a time, as they come (a trickle, a flood), under the
Content-Length the headers give.

It serves from a thread of its own, so sync and async clients alike can use it.
"""

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, Mapping[str, str], bytes | Iterable[bytes]]


def json_answer(status: int, value: Any) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(value).encode()


@contextmanager
def hostile_server(answer: Callable[[str, str], Answer]) -> Iterator[tuple[str, list[str]]]:
    """The server's base URL and the requests it got (``"GET /v1/jobs?…"``), while open."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's signature
            pass

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            requests.append(f"{self.command} {self.path}")
            status, headers, body = answer(self.command, self.path)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if isinstance(body, bytes):
                self.send_header("Content-Length", str(len(body)))
                body = [body]
            self.end_headers()
            try:
                for chunk in body:
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except ConnectionError:  # the client hung up: what some tests expect of it
                self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
