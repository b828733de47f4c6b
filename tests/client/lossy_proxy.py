"""A loopback TCP proxy in front of queue-api that loses the answers to the first N connections
it carries: the request reaches the API, which acts on it and answers, and then the client
never hears back. That is the failure that makes naive retries duplicate work.

- ``drop``: once the answer starts arriving, the client's connection is reset.
- ``hold``: the answer is swallowed and the connection kept open, so the client times out.
- ``gateway``: the answer is replaced by a load balancer's 504 page (its timeout for the API
  ran out), which tells the client nothing of what the API did.

It runs its own event loop in a thread, so sync and async clients alike can use it.
"""

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")


Mode = Literal["drop", "hold", "gateway"]


class LossyProxy:
    def __init__(self, target_port: int, *, lose_first: int, mode: Mode = "drop") -> None:
        self._target_port = target_port
        self._lose_first = lose_first
        self._mode = mode
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0  # connections carried to the API
        self.lost = 0  # answers the client never got
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server = self._call(self._start())
        self.port: int = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        lose = self.connections <= self._lose_first
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers.update((client_w, server_w))
        upstream = asyncio.ensure_future(_pipe(client_r, server_w))
        try:
            if lose:
                await self._lose(server_r, upstream, client_w)
            else:
                await _pipe(server_r, client_w)
        finally:
            upstream.cancel()
            server_w.close()
            client_w.close()
            self._writers.difference_update((client_w, server_w))

    async def _lose(
        self,
        server_r: asyncio.StreamReader,
        upstream: "asyncio.Future[None]",
        client_w: asyncio.StreamWriter,
    ) -> None:
        await server_r.read(65536)  # the API has answered: it acted on the request
        self.lost += 1
        if self._mode == "drop":
            client_w.transport.abort()  # a reset, as from a crashed load balancer
            return
        if self._mode == "gateway":
            client_w.write(GATEWAY_TIMEOUT)
            await client_w.drain()
            return
        # hold: say nothing until the client gives up and closes (its read timeout)
        await upstream

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()

        self._call(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


_PAGE = b"<html><head><title>504 Gateway Time-out</title></head><body>nginx</body></html>"
GATEWAY_TIMEOUT = (
    b"HTTP/1.1 504 Gateway Time-out\r\nContent-Type: text/html\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_PAGE), _PAGE)
)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
