"""How a real ``queue-api`` process writes its responses (``queue_api.http_protocol``): a
response leaves in one TCP segment, head and body together, and a write with nothing after it
in its turn (a ``100 Continue``) still leaves at once. Raw sockets, and the kernel's count of
the data segments a socket received (``tcp_info``), because an HTTP client shows neither."""

import json
import socket
import struct
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from e2e.stack import Api

BODY = b'{"type":"noop","payload":{"a":1}}'
REQUESTS = 20
READ_TIMEOUT_S = 10.0
# struct tcp_info (linux/tcp.h, Linux 4.6 on): tcpi_data_segs_in, the segments with data this
# socket received.
_TCP_INFO_DATA_SEGS_IN = 152


def data_segments_in(sock: socket.socket) -> int:
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", raw, _TCP_INFO_DATA_SEGS_IN)[0])


@pytest.fixture(name="conn")
def fx_conn(api_process: Api) -> Iterator[socket.socket]:
    address = urlsplit(api_process.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=READ_TIMEOUT_S) as sock:
        yield sock


def post_jobs(api: Api, *, extra: dict[str, str] | None = None, body: bytes = BODY) -> bytes:
    headers = {
        **api.auth_headers,
        "Host": "test",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        **(extra or {}),
    }
    head = "\r\n".join(["POST /jobs HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())])
    return (head + "\r\n\r\n").encode() + body


def read_response(
    sock: socket.socket, buffered: bytes = b""
) -> tuple[int, dict[str, str], bytes, bytes]:
    """One response off a keep-alive connection: status, headers, body, and what came after."""
    data = buffered
    while b"\r\n\r\n" not in data:
        data += _recv(sock)
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    length = int(headers["content-length"])
    while len(rest) < length:
        rest += _recv(sock)
    return int(status_line.split()[1]), headers, rest[:length], rest[length:]


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise AssertionError("the server closed the connection")
    return chunk


def test_each_response_leaves_in_one_segment(api_process: Api, conn: socket.socket) -> None:
    request = post_jobs(api_process)
    conn.sendall(request)
    assert read_response(conn)[0] == 201  # the connection and the API warmed up
    before = data_segments_in(conn)
    for _ in range(REQUESTS):
        conn.sendall(request)
        status, headers, body, rest = read_response(conn)
        assert status == 201, body
        assert headers["content-type"] == "application/json"
        assert "id" in json.loads(body)
        assert rest == b""
    # uvicorn alone sends the head and the body of each response apart: 2 segments each.
    assert data_segments_in(conn) - before == REQUESTS


def test_pipelined_requests_get_their_responses_in_order(
    api_process: Api, conn: socket.socket
) -> None:
    conn.sendall(post_jobs(api_process) + post_jobs(api_process, body=b"{"))
    first, _, first_body, rest = read_response(conn)
    second, _, second_body, rest = read_response(conn, rest)
    assert (first, second) == (201, 400), (first_body, second_body)
    assert "id" in json.loads(first_body)
    assert rest == b""


def test_a_100_continue_is_sent_before_the_body_comes(
    api_process: Api, conn: socket.socket
) -> None:
    """The interim answer is the only write of its turn: it must not wait for another."""
    request = post_jobs(api_process, extra={"Expect": "100-continue"})
    head, _, body = request.partition(b"\r\n\r\n")
    conn.sendall(head + b"\r\n\r\n")
    interim = b""
    while b"\r\n\r\n" not in interim:
        interim += _recv(conn)  # a held write would never come: the read times out
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.sendall(body)
    status, _, response_body, _ = read_response(conn)
    assert status == 201, response_body
