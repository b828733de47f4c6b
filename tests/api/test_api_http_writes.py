"""How ``queue-api`` writes its responses (``queue_api.http_protocol``): on a real API, a
response leaves in one TCP segment, head and body together, and a write with nothing after it
in its turn (a ``100 Continue``) still leaves at once; on a bare app served the same way
(protocol_server.py), a client that reads nothing holds a large body back, a client that
half-closes gets its answer, and a connection the server closes gets its last response whole.
Raw sockets, and the kernel's count of the data segments a socket received (``tcp_info``),
because an HTTP client shows none of it."""

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from api.support import read_until_closed
from e2e.stack import Api, Stack
from queue_devtools.pgcluster import free_port

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


@pytest.mark.parametrize(
    ("refused", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET /v1/jobs/\xff HTTP/1.1\r\nHost: test\r\n\r\n", 400),  # not ASCII
        (b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 1024 * 1024, 431),
    ],
    ids=["malformed", "path-not-ascii", "head-too-large"],
)
def test_a_request_refused_behind_pipelined_ones_is_answered_after_them(
    api_process: Api, conn: socket.socket, refused: bytes, status: int
) -> None:
    """The requests before it were read whole: each gets its own answer, in order, and the
    refusal comes last, then the close. Written at once, the refusal took the place of answers
    still on their way, and a client that saw it as the answer to its first request did not
    know that its jobs were stored (or retried them)."""
    conn.sendall(post_jobs(api_process) + post_jobs(api_process) + refused)
    first, _, first_body, rest = read_response(conn)
    second, _, second_body, rest = read_response(conn, rest)
    rest += read_until_closed(conn)

    assert (first, second) == (201, 201), (first_body, second_body)
    head, _, body = rest.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), rest
    assert json.loads(body)["status_code"] == status  # the API's error shape


def test_a_malformed_body_queued_behind_a_request_is_refused_after_its_answer(
    api_process: Api, conn: socket.socket
) -> None:
    """A pipelined request whose chunked body turns out malformed while the request before it
    is still being answered (a job's status, waited on): that request's answer first."""
    conn.sendall(post_jobs(api_process))
    job_id = json.loads(read_response(conn)[2])["id"].rpartition(" ")[2]
    auth = "".join(f"{name}: {value}\r\n" for name, value in api_process.auth_headers.items())
    waited = f"GET /v1/jobs/{job_id}?wait=0.5 HTTP/1.1\r\nHost: test\r\n{auth}\r\n".encode()
    bad_chunks = post_jobs(api_process, extra={"Transfer-Encoding": "chunked"})
    bad_chunks = bad_chunks.replace(b"Content-Length: ", b"X-Was-Length: ") + b"zz\r\n"
    conn.sendall(waited + bad_chunks.partition(b"\r\n\r\n")[0] + b"\r\n\r\nzz\r\n")
    status, _, body, rest = read_response(conn)
    rest += read_until_closed(conn)

    assert status == 200, body
    assert json.loads(body)["status"] == "pending"
    assert rest.startswith(b"HTTP/1.1 400 "), rest


# What curl --http2 adds to a request over plain HTTP (h2c), which uvicorn does not make.
H2C = {"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "HTTP2-Settings": "AAMAAABk"}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_request_asking_for_an_upgrade_not_made_is_served_as_sent(
    api_process: Api, conn: socket.socket, *, chunked: bool
) -> None:
    """A server may ignore an Upgrade (RFC 9110, 7.8): the request is then served as it came.
    httptools skips the body of a request asking for one, and uvicorn dropped what followed
    its head: ``curl --http2 -d ... http://api/jobs`` got 400 "Request body is empty", and a
    request pipelined after it no answer."""
    request = post_jobs(api_process, extra=H2C)
    if chunked:
        head, _, body = request.replace(b"Content-Length: ", b"X-Length: ").partition(b"\r\n\r\n")
        request = head + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        request += f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    conn.sendall(request + post_jobs(api_process))
    first, _, first_body, rest = read_response(conn)
    second, _, second_body, rest = read_response(conn, rest)

    assert (first, second) == (201, 201), (first_body, second_body)
    assert rest == b""


def test_the_body_of_a_request_asking_for_an_upgrade_is_never_read_as_a_request(
    api_process: Api, conn: socket.socket
) -> None:
    """A body that came after its head's read was parsed as the next request: a proxy in
    front, which framed it by its Content-Length, forwarded it as data, and we answered the
    request smuggled in it."""
    smuggled = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"
    head, _, _ = post_jobs(api_process, extra=H2C, body=smuggled).partition(b"\r\n\r\n")
    conn.sendall(head + b"\r\n\r\n")
    time.sleep(0.2)  # the body in a read of its own
    conn.sendall(smuggled)

    status, _, body, rest = read_response(conn)

    assert status == 400, body  # the body is no job
    assert b"JSON is malformed" in body
    conn.settimeout(0.5)
    with pytest.raises(TimeoutError):
        rest += conn.recv(65536)  # and nothing answers the request it held
    assert rest == b""


def test_a_client_that_half_closes_after_its_requests_gets_their_answers(
    api_process: Api, conn: socket.socket
) -> None:
    """The transport closed itself at the client's end of sending, dropping the answers the
    app had yet to write: only one ready in the same turn (GET /health) got out."""
    conn.sendall(post_jobs(api_process) + post_jobs(api_process))
    conn.shutdown(socket.SHUT_WR)
    received = read_until_closed(conn)

    first, _, first_body, rest = read_response(conn, received)
    second, _, second_body, rest = read_response(conn, rest)
    assert (first, second) == (201, 201), (first_body, second_body)
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


# -- a bare app, served like the API -----------------------------------------------------------

SERVER = Path(__file__).with_name("protocol_server.py")
STREAM_CHUNKS = 2000  # protocol_server.py's, of 64 KiB each


@pytest.fixture(name="bare_server", scope="module")
def fx_bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    stack = Stack(tmp_path_factory.mktemp("bare"))
    port = free_port()
    proc = stack.spawn("bare", ["python", str(SERVER), str(port)], {})
    try:
        stack.wait_ready(Api(proc, f"http://127.0.0.1:{port}", probe="/hello"))
        yield ("127.0.0.1", port)
    finally:
        stack.stop_all()


def get(address: tuple[str, int], path: str) -> bytes:
    with socket.create_connection(address, timeout=READ_TIMEOUT_S) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return read_until_closed(conn)


def test_a_client_that_reads_nothing_holds_a_large_body_back(
    bare_server: tuple[str, int],
) -> None:
    """Collected writes go out past a size, so uvicorn's flow control sees the body as it
    comes: the app's sends wait once the socket's buffers are full, instead of all 128 MiB
    piling up in the server."""
    with socket.create_connection(bare_server, timeout=READ_TIMEOUT_S) as stalled:
        stalled.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        last, steady = -1, 0
        deadline = time.monotonic() + 20
        while steady < 3:  # the same count three looks in a row: the app is held back
            sent = int(get(bare_server, "/sent").partition(b"\r\n\r\n")[2])
            steady = steady + 1 if sent == last else 0
            last = sent
            assert time.monotonic() < deadline, f"still sending: {sent} chunks"
            time.sleep(0.1)
    # uvicorn alone stops near 60 chunks here (the kernel's buffers and the transport's).
    assert 0 < last < STREAM_CHUNKS / 4


def test_a_client_that_half_closes_gets_its_answer(bare_server: tuple[str, int]) -> None:
    with socket.create_connection(bare_server, timeout=READ_TIMEOUT_S) as conn:
        conn.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        conn.shutdown(socket.SHUT_WR)  # then the server closes its side too
        received = read_until_closed(conn)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(b"\r\n\r\nhello")


@pytest.mark.parametrize(
    ("request_bytes", "answer"),
    [
        (b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", b"200 OK"),
        (b"GET /hello HTTP/1.0\r\n\r\n", b"200 OK"),
        (b"NOT HTTP AT ALL\r\n\r\n", b"400 Bad Request"),
    ],
    ids=["connection-close", "http-1.0", "malformed"],
)
def test_the_last_response_before_the_server_closes_is_whole(
    bare_server: tuple[str, int], request_bytes: bytes, answer: bytes
) -> None:
    with socket.create_connection(bare_server, timeout=READ_TIMEOUT_S) as conn:
        conn.sendall(request_bytes)
        received = read_until_closed(conn)
    status_line, _, rest = received.partition(b"\r\n")
    assert answer in status_line
    head, _, body = rest.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    assert len(body) == length
