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
"""

import asyncio
from collections.abc import Iterable
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Collected bytes past which a connection's writes go out without waiting for the turn's end.
SEND_AT_BYTES: Final = 64 * 1024


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
    """What ``queue-api`` passes to uvicorn as its ``http`` protocol."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Every write of this connection's requests goes through here (uvicorn hands
        # self.transport to each request it reads); flow control keeps the real transport.
        self._writes = _WritesPerTurn(transport, self.loop)
        self.transport = self._writes  # type: ignore[assignment]

    def eof_received(self) -> None:
        # The client will send no more: the transport closes itself when this returns, and
        # sends what it holds first, so what is collected goes to it now.
        self._writes.send_collected()
        super().eof_received()
