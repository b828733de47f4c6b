"""uvicorn's HTTP protocol (httptools), with what a connection writes in one turn of the event
loop sent in one ``send()`` at its end.

uvicorn writes a response's status line and headers when the app sends
``http.response.start``, and its body when the app sends ``http.response.body``: two writes,
so two ``send()`` calls and two TCP segments for every small JSON answer, each sent at once.
On loopback the sender also pays the receiving side's network stack. Measured under ``make
bench``'s load (64 connections posting jobs, 2 vCPU, alternating runs): collecting a
connection's writes and sending them together at the end of the event loop's turn took the
API's CPU from 187-195 to 149-179 µs a request, and 4,900-5,100 to 5,400-6,600 requests a
second. Sending the head with the body as soon as the body came, but the rest at once, was
worse than not collecting at all (206-226 µs): the gain is in sending the responses of a turn
(the group commit answers a batch of requests at once) together, after the app's work.

A response therefore waits no longer than the rest of the turn it was written in; closing the
connection sends what is collected first. Everything else (flow control, the socket's details)
is the real transport's.
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _WritesPerTurn:
    """The transport as the protocol writes to it: writes collected, sent at the turn's end."""

    __slots__ = ("_collected", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._collected: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._collected:
            self._loop.call_soon(self._send)
        self._collected.append(data)

    def _send(self) -> None:
        collected = self._collected
        if not collected:
            return  # sent by close() already
        data = collected[0] if len(collected) == 1 else b"".join(collected)
        collected.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._send()
        self._transport.close()

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
        self.transport = _WritesPerTurn(transport, self.loop)  # type: ignore[assignment]
