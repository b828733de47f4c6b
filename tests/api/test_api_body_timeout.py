"""Slow and half-sent bodies against a real ``queue-api`` process (API_BODY_TIMEOUT_S=1): the
whole body must arrive within the deadline, or the client gets a 408 in our error shape and its
connection is closed. Raw sockets, because an HTTP client cannot send half a request."""

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from api.support import BODY_TIMEOUT_S, read_until_closed
from e2e.stack import Api

BODY = b'{"type":"noop","payload":{"a":1}}'
# Longer than the deadline, short enough that a test that fails waits little.
READ_TIMEOUT_S = BODY_TIMEOUT_S + 4
# A deadline armed with call_later may end this much before its delay: uvloop's clock is
# libuv's, in whole milliseconds, floored (seen: a 1 s deadline ended after 0.99992 s).
TIMER_RESOLUTION_S = 0.002


# The key head() sends: the guard answers 401 before reading a body that comes without one.
_AUTHORIZATION: dict[str, str] = {}


@pytest.fixture(name="conn")
def fx_conn(api_process: Api) -> Iterator[socket.socket]:
    _AUTHORIZATION.update(api_process.auth_headers)
    address = urlsplit(api_process.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=READ_TIMEOUT_S) as sock:
        yield sock


def head(path: str, headers: dict[str, str]) -> bytes:
    headers = {**_AUTHORIZATION, **headers}
    lines = [f"POST {path} HTTP/1.1", "Host: test", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def json_head(path: str, content_length: int) -> bytes:
    return head(path, {"Content-Type": "application/json", "Content-Length": str(content_length)})


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head_bytes, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def assert_timed_out(raw: bytes, waited_s: float) -> None:
    status, headers, body = parse(raw)
    assert status == 408, raw
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert json.loads(body) == {
        "status_code": 408,
        "detail": f"request body not received within {BODY_TIMEOUT_S:g} s",
    }
    assert BODY_TIMEOUT_S <= waited_s < READ_TIMEOUT_S


@pytest.mark.parametrize("path", ["/jobs", "/v1/jobs/batch"])
def test_a_half_sent_body_gets_408_and_the_connection_closed(
    conn: socket.socket, path: str
) -> None:
    started = time.monotonic()
    conn.sendall(json_head(path, 100) + BODY[:10])

    raw = read_until_closed(conn)

    assert_timed_out(raw, time.monotonic() - started)


def test_headers_without_any_body_get_408(conn: socket.socket) -> None:
    started = time.monotonic()
    conn.sendall(json_head("/jobs", len(BODY)))

    assert_timed_out(read_until_closed(conn), time.monotonic() - started)


def test_a_body_trickled_a_byte_at_a_time_gets_408_at_the_deadline(conn: socket.socket) -> None:
    """The deadline is for the whole body, not for each piece: a client that keeps sending a
    byte now and then must not keep the connection for longer."""
    started = time.monotonic()
    conn.sendall(json_head("/jobs", len(BODY)))
    conn.settimeout(0.2)
    raw = b""
    for byte in BODY:
        conn.sendall(bytes([byte]))
        try:
            raw = conn.recv(65536)
        except TimeoutError:
            continue
        break
    conn.settimeout(READ_TIMEOUT_S)

    raw += read_until_closed(conn)

    assert_timed_out(raw, time.monotonic() - started)


def test_a_chunked_body_that_never_ends_gets_408(conn: socket.socket) -> None:
    started = time.monotonic()
    conn.sendall(
        head("/jobs", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        + b"a\r\n"
        + BODY[:10]
        + b"\r\n"
    )

    assert_timed_out(read_until_closed(conn), time.monotonic() - started)


def test_a_body_sent_in_pieces_within_the_deadline_is_accepted(conn: socket.socket) -> None:
    conn.sendall(json_head("/jobs", len(BODY)) + BODY[:10])
    time.sleep(BODY_TIMEOUT_S / 4)  # a slow client, well within the deadline
    conn.sendall(BODY[10:])

    status, _, body = parse(conn.recv(65536))

    assert status == 201, body


# uvicorn's keep-alive timeout (its default, which queue-api keeps): an idle connection's.
KEEP_ALIVE_S = 5.0
_EARLY_ANSWERS = {
    # Each answered from its head, before the body is read.
    "415": ("/jobs", {"Content-Type": "text/plain"}, b"415"),
    "413": ("/jobs", {"Content-Type": "application/json", "Content-Length": str(10**9)}, b"413"),
}


def early_answer_head(name: str) -> tuple[bytes, bytes]:
    path, headers, status = _EARLY_ANSWERS[name]
    return head(path, {"Content-Length": str(len(BODY)), **headers}), status


@pytest.mark.parametrize("name", list(_EARLY_ANSWERS))
def test_the_rest_of_a_body_answered_early_is_due_within_the_deadline(
    conn: socket.socket, name: str
) -> None:
    """uvicorn drops the rest of a body the app answered without reading, with no deadline:
    a byte of it now and then (here one, then nothing) held the connection for ever."""
    request_head, status = early_answer_head(name)
    started = time.monotonic()  # before the answer, from which the rest is due
    conn.sendall(request_head)
    answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 " + status), answer
    conn.sendall(BODY[:1])

    assert read_until_closed(conn) == b""  # closed: no second answer to one request
    assert BODY_TIMEOUT_S - TIMER_RESOLUTION_S <= time.monotonic() - started < READ_TIMEOUT_S


def test_a_connection_idle_after_the_body_of_an_early_answer_is_closed(
    conn: socket.socket,
) -> None:
    """The body sent whole after its answer (as a client that did not wait for it does), the
    connection is idle as after any answer: uvicorn's read of the body had cancelled its
    keep-alive timer, and no deadline at all was left on the connection."""
    request_head, status = early_answer_head("415")
    conn.sendall(request_head)
    answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 " + status), answer
    conn.sendall(BODY)
    started = time.monotonic()
    conn.settimeout(KEEP_ALIVE_S + 4)

    assert read_until_closed(conn) == b""
    assert time.monotonic() - started >= KEEP_ALIVE_S - 0.5


def test_a_request_after_the_body_of_an_early_answer_is_answered_however_long_it_takes(
    conn: socket.socket,
) -> None:
    """Keep-alive after an early 4xx: the next request, in the same read as the body answered
    early, is served, and no idle connection's timer closes the connection under it."""
    conn.sendall(json_head("/jobs", len(BODY)) + BODY)
    job_id = json.loads(parse(conn.recv(65536))[2])["id"].rpartition(" ")[2]
    request_head, status = early_answer_head("415")
    conn.sendall(request_head)
    answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 " + status), answer
    wait_s = KEEP_ALIVE_S + 1  # the job stays pending: no worker runs
    get = f"GET /v1/jobs/{job_id}?wait={wait_s:g} HTTP/1.1\r\nHost: test\r\n"
    get += "".join(f"{name}: {value}\r\n" for name, value in _AUTHORIZATION.items())
    conn.settimeout(wait_s + READ_TIMEOUT_S)
    conn.sendall(BODY + get.encode() + b"\r\n")

    status_code, _, body = parse(conn.recv(65536))

    assert status_code == 200, body
    assert json.loads(body)["status"] == "pending"


def _server_errors(api: Api, path: str) -> float:
    """Requests to ``path`` answered 5xx so far, by the API's metrics (what
    QueueApi5xxRatioHigh counts)."""
    with api.client() as client:
        metrics = client.get("/metrics").text
    return sum(
        float(line.rpartition(" ")[2])
        for line in metrics.splitlines()
        if line.startswith("queue_api_requests_total{")
        and f'path="{path}"' in line
        and 'status_code="5' in line
    )


@pytest.mark.parametrize("path", ["/jobs", "/v1/jobs/batch"])
def test_a_client_that_leaves_mid_body_is_not_counted_as_a_server_error(
    api_process: Api, path: str
) -> None:
    """A client gone before its body came whole is the client's doing: answered 500, it was
    counted as a failure of the API, and any client (or a flaky network) could page whoever
    watches QueueApi5xxRatioHigh, whose runbook says other 5xx are bugs."""
    _AUTHORIZATION.update(api_process.auth_headers)
    address = urlsplit(api_process.base_url)
    before = _server_errors(api_process, path)
    for _ in range(3):
        with socket.create_connection((address.hostname, address.port)) as leaving:
            leaving.sendall(json_head(path, 100) + BODY[:10])
            time.sleep(0.05)  # the body's first piece read, then the client goes

    time.sleep(0.2)
    assert _server_errors(api_process, path) == before
