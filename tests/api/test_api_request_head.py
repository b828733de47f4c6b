"""A request's head (request line and headers) against a real ``queue-api`` process
(API_BODY_TIMEOUT_S=1): uvicorn bounds neither its size nor how long it takes, so the API's
protocol does (``queue_api.http_protocol``). Raw sockets: an HTTP client sends whole heads."""

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from api.support import BODY_TIMEOUT_S, read_until_closed
from e2e.stack import Api
from queue_api.http_protocol import MAX_HEAD_BYTES
from queue_api.security_headers import CSP_FOR_DATA

# Longer than the deadline, short enough that a test that fails waits little.
READ_TIMEOUT_S = BODY_TIMEOUT_S + 4


@pytest.fixture(name="conn")
def fx_conn(api_process: Api) -> Iterator[socket.socket]:
    address = urlsplit(api_process.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=READ_TIMEOUT_S) as sock:
        yield sock


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head_bytes, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def test_a_head_larger_than_the_bound_gets_431_and_the_connection_closed(
    conn: socket.socket,
) -> None:
    # Before the bound, one 100 MB header held the event loop for seconds at a time (httptools
    # copies a header's value whole for every piece that arrives). 1 MiB shows the bound, and
    # that the 431 is not lost to a reset while the rest is still arriving.
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 1024 * 1024)

    status, headers, body = parse(read_until_closed(conn))

    assert status == 431
    assert headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == CSP_FOR_DATA.decode()
    assert json.loads(body) == {
        "status_code": 431,
        "detail": f"the request line and headers exceed {MAX_HEAD_BYTES} bytes",
    }


def test_a_head_within_the_bound_is_answered(conn: socket.socket) -> None:
    header = b"a" * (MAX_HEAD_BYTES // 2)
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: " + header + b"\r\n\r\n")

    assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_a_large_body_sent_with_its_head_is_not_taken_for_a_large_head(
    api_process: Api, conn: socket.socket
) -> None:
    body = json.dumps({"type": "noop", "payload": {"text": "x" * (4 * MAX_HEAD_BYTES)}}).encode()
    head = (
        "POST /jobs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Authorization: {api_process.auth_headers['Authorization']}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    conn.sendall(head + body)

    status, _, _ = parse(read_until_closed(conn))

    assert status == 201


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connected, and nothing more
        b"GET /health HTTP/1.1\r\nHost: test\r\n",  # headers begun, never ended
    ],
)
def test_a_head_that_does_not_arrive_within_the_deadline_gets_408_and_is_closed(
    conn: socket.socket, sent: bytes
) -> None:
    started = time.monotonic()
    conn.sendall(sent)

    status, headers, body = parse(read_until_closed(conn))

    assert status == 408
    assert headers["connection"] == "close"
    assert json.loads(body) == {
        "status_code": 408,
        "detail": f"request headers not received within {BODY_TIMEOUT_S:g} s",
    }
    # The deadline runs from the connection's opening, a moment before this test's clock.
    assert BODY_TIMEOUT_S * 0.9 <= time.monotonic() - started < READ_TIMEOUT_S


def test_the_next_head_on_a_kept_alive_connection_has_a_deadline_too(
    conn: socket.socket,
) -> None:
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
    assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
    started = time.monotonic()
    conn.sendall(b"GET /health HTTP/1.1\r\n")

    status, _, _ = parse(read_until_closed(conn))

    assert status == 408
    # The event loop's timers are to the millisecond: one may fire a hair before the second.
    assert BODY_TIMEOUT_S * 0.9 <= time.monotonic() - started < READ_TIMEOUT_S
