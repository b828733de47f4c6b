"""uvicorn's HTTP protocol (httptools), with what a connection writes in one turn of the event
loop sent in one ``send()``.

uvicorn writes a response's status line and headers when the app sends
``http.response.start``, and its body when the app sends ``http.response.body``: two writes,
so two ``send()`` calls and two TCP segments for every small JSON answer, each sent at once.
On loopback the sender also pays the receiving side's network stack. Measured under ``make
bench``'s load (64 connections posting jobs, 2 vCPU, alternating runs): collecting a
connection's writes and sending them together once the event loop has run what was ready
took the API's CPU from 187-195 to 149-179 µs a request, and 4,900-5,100 to 5,400-6,600
requests a second. Sending the head with the body as soon as the body came, but the rest at
once, was worse than not collecting at all (206-226 µs): the gain is in sending the responses
of a turn (the group commit answers a batch of requests at once) together, after the app's
work.

What is collected goes out, in order:

- at the loop's next turn (``call_soon``), so no response waits longer than the work that was
  ready with it;
- at once when it reaches :data:`SEND_AT_BYTES`, so that a large body reaches the transport as
  it comes and flow control holds it back as before (uvicorn's ``send`` waits only once the
  transport says its buffer is full);
- before the connection closes, or ends its writing side, and when the client ends its own (a
  half-close, after which the transport closes itself).

It also bounds a request's head (request line and headers), which uvicorn does not:

- its size, :data:`MAX_HEAD_BYTES`: past it, a 431 and the connection closed. httptools grows
  a header's value by copying it whole for every piece that arrives, so one client sending a
  100 MB header held the event loop for seconds at a time (every other request waited 7 to 13
  s), and the memory for as long as it liked;
- its time, ``head_timeout_s`` (``API_BODY_TIMEOUT_S``, as for the body): from the connection's
  opening, or a later request's first byte, to the end of its headers. Past it, a 408 and the
  connection closed: a connection that sends nothing, or a header now and then, no longer holds
  a socket and its buffers for ever (uvicorn's keep-alive timeout only starts once a response
  is sent).

Its refusals (these, and the 400 for bytes the parser refuses, uvicorn's in the API's error
shape) go after the answers to the requests read before the refused bytes, as a pipelining
client expects them; uvicorn wrote its 400 at once, in the place of those answers.

And it bounds what uvicorn reads of a request's body after the request was answered (a 401,
413 or 415 sent before the body came whole): uvicorn reads the rest and drops it, but
watches nothing meanwhile (the body's deadline is the app's, and the app is done) and, as a
read cancels its keep-alive timer, arms none once the rest has come. A client answered early
that sent a byte of its body now and then, or all of it and then nothing, held its connection
for ever. Now the rest of the body is due within ``head_timeout_s`` of the answer (past it, the
connection is closed: the answer is sent already), and once it has come, the connection is idle
as after any answer: uvicorn's keep-alive timeout applies.
"""

import asyncio
import json
from collections.abc import Iterable
from typing import Any, ClassVar, Final

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from queue_api.security_headers import ALWAYS, CSP_FOR_DATA

# Collected bytes past which a connection's writes go out without waiting for the turn's end.
SEND_AT_BYTES: Final = 64 * 1024
# The most a request's head may take (request line and headers), give or take one read: ours
# are well under 1 KiB; a browser's cookies for the host may add a few (nginx takes 32 KiB).
MAX_HEAD_BYTES: Final = 64 * 1024
DEFAULT_HEAD_TIMEOUT_S: Final = 10.0
# After a refusal, how long what the client still sends is read and dropped before closing.
LINGER_S: Final = 1.0


def _refusal(status: int, reason: str, detail: str) -> bytes:
    """A whole response in the API's error shape, closing the connection, with the headers
    every answer carries (``queue_api.security_headers``; the app never sees this one)."""
    body = json.dumps({"status_code": status, "detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *ALWAYS,
        (b"content-security-policy", CSP_FOR_DATA),
        (b"cache-control", b"no-store"),
    ]
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return f"HTTP/1.1 {status} {reason}\r\n".encode() + head + b"\r\n" + body


class _WritesPerTurn:
    """The transport as the protocol writes to it: writes collected, sent together."""

    __slots__ = ("_collected", "_loop", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._collected: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not self._collected:
            self._loop.call_soon(self.send_collected)
        self._collected.append(data)
        self._size += len(data)
        if self._size >= SEND_AT_BYTES:
            self.send_collected()

    def writelines(self, lines: Iterable[bytes]) -> None:
        for data in lines:
            self.write(data)

    def send_collected(self) -> None:
        collected = self._collected
        if not collected:
            return  # sent already: past SEND_AT_BYTES, or by close()
        data = collected[0] if len(collected) == 1 else b"".join(collected)
        collected.clear()
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def write_eof(self) -> None:
        self.send_collected()
        self._transport.write_eof()

    def close(self) -> None:
        self.send_collected()
        self._transport.close()

    def abort(self) -> None:
        self._collected.clear()
        self._size = 0
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - the rest of asyncio.Transport
        return getattr(self._transport, name)


class OneSendPerTurnProtocol(HttpToolsProtocol):
    """What ``queue-api`` passes to uvicorn as its ``http`` protocol
    (:meth:`with_head_timeout`)."""

    head_timeout_s: ClassVar[float] = DEFAULT_HEAD_TIMEOUT_S

    @classmethod
    def with_head_timeout(cls, seconds: float) -> type["OneSendPerTurnProtocol"]:
        """This protocol with heads due within ``seconds`` (uvicorn builds the instances)."""
        return type(cls.__name__, (cls,), {"head_timeout_s": seconds})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Every write of this connection's requests goes through here (uvicorn hands
        # self.transport to each request it reads); flow control keeps the real transport.
        self._writes = _WritesPerTurn(transport, self.loop)
        self.transport = self._writes  # type: ignore[assignment]
        self._head_bytes = 0
        self._reading_head = True
        self._refused = False
        # The requests read whose answer has not gone yet, and a refusal waiting for them.
        self._unanswered = 0
        self._refusal_after: bytes | None = None
        # A request asking for an upgrade uvicorn does not make (see _upgrade_not_made), and
        # the parser's head fed to make it read that request's body.
        self._upgrade_ignored = False
        self._priming = False
        # The client has ended its sending: the connection closes once its requests are answered.
        self._close_when_answered = False
        self._head_deadline: asyncio.TimerHandle | None = None
        self._start_head_deadline()
        # While the rest of a request answered already is read and dropped.
        self._rest_deadline: asyncio.TimerHandle | None = None

    def _start_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def _stop_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _refuse(self, response: bytes) -> None:
        self._stop_head_deadline()
        if self._refused or self.transport.is_closing():
            return
        self._refused = True  # nothing more is read
        if self._unanswered:
            # Requests read before the refused bytes are still being answered: the refusal
            # goes after their answers (on_response_complete), not in the place of the first.
            self._refusal_after = response
            return
        self._send_refusal(response)

    def _send_refusal(self, response: bytes) -> None:
        self.transport.write(response)
        # Closing while the client's bytes still arrive would make the kernel reset the
        # connection, and the client could lose the refusal: end our side after it (a TLS
        # transport cannot: it only closes), drop what still comes for a moment, then close.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        self._refuse(
            _refusal(
                408,
                "Request Timeout",
                f"request headers not received within {self.head_timeout_s:g} s",
            )
        )

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        reading_head = self._reading_head
        if reading_head:
            self._head_bytes += len(data)
        self._feed(data)
        # Judged once the parser has had the data: a read that ends the head (and may carry
        # a body) is never refused, so a head is refused past the bound plus at most one read.
        # (A read that holds whole requests leaves no head bytes counted.)
        if reading_head and self._reading_head and self._head_bytes:
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(
                    _refusal(
                        431,
                        "Request Header Fields Too Large",
                        f"the request line and headers exceed {MAX_HEAD_BYTES} bytes",
                    )
                )
            else:
                # A later request's head, begun and unfinished: due from this, its first read.
                # Started here, not per request, as a timer per request cost a tenth of the
                # API's CPU per request.
                self._start_head_deadline()

    def _feed(self, data: bytes) -> None:
        """uvicorn's ``data_received``, but for an upgrade it does not make."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
        except httptools.HttpParserUpgrade as upgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._upgrade_not_made(data[upgrade.args[0] :])

    def _upgrade_not_made(self, rest: bytes) -> None:
        """Serve a request asking for an upgrade uvicorn does not make (any but WebSocket:
        ``curl --http2`` asks for h2c) as the request it is, as RFC 9110 (7.8) lets a server.
        httptools makes the parser skip the body of such a request and stop after its head, and
        uvicorn dropped what came after: ``curl --http2 -d ... /jobs`` was answered "Request
        body is empty", and a request pipelined after it never. A new parser, fed a head with
        the request's framing (its own went to the app already, see on_headers_complete),
        reads its body and what follows."""
        chunked = any(name == b"transfer-encoding" for name, _ in self.headers)
        length = next((value for name, value in self.headers if name == b"content-length"), b"0")
        framing = b"transfer-encoding: chunked" if chunked else b"content-length: " + length
        self.parser = httptools.HttpRequestParser(self)
        self._priming = True
        try:
            self.parser.feed_data(b"POST / HTTP/1.1\r\n" + framing + b"\r\n\r\n")
        finally:
            self._priming = False
        if rest:
            self._feed(rest)

    def on_headers_complete(self) -> None:
        if self._priming:
            return  # the head _upgrade_not_made feeds a new parser: no request of its own
        if self.parser.should_upgrade() and not self._should_upgrade():
            self._upgrade_ignored = True
        self._reading_head = False
        self._stop_head_deadline()
        # A request is in: no keep-alive timer may close the connection under it (one armed by
        # on_message_complete, when the same read held the next request).
        self._unset_keepalive_if_required()
        cycle = self.cycle
        super().on_headers_complete()
        if self.cycle is not cycle:  # a request to answer (not a WebSocket upgrade)
            self._unanswered += 1

    def on_message_complete(self) -> None:
        if self._upgrade_ignored:
            # The end httptools makes of the request without its body: the body comes next
            # (_upgrade_not_made).
            self._upgrade_ignored = False
            return
        super().on_message_complete()
        self._reading_head = True
        self._head_bytes = 0
        if self._rest_deadline is not None:
            # The rest of a request answered already has come: the connection is idle, as
            # uvicorn leaves it after an answer, but uvicorn armed its keep-alive timer when
            # the answer went and the reads since cancelled it. Armed again, as uvicorn would.
            self._stop_rest_deadline()
            if not self.transport.is_closing():
                self._unset_keepalive_if_required()
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )

    def on_response_complete(self) -> None:
        self._unanswered -= 1
        super().on_response_complete()
        if self._refusal_after is not None and not self._unanswered:
            if not self.transport.is_closing():  # closed after a "Connection: close" answer
                self._send_refusal(self._refusal_after)
            self._refusal_after = None
        if self._close_when_answered and not self._unanswered:
            self.transport.close()  # the client sends nothing more: nothing left to answer
        # Answered before its body came whole (self.cycle is the last request read, so its
        # head is complete; its body is not while we are not reading a head): uvicorn drops
        # the rest as it comes, with no deadline of its own. (Reading a head is the common
        # case, so it is asked first.)
        if self._reading_head or self._refused or self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_complete and self._rest_deadline is None:
            self._rest_deadline = self.loop.call_later(self.head_timeout_s, self._rest_too_slow)

    def _stop_rest_deadline(self) -> None:
        if self._rest_deadline is not None:
            self._rest_deadline.cancel()
            self._rest_deadline = None

    def _rest_too_slow(self) -> None:
        # The answer is out already: no other can be sent, only the connection closed.
        self._rest_deadline = None
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_deadline()
        self._stop_rest_deadline()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes its parser refuses, in the API's error shape and with the
        headers of every answer (uvicorn's is text, without them). uvicorn wrote it at once and
        closed: in the place of the answers to requests read before the bad bytes, which were
        lost, though those requests ran (a job stored, its client told 400)."""
        refusal = _refusal(400, "Bad Request", msg)
        if self._reading_head:
            self._refuse(refusal)  # after the requests before it are answered
            return
        if self._unanswered > 1:
            # In the body of a request waiting in uvicorn's queue behind one being answered
            # (requests are answered one at a time): it never runs, and this, after the
            # answers before it, is its answer.
            self.pipeline.popleft()
            self._unanswered -= 1
            self._refuse(refusal)
            return
        # In the body of the request being served, before its answer: this is its answer.
        self._stop_head_deadline()
        self._refused = True
        self.transport.write(refusal)
        self.transport.close()

    def eof_received(self) -> bool | None:  # type: ignore[override] # asyncio.Protocol's
        # The client will send no more: the transport closes itself when this returns false,
        # and sends what it holds first, so what is collected goes to it now.
        self._writes.send_collected()
        super().eof_received()
        if self._unanswered and not self.transport.is_closing():
            # Requests it sent are still being answered (a half-close after them, as some
            # HTTP/1.0-style clients do): closed once they are (on_response_complete), where
            # closing at once dropped their answers.
            self._close_when_answered = True
            return True
        return None
