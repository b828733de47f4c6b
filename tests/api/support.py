"""Types and helpers shared by the API tests (fixtures live in conftest.py)."""

import json
import socket
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

from helpers import TcpProxy
from queue_api.app import create_app
from queue_api.settings import ApiSettings

ApiClient = AsyncTestClient[Litestar]
ClientFactory = Callable[..., AbstractAsyncContextManager[ApiClient]]

# The key every API test database holds, with every scope (tests/api/conftest.py makes it).
ADMIN_KEY_NAME = "test-admin"

# Where AsyncTestClient's requests go by default (their Host: testserver.local).
TEST_CLIENT_BASE_URL = "http://testserver.local"
# What a test of API_AUTH=off names: the default host allow-list takes loopback names and IP
# literals only (and the test client wants a dot in its host, for cookies).
LOCAL_BASE_URL = "http://127.0.0.1:8080"

# API_BODY_TIMEOUT_S of the real queue-api process the socket and Schemathesis tests start.
BODY_TIMEOUT_S = 1.0

# The seed README's POST /jobs example, byte for byte.
SEED_SEND_EMAIL: dict[str, Any] = {
    "type": "send_email",
    "payload": {
        "recipient": "test@example.com",
        "subject": "Hello from the Task Queue!",
        "body": "This is a test email.",
    },
}

# What must never reach a client in an error body: traces, driver and SQL text, connection details.
LEAK_MARKERS = (
    "Traceback",
    'File "',
    "asyncpg",
    "Error",  # exception class names: UntranslatableCharacterError, OSError, ...
    "SELECT",
    "INSERT",
    "$1",
    "postgres",
    "127.0.0.1",
)


def build_app(database_url: str, *, max_body_bytes: int | None = None, **settings: Any) -> Litestar:
    """The app on ``database_url``; ``settings`` are other ApiSettings fields (``auth="off"``)."""
    if max_body_bytes is not None:
        settings["max_body_bytes"] = max_body_bytes
    # A set secret: without one the app logs a warning at start, which tests of logs would see.
    settings.setdefault("ui_secret", "test-ui-secret-" + "x" * 32)
    return create_app(ApiSettings(DATABASE_URL=database_url, **settings))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class Outage:
    """A client whose app reaches PostgreSQL only through ``proxy``, which a test can cut."""

    client: ApiClient
    proxy: TcpProxy


def error_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON error body of ``response``, checked for Litestar's error shape."""
    assert response.headers["content-type"] == "application/json", response.text
    body = response.json()
    assert isinstance(body, dict), body
    assert body["status_code"] == response.status_code
    assert isinstance(body["detail"], str)
    assert set(body) <= {"status_code", "detail", "extra"}
    return body


def problem_text(body: dict[str, Any]) -> str:
    """The detail plus every ``key: message`` of a validation error, for "names the problem"."""
    parts = [body["detail"]]
    extra = body.get("extra") or []
    parts += [f"{item.get('key')}: {item.get('message')}" for item in extra]
    return " | ".join(parts)


def assert_no_internals(response: httpx.Response) -> None:
    text = response.text
    leaked = [marker for marker in LEAK_MARKERS if marker in text]
    assert not leaked, f"error body leaks {leaked}: {text}"
    json.loads(text)  # and it is JSON, not an HTML or plain-text trace page


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails the test:
    the server held the connection open)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received
