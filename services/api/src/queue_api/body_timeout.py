"""A deadline for receiving a request's body (``API_BODY_TIMEOUT_S``).

uvicorn waits as long as a client likes between two pieces of a body, so a client that sends its
headers and then a byte now and then (or never) would hold a connection, a task and a buffer for
as long as it pleases; a few thousand such clients would take the API down. This pure ASGI
middleware gives the whole body one deadline, counted from when the request reaches the app
(its headers are in). Past it, reading the body raises :class:`BodyTimeoutError`, which
errors.py answers with a 408 that closes the connection.

One timer serves every request (:meth:`BodyDeadlines.run`, a task of the app's lifespan): it
looks at the requests waiting for a piece of their body every :attr:`BodyDeadlines.interval_s`
and stops those past their deadline, so a deadline holds to within that interval. A timer per
request (``asyncio.timeout``) cost about 12 µs, a twentieth of the API's CPU on ``POST /jobs``,
whose body is almost always there already when the app asks for it.
"""

import asyncio
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

# The longest a deadline may be overrun: at most this, and at most a quarter of the timeout.
MAX_INTERVAL_S = 1.0


class ClientLeftError(Exception):
    """The client went before its request's body came whole (errors.py: 499, as nginx logs
    it). Litestar would raise a 500 for it, counted as the API's failure."""

    def __init__(self) -> None:
        super().__init__("the client left before its request body was received")


class BodyTimeoutError(Exception):
    """The request's body did not arrive within the deadline."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"request body not received within {timeout_s:g} s")


class BodyDeadlines:
    """The deadlines of the bodies being received, and the one timer that enforces them."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.interval_s = min(timeout_s / 4, MAX_INTERVAL_S)
        # The tasks waiting for a piece of their request's body, each with its deadline (the
        # event loop's clock); and those the timer stopped, until they have seen it.
        self._waiting: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """The middleware (for Litestar's ``middleware=[...]``)."""
        waiting, expired, timeout_s = self._waiting, self._expired, self.timeout_s

        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            deadline = asyncio.get_running_loop().time() + timeout_s
            body_received = False

            async def receive_by_deadline() -> ReceiveMessage:
                nonlocal body_received
                if body_received:
                    # Only http.disconnect comes after the body, whenever the client leaves:
                    # waiting for it has no deadline.
                    return await receive()
                task = asyncio.current_task()
                if task is None:  # pragma: no cover - an ASGI server calls apps from a task
                    return await receive()
                waiting[task] = deadline
                try:
                    message = await receive()
                except asyncio.CancelledError:
                    if task not in expired:
                        raise  # not the timer's doing (e.g. the server is shutting down)
                    expired.discard(task)
                    task.uncancel()
                    raise BodyTimeoutError(timeout_s) from None
                finally:
                    waiting.pop(task, None)
                if message["type"] == "http.disconnect":
                    # Gone before the body came whole: the client's doing, not a 500 of ours
                    # (what Litestar's Request.stream and the enqueue fast path make of it).
                    raise ClientLeftError
                body_received = not message.get("more_body")
                return message

            await app(scope, receive_by_deadline, send)

        return middleware

    async def run(self) -> None:
        """Stop, every ``interval_s`` until cancelled, the body reads past their deadline."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval_s)
            self.expire(loop.time())

    def expire(self, now: float) -> None:
        """Stop the body reads whose deadline is ``now`` or earlier."""
        late = [task for task, deadline in self._waiting.items() if deadline <= now]
        for task in late:
            del self._waiting[task]
            self._expired.add(task)
            # Raised in the task where it waits (receive), where the middleware turns it
            # into BodyTimeoutError.
            task.cancel()
